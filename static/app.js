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
  const ended = event.detail.xhr.status === 401; // the notice says so; the form stays
  if (event.detail.isError && event.detail.target === document.body && !ended) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});

// A refused htmx request never fails in silence. 401: the session ended (idle 15 minutes, or
// 12 hours in all); say so once, stop the page's polling, and leave what was typed in place.
// Any other error: the server's own words (its error page's message) in a notice that stays
// until dismissed.
const notice = (id, text, action) => {
  let box = document.getElementById(id);
  if (!box) {
    box = document.createElement("div");
    box.id = id;
    box.className = "notice";
    box.setAttribute("role", "alert");
    const words = document.createElement("p");
    box.append(words);
    const close = document.createElement("button");
    close.type = "button";
    close.className = "secondary";
    close.textContent = action || "Dismiss";
    close.addEventListener("click", () => box.remove());
    box.append(close);
    document.body.prepend(box);
  }
  box.querySelector("p").textContent = text;
  box.querySelector("button").focus();
};
document.addEventListener("htmx:beforeRequest", (event) => {
  if (document.body.dataset.sessionEnded) event.preventDefault();
});
document.addEventListener("htmx:responseError", (event) => {
  const xhr = event.detail.xhr;
  if (xhr.status === 401) {
    document.body.dataset.sessionEnded = "1";
    notice("session-ended",
      "Your Chartbridge session has ended (after 15 minutes without use, or 12 hours in all). " +
      "Reopen Chartbridge from Hint to go on; what you typed here is still on this page.", "OK");
    return;
  }
  const page = new DOMParser().parseFromString(xhr.responseText || "", "text/html");
  const said = page.querySelector(".message")?.textContent?.trim();
  notice("request-failed", said || `Chartbridge could not do that (HTTP ${xhr.status}). Please try again.`);
});
document.addEventListener("htmx:sendError", () => {
  notice("request-failed", "Chartbridge could not be reached. Check the connection and try again.");
});

// "Go back" on error pages (inline script is not allowed here).
document.addEventListener("click", (event) => {
  if (event.target.closest("[data-back]")) history.back();
});

// What a save did is shown next to its button: brought into view, and an error gets the focus.
// An error about one field (data-field) marks that field invalid, ties it to the words
// (aria-describedby) and moves the focus to it.
// (Also on a page that is itself the answer, e.g. a launch form sent again with its error.)
const showOutcome = () => {
  const said = document.querySelector("[data-outcome]:not([data-seen])");
  if (!said) return;
  said.dataset.seen = "1";
  said.tabIndex = -1;
  said.scrollIntoView({ block: "nearest" });
  const scope = said.closest("form") ?? said.closest("section") ?? document;
  const field = said.dataset.field && scope.querySelector(`[name="${CSS.escape(said.dataset.field)}"]`);
  if (field) {
    field.setAttribute("aria-invalid", "true");
    if (said.id) field.setAttribute("aria-describedby", said.id);
    field.focus();
  } else if (said.getAttribute("role") === "alert") {
    said.focus();
  }
};
document.addEventListener("htmx:afterSettle", showOutcome);
showOutcome();

// A settings save the server refused comes back as the section drawn again, without the
// secrets (they are never sent back): what the admin typed in them is put back, so a
// correction or "Save anyway" does not need them typed again.
let typedSecrets = null;
document.addEventListener("htmx:beforeSwap", (event) => {
  typedSecrets = null;
  const target = event.detail.target;
  if (event.detail.xhr.status !== 422 || !target.matches?.(".partner-settings")) return;
  typedSecrets = new Map([...target.querySelectorAll("input[type=password]")]
    .filter((input) => input.value).map((input) => [input.name, input.value]));
});
document.addEventListener("htmx:afterSwap", (event) => {
  if (!typedSecrets) return;
  const section = event.detail.elt?.closest?.(".partner-settings") ??
    document.getElementById(event.detail.target?.id);
  typedSecrets.forEach((value, name) => {
    const input = document.querySelector(`.partner-settings input[type=password][name="${CSS.escape(name)}"]`);
    if (input && !input.value && (!section || section.contains(input))) input.value = value;
  });
  typedSecrets = null;
});

