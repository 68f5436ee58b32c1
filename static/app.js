// Copy buttons: <button data-copy="#selector"> copies that element's text. Inside Hint's
// iframe the clipboard may not be granted to us; then the text is selected for Ctrl+C instead.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  if (!source) return;
  const label = button.dataset.label || button.textContent;
  button.dataset.label = label;
  const say = (text) => {
    button.textContent = text;
    setTimeout(() => { button.textContent = label; }, 2500);
  };
  const selectForManualCopy = () => {
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    say("Selected: press Ctrl+C");
  };
  const policy = document.permissionsPolicy || document.featurePolicy;
  const allowed = !policy || policy.allowsFeature("clipboard-write");
  if (allowed && navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(source.textContent.trim()).then(() => say("Copied"), selectForManualCopy);
  } else {
    selectForManualCopy();
  }
});

// Forms with a time field send the browser's time zone so the server can turn local time into UTC.
const fillTimeZones = (root) => {
  root.querySelectorAll("input[data-tz-offset]").forEach((input) => {
    input.value = String(new Date().getTimezoneOffset());
  });
};
fillTimeZones(document);
document.addEventListener("htmx:afterSwap", (event) => fillTimeZones(event.target));

// Forms marked data-submit-once send once: a double click does not start two visits.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!form.matches("form[data-submit-once]")) return;
  if (form.dataset.sent) { event.preventDefault(); return; }
  form.dataset.sent = "1";
  setTimeout(() => form.querySelectorAll("button[type=submit]").forEach((b) => { b.disabled = true; b.textContent = "Sending…"; }), 0);
});

// A form that replaces the whole page (hx-target="body") shows error answers too: they are
// whole pages that say what went wrong.
document.addEventListener("htmx:beforeSwap", (event) => {
  if (event.detail.isError && event.detail.target === document.body) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});
