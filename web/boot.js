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

  // The colour scheme: the system's, unless the user picked one with the header's switch (kept in this
  // browser's localStorage). Set before the body is drawn, so a dark page never flashes white; the
  // chart hears "signalguard:theme" and recolours itself.
  const THEME_KEY = "signalguard:theme";
  const systemDark = matchMedia("(prefers-color-scheme: dark)");

  // The switch's choice for this page, whether or not the browser lets it be kept.
  let picked = null;

  function chosenTheme() {
    if (picked) return picked;
    try {
      const value = localStorage.getItem(THEME_KEY);
      return value === "light" || value === "dark" ? value : "auto";
    } catch {
      return "auto";  // storage refused (a privacy setting): follow the system
    }
  }

  function applyTheme() {
    const chosen = chosenTheme();
    const dark = chosen === "auto" ? systemDark.matches : chosen === "dark";
    document.documentElement.dataset.theme = dark ? "dark" : "light";
    dispatchEvent(new CustomEvent("signalguard:theme"));
  }

  applyTheme();
  systemDark.addEventListener("change", applyTheme);
  addEventListener("DOMContentLoaded", () => {
    const control = document.getElementById("theme-switch");
    if (!control) return;
    control.value = chosenTheme();
    control.addEventListener("change", () => {
      picked = control.value;
      try {
        if (picked === "auto") localStorage.removeItem(THEME_KEY);
        else localStorage.setItem(THEME_KEY, picked);
      } catch {
        // Not kept across reloads, but applied now.
      }
      applyTheme();
    });
  });

  // The service worker (web/sw.js, served as ./sw.js for the whole origin) keeps the runtime and the
  // app's archive for the next visit. Registered only once this visit is up (the app ready, or the
  // sign-in form shown for a few seconds, or at the latest 20 s after the load event), so it never
  // competes with the first visit's own start. Then it is handed the files this page loaded before the
  // worker controlled it, to keep them now (the worker takes only its own kind; see web/sw.js). No
  // worker (an old browser, a page not served over https or from localhost): every visit loads as the
  // first.
  const SIGNED_OUT_WAIT_MS = 3_000;
  const LATEST_MS = 20_000;

  function registerWorker() {
    navigator.serviceWorker.register("./sw.js", { scope: "./", updateViaCache: "none" })
      .then(() => navigator.serviceWorker.ready)
      .then((registration) => {
        const urls = performance.getEntriesByType("resource")
          .map((entry) => entry.name)
          .filter((url) => url.startsWith(`${location.origin}/web/`));
        registration.active?.postMessage({ type: "keep", urls });
      })
      .catch(() => { /* no worker: nothing is kept */ });
  }

  function whenSettled(then) {
    let done = false;
    const once = () => {
      if (done) return;
      done = true;
      observer.disconnect();
      then();
    };
    const body = document.body;
    const check = () => {
      if (body.dataset.ready === "1") once();
      else if (body.dataset.runtime === "ready") setTimeout(once, SIGNED_OUT_WAIT_MS);
    };
    const observer = new MutationObserver(check);
    observer.observe(body, { attributes: true, attributeFilter: ["data-ready", "data-runtime"] });
    check();
    setTimeout(once, LATEST_MS);
  }

  if ("serviceWorker" in navigator && isSecureContext) {
    addEventListener("load", () => whenSettled(registerWorker), { once: true });
  }

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
