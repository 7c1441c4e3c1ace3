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