// An action that cannot be undone (hx-confirm) asks first, in the page itself (a frame from
// another site may not be allowed a dialog): the question, then "Yes, …" or "Keep".
document.addEventListener("htmx:confirm", (event) => {
  const question = event.detail.question;
  if (!question) return;
  event.preventDefault();
  const elt = event.detail.elt;
  const button = elt.matches("button") ? elt : elt.querySelector("button[type=submit], button");
  const label = button ? button.textContent.trim() : "Go on";
  const box = document.createElement("div");
  box.className = "confirm";
  box.setAttribute("role", "alertdialog");
  box.setAttribute("aria-label", label);
  const words = document.createElement("p");
  words.textContent = question;
  const yes = document.createElement("button");
  yes.type = "button";
  yes.className = button?.classList.contains("danger") ? "danger" : "";
  yes.textContent = `Yes, ${label.charAt(0).toLowerCase()}${label.slice(1)}`;
  const keep = document.createElement("button");
  keep.type = "button";
  keep.className = "secondary";
  keep.textContent = "Keep";
  box.append(words, yes, keep);
  elt.hidden = true;
  elt.after(box);
  const close = () => { box.remove(); elt.hidden = false; };
  keep.addEventListener("click", () => { close(); button?.focus(); });
  yes.addEventListener("click", () => { close(); event.detail.issueRequest(true); });
  keep.focus();
});

// Until htmx has taken a form over, its button would submit it the plain way (a GET of the
// page with the fields in the URL): forms that htmx posts render their button disabled
// (data-ready) and are enabled here once processed, also when swapped in later.
// (Error pages have no htmx, and no such forms.)
window.htmx?.onLoad((root) => {
  const scope = root.querySelectorAll ? root : document;
  scope.querySelectorAll("button[data-ready]").forEach((b) => {
    b.disabled = false;
    b.removeAttribute("data-ready");
  });
});

// Times are sent in UTC and shown in the browser's own zone, named: <time datetime>.
// A datetime without a zone (a partner's) is taken as UTC.
const localTimes = (root) => {
  const scope = root.querySelectorAll ? root : document;
  scope.querySelectorAll("time[datetime]:not([data-local])").forEach((el) => {
    const raw = el.getAttribute("datetime");
    const zoned = /(Z|[+-]\d\d:?\d\d)$/.test(raw) ? raw : `${raw}Z`;
    const when = new Date(zoned);
    if (Number.isNaN(when.getTime())) return;
    const options = { dateStyle: "medium", timeStyle: el.hasAttribute("data-seconds") ? "medium" : "short" };
    const zone = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" })
      .formatToParts(when).find((p) => p.type === "timeZoneName")?.value ?? "";
    el.textContent = `${new Intl.DateTimeFormat(undefined, options).format(when)} ${zone}`.trim();
    el.title = `${raw.replace("T", " ")} (as sent)`;
    el.dataset.local = "1";
  });
};
localTimes(document);
document.addEventListener("htmx:afterSettle", () => localTimes(document));

// Search results by keyboard: arrow down from the search box into the results, up and down
// between them, up from the first back to the box; Enter opens the patient (a link).
document.addEventListener("keydown", (event) => {
  if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
  const box = event.target.closest("input[data-results]");
  const links = (root) => [...(root?.querySelectorAll("a.name") ?? [])];
  if (box) {
    if (event.key !== "ArrowDown") return;
    const first = links(document.querySelector(box.dataset.results))[0];
    if (first) { event.preventDefault(); first.focus(); }
    return;
  }
  const current = event.target.closest("#patients a.name");
  if (!current) return;
  const all = links(document.querySelector("#patients"));
  const at = all.indexOf(current);
  event.preventDefault();
  if (event.key === "ArrowDown" && at + 1 < all.length) all[at + 1].focus();
  if (event.key === "ArrowUp") (at > 0 ? all[at - 1] : document.querySelector("input[data-results]"))?.focus();
});

