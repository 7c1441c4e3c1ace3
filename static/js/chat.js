// The chat page: send over the conversation's socket, show the answer's deltas as they arrive
// (as text: nothing the model writes becomes markup), then swap in the server's sanitised
// rendering at the end. The socket reconnects by itself and resumes after the last seq seen.
document.addEventListener("DOMContentLoaded", () => {
  const chat = document.getElementById("chat");
  if (!chat) return;
  const log = document.getElementById("chat-log");
  const form = document.getElementById("composer");
  const input = form.querySelector("textarea");
  const sendButton = document.getElementById("send");
  const stopButton = document.getElementById("stop");
  const errorBox = document.getElementById("chat-error");
  let socket = null;
  let retryMs = 1000;
  let current = chat.dataset.generating ? { id: chat.dataset.generating, seq: 0 } : null;

  const busy = (on) => {
    sendButton.disabled = on || !socket || socket.readyState !== WebSocket.OPEN;
    stopButton.hidden = !on;
  };
  busy(Boolean(current));
  const showError = (text) => {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  };
  const bubble = (id) => log.querySelector(`.answer[data-message-id="${CSS.escape(id)}"]`);
  const addBubble = (kind, text) => {
    document.getElementById("chat-empty")?.remove();
    const div = document.createElement("div");
    div.className = `bubble ${kind}`;
    const body = document.createElement("p");
    body.className = kind === "answer" ? "streaming" : "";
    body.textContent = text;
    if (kind === "answer") {
      const wrap = document.createElement("div");
      wrap.className = "answer-body";
      wrap.append(body);
      div.append(wrap);
    } else {
      div.append(body);
    }
    log.append(div);
    return div;
  };

  const onEvent = (event) => {
    if (event.type === "started") {
      current = { id: event.message_id, seq: 0 };
      const pending = log.querySelector(".answer:not([data-message-id])");
      if (pending) pending.dataset.messageId = event.message_id;
    } else if (event.type === "delta" && current) {
      if (event.seq <= current.seq) return; // already shown (a resume overlaps nothing, but be safe)
      current.seq = event.seq;
      const target = bubble(current.id)?.querySelector(".streaming");
      if (target) target.textContent += event.text;
    } else if (event.type === "end") {
      const old = bubble(event.message_id);
      const template = document.createElement("template");
      template.innerHTML = event.html; // rendered and sanitised by the server
      if (old) old.replaceWith(template.content);
      current = null;
      busy(false);
    } else if (event.type === "error") {
      showError(event.message);
      log.querySelector(".answer:not([data-message-id])")?.remove();
      if (event.code === "busy" || event.code === "rate_limited" || event.code === "invalid") {
        busy(Boolean(current));
      }
    }
  };

  const connect = () => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}${chat.dataset.socketPath}`);
    socket.addEventListener("open", () => {
      retryMs = 1000;
      busy(Boolean(current));
      if (current) {
        busy(true);
        socket.send(JSON.stringify({ type: "resume", message_id: current.id, after: current.seq }));
      }
    });
    socket.addEventListener("message", (message) => onEvent(JSON.parse(message.data)));
    socket.addEventListener("close", (event) => {
      sendButton.disabled = true; // until the socket is back: a message now would be lost
      if (event.code === 4403) return showError("This conversation is not available.");
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    });
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const content = input.value.trim();
    if (!content || !socket || socket.readyState !== WebSocket.OPEN) return;
    showError("");
    addBubble("question", content);
    addBubble("answer", "");
    busy(true);
    socket.send(JSON.stringify({ type: "send", content }));
    input.value = "";
  });
  stopButton.addEventListener("click", () => {
    if (current && socket) socket.send(JSON.stringify({ type: "stop", message_id: current.id }));
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  connect();
});
