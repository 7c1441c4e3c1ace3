// Confirmation before destructive actions for forms that are not sent by htmx (htmx uses hx-confirm).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || form.hasAttribute("hx-post")) return;
  const question = form.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});

// Drag and drop onto the upload box fills its file input and submits it.
document.addEventListener("DOMContentLoaded", () => {
  const zone = document.querySelector(".dropzone");
  if (!zone) return;
  const input = zone.querySelector('input[type="file"]');
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    input.files = event.dataTransfer.files;
    zone.requestSubmit();
  });
});

// Live document status: ingestion pushes each change over a websocket; a progress bar moves in
// place, anything else (ready, failed, new, deleted) re-renders the list. Whenever the socket
// opens (the first time too: the page was drawn before it) the list is re-rendered once if it
// could be stale, so changes made while no socket listened show up.
document.addEventListener("DOMContentLoaded", () => {
  if (!document.getElementById("documents-panel")) return;
  const refresh = () => {
    const panel = document.getElementById("documents-panel");
    htmx.ajax("GET", panel.dataset.liveUrl, { target: panel, swap: "outerHTML" });
  };
  let retryMs = 1000;
  let reconnecting = false;
  const inProgress = () => document.querySelector("#documents-panel progress") !== null;
  const connect = () => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/documents/`);
    socket.addEventListener("open", () => {
      retryMs = 1000;
      if (reconnecting || inProgress()) refresh();
    });
    socket.addEventListener("message", (message) => {
      const change = JSON.parse(message.data);
      const row = document.querySelector(`[data-document-id="${Number(change.id)}"]`);
      const bar = row && row.querySelector("progress");
      if (bar && change.status === "processing") {
        bar.value = change.progress;
        bar.textContent = `${change.progress}%`;
        const label = row.querySelector("[data-status]");
        if (label) label.textContent = "Processing";
      } else {
        refresh();
      }
    });
    socket.addEventListener("close", (event) => {
      if (event.code === 4403) return; // not allowed: retrying will not help
      reconnecting = true;
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    });
  };
  connect();
});
