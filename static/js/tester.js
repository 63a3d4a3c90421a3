// The in-browser tester: builds OpenAI chat requests from the form, runs them over the
// tester's WebSocket (one Celery job per model column on the server) and renders the streamed
// tokens, usage, cost and latency. "View code" shows the same request as curl, Python and Node.
(function () {
  "use strict";
  var configNode = document.getElementById("tester-config");
  if (!configNode) return;
  var config = JSON.parse(configNode.textContent);

  var $ = function (id) { return document.getElementById(id); };
  var picks = $("model-picks");
  var messagesBox = $("messages");
  var columnsBox = $("columns");
  var runButton = $("run");
  var stopButton = $("stop");
  var errorBox = $("tester-error");
  var connection = $("connection");

  var socket = null;
  var socketReady = false;
  var running = false;
  var columns = [];
  var reconnectDelayMs = 500;
  // Attempts in a row that never opened (the server is down or refuses the handshake): after
  // this many the page stops trying and says why, instead of reconnecting forever.
  var MAX_FAILED_ATTEMPTS = 4;
  var failedAttempts = 0;
  // Close codes the server gives a socket it refuses (apps/tester/consumers.py).
  var REFUSALS = {
    4401: "Signed out: sign in again, then reload this page.",
    4403: "You are no longer a member of this organization: reload the page or switch organization.",
  };

  // --- Models ---------------------------------------------------------------------------------
  function modelSelect(value) {
    var wrap = document.createElement("div");
    wrap.className = "model-pick";
    var select = document.createElement("select");
    select.setAttribute("aria-label", "Model " + (picks.children.length + 1));
    select.setAttribute("data-testid", "model-select");
    config.models.forEach(function (model) {
      var option = document.createElement("option");
      option.value = model.id;
      option.textContent = model.id;
      select.appendChild(option);
    });
    if (value) select.value = value;
    wrap.appendChild(select);
    if (picks.children.length > 0) {
      var remove = document.createElement("button");
      remove.type = "button";
      remove.className = "btn btn-sm btn-ghost";
      remove.setAttribute("aria-label", "Remove this model");
      remove.textContent = "×";
      remove.addEventListener("click", function () {
        wrap.remove();
        syncModelButtons();
      });
      wrap.appendChild(remove);
    }
    picks.appendChild(wrap);
    syncModelButtons();
  }

  function syncModelButtons() {
    $("add-model").hidden = picks.children.length >= config.maxColumns;
  }

  function chosenModels() {
    return Array.prototype.map.call(picks.querySelectorAll("select"), function (s) {
      return s.value;
    });
  }

  $("add-model").addEventListener("click", function () {
    var used = chosenModels();
    var next = config.models.find(function (m) { return used.indexOf(m.id) === -1; });
    modelSelect(next ? next.id : config.models[0].id);
  });

  // --- Messages -------------------------------------------------------------------------------
  function messageRow(role, content) {
    var row = document.createElement("div");
    row.className = "message-row";
    var select = document.createElement("select");
    select.setAttribute("aria-label", "Role");
    ["user", "assistant"].forEach(function (name) {
      var option = document.createElement("option");
      option.value = name;
      option.textContent = name === "user" ? "User" : "Assistant";
      select.appendChild(option);
    });
    select.value = role;
    var text = document.createElement("textarea");
    text.rows = 2;
    text.value = content || "";
    text.setAttribute("aria-label", "Message");
    text.placeholder = role === "user" ? "Ask something…" : "The assistant's earlier reply";
    text.setAttribute("data-testid", "message-input");
    var remove = document.createElement("button");
    remove.type = "button";
    remove.className = "btn btn-sm btn-ghost";
    remove.textContent = "×";
    remove.setAttribute("aria-label", "Remove this message");
    remove.addEventListener("click", function () {
      if (messagesBox.children.length > 1) row.remove();
    });
    row.appendChild(select);
    row.appendChild(text);
    row.appendChild(remove);
    messagesBox.appendChild(row);
    return text;
  }

  $("add-message").addEventListener("click", function () {
    var rows = messagesBox.querySelectorAll(".message-row select");
    var last = rows.length ? rows[rows.length - 1].value : "assistant";
    messageRow(last === "user" ? "assistant" : "user", "").focus();
  });
  $("clear-messages").addEventListener("click", function () {
    messagesBox.innerHTML = "";
    messageRow("user", "").focus();
  });

  // --- The request ----------------------------------------------------------------------------
  function parsedTools() {
    var raw = $("tools").value.trim();
    if (!raw) return null;
    var tools = JSON.parse(raw); // SyntaxError is reported by the caller
    if (!Array.isArray(tools)) throw new Error("Tools must be a JSON array of tool objects.");
    return tools;
  }

  function requestFor(model) {
    var messages = [];
    var system = $("system-prompt").value.trim();
    if (system) messages.push({ role: "system", content: system });
    messagesBox.querySelectorAll(".message-row").forEach(function (row) {
      var content = row.querySelector("textarea").value;
      if (content.trim()) messages.push({ role: row.querySelector("select").value, content: content });
    });
    var body = {
      model: model,
      messages: messages,
      temperature: Number($("temperature").value),
      max_tokens: Number($("max-tokens").value) || config.defaultMaxTokens,
    };
    if ($("json-mode").checked) body.response_format = { type: "json_object" };
    var tools = parsedTools();
    if (tools) body.tools = tools;
    return body;
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  // --- Columns --------------------------------------------------------------------------------
  function buildColumns(models) {
    columnsBox.innerHTML = "";
    columnsBox.style.setProperty("--cols", String(models.length));
    columns = models.map(function (model, index) {
      var card = document.createElement("article");
      card.className = "card flush column";
      card.setAttribute("data-testid", "column");
      card.innerHTML =
        '<div class="column-head"><strong></strong><span class="row" style="gap:8px">' +
        '<span class="badge" data-role="status">Queued</span>' +
        '<button class="btn btn-sm btn-ghost" type="button" data-role="use" hidden>Use reply</button>' +
        "</span></div>" +
        '<div class="column-body caret" data-role="body" data-testid="column-output"></div>' +
        '<div class="column-foot" data-role="foot" data-testid="column-stats">' +
        '<span class="faint">Waiting for a worker…</span></div>';
      card.querySelector("strong").textContent = model;
      columnsBox.appendChild(card);
      var column = {
        model: model,
        card: card,
        body: card.querySelector("[data-role=body]"),
        status: card.querySelector("[data-role=status]"),
        foot: card.querySelector("[data-role=foot]"),
        use: card.querySelector("[data-role=use]"),
        text: "",
        tools: {},
        finished: false,
      };
      column.use.addEventListener("click", function () { useReply(column); });
      return column;
    });
  }

  function setStatus(column, label, kind) {
    column.status.textContent = label;
    column.status.className = "badge" + (kind ? " badge-" + kind : "");
  }

  function renderTools(column) {
    var box = column.body.querySelector(".tool-calls");
    if (!box) {
      box = document.createElement("div");
      box.className = "tool-calls";
      column.body.appendChild(box);
    }
    box.innerHTML = "";
    Object.keys(column.tools).forEach(function (key) {
      var call = column.tools[key];
      var node = document.createElement("div");
      node.className = "tool-call";
      node.textContent = "→ " + call.name + "(" + call.arguments + ")";
      box.appendChild(node);
    });
  }

  function stat(label, value) {
    return "<span>" + label + " <b>" + value + "</b></span>";
  }

  function onEvent(message) {
    var column = columns[message.column];
    if (!column) return;
    switch (message.event) {
      case "start":
        setStatus(column, "Streaming", "brand");
        column.foot.innerHTML = '<span class="faint">Generating…</span>';
        break;
      case "token":
        column.text += message.text;
        var textNode = column.body.firstChild;
        if (!textNode || textNode.nodeType !== Node.TEXT_NODE) {
          textNode = document.createTextNode("");
          column.body.insertBefore(textNode, column.body.firstChild);
        }
        textNode.nodeValue = column.text;
        break;
      case "tool_call":
        column.tools[message.call.index] = message.call;
        renderTools(column);
        break;
      case "done":
        finish(column);
        var stopped = message.finish_reason === "length" ? " (max tokens)" :
          message.finish_reason === "cancelled" ? " (stopped)" : "";
        setStatus(column, "Done" + stopped, "ok");
        column.foot.innerHTML =
          stat("In", message.prompt_tokens) + stat("Out", message.completion_tokens) +
          stat("Cost", message.cost) + stat("Latency", message.latency_ms + " ms") +
          (message.first_token_ms !== null && message.first_token_ms !== undefined
            ? stat("First token", message.first_token_ms + " ms") : "");
        column.use.hidden = !column.text;
        break;
      case "error":
        finish(column);
        setStatus(column, "Error", "error");
        column.body.classList.add("is-error");
        column.body.textContent = (column.text ? column.text + "\n\n" : "") + message.message;
        column.foot.innerHTML = '<span class="faint">Not billed unless tokens were generated.</span>';
        break;
    }
  }

  function finish(column) {
    column.finished = true;
    column.body.classList.remove("caret");
    if (columns.every(function (c) { return c.finished; })) setRunning(false);
  }

  function useReply(column) {
    messageRow("assistant", column.text);
    messageRow("user", "").focus();
  }

  // --- The socket -----------------------------------------------------------------------------
  function setConnection(label, live) {
    connection.innerHTML = '<span class="status-dot' + (live ? " live" : "") +
      '" aria-hidden="true"></span> ' + label;
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var opened = false;
    setConnection("Connecting…", false);
    socket = new WebSocket(scheme + location.host + "/ws/tester/" + config.organizationId + "/");
    socket.addEventListener("open", function () {
      opened = true;
      socketReady = true;
      setConnection("Connected", true);
      setRunning(running);
    });
    socket.addEventListener("message", function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "event") onEvent(message);
      else if (message.type === "error") { showError(message.message); setRunning(false); }
    });
    socket.addEventListener("close", function (event) {
      socketReady = false;
      columns.forEach(function (column) {
        if (column.finished) return;
        finish(column);
        setStatus(column, "Interrupted", "warn");
        column.foot.innerHTML = '<span class="faint">The connection dropped: run it again.</span>';
      });
      setRunning(false);
      if (REFUSALS[event.code]) {
        giveUp(REFUSALS[event.code]);
        return;
      }
      if (opened) {
        failedAttempts = 0;
        reconnectDelayMs = 500;
      } else {
        failedAttempts += 1;
      }
      if (failedAttempts >= MAX_FAILED_ATTEMPTS) {
        giveUp("The tester could not reach the server (" + failedAttempts + " attempts were " +
          "refused). Check that Plugsky is running, then reconnect.");
        return;
      }
      setConnection("Reconnecting…", false);
      setTimeout(connect, reconnectDelayMs);
      reconnectDelayMs = Math.min(reconnectDelayMs * 2, 10000);
    });
  }

  // Stop reconnecting, say why, and leave the next attempt to the person.
  function giveUp(reason) {
    connection.textContent = "";
    var dot = document.createElement("span");
    dot.className = "status-dot";
    dot.setAttribute("aria-hidden", "true");
    var retry = document.createElement("button");
    retry.type = "button";
    retry.className = "btn btn-sm btn-link";
    retry.textContent = "Reconnect";
    retry.addEventListener("click", function () {
      failedAttempts = 0;
      reconnectDelayMs = 500;
      showError("");
      connect();
    });
    connection.append(dot, " Disconnected ", retry);
    showError(reason);
  }

  function setRunning(value) {
    running = value;
    runButton.disabled = running || !socketReady;
    stopButton.disabled = !running;
  }

  function run() {
    if (running || !socketReady) return;
    showError("");
    var models = chosenModels();
    var bodies;
    try {
      bodies = models.map(requestFor);
    } catch (failure) {
      showError("Tools: " + failure.message);
      return;
    }
    if (!bodies[0].messages.some(function (m) { return m.role !== "system"; })) {
      showError("Write a message first.");
      return;
    }
    buildColumns(models);
    setRunning(true);
    socket.send(JSON.stringify({ type: "run", columns: bodies }));
  }

  runButton.addEventListener("click", run);
  stopButton.addEventListener("click", function () {
    if (socketReady) socket.send(JSON.stringify({ type: "stop" }));
    columns.forEach(function (column) {
      if (!column.finished) { finish(column); setStatus(column, "Stopped", "warn"); }
    });
    setRunning(false);
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) run();
  });
  $("temperature").addEventListener("input", function () {
    $("temperature-value").textContent = this.value;
  });

  // --- View code ------------------------------------------------------------------------------
  function pythonLiteral(value, indent) {
    var pad = "    ".repeat(indent);
    var inner = "    ".repeat(indent + 1);
    if (value === null) return "None";
    if (value === true) return "True";
    if (value === false) return "False";
    if (typeof value === "string") return JSON.stringify(value);
    if (typeof value === "number") return String(value);
    if (Array.isArray(value)) {
      if (!value.length) return "[]";
      return "[\n" + value.map(function (item) {
        return inner + pythonLiteral(item, indent + 1);
      }).join(",\n") + ",\n" + pad + "]";
    }
    var keys = Object.keys(value);
    if (!keys.length) return "{}";
    return "{" + keys.map(function (key) {
      return JSON.stringify(key) + ": " + pythonLiteral(value[key], indent + 1);
    }).join(", ") + "}";
  }

  function codeFor(body) {
    var streamed = Object.assign({}, body, { stream: true });
    var json = JSON.stringify(streamed, null, 2);
    var curl = "curl " + config.baseUrl + "/chat/completions \\\n" +
      '  -H "Authorization: Bearer $PLUGSKY_API_KEY" \\\n' +
      '  -H "Content-Type: application/json" \\\n' +
      "  -d '" + json.replace(/'/g, "'\\''") + "'";
    var args = Object.keys(body).map(function (key) {
      return "    " + key + "=" + pythonLiteral(body[key], 1) + ",";
    }).join("\n");
    var python = "import os\nfrom openai import OpenAI\n\n" +
      'client = OpenAI(base_url="' + config.baseUrl + '", api_key=os.environ["PLUGSKY_API_KEY"])\n\n' +
      "stream = client.chat.completions.create(\n" + args + "\n    stream=True,\n)\n" +
      "for chunk in stream:\n" +
      '    print(chunk.choices[0].delta.content or "", end="", flush=True)\n';
    var nodeBody = JSON.stringify(streamed, null, 2).replace(/\n/g, "\n  ");
    var node = 'import OpenAI from "openai";\n\n' +
      "const client = new OpenAI({\n" +
      '  baseURL: "' + config.baseUrl + '",\n' +
      "  apiKey: process.env.PLUGSKY_API_KEY,\n});\n\n" +
      "const stream = await client.chat.completions.create(" + nodeBody + ");\n" +
      "for await (const chunk of stream) {\n" +
      '  process.stdout.write(chunk.choices[0]?.delta?.content ?? "");\n}\n';
    return { curl: curl, python: python, node: node };
  }

  function renderCode() {
    var model = $("code-model").value;
    var code;
    try {
      code = codeFor(requestFor(model));
    } catch (failure) {
      code = { curl: "Tools: " + failure.message, python: "", node: "" };
    }
    $("code-curl").textContent = code.curl;
    $("code-python").textContent = code.python;
    $("code-node").textContent = code.node;
  }

  $("view-code").addEventListener("click", function () {
    var select = $("code-model");
    select.innerHTML = "";
    chosenModels().forEach(function (model) {
      var option = document.createElement("option");
      option.value = option.textContent = model;
      select.appendChild(option);
    });
    select.hidden = select.options.length < 2;
    renderCode();
    $("code-dialog").showModal();
  });
  $("code-model").addEventListener("change", renderCode);

  // --- Start ----------------------------------------------------------------------------------
  modelSelect(config.models[0].id);
  messageRow("user", "Write a haiku about the sea.");
  buildColumns([]);
  setRunning(false);
  connect();
})();
