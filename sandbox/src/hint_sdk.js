// Sandbox Hint's JS SDK, served at $HINT_API_URL/hint-sdk.js, for a partner app in Hint's iframe.
// It behaves like Hint's: `HintSDK.init(cb)` calls cb with {user, currentPatient, interaction}
// once Hint's page answers; `HintSDK.onCurrentPatientChanged(fn)` is called when Hint shows
// another patient (or none) without reloading the frame; the frame's height is reported by itself.
//
// Protocol (window.postMessage, both ways checked):
//   frame → Hint  {type: "hint-sdk:hello"}                       ask for the context
//   Hint → frame  {type: "hint-sdk:context", user, currentPatient, interaction}
//   Hint → frame  {type: "hint-sdk:patient", currentPatient}     Hint shows another patient
//   frame → Hint  {type: "hint-sdk:height", height}              the page's height in px
// The frame talks to its parent only, with Hint's origin as the target (the origin this script
// was served from), and takes messages only from its parent with that origin. Outside a frame
// (a page opened by itself, a new tab) the SDK does nothing: init never calls back.
(() => {
  "use strict";
  if (window.HintSDK) return;
  const hintOrigin = new URL(document.currentScript.src).origin;
  const framed = window.parent !== window;
  const send = (message) => { if (framed) window.parent.postMessage(message, hintOrigin); };

  let context = null;
  const ready = [];
  const patientListeners = [];

  window.addEventListener("message", (event) => {
    if (event.source !== window.parent || event.origin !== hintOrigin) return;
    const data = event.data;
    if (!data || typeof data !== "object") return;
    if (data.type === "hint-sdk:context") {
      context = { user: data.user ?? null, currentPatient: data.currentPatient ?? null, interaction: data.interaction ?? null };
      ready.splice(0).forEach((cb) => cb(context));
    } else if (data.type === "hint-sdk:patient" && context) {
      context = { ...context, currentPatient: data.currentPatient ?? null };
      patientListeners.forEach((fn) => fn(context.currentPatient));
    }
  });

  // The height, each time it changes: the html element's box (not scrollHeight, which never
  // falls below the frame's own height, so a frame could grow but never shrink).
  let reported = 0;
  const reportHeight = () => {
    const height = Math.ceil(document.documentElement.getBoundingClientRect().height);
    if (height !== reported) { reported = height; send({ type: "hint-sdk:height", height }); }
  };
  if (framed) {
    // Hint sizes the frame to the page, so the page never scrolls inside it. Without this, a
    // page just taller than its frame shows a scrollbar, narrows, grows, loses the scrollbar,
    // shrinks… and the frame resizes for ever (a click aimed meanwhile can miss its button).
    document.documentElement.style.overflowY = "hidden";
    new ResizeObserver(reportHeight).observe(document.documentElement);
    reportHeight();
  }

  window.HintSDK = Object.freeze({
    init(cb) {
      if (context) { cb(context); return; }
      ready.push(cb);
      send({ type: "hint-sdk:hello" });
    },
    onCurrentPatientChanged(fn) { patientListeners.push(fn); },
    get user() { return context?.user ?? null; },
    get currentPatient() { return context?.currentPatient ?? null; },
    get interaction() { return context?.interaction ?? null; },
  });
})();
