"""The ports on the page's JavaScript objects: supabase-js, worker timers, Web Locks.

supabase-js is reached through ``web/facade.js``, timers run in ``web/timer-worker.js``.

Nothing here imports ``js`` or ``pyodide``: :mod:`~signalguard.browser.main` hands in the objects and
the two FFI helpers these classes need (``create_proxy`` keeps a Python callable alive for JS;
``parse`` is ``JSON.parse``, the cheapest way to give JS a plain object). Values cross the FFI as JSON
strings, in one call each way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from signalguard.browser.ports import ApiResult, User

#: ``create_proxy`` from ``pyodide.ffi``.
CreateProxy = Callable[[Callable[..., Any]], Any]
#: ``JSON.parse`` of the page.
Parse = Callable[[str], Any]

_DUMPS: Final = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


class SupabaseBackend:
    """:class:`~.ports.Backend` on the facade (``globalThis.signalguard``)."""

    def __init__(self, facade: Any, parse: Parse, create_proxy: CreateProxy) -> None:
        """Use ``facade``, already initialised with the project's URL and anon key."""
        self._facade = facade
        self._parse = parse
        self._create_proxy = create_proxy
        self._keep: list[Any] = []

    async def rpc(self, name: str, args: Mapping[str, object]) -> ApiResult:
        """Call an RPC."""
        text = await self._facade.rpc(name, _DUMPS(dict(args))).executeJson()
        return ApiResult.from_json(str(text))

    async def select(
        self,
        table: str,
        columns: str,
        *,
        order: str | None = None,
        descending: bool = False,
        limit: int | None = None,
    ) -> ApiResult:
        """Read rows."""
        query = getattr(self._facade, "from")(table).select(columns)
        if order is not None:
            query = query.order(order, self._parse(_DUMPS({"ascending": not descending})))
        if limit is not None:
            query = query.limit(limit)
        return ApiResult.from_json(str(await query.executeJson()))

    async def update(
        self, table: str, values: Mapping[str, object], *, match: Mapping[str, str]
    ) -> ApiResult:
        """Update rows."""
        query = getattr(self._facade, "from")(table).update(self._parse(_DUMPS(dict(values))))
        for column, value in match.items():
            query = query.eq(column, value)
        return ApiResult.from_json(str(await query.executeJson()))

    async def sign_in(self, email: str, password: str) -> tuple[User | None, str | None]:
        """Sign in with a password."""
        raw = json.loads(str(await self._facade.signIn(email, password)))
        return User.from_json(raw.get("user")), raw.get("error")

    async def current_user(self) -> User | None:
        """The stored session's user."""
        return User.from_json(json.loads(str(await self._facade.currentUser())))

    async def sign_out(self) -> str | None:
        """End the session."""
        error = json.loads(str(await self._facade.signOut())).get("error")
        return str(error) if error else None

    def on_auth_change(self, callback: Callable[[str, User | None], None]) -> None:
        """Subscribe to session changes."""

        def changed(event: str, user_json: str) -> None:
            callback(str(event), User.from_json(json.loads(str(user_json))))

        proxy = self._create_proxy(changed)
        self._keep.append(proxy)
        self._facade.onAuthChange(proxy)

    def rpc_on_unload(self, name: str, args: Mapping[str, object]) -> bool:
        """Send an RPC with ``keepalive`` from ``pagehide``."""
        return bool(self._facade.rpcOnUnload(name, _DUMPS(dict(args))))


class WorkerTimers:
    """:class:`~.ports.Timers` run by ``web/timer-worker.js``, so a hidden tab keeps its rhythm.

    ``worker`` is a ``Worker`` on that script, or None to fall back to the page's own timers (which a
    browser throttles in background tabs: polls then come late, and the guard stops generating when the
    lease lapses — safe, but slower to react).
    """

    def __init__(self, worker: Any, window: Any, parse: Parse, create_proxy: CreateProxy) -> None:
        """Route the worker's messages to the registered callbacks."""
        self._worker = worker
        self._window = window
        self._parse = parse
        self._create_proxy = create_proxy
        self._callbacks: dict[str, tuple[Callable[[], None], bool]] = {}
        self._page_handles: dict[str, int] = {}
        self._proxy = create_proxy(self._on_message)
        self._page_fire = create_proxy(self._fire)
        if worker is not None:
            worker.addEventListener("message", self._proxy)

    def _post(self, op: str, name: str, seconds: float = 0.0) -> None:
        if self._worker is not None:
            self._worker.postMessage(self._parse(_DUMPS({"op": op, "id": name, "ms": seconds * 1000.0})))
            return
        handle = self._page_handles.pop(name, None)
        if handle is not None:
            self._window.clearTimeout(handle)
            self._window.clearInterval(handle)
        if op == "set":
            self._page_handles[name] = self._window.setTimeout(self._page_fire, seconds * 1000.0, name)
        elif op == "every":
            self._page_handles[name] = self._window.setInterval(self._page_fire, seconds * 1000.0, name)

    def _on_message(self, event: Any) -> None:
        self._fire(str(event.data))

    def _fire(self, name: str) -> None:
        entry = self._callbacks.get(name)
        if entry is None:
            return
        callback, repeat = entry
        if not repeat:
            del self._callbacks[name]
        callback()

    def set(self, name: str, seconds: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` once after ``seconds``."""
        self._callbacks[name] = (callback, False)
        self._post("set", name, seconds)

    def every(self, name: str, seconds: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` every ``seconds``."""
        self._callbacks[name] = (callback, True)
        self._post("every", name, seconds)

    def clear(self, name: str) -> None:
        """Cancel a timer."""
        self._callbacks.pop(name, None)
        self._post("clear", name)


class WebTabLocks:
    """:class:`~.ports.TabLocks` on ``navigator.locks``, through the facade's ``holdTabLock``."""

    def __init__(self, facade: Any, create_proxy: CreateProxy) -> None:
        """Use the facade's lock helper."""
        self._facade = facade
        self._create_proxy = create_proxy

    def hold(self, name: str, on_change: Callable[[bool], None]) -> Callable[[], None]:
        """Ask for the lock; see :meth:`~.ports.TabLocks.hold`."""
        done = False

        def changed(held: object) -> None:
            if not done:
                on_change(bool(held))

        # The proxy is never destroyed: the lock API may still call it once after giving up (a grant
        # racing the release), and a destroyed proxy would throw there.
        release = self._facade.holdTabLock(name, self._create_proxy(changed))

        def give_up() -> None:
            nonlocal done
            if not done:
                done = True
                release()

        return give_up