// Hint's JS SDK, when Hint served it (the layout loads it; without it nothing here runs). It
// sizes Hint's frame to the page by itself. A page for one patient (data-patient-id) follows
// the patient Hint shows: when Hint shows another one (or none, after showing ours) without
// opening the app again, the page locks at once: every control disabled, links and forms
// stopped, htmx requests refused and the ones on their way aborted, so nothing more is sent
// for the patient on this page. It unlocks if Hint shows this page's patient again.
// (A page opened from the practice page, when Hint showed no patient, is not locked by that.)
if (window.HintSDK) {
  const bound = document.querySelector("[data-patient-id]")?.dataset.patientId;
  let locked = false;
  let sawOurPatient = false;
  const inFlight = new Set();
  document.addEventListener("htmx:beforeSend", (event) => inFlight.add(event.detail.elt));
  document.addEventListener("htmx:afterRequest", (event) => inFlight.delete(event.detail.elt));

  const disableAll = (root) => {
    root.querySelectorAll("button, input, select, textarea, fieldset").forEach((control) => {
      if (control.disabled) return;
      control.disabled = true;
      control.dataset.hintDisabled = "1";
    });
    root.querySelectorAll("a[href]:not([href^='#'])").forEach((link) => link.setAttribute("aria-disabled", "true"));
  };
  const lock = (shown) => {
    let banner = document.getElementById("hint-patient-changed");
    if (!banner) {
      banner = document.createElement("div");
      banner.id = "hint-patient-changed";
      banner.className = "notice";
      banner.setAttribute("role", "alert");
      banner.append(document.createElement("p"));
      document.body.prepend(banner);
    }
    const name = shown?.name || "that patient";
    banner.querySelector("p").textContent = shown
      ? `Hint now shows another patient, ${name}. This page is locked so nothing is sent for the patient ` +
        `it shows: reopen Chartbridge from ${name}'s chart to go on.`
      : "Hint no longer shows this page's patient. This page is locked so nothing more is sent: " +
        "reopen Chartbridge from the patient's chart in Hint.";
    if (locked) return;
    locked = true;
    document.body.dataset.hintLocked = "1";
    disableAll(document);
    inFlight.forEach((elt) => window.htmx?.trigger(elt, "htmx:abort"));
  };
  const unlock = () => {
    if (!locked) return;
    locked = false;
    delete document.body.dataset.hintLocked;
    document.getElementById("hint-patient-changed")?.remove();
    document.querySelectorAll("[data-hint-disabled]").forEach((control) => {
      control.disabled = false;
      delete control.dataset.hintDisabled;
    });
    document.querySelectorAll("a[aria-disabled=true]").forEach((link) => link.removeAttribute("aria-disabled"));
  };
  const follow = (patient) => {
    if (!bound) return;
    const id = patient?.id ?? null;
    if (id === bound) {
      sawOurPatient = true;
      unlock();
    } else if (id !== null || sawOurPatient || locked) {
      lock(patient);
    }
  };

  // While locked: no htmx request, no form sent, no link followed; content swapped in (an
  // answer that was already on its way) is locked too.
  document.addEventListener("htmx:beforeRequest", (event) => { if (locked) event.preventDefault(); });
  document.addEventListener("submit", (event) => { if (locked) event.preventDefault(); }, true);
  document.addEventListener("click", (event) => {
    if (locked && event.target.closest("a[href]:not([href^='#'])")) event.preventDefault();
  }, true);
  window.htmx?.onLoad((root) => { if (locked) disableAll(root.querySelectorAll ? root : document); });

  window.HintSDK.onCurrentPatientChanged(follow);
  window.HintSDK.init((context) => follow(context.currentPatient));
}
