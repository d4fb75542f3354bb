// The start-up progress shown while the Python runtime loads (several megabytes, a few seconds), and a
// clear message if it never starts. PyScript reports its steps as `py:progress` events; the Python
// side removes the indicator (#boot) once it runs.
"use strict";

(() => {
  const STEPS = ["Loading Pyodide", "Loading Storage", "Loading interpreter", "Loaded interpreter",
    "Loading files", "Loaded files"];
  const TOO_SLOW_MS = 60_000;
  const started = performance.now();

  function boot() {
    return document.getElementById("boot");
  }

  addEventListener("py:progress", ({ detail }) => {
    const el = boot();
    if (!el) return;
    const text = el.querySelector("[data-role=step]");
    if (text) text.textContent = `${detail}…`;
    const bar = el.querySelector("progress");
    const at = STEPS.indexOf(String(detail));
    if (bar && at >= 0) bar.value = (at + 1) / (STEPS.length + 1);
  });

  setTimeout(() => {
    const el = boot();
    if (!el || el.hidden) return;
    const text = el.querySelector("[data-role=step]");
    if (text) {
      text.textContent = `The app has not started after ${Math.round((performance.now() - started) / 1000)} s. `
        + "Reload the page; if it keeps happening, check the browser console.";
    }
    el.dataset.state = "stalled";
  }, TOO_SLOW_MS);
})();
