// Timers for the page, kept in a dedicated worker so a hidden tab keeps its rhythm: browsers throttle
// the timers of background pages (Chrome down to one wake-up a minute), not those of workers, and the
// lease must be renewed every few seconds whether or not the tab is visible.
//
// Messages in:  {op: "set", id, ms}    fire once after ms milliseconds (replacing a timer of that id)
//               {op: "every", id, ms}  fire every ms milliseconds (replacing a timer of that id)
//               {op: "clear", id}      cancel
// Message out:  id                     the timer fired
"use strict";

const timers = new Map();

function clear(id) {
  const timer = timers.get(id);
  if (timer === undefined) return;
  if (timer.repeat) clearInterval(timer.handle);
  else clearTimeout(timer.handle);
  timers.delete(id);
}

self.onmessage = ({ data }) => {
  const { op, id, ms } = data ?? {};
  if (typeof id !== "string") return;
  clear(id);
  const delay = Math.max(0, Number(ms) || 0);
  if (op === "set") {
    timers.set(id, {
      repeat: false,
      handle: setTimeout(() => {
        timers.delete(id);
        self.postMessage(id);
      }, delay),
    });
  } else if (op === "every") {
    timers.set(id, { repeat: true, handle: setInterval(() => self.postMessage(id), Math.max(delay, 10)) });
  }
};
