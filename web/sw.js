// The page's service worker: it keeps the files that make a repeat visit slow to fetch (Pyodide's
// runtime, PyScript, the other vendored bundles and the app's Python archive) in Cache Storage and
// answers them from there, cache-first, without a request. Served at the origin's root (/sw.js, scope
// "/"), always revalidated (Cache-Control: no-cache), registered by web/boot.js once the page is up.
//
// What it keeps. Only these paths of its own origin, and only for GET requests without a Range header:
//   /web/vendor/<package>/...         the local stack's names
//   /web/vendor/<package>.<hash>/...  signalguard build-site's names
//   /web/app.zip, /web/app.<hash>.zip
// Everything else passes through untouched (the worker does not answer it, so the browser fetches it
// as if there were no worker): the page itself, /pyscript.toml, /config.json, /auth/v1 and /rest/v1,
// the page's own scripts and styles, and every request to another origin (the hosted project, market
// data, webhooks). Nothing else is ever written to the cache.
//
// How versions are kept apart. The local stack serves these files under fixed names and rebuilds
// web/app.zip in place, so a cache keyed by URL alone would hand out a stale archive after a change;
// a built site renames each file by its content, but its old files would pile up. So every cache is
// named after the version of the files it holds, and the version comes from the page's own response,
// which is never cached: the gateway and the site's _headers send X-Signalguard-Assets (a hash of the
// files this worker keeps) with "/" and "/index.html". The worker sees the page's response before the
// page can ask for any of its files (it forwards the navigation), so even the first load after a new
// deploy or a rebuilt archive gets the new files, and the other versions' caches are deleted then. A
// version the page passed when it registered, or one baked into this script, would only be seen by
// the next load. A page response without the header (a host that ignores _headers) makes the worker
// keep nothing. Caches of an older worker (another GENERATION) are deleted when this one activates.
//
// A request that asks for the network (cache mode no-store or reload; also every request of a page whose
// cache DevTools or a test driver has switched off) is not answered from the cache either.
//
// Failures. A cache that cannot be opened, read or written is skipped and the network answers; a
// network error is the browser's own, as without a worker.
//
// Compiled WebAssembly. Pyodide's loadPyodide() fetches pyodide.asm.wasm and compiles it with
// WebAssembly.instantiateStreaming (pyodide.mjs), so Chromium's code cache applies: once V8 has
// optimised enough of the module it stores the machine code beside the response, and a later load of
// the same response skips that compilation. For a response a service worker answers from Cache
// Storage (as here, straight from cache.match) Chromium keeps that code with the cache entry; an
// uncontrolled load's goes with the HTTP cache's entry. So the first visit (no worker yet) and the
// first visit this worker answers both compile the module, and the visits after those reuse the code
// (measured with Chromium 156: the cache entry grows by about 2 MiB during the first answered visit,
// and loadPyodide() takes about 0.5 s less from the next one on; see docs/startup.md). Other browsers
// keep no such cache: they get the files without a request, nothing more.
"use strict";

const GENERATION = "1";
const PREFIX = `signalguard-assets-${GENERATION}-`;
const HEADER = "X-Signalguard-Assets";
const KEPT = /^\/web\/(?:vendor\/[A-Za-z0-9_@-]+(?:\.[0-9a-f]{12})?\/.+|app(?:\.[0-9a-f]{12})?\.zip)$/;
const PAGES = new Set(["/", "/index.html"]);

// The version of the newest page this worker has seen: a string, "" for a page without one (keep
// nothing), null when not known (this worker started after that page's navigation).
let current = null;

function cacheName(version) {
  return PREFIX + version;
}

async function knownVersion() {
  if (current !== null) return current;
  // After a restart: the one cache left by the last page's switch is that page's version.
  const ours = (await caches.keys()).filter((name) => name.startsWith(PREFIX));
  return ours.length === 1 ? ours[0].slice(PREFIX.length) : null;
}

async function dropOthers(keep) {
  for (const name of await caches.keys()) {
    if (name.startsWith("signalguard-assets-") && name !== keep) await caches.delete(name);
  }
}

function useVersion(version) {
  const changed = version !== current;
  current = version;
  return changed ? dropOthers(version ? cacheName(version) : null) : Promise.resolve();
}

function kept(request) {
  if (request.method !== "GET" || request.headers.has("range")) return false;
  if (request.cache === "no-store" || request.cache === "reload") return false;
  const url = new URL(request.url);
  return url.origin === self.location.origin && KEPT.test(url.pathname);
}

function storable(response) {
  return response.status === 200 && response.type === "basic";
}

async function fromCache(event) {
  const request = event.request;
  let cache = null;
  try {
    const version = await knownVersion();
    if (version) {
      cache = await caches.open(cacheName(version));
      const hit = await cache.match(request);
      if (hit) return hit;
    }
  } catch (_exc) {
    cache = null;  // storage refused or broken: the network answers, nothing is kept
  }
  const response = await fetch(request);
  if (cache && storable(response)) {
    event.waitUntil(cache.put(request, response.clone()).catch(() => {}));
  }
  return response;
}

async function page(event) {
  const response = await fetch(event.request);
  // A redirect or an error page says nothing about the files.
  if (response.ok && response.type === "basic") {
    try {
      event.waitUntil(useVersion(response.headers.get(HEADER) ?? "").catch(() => {}));
    } catch (_exc) {
      // Never let the bookkeeping fail the page.
    }
  }
  return response;
}

// Files the page loaded before this worker controlled it (its first visit): kept now, from the HTTP
// cache where the browser has them, so that the next visit finds them here.
async function keep(urls) {
  const version = current ?? (await fetch("./", { method: "HEAD", cache: "no-store" })).headers.get(HEADER);
  if (!version) return;
  await useVersion(version);
  const cache = await caches.open(cacheName(version));
  for (const url of urls) {
    const request = new Request(url);
    if (!kept(request) || (await cache.match(request))) continue;
    try {
      const response = await fetch(request);
      if (storable(response)) await cache.put(request, response);
    } catch (_exc) {
      // Kept on a later visit instead.
    }
  }
}

self.addEventListener("install", () => {
  self.skipWaiting();
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith("signalguard-assets-") && !name.startsWith(PREFIX)) await caches.delete(name);
    }
    await self.clients.claim();
  })().catch(() => {}));
});

self.addEventListener("message", (event) => {
  const data = event.data;
  if (data && data.type === "keep" && Array.isArray(data.urls)) {
    event.waitUntil(keep(data.urls.filter((u) => typeof u === "string")).catch(() => {}));
  }
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.mode === "navigate") {
    const url = new URL(request.url);
    if (request.method === "GET" && url.origin === self.location.origin && PAGES.has(url.pathname)) {
      event.respondWith(page(event));
    }
    return;
  }
  if (kept(request)) event.respondWith(fromCache(event));
});
