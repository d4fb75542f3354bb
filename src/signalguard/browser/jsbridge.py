"""The ports on the page's JavaScript objects: supabase-js, worker timers, Web Locks, IndexedDB, market data.

supabase-js is reached through ``web/facade.js``, timers run in ``web/timer-worker.js``.

Nothing here imports ``js`` or ``pyodide``: :mod:`~signalguard.browser.main` hands in the objects and
the two FFI helpers these classes need (``create_proxy`` keeps a Python callable alive for JS;
``parse`` is ``JSON.parse``, the cheapest way to give JS a plain object). Values cross the FFI as JSON
strings, in one call each way. What each class uses of those objects is stated in
:mod:`~signalguard.browser.jstypes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from signalguard.browser.accounts import refusal_text
from signalguard.browser.jstypes import present
from signalguard.browser.ports import ApiResult, LinkOutcome, Permission, User
from signalguard.core.ports import JsonValue
from signalguard.market.klines import MarketUnavailable, RestAnswer, RestKlines
from signalguard.market.limits import MarketEndpoints, derive_stream_url

if TYPE_CHECKING:
    from signalguard.browser.jstypes import (
        AlertsFacade,
        CreateProxy,
        DatabaseFacade,
        DateClass,
        Intl,
        JsFunction,
        JsObject,
        LockFacade,
        MarketFacade,
        MessageEvent,
        Parse,
        Query,
        StoreFacade,
        TimerScope,
        WebhookFacade,
        Worker,
    )

_DUMPS: Final[Callable[[object], str]] = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _query(params: Mapping[str, str | int]) -> str:
    """A URL query string, as ``urllib.parse.urlencode`` gives it for these values.

    Unreserved characters stay, everything else is percent-encoded as UTF-8 (urllib.parse is not
    imported: with ipaddress it costs the page tens of milliseconds at start).
    """
    return "&".join(f"{_quote(str(k))}={_quote(str(v))}" for k, v in params.items())


def _quote(text: str) -> str:
    return "".join(
        c if c.isascii() and (c.isalnum() or c in "-._~") else "".join(f"%{b:02X}" for b in c.encode())
        for c in text
    )


def _refusal(raw: object) -> str | None:
    """The line shown for the facade's ``{error, code}`` answer of an auth call (None: no error)."""
    if not isinstance(raw, dict):
        return "unreadable answer from the facade"
    error, code = raw.get("error"), raw.get("code")
    if not isinstance(error, str) or not error:
        return None
    return refusal_text(code if isinstance(code, str) else None, error)


