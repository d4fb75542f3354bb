// signalguard's alert channels, for the Python side of the page (src/signalguard/browser/alerts.py).
//
// On `globalThis.signalguardAlerts`:
//
//   permission()                 "default" | "granted" | "denied" | "unsupported"
//   requestPermission(done)      asks the browser (call it from a click's handler); done(answer)
//   notify(title, body, tag)     a Notification; true if the browser took it. A click on it focuses
//                                the tab. Each one is also logged in `shown` (title, body, tag), the
//                                page's own record of what it showed (the end-to-end tests read it).
//   chime()                      a short two-note sound made with Web Audio (no file to fetch); the
//                                number played is `chimes`
//   setTitleCount(n)             "(n) signalguard" in the tab title, or the plain title for 0
//   looking()                    whether the tab is visible and focused
//   onLook(callback)             callback() when the tab is shown or focused again
//   prefGet(key) / prefPut(k, v) localStorage, shared by the browser's tabs (errors: null / ignored)
"use strict";

(() => {
  const baseTitle = document.title;
  const shown = [];
  let audio = null;
  let chimes = 0;

  function permission() {
    if (typeof Notification === "undefined" || !window.isSecureContext) return "unsupported";
    return String(Notification.permission);
  }

  function requestPermission(done) {
    // Browsers show the prompt only for a request made while handling the user's click; the audio
    // context is unlocked by the same click, so that a sound chosen now can play later.
    unlockAudio();
    if (permission() !== "default") {
      done(permission());
      return;
    }
    Notification.requestPermission().then(
      (answer) => done(String(answer)),
      () => done(permission()),
    );
  }

  function notify(title, body, tag) {
    if (permission() !== "granted") return false;
    try {
      const note = new Notification(title, { body, tag, icon: "./web/favicon.svg" });
      note.onclick = () => {
        window.focus();
        note.close();
      };
      shown.push({ title, body, tag });
      return true;
    } catch (error) {
      // Some browsers (Chrome on Android) allow notifications only from a service worker.
      console.warn("signalguard: notification not shown:", error);
      return false;
    }
  }

  function unlockAudio() {
    try {
      audio ??= new AudioContext();
      if (audio.state === "suspended") audio.resume();
    } catch (error) {
      audio = null;
    }
  }

  function chime() {
    chimes += 1;
    unlockAudio();
    if (!audio) return;
    const start = audio.currentTime + 0.01;
    [880, 1320].forEach((hz, i) => {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = hz;
      const at = start + i * 0.14;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.2, at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.3);
      osc.connect(gain).connect(audio.destination);
      osc.start(at);
      osc.stop(at + 0.32);
    });
  }

  function setTitleCount(n) {
    document.title = n > 0 ? `(${n}) ${baseTitle}` : baseTitle;
  }

  function looking() {
    return document.visibilityState === "visible" && document.hasFocus();
  }

  function onLook(callback) {
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") callback();
    });
    window.addEventListener("focus", () => callback());
  }

  function prefGet(key) {
    try {
      return localStorage.getItem(key);
    } catch (error) {
      return null;
    }
  }

  function prefPut(key, value) {
    try {
      localStorage.setItem(key, value);
    } catch (error) {
      // Full or blocked storage: a preference is not worth an error.
    }
  }

  globalThis.signalguardAlerts = Object.freeze({
    permission,
    requestPermission,
    notify,
    chime,
    setTitleCount,
    looking,
    onLook,
    prefGet,
    prefPut,
    shown,
    get chimes() {
      return chimes;
    },
  });
})();
