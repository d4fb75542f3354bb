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