class SupabaseBackend:
    """:class:`~.ports.Backend` on the facade (``globalThis.signalguard``)."""

    def __init__(self, facade: DatabaseFacade, parse: Parse, create_proxy: CreateProxy) -> None:
        """Use ``facade``, already initialised with the project's URL and anon key."""
        self._facade = facade
        self._parse = parse
        self._create_proxy = create_proxy
        self._keep: list[JsFunction] = []

    def _from(self, table: str) -> Query:
        # ``from`` is a Python keyword, so the facade's method is read by name.
        start: Callable[[str], Query] = getattr(self._facade, "from")
        return start(table)

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
        match: Mapping[str, str] | None = None,
        among: Mapping[str, Sequence[str]] | None = None,
        after: Mapping[str, str] | None = None,
    ) -> ApiResult:
        """Read rows."""
        query = self._from(table).select(columns)
        for column, value in (match or {}).items():
            query = query.eq(column, value)
        for column, value in (after or {}).items():
            query = query.gt(column, value)
        for column, values in (among or {}).items():
            # ``in`` is a Python keyword too.
            one_of: Callable[[str, JsObject], Query] = getattr(query, "in")
            query = one_of(column, self._parse(_DUMPS(list(values))))
        if order is not None:
            query = query.order(order, self._parse(_DUMPS({"ascending": not descending})))
        if limit is not None:
            query = query.limit(limit)
        return ApiResult.from_json(str(await query.executeJson()))

    async def update(
        self,
        table: str,
        values: Mapping[str, object],
        *,
        match: Mapping[str, str],
        returning: str | None = None,
    ) -> ApiResult:
        """Update rows (answering their ``returning`` columns, if given)."""
        query = self._from(table).update(self._parse(_DUMPS(dict(values))))
        for column, value in match.items():
            query = query.eq(column, value)
        if returning is not None:
            query = query.select(returning)
        return ApiResult.from_json(str(await query.executeJson()))

    async def insert(self, table: str, values: Mapping[str, object], *, returning: str) -> ApiResult:
        """Insert one row and answer its ``returning`` columns."""
        query = self._from(table).insert(self._parse(_DUMPS(dict(values)))).select(returning)
        return ApiResult.from_json(str(await query.executeJson()))

    async def delete(self, table: str, *, match: Mapping[str, str]) -> ApiResult:
        """Delete rows."""
        query = self._from(table).delete()
        for column, value in match.items():
            query = query.eq(column, value)
        return ApiResult.from_json(str(await query.executeJson()))

    async def sign_in(self, email: str, password: str) -> tuple[User | None, str | None]:
        """Sign in with a password."""
        # The facade always answers this object; its error is a string or null.
        raw: dict[str, JsonValue] = json.loads(str(await self._facade.signIn(email, password)))
        return User.from_json(raw.get("user")), _refusal(raw)

    async def current_user(self) -> User | None:
        """The stored session's user."""
        return User.from_json(json.loads(str(await self._facade.currentUser())))

    async def sign_out(self) -> str | None:
        """End the session."""
        answer: dict[str, JsonValue] = json.loads(str(await self._facade.signOut()))
        error = answer.get("error")
        return str(error) if error else None

    async def sign_up(self, email: str, password: str) -> tuple[User | None, str | None]:
        """Create an account (supabase-js ``auth.signUp``)."""
        raw: dict[str, JsonValue] = json.loads(str(await self._facade.signUp(email, password)))
        return User.from_json(raw.get("user")), _refusal(raw)

    async def request_password_reset(self, email: str) -> str | None:
        """Ask for a reset mail (``auth.resetPasswordForEmail``)."""
        return _refusal(json.loads(str(await self._facade.resetPassword(email))))

    async def update_password(self, password: str) -> str | None:
        """Set the password (``auth.updateUser``)."""
        return _refusal(json.loads(str(await self._facade.updatePassword(password))))

    async def link_outcome(self) -> LinkOutcome:
        """What the page's link brought."""
        return LinkOutcome.from_json(str(await self._facade.linkOutcome()))

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

    def __init__(
        self, worker: Worker | None, window: TimerScope, parse: Parse, create_proxy: CreateProxy
    ) -> None:
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

    def _on_message(self, event: MessageEvent) -> None:
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

    def __init__(self, facade: LockFacade, create_proxy: CreateProxy) -> None:
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


