// signalguard's facade over supabase-js, for the Python side of the page (Pyodide).
//
// Why it exists: supabase-js query builders are thenables, and Pyodide turns any thenable a JS call
// returns into a Python future, so `client.from("t").select("*").eq(...)` cannot be chained from
// Python — the first builder is already a future. The facade hands Python builders wrapped in a Proxy
// that hides `then` and adds:
//
//   builder.execute()      -> Promise<{data, error, status}>   plain JSON values only
//   builder.executeJson()  -> Promise<string>                  the same, as one JSON string (the
//                                                              cheapest way across the FFI)
//
// Errors are values, never exceptions: `error` is null or {message, code, details, hint}, a network
// failure is {code: "NETWORK", ...} and a request unanswered after 15 s {code: "TIMEOUT", ...}, both
// with status 0.
//
// Everything else is on `globalThis.signalguard`:
//
//   configFetch()                       the Response of /config.json, requested when this script ran
//   init(url, anonKey)                  create the one client (session kept in localStorage)
//   from(table) / rpc(name, argsJson)   wrapped builders (rpc arguments as a JSON string); the first
//                                       schema_version() is answered by the early start (below)
//   signIn(email, password)             Promise<JSON {user: {id, email} | null, error: string | null,
//                                       code: string | null}> (code: Supabase Auth's error_code)
//   currentUser()                       Promise<JSON {id, email} | null> from the stored session (or
//                                       the session a mail's link brought, see below)
//   signOut()                           Promise<JSON {error: string | null}>
//   signUp(email, password)             auth.signUp with emailRedirectTo = this page: Promise<JSON
//                                       {user, error, code}> (user only if the project signed the new
//                                       account straight in; otherwise a confirmation mail went out)
//   resetPassword(email)                auth.resetPasswordForEmail, redirectTo = this page: Promise<JSON
//                                       {error, code}>
//   updatePassword(password)            auth.updateUser({password}): Promise<JSON {error, code}>
//   linkOutcome()                       Promise<JSON {type: "signup" | "recovery" | null, error}>: what
//                                       the link the page was opened from brought
//   onAuthChange(callback)              callback(event, userJson) on sign-in, sign-out, refresh
//   holdTabLock(name, onChange)         Web Lock for "one generating tab"; returns a release function
//   rpcOnUnload(name, argsJson)         fire-and-forget RPC that survives the page going away
//   storeGet(key) / storePut(key, text) IndexedDB (one object store of strings): Promise<string|null>
//                                       / Promise<JSON {error: string | null}>
//   marketGet(url)                      GET on the market-data service: Promise<JSON {status, body,
//                                       headers, error}> (status 0 and an error when unreachable;
//                                       headers: the rate-limit ones the answer lets the page read)
//   webhookPost(url, headersJson, body, timeoutMs)
//                                       POST a signal to the user's webhook: Promise<JSON {status,
//                                       error}>; redirects are not followed (status 0 and an error),
//                                       and a receiver that refuses this origin (CORS) or cannot be
//                                       reached is an error too
//   openStream(url, onEvent)            a WebSocket; onEvent(kind, text) with kind "open", "message",
//                                       "close" (text: the close code and reason); returns close()
//
// A mail's link (sign-up confirmation, password reset) comes back to this page as Supabase Auth's
// implicit flow does: `#access_token=…&refresh_token=…&type=signup|recovery`, or `#error=…` when the
// link was spent or expired. The fragment is read and removed from the address bar as soon as this
// script runs; its session is given to supabase-js (auth.setSession) before anyone asks for the user,
// and the events of that are not passed on: Python learns what happened from linkOutcome(). A recovery
// is remembered for the tab (sessionStorage) until the new password is set or the user signs out, so a
// reload still asks for it.
//
// Loaded as a classic script after supabase-js's UMD bundle (which sets the global `supabase`).
"use strict";

