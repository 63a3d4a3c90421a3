// The tester's audio panel: record from the microphone (MediaRecorder) or pick a file and post
// it to the tester's transcription endpoint; type text and play what the speech endpoint
// returns. Both are plain same-origin POSTs (session + CSRF token) that the server answers
// exactly as /v1/audio would, billed to the organization as tester calls.
(function () {
  "use strict";
  var configNode = document.getElementById("tester-audio-config");
  if (!configNode) return;
  var config = JSON.parse(configNode.textContent);
  var $ = function (id) { return document.getElementById(id); };

  function csrfToken(form) {
    return form.querySelector("input[name=csrfmiddlewaretoken]").value;
  }

  function showError(box, message) {
    box.textContent = message;
    box.hidden = !message;
  }

  // An error answer is OpenAI's envelope; anything else (a proxy's page) gets a plain message.
  function errorMessage(response) {
    return response.json().then(
      function (body) { return (body && body.error && body.error.message) || "The call failed."; },
      function () { return "The call failed (HTTP " + response.status + ")."; }
    );
  }

  function costText(response) {
    var cost = response.headers.get("x-plugsky-cost");
    return cost ? "Billed $" + cost : "";
  }

  // --- Speech to text --------------------------------------------------------------------------
  var sttForm = $("transcribe-form");
  if (sttForm) {
    var audio = null; // {blob, name}: the recording or file to transcribe
    var recorder = null;
    var recordButton = $("record");
    var fileInput = $("audio-file");
    var preview = $("audio-preview");
    var source = $("audio-source");
    var transcribeButton = $("transcribe");
    var sttError = $("stt-error");
    var transcript = $("transcript");
    var transcriptMeta = $("transcript-meta");
    var sttModel = $("stt-model");
    var sttLanguage = $("stt-language");

    var useAudio = function (blob, name, label) {
      showError(sttError, "");
      if (blob.size > config.maxFileBytes) {
        audio = null;
        transcribeButton.disabled = true;
        showError(sttError, "The file is over 25 MB, the most a transcription takes.");
        return;
      }
      audio = { blob: blob, name: name };
      if (preview.src) URL.revokeObjectURL(preview.src);
      preview.src = URL.createObjectURL(blob);
      preview.hidden = false;
      source.textContent = label + " (" + Math.max(1, Math.round(blob.size / 1024)) + " KB)";
      transcribeButton.disabled = false;
    };

    // An English-only model has no language to choose.
    var syncLanguage = function () {
      var model = config.transcriptionModels.find(function (m) { return m.id === sttModel.value; });
      sttLanguage.disabled = !(model && model.multilingual);
      if (sttLanguage.disabled) sttLanguage.value = "";
    };
    sttModel.addEventListener("change", syncLanguage);
    syncLanguage();

    fileInput.addEventListener("change", function () {
      var file = fileInput.files && fileInput.files[0];
      if (file) useAudio(file, file.name, file.name);
    });

    var startRecording = function () {
      if (!navigator.mediaDevices || !window.MediaRecorder) {
        showError(sttError, "This browser cannot record audio; choose a file instead.");
        return;
      }
      navigator.mediaDevices.getUserMedia({ audio: true }).then(function (stream) {
        var pieces = [];
        var started = Date.now();
        recorder = new MediaRecorder(stream);
        recorder.addEventListener("dataavailable", function (event) {
          if (event.data.size) pieces.push(event.data);
        });
        recorder.addEventListener("stop", function () {
          stream.getTracks().forEach(function (track) { track.stop(); });
          var type = recorder.mimeType || "audio/webm";
          var seconds = ((Date.now() - started) / 1000).toFixed(1);
          recorder = null;
          recordButton.textContent = "● Record";
          recordButton.setAttribute("aria-pressed", "false");
          useAudio(new Blob(pieces, { type: type }), "recording." + (type.indexOf("ogg") >= 0 ? "ogg" : "webm"),
                   "Recording, " + seconds + " s");
        });
        recorder.start();
        recordButton.textContent = "■ Stop recording";
        recordButton.setAttribute("aria-pressed", "true");
        source.textContent = "Recording…";
      }, function (failure) {
        showError(sttError, "The microphone is not available: " + failure.message);
      });
    };

    recordButton.addEventListener("click", function () {
      if (recorder) recorder.stop();
      else startRecording();
    });

    sttForm.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!audio) return;
      var form = new FormData();
      form.append("model", sttModel.value);
      if (sttLanguage.value) form.append("language", sttLanguage.value);
      form.append("response_format", "verbose_json");
      form.append("file", audio.blob, audio.name);
      transcribeButton.disabled = true;
      transcribeButton.textContent = "Transcribing…";
      transcript.textContent = "";
      transcriptMeta.textContent = "";
      showError(sttError, "");
      fetch(config.transcriptionUrl, {
        method: "POST", body: form, credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken(sttForm) },
      }).then(function (response) {
        if (!response.ok) return errorMessage(response).then(function (m) { showError(sttError, m); });
        return response.json().then(function (body) {
          transcript.textContent = body.text;
          transcriptMeta.textContent = [
            body.language ? body.language.charAt(0).toUpperCase() + body.language.slice(1) : "",
            body.usage ? body.usage.seconds + " s of audio" : "",
            costText(response),
          ].filter(Boolean).join(" · ");
        });
      }).catch(function () {
        showError(sttError, "Could not reach the server.");
      }).finally(function () {
        transcribeButton.disabled = !audio;
        transcribeButton.textContent = "Transcribe";
      });
    });
  }

  // --- Text to speech --------------------------------------------------------------------------
  var ttsForm = $("speak-form");
  if (ttsForm) {
    var ttsModel = $("tts-model");
    var ttsVoice = $("tts-voice");
    var ttsFormat = $("tts-format");
    var ttsInput = $("tts-input");
    var speakButton = $("speak");
    var ttsError = $("tts-error");
    var player = $("speech-audio");
    var speechMeta = $("speech-meta");

    var syncVoices = function () {
      var model = config.speechModels.find(function (m) { return m.id === ttsModel.value; });
      ttsVoice.innerHTML = "";
      (model ? model.voices : []).forEach(function (voice) {
        var option = document.createElement("option");
        option.value = voice;
        option.textContent = voice;
        ttsVoice.appendChild(option);
      });
    };
    ttsModel.addEventListener("change", syncVoices);
    syncVoices();

    ttsForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = ttsInput.value.trim();
      if (!text) {
        showError(ttsError, "Type some text to speak.");
        return;
      }
      var body = {
        model: ttsModel.value, voice: ttsVoice.value, input: text,
        response_format: ttsFormat.value,
      };
      speakButton.disabled = true;
      speakButton.textContent = "Synthesizing…";
      speechMeta.textContent = "";
      showError(ttsError, "");
      fetch(config.speechUrl, {
        method: "POST", body: JSON.stringify(body), credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(ttsForm) },
      }).then(function (response) {
        if (!response.ok) return errorMessage(response).then(function (m) { showError(ttsError, m); });
        var cost = costText(response);
        return response.blob().then(function (blob) {
          if (player.src) URL.revokeObjectURL(player.src);
          player.src = URL.createObjectURL(blob);
          player.hidden = false;
          speechMeta.textContent = [text.length + " characters", cost].filter(Boolean).join(" · ");
          player.play().catch(function () { /* autoplay refused: the controls are there */ });
        });
      }).catch(function () {
        showError(ttsError, "Could not reach the server.");
      }).finally(function () {
        speakButton.disabled = false;
        speakButton.textContent = "Speak";
      });
    });
  }
})();