class WebAttention:
    """:class:`~.ports.Attention` and :class:`~.ports.Preferences` on ``web/alerts.js``."""

    def __init__(self, alerts: AlertsFacade, create_proxy: CreateProxy) -> None:
        """Use the page's alert helpers."""
        self._alerts = alerts
        self._create_proxy = create_proxy
        self._keep: list[JsFunction] = []

    def permission(self) -> Permission:
        """The notification permission now."""
        try:
            return Permission(str(self._alerts.permission()))
        except ValueError:
            return Permission.UNSUPPORTED

    def request_permission(self, done: Callable[[Permission], None]) -> None:
        """Ask the browser; ``done`` gets the answer."""

        def answered(answer: object) -> None:
            try:
                done(Permission(str(answer)))
            except ValueError:
                done(Permission.UNSUPPORTED)

        proxy = self._create_proxy(answered)
        self._keep.append(proxy)  # called once, later: kept alive (a handful per page at most)
        self._alerts.requestPermission(proxy)

    def notify(self, title: str, body: str, tag: str) -> bool:
        """Show a notification."""
        return bool(self._alerts.notify(title, body, tag))

    def chime(self) -> None:
        """Play the alert sound."""
        self._alerts.chime()

    def set_title_count(self, count: int) -> None:
        """The count in the tab title."""
        self._alerts.setTitleCount(count)

    def looking(self) -> bool:
        """Whether the tab is visible and focused."""
        return bool(self._alerts.looking())

    def on_look(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the tab is shown or focused again."""
        proxy = self._create_proxy(callback)
        self._keep.append(proxy)
        self._alerts.onLook(proxy)

    def get(self, key: str) -> str | None:
        """A preference (``localStorage``)."""
        value = self._alerts.prefGet(key)
        return str(value) if present(value) else None

    def put(self, key: str, value: str) -> None:
        """Store a preference."""
        self._alerts.prefPut(key, value)


class WebPoster:
    """:class:`~signalguard.core.ports.HttpPoster` over the facade's ``webhookPost`` (``fetch``)."""

    def __init__(self, facade: WebhookFacade) -> None:
        """Post through the facade."""
        self._facade = facade

    async def post(self, url: str, headers: Mapping[str, str], body: str, timeout: float) -> int | str:
        """See :class:`~signalguard.core.ports.HttpPoster`."""
        try:
            answer = json.loads(
                str(await self._facade.webhookPost(url, _DUMPS(dict(headers)), body, timeout * 1000))
            )
        except ValueError:
            return "unreadable answer from the page's fetch"
        status, error = answer.get("status"), answer.get("error")
        if isinstance(status, int) and status > 0:
            return status
        return str(error) if error else "no answer"


class WebLocale:
    """:class:`~.ports.Locale` from the page's ``Date`` and ``Intl``."""

    def __init__(self, date: DateClass, intl: Intl) -> None:
        """Use the page's ``Date`` constructor and ``Intl`` namespace."""
        self._date = date
        self._intl = intl

    def zone(self) -> str:
        """The browser's zone name (``Europe/Berlin``), or its offset now (``UTC+01:00``)."""
        try:
            name = self._intl.DateTimeFormat.new().resolvedOptions().timeZone
        except Exception:
            name = None
        if isinstance(name, str) and name:
            return name
        minutes = self.offset(int(self._date.now()))
        sign = "+" if minutes >= 0 else "-"
        return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"

    def offset(self, ms: int) -> int:
        """Minutes east of UTC at ``ms`` (``getTimezoneOffset`` counts west)."""
        return -int(self._date.new(ms).getTimezoneOffset())


class IndexedDbStore:
    """:class:`~.ports.KeyValueStore` on the facade's IndexedDB helpers."""

    def __init__(self, facade: StoreFacade) -> None:
        """Use ``facade.storeGet``/``storePut``."""
        self._facade = facade

    async def get(self, key: str) -> str | None:
        """The stored string, or None."""
        value = await self._facade.storeGet(key)
        return value if isinstance(value, str) else None  # null arrives as jsnull, not None

    async def put(self, key: str, value: str) -> str | None:
        """Store durably; an error message, or None."""
        answer: JsonValue = json.loads(str(await self._facade.storePut(key, value)))
        error = answer.get("error") if isinstance(answer, dict) else "unreadable answer"
        return str(error) if error else None


#: Largest market message accepted before parsing (a kline event is under 1 KiB).
_MAX_MESSAGE: Final = 1 << 20
#: Buffered stream messages while the tab is busy (the warm-up runs with the stream open).
_MAX_QUEUE: Final = 100_000


class WebMarketData(RestKlines):
    """:class:`~signalguard.market.feed.MarketData` over ``fetch`` and ``WebSocket`` (the facade's helpers).

    REST at ``base_url`` (``/api/v3/klines``), streams at the same host with ``ws``/``wss``
    (``/stream?streams=…``), as the gateway's Content-Security-Policy allows. Where Binance's own API
    answers HTTP 451 (not from this region), both switch to Binance's market-data-only endpoints, as the
    worker's do (:class:`~signalguard.market.limits.MarketEndpoints`); ``on_note`` hears it once.
    """

    #: What a refusal names (a region block, a wrong URL): the page's setting.
    url_setting = "market_data_url (config.json)"

    def __init__(
        self,
        facade: MarketFacade,
        base_url: str,
        create_proxy: CreateProxy,
        *,
        stall: float = 60.0,
        on_note: Callable[[str], None] | None = None,
    ) -> None:
        """Use ``base_url`` (no trailing slash); a stream silent for ``stall`` seconds is dead."""
        self._facade = facade
        # Binance's streams are on their own host (stream.binance.com:9443); any other market data
        # (the replay, a proxy) streams from its REST host. The worker derives it the same way.
        rest = base_url.rstrip("/")
        self.endpoints = MarketEndpoints(rest, derive_stream_url(rest), self.url_setting)
        self._on_note = on_note
        self._create_proxy = create_proxy
        self._stall = stall

    async def get(self, path: str, params: dict[str, str | int]) -> tuple[int, str]:
        """See :meth:`~signalguard.market.klines.RestKlines.get` (the facade's ``marketGet``)."""
        answer = await self.get_answer(path, params)
        return answer.status, answer.body

    async def get_answer(self, path: str, params: dict[str, str | int]) -> RestAnswer:
        """The answer with the rate-limit headers the page can read (the weight, ``Retry-After``)."""
        answer = await self._send(path, params)
        if answer.status == 451 and self.endpoints.fall_back("REST"):
            if self._on_note is not None and self.endpoints.note is not None:
                self._on_note(self.endpoints.note)
            answer = await self._send(path, params)
        return answer

    async def _send(self, path: str, params: dict[str, str | int]) -> RestAnswer:
        url = f"{self.endpoints.rest}{path}?{_query(params)}"
        # The facade always answers this object (status 0 and an error when unreachable).
        answer: dict[str, JsonValue] = json.loads(str(await self._facade.marketGet(url)))
        status, body = answer.get("status"), answer.get("body")
        if not isinstance(status, int) or status == 0 or not isinstance(body, str):
            # "klines BTCUSDT 1m", "exchangeInfo": what was asked, in a few words.
            where = " ".join(
                str(p) for p in (path.rsplit("/", 1)[-1], params.get("symbol"), params.get("interval")) if p
            )
            raise MarketUnavailable(f"{where}: {answer.get('error') or f'HTTP {status}'}")
        raw = answer.get("headers")
        headers = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
        return RestAnswer(status, body, headers)

    @contextlib.asynccontextmanager
    async def stream(self, names: Sequence[str]) -> AsyncIterator[AsyncIterator[str]]:
        """The combined stream of ``names``; see :meth:`~.ports.MarketData.stream`."""
        queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        opened: asyncio.Future[None] = asyncio.get_event_loop().create_future()

        def on_event(kind: str, text: str) -> None:
            kind, text = str(kind), str(text)
            if kind == "open":
                if not opened.done():
                    opened.set_result(None)
                return
            if kind == "close" and not opened.done():
                opened.set_exception(MarketUnavailable(f"stream: cannot connect ({text or 'refused'})"))
                return
            if kind == "message" and queue.qsize() >= _MAX_QUEUE:
                return  # a tab far behind: dropped, and the gap is filled by REST
            queue.put_nowait((kind, text))

        proxy = self._create_proxy(on_event)
        close = self._facade.openStream(f"{self.endpoints.stream}/stream?streams={'/'.join(names)}", proxy)
        try:
            try:
                async with asyncio.timeout(self._stall):
                    await opened
            except TimeoutError:
                raise MarketUnavailable("stream: the connection did not open") from None
            yield self._messages(queue)
        finally:
            close()
            # Not destroyed: a late event from the closing socket may still arrive and must not throw.

    async def _messages(self, queue: asyncio.Queue[tuple[str, str]]) -> AsyncIterator[str]:
        while True:
            try:
                async with asyncio.timeout(self._stall):
                    kind, text = await queue.get()
            except TimeoutError:
                raise MarketUnavailable(f"stream: nothing received for {self._stall:.0f} s") from None
            if kind == "close":
                if text.startswith("1000"):
                    return
                raise MarketUnavailable(f"stream closed ({text})")
            yield text if len(text) <= _MAX_MESSAGE else ""
