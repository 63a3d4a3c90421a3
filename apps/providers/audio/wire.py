"""What crosses between the engine and its clients for audio (errors as in engine_wire).

- ``POST /audio/probe?keep=true|false``: the body is the upload as sent (any container and
  codec PyAV reads). The engine decodes it to 16 kHz mono and answers JSON
  ``{"probe_id", "sample_count", "sample_rate"}`` (a 400 ``invalid_audio`` for audio it cannot
  decode): the gateway knows the exact duration to hold credit for, and refuses undecodable
  audio before anything is held, without decoding in a web process. With ``keep=true`` the
  samples are kept for the transcription that follows (apps.providers.audio.uploads).
- ``POST /audio/transcribe?model=…&task=…&probe_id=…`` (no body): the probed samples, taken
  once. Options travel as query parameters
  (``language``, ``prompt``, ``temperature``, ``words=true``). The answer streams NDJSON as a
  generation does (engine_wire): a chunk ``{"info": {"language", "duration"}}``, then one
  ``{"segment": {...}}`` per segment as Whisper decodes it (OpenAI's verbose_json segment
  fields, and its ``words`` when asked), then ``{"done": true}``.
- ``POST /audio/speak`` with JSON ``{"model", "input", "voice", "speed"}`` (the voice one of
  the entry's): the answer streams
  24 kHz mono little-endian int16 PCM (``application/octet-stream``) as sentences are
  synthesized. An error before the first byte comes with its own status and an error object;
  a synthesis that fails later cuts the response off (no final chunk): a broken stream.
"""

from __future__ import annotations

PROBE_PATH = "/audio/probe"
TRANSCRIBE_PATH = "/audio/transcribe"
SPEAK_PATH = "/audio/speak"
PCM_CONTENT_TYPE = "application/octet-stream"
TRANSCRIBE_SAMPLE_RATE = 16_000
SPEECH_SAMPLE_RATE = 24_000
TRANSCRIBE_TASKS = frozenset({"transcribe", "translate"})