(() => {
  let client = null;
  let config = null;
  // The last access token seen, so an RPC can still be sent from `pagehide`, when nothing async
  // (such as reading the session back from storage) can finish any more.
  let accessToken = null;

  const asPlain = (value) => (value === undefined ? null : JSON.parse(JSON.stringify(value)));

  function errorOf(error) {
    if (!error) return null;
    return {
      message: String(error.message ?? error),
      code: error.code ? String(error.code) : null,
      details: error.details ?? null,
      hint: error.hint ?? null,
    };
  }

  // A request that the server never answers (an API restarting with the connection open) must not
  // hold up whoever awaits it, such as the outbox: it is abandoned after this long and reported as a
  // failure, so the caller retries.
  const REQUEST_TIMEOUT_MS = 15_000;

  async function run(builder) {
    try {
      const bounded = typeof builder.abortSignal === "function"
        ? builder.abortSignal(AbortSignal.timeout(REQUEST_TIMEOUT_MS))
        : builder;
      const { data, error, status } = await bounded;
      if (error && /abort|timeout/i.test(String(error.message ?? "")) && !error.code) {
        return { data: null, error: { message: "no answer in time", code: "TIMEOUT", details: null, hint: null },
          status: 0 };
      }
      return { data: asPlain(data), error: errorOf(error), status: status ?? 0 };
    } catch (exc) {
      return { data: null, error: { message: String(exc), code: "NETWORK", details: null, hint: null }, status: 0 };
    }
  }

  const isThenable = (value) => value !== null && typeof value === "object" && typeof value.then === "function";

  function wrap(builder) {
    return new Proxy(builder, {
      get(target, prop) {
        if (prop === "then") return undefined;
        if (prop === "execute") return () => run(target);
        if (prop === "executeJson") return async () => JSON.stringify(await run(target));
        const value = Reflect.get(target, prop, target);
        if (typeof value !== "function") return value;
        return (...args) => {
          const result = value.apply(target, args);
          return isThenable(result) ? wrap(result) : result;
        };
      },
    });
  }

  function need() {
    if (!client) throw new Error("signalguard.init(url, anonKey) has not been called");
    return client;
  }

  const userOf = (user) => (user ? { id: user.id, email: user.email ?? null } : null);

  // -- a mail's link ---------------------------------------------------------------------------------

  const RECOVERY_KEY = "signalguard.recovery";
  // Where a mail's link brings the browser back: this page, without query or fragment.
  const pageUrl = () => `${window.location.origin}${window.location.pathname}`;

  const link = (() => {
    const hash = window.location.hash;
    if (!hash || hash.length < 2) return null;
    const params = new URLSearchParams(hash.slice(1));
    const error = params.get("error_description") || params.get("error_code") || params.get("error");
    if (!params.get("access_token") && !error) return null;
    // The tokens leave the address bar (and this history entry) at once.
    window.history.replaceState(window.history.state, "", `${window.location.pathname}${window.location.search}`);
    if (error) return { type: null, error: String(error).slice(0, 300), tokens: null };
    const type = params.get("type");
    return {
      type: type === "signup" || type === "recovery" ? type : null,
      error: null,
      tokens: { access_token: params.get("access_token"), refresh_token: params.get("refresh_token") ?? "" },
    };
  })();
  // While the link's session is given to supabase-js, its events are not passed on.
  let adopting = false;
  let linkDone = null;

  function adopt(made) {
    if (linkDone) return linkDone;
    linkDone = (async () => {
      if (!link?.tokens) return link ? { type: null, error: link.error } : null;
      adopting = true;
      try {
        const { error } = await made.auth.setSession(link.tokens);
        if (error) return { type: null, error: String(error.message) };
        if (link.type === "recovery") {
          try { sessionStorage.setItem(RECOVERY_KEY, "1"); } catch (_exc) { /* storage off: this load only */ }
        }
        return { type: link.type, error: null };
      } catch (exc) {
        return { type: null, error: String(exc) };
      } finally {
        adopting = false;
      }
    })();
    return linkDone;
  }

  function recoveryPending() {
    try { return sessionStorage.getItem(RECOVERY_KEY) === "1"; } catch (_exc) { return false; }
  }

  function recoveryOver() {
    try { sessionStorage.removeItem(RECOVERY_KEY); } catch (_exc) { /* nothing kept */ }
  }

  async function linkOutcome() {
    const outcome = await (linkDone ?? null);
    // A recovery still owed from an earlier load of this tab counts only while its session lasts.
    if (!outcome?.type && recoveryPending() && !accessToken) recoveryOver();
    const type = outcome?.type ?? (recoveryPending() ? "recovery" : null);
    return JSON.stringify({ type, error: outcome?.error ?? null });
  }

  const refusal = (error) => ({ error: error ? String(error.message) : null, code: error?.code ? String(error.code) : null });

  async function signUp(email, password) {
    try {
      const { data, error } = await need().auth.signUp({ email, password, options: { emailRedirectTo: pageUrl() } });
      return JSON.stringify({ user: data?.session ? userOf(data.user) : null, ...refusal(error) });
    } catch (exc) {
      return JSON.stringify({ user: null, error: String(exc), code: "NETWORK" });
    }
  }

  async function resetPassword(email) {
    try {
      const { error } = await need().auth.resetPasswordForEmail(email, { redirectTo: pageUrl() });
      return JSON.stringify(refusal(error));
    } catch (exc) {
      return JSON.stringify({ error: String(exc), code: "NETWORK" });
    }
  }

  async function updatePassword(password) {
    try {
      const { error } = await need().auth.updateUser({ password });
      if (!error) recoveryOver();
      return JSON.stringify(refusal(error));
    } catch (exc) {
      return JSON.stringify({ error: String(exc), code: "NETWORK" });
    }
  }

  function init(url, anonKey) {
    if (typeof supabase === "undefined") throw new Error("supabase-js is not loaded");
    const wanted = { url: url.replace(/\/+$/, ""), anonKey };
    if (early && early.config.url === wanted.url && early.config.anonKey === anonKey) {
      // The early start's client (see below) is the one: its session and its answers are kept.
      ({ config, client } = early);
      return;
    }
    early = null;
    config = wanted;
    client = makeClient(config.url, anonKey);
    linkDone = null;
    adopt(client);
  }

  function makeClient(url, anonKey) {
    const made = supabase.createClient(url, anonKey, {
      auth: { persistSession: true, autoRefreshToken: true, detectSessionInUrl: false },
    });
    made.auth.onAuthStateChange((_event, session) => {
      accessToken = session?.access_token ?? null;
    });
    return made;
  }

  async function signIn(email, password) {
    const { data, error } = await need().auth.signInWithPassword({ email, password });
    accessToken = data?.session?.access_token ?? accessToken;
    if (!error) recoveryOver();  // signed in with a password: no new one is owed
    return JSON.stringify({ user: userOf(data?.user), ...refusal(error) });
  }

  async function currentUser() {
    // The stored session (refreshed by supabase-js if it expired); no request when it is fresh.
    const first = early?.session;
    if (early) early.session = null;
    await linkDone;
    const { data } = await (first ?? need().auth.getSession());
    accessToken = data?.session?.access_token ?? null;
    return JSON.stringify(userOf(data?.session?.user));
  }

  async function signOut() {
    const { error } = await need().auth.signOut({ scope: "local" });
    accessToken = null;
    recoveryOver();
    return JSON.stringify({ error: error ? String(error.message) : null });
  }

  function onAuthChange(callback) {
    const { data } = need().auth.onAuthStateChange((event, session) => {
      if (adopting) return;  // the link's session: told by linkOutcome()
      // Called outside supabase-js's auth lock: the callback may call back into the client.
      setTimeout(() => callback(event, JSON.stringify(userOf(session?.user))), 0);
    });
    return () => data.subscription.unsubscribe();
  }

  // One generating tab per browser. Ask without waiting first, so the caller learns at once whether
  // another tab has it; if so, queue a real request so this tab takes over when that tab closes. The
  // lock is held until the returned function is called or the page goes away.
  function holdTabLock(name, onChange) {
    let release;
    const held = new Promise((resolve) => { release = resolve; });
    const abort = new AbortController();
    const granted = (lock) => {
      if (!lock) return undefined;
      onChange(true);
      return held;
    };
    navigator.locks
      .request(name, { mode: "exclusive", ifAvailable: true }, (lock) => {
        if (lock) return granted(lock);
        onChange(false);
        navigator.locks
          .request(name, { mode: "exclusive", signal: abort.signal }, granted)
          .catch(() => {});
        return undefined;
      })
      .catch(() => {});
    return () => {
      abort.abort();
      release();
    };
  }

  function rpcOnUnload(name, argsJson) {
    if (!config || !accessToken) return false;
    // keepalive lets the request outlive the document (like sendBeacon, but with headers).
    fetch(`${config.url}/rest/v1/rpc/${encodeURIComponent(name)}`, {
      method: "POST",
      keepalive: true,
      headers: {
        apikey: config.anonKey,
        Authorization: `Bearer ${accessToken}`,
        "Content-Type": "application/json",
      },
      body: argsJson,
    }).catch(() => {});
    return true;
  }

  // -- IndexedDB: the outbox survives reloads and outages -----------------------------------------

  const DB_NAME = "signalguard";
  const STORE = "kv";
  let dbPromise = null;

  function openDb() {
    if (!dbPromise) {
      dbPromise = new Promise((resolve, reject) => {
        const req = indexedDB.open(DB_NAME, 1);
        req.onupgradeneeded = () => req.result.createObjectStore(STORE);
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
      // A failed open is retried on the next call rather than cached forever.
      dbPromise.catch(() => { dbPromise = null; });
    }
    return dbPromise;
  }

  async function storeGet(key) {
    const db = await openDb();
    return new Promise((resolve, reject) => {
      const req = db.transaction(STORE, "readonly").objectStore(STORE).get(key);
      req.onsuccess = () => resolve(typeof req.result === "string" ? req.result : null);
      req.onerror = () => reject(req.error);
    });
  }

  async function storePut(key, text) {
    try {
      const db = await openDb();
      await new Promise((resolve, reject) => {
        // Resolved on the transaction's completion: only then is the value durable.
        const tx = db.transaction(STORE, "readwrite");
        tx.objectStore(STORE).put(String(text), key);
        tx.oncomplete = () => resolve();
        tx.onerror = () => reject(tx.error);
        tx.onabort = () => reject(tx.error);
      });
      return JSON.stringify({ error: null });
    } catch (exc) {
      return JSON.stringify({ error: String(exc) });
    }
  }

  // -- market data (Binance's REST and WebSocket API shape) --------------------------------------

  // The exchange's rate-limit headers, where its CORS answer lets the page read them (Binance's and the
  // replay's do): the shared market code keeps the request weight and honours Retry-After with them.
  const MARKET_HEADERS = ["x-mbx-used-weight-1m", "retry-after"];

  async function marketGet(url) {
    try {
      const response = await fetch(url, { cache: "no-store", credentials: "omit" });
      const headers = {};
      for (const name of MARKET_HEADERS) {
        const value = response.headers.get(name);
        if (value !== null) headers[name] = value;
      }
      return JSON.stringify({ status: response.status, body: await response.text(), headers, error: null });
    } catch (exc) {
      return JSON.stringify({ status: 0, body: null, error: String(exc) });
    }
  }

  async function webhookPost(url, headersJson, body, timeoutMs) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    try {
      const response = await fetch(url, {
        method: "POST",
        headers: JSON.parse(headersJson),
        body,
        // Only the receiver's status matters: no cookies, no referrer, no redirects (a redirect
        // could send the signal somewhere the user did not choose).
        credentials: "omit",
        referrerPolicy: "no-referrer",
        redirect: "manual",
        cache: "no-store",
        signal: abort.signal,
      });
      if (response.type === "opaqueredirect") {
        return JSON.stringify({ status: 0, error: "the receiver answered with a redirect (not followed)" });
      }
      return JSON.stringify({ status: response.status, error: null });
    } catch (exc) {
      const error = abort.signal.aborted
        ? `no answer within ${timeoutMs / 1000} s`
        : "not reachable from this page (network error, or the receiver does not allow this page's " +
          `origin: CORS) — ${exc}`;
      return JSON.stringify({ status: 0, error });
    } finally {
      clearTimeout(timer);
    }
  }

  function openStream(url, onEvent) {
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (exc) {
      setTimeout(() => onEvent("close", `cannot connect: ${exc}`), 0);
      return () => {};
    }
    let closed = false;
    ws.onopen = () => onEvent("open", "");
    ws.onmessage = (event) => {
      if (typeof event.data === "string") onEvent("message", event.data);
      else onEvent("message", "");  // binary frames are not kline events: counted as malformed
    };
    ws.onclose = (event) => {
      if (closed) return;
      closed = true;
      onEvent("close", `${event.code} ${event.reason || ""}`.trim());
    };
    return () => {
      closed = true;
      try { ws.close(1000); } catch (_exc) { /* already closed */ }
    };
  }

  // The app's settings are asked for as soon as this script runs, while the Python runtime loads;
  // Python picks the answer up (configFetch) instead of starting the request itself.
  const configResponse = fetch("./config.json", { cache: "no-store" });
  configResponse.catch(() => { /* reported when Python asks */ });

  // The early start. Loading the Python runtime keeps the main thread busy for seconds while the
  // network sits idle, so the requests whose answers do not depend on when they are made go out now:
  // the client is created, the stored session read, and schema_version() asked. Python validates
  // config.json itself and calls init(); if its URL and key are these, it takes this client and these
  // answers (each used once) as if it had asked; otherwise they are dropped. Nothing here decides
  // anything: the lease is never asked about early (its answers are only good when fresh).
  let early = null;
  configResponse
    .then((r) => (r.ok ? r.clone().json() : null))
    .then((settings) => {
      const url = settings?.supabase_url;
      const anonKey = settings?.supabase_anon_key;
      if (client || typeof supabase === "undefined" || typeof url !== "string"
          || !/^https?:\/\/[^\s]+$/.test(url) || typeof anonKey !== "string" || !anonKey) return;
      const made = makeClient(url.replace(/\/+$/, ""), anonKey);
      const session = adopt(made).then(() => made.auth.getSession());
      const schema = session.then(({ data }) => (data?.session ? run(made.rpc("schema_version", {})) : null));
      early = { config: { url: url.replace(/\/+$/, ""), anonKey }, client: made, session, schema };
    })
    .catch(() => { early = null; /* Python reads config.json and reports what is wrong */ });

  // rpc(), with the early start's schema_version() answer the first time it is asked for (if any).
  function rpc(name, argsJson) {
    if (name === "schema_version" && early?.schema && client === early.client) {
      const answer = early.schema;
      early.schema = null;
      const fresh = () => run(need().rpc(name, argsJson ? JSON.parse(argsJson) : {}));
      const result = () => answer.then((a) => a ?? fresh());  // no session then: ask now
      return { execute: result, executeJson: async () => JSON.stringify(await result()) };
    }
    return wrap(need().rpc(name, argsJson ? JSON.parse(argsJson) : {}));
  }

  globalThis.signalguard = Object.freeze({
    init,
    configFetch: () => configResponse.then((r) => r.clone()),
    from: (table) => wrap(need().from(table)),
    rpc,
    signIn,
    currentUser,
    signOut,
    signUp,
    resetPassword,
    updatePassword,
    linkOutcome,
    onAuthChange,
    holdTabLock,
    rpcOnUnload,
    storeGet,
    storePut,
    marketGet,
    webhookPost,
    openStream,
  });
})();
