"""In-memory doubles of the browser's ports (:mod:`~signalguard.browser.ports`), for tests without a page.

The page's adapter layer (the guard driver, the outbox sync, the generation, the app) is written against
the ports; these doubles let it run in CPython on the test's event loop, with time that moves only when
the test says so:

- :class:`FakeClock` is a ``Clock`` (monotonic seconds, or the wall clock's epoch seconds)
  that the test moves with :meth:`FakeClock.advance`.
- :class:`FakeTimers` implements :class:`~.ports.Timers`: what is armed is kept (:attr:`FakeTimers.armed`)
  and nothing fires until :meth:`FakeTimers.advance` (due timers in order, moving the clock to each) or
  :meth:`FakeTimers.fire`.
- :class:`FakeBackend` implements :class:`~.ports.Backend`: RPCs answer scripted :class:`~.ports.ApiResult`
  s per name, or a handler's (:meth:`FakeBackend.accept_writes` acknowledges every outbox write), and a
  call nobody scripted is lost in transit (``NETWORK``). It records the calls, holds them at a gate, has
  an outage switch (:attr:`FakeBackend.down`) and refuses an RPC with a code
  (:meth:`FakeBackend.refuse`). Tables answer ``select`` and ``update``; sign-in and the session are one
  account's.
- :class:`FakeStore` implements the ``KeyValueStore`` port on a dict, with switches that make reads
  raise (:class:`StoreUnavailable`) and writes answer an error, and a gate that holds both.
- :class:`FakeTasks` is a :data:`~.ports.Spawn` (:meth:`FakeTasks.spawn`) and a
  :data:`~signalguard.browser.generation.StartTask` (:meth:`FakeTasks.start_task`) on the running loop;
  :meth:`FakeTasks.settle` runs what they started to completion and raises what one of them raised.
- :class:`~signalguard.market.testing.FakeMarketData` (re-exported here) is the market data service.
- :class:`FakeAttention` is the page's :class:`~.ports.Attention` and :class:`~.ports.Preferences`:
  it records notifications, chimes and the title count; the test sets the permission, the user's
  answer to a permission request, and whether the user is looking (:meth:`FakeAttention.look`).
- :class:`FakeTab` wires one tab's doubles together, with a :class:`~.sync.SignalSync` on them that
  records what it reports.

:func:`ok`, :func:`refused` and :func:`lost` make the results a script answers with; :func:`on_loop`
runs an ``async def`` test on a new event loop.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, ParamSpec

from signalguard.browser.ports import ApiError, ApiResult, LinkOutcome, Permission, User
from signalguard.browser.sync import SignalSync
from signalguard.core.codes import GuardError
from signalguard.market.testing import FakeMarketData

if TYPE_CHECKING:
    from signalguard.browser.generation import StartTask
    from signalguard.browser.ports import Backend, Spawn, Timers

__all__ = [
    "FakeAttention",
    "FakeBackend",
    "FakeClock",
    "FakeMarketData",
    "FakeStore",
    "FakeTab",
    "FakeTasks",
    "FakeTimers",
    "StoreUnavailable",
    "lost",
    "ok",
    "on_loop",
    "refused",
]

_P = ParamSpec("_P")

#: How each outbox RPC acknowledges its entries (:meth:`FakeBackend.accept_writes`).
_WRITES: Mapping[str, tuple[str, Callable[[Mapping[str, object]], str]]] = {
    "write_signals": ("p_signals", lambda _: "inserted"),
    "update_signal_statuses": ("p_changes", lambda _: "updated"),
    "write_trades": ("p_ops", lambda op: "opened" if op.get("op") == "open" else "closed"),
}


def ok(data: object = None, status: int = 200) -> ApiResult:
    """An answered call with ``data``."""
    return ApiResult(data, None, status)


def refused(code: str | None, status: int = 400, message: str = "refused") -> ApiResult:
    """A call the API answered with an error: ``code`` (``SG001``, ``42501``…) and HTTP ``status``."""
    return ApiResult(None, ApiError(message, code), status)


def lost(message: str = "The database API is not reachable (fake)", status: int = 0) -> ApiResult:
    """A call that got no answer (``status`` 0), or a 5xx one: lost in transit."""
    return ApiResult(None, ApiError(message, "NETWORK" if status == 0 else None), status)


class FakeClock:
    """Seconds that move only by :meth:`advance` (``clock()`` reads them)."""

    def __init__(self, now: float = 0.0) -> None:
        """Start at ``now``."""
        self.now = now

    def __call__(self) -> float:
        """The current time."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


class FakeTimers:
    """Named timers on a :class:`FakeClock`; nothing fires until the test moves time.

    :attr:`armed` holds each armed timer's delay (its period, for :meth:`every`) and callback.
    """

    def __init__(self, clock: FakeClock | None = None) -> None:
        """Timers on ``clock`` (a new one at 0 if none is given)."""
        self.clock = clock if clock is not None else FakeClock()
        #: Name to (seconds, callback) of every armed timer.
        self.armed: dict[str, tuple[float, Callable[[], None]]] = {}
        #: Names of the timers fired, in order.
        self.fired: list[str] = []
        # Name to (due time, arming order, period or None for a one-shot timer).
        self._due: dict[str, tuple[float, int, float | None]] = {}
        self._armings = 0

    def _arm(self, name: str, seconds: float, callback: Callable[[], None], period: float | None) -> None:
        self._armings += 1
        self.armed[name] = (seconds, callback)
        self._due[name] = (self.clock.now + seconds, self._armings, period)

    def set(self, name: str, seconds: float, callback: Callable[[], None]) -> None:
        """See :meth:`~.ports.Timers.set`."""
        self._arm(name, seconds, callback, None)

    def every(self, name: str, seconds: float, callback: Callable[[], None]) -> None:
        """See :meth:`~.ports.Timers.every`."""
        self._arm(name, seconds, callback, seconds)

    def clear(self, name: str) -> None:
        """See :meth:`~.ports.Timers.clear`."""
        self.armed.pop(name, None)
        self._due.pop(name, None)

    def due_at(self, name: str) -> float | None:
        """When the timer of this name fires next (None: not armed)."""
        due = self._due.get(name)
        return due[0] if due is not None else None

    def fire(self, name: str) -> None:
        """Fire the timer of this name now, whatever its time (a one-shot timer is disarmed)."""
        seconds, callback = self.armed[name]
        _, _, period = self._due[name]
        if period is None:
            self.clear(name)
        else:
            self._arm(name, seconds, callback, period)
        self.fired.append(name)
        callback()

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` on, firing the timers that fall due, in order of their time.

        The clock stands at each timer's time while it fires; a periodic timer fires once per period
        passed; a timer armed by a callback fires too if it falls due within ``seconds``.
        """
        end = self.clock.now + seconds
        while True:
            due = [(at, order, name) for name, (at, order, _) in self._due.items() if at <= end]
            if not due:
                break
            at, _, name = min(due)
            self.clock.now = max(self.clock.now, at)
            _, callback = self.armed[name]
            period = self._due[name][2]
            if period is None:
                self.clear(name)
            else:
                self._armings += 1
                self._due[name] = (at + max(period, 1e-9), self._armings, period)
            self.fired.append(name)
            callback()
        self.clock.now = max(self.clock.now, end)


class FakeBackend:
    """The database API and sign-in; see the module documentation.

    Scripted answers (:attr:`answers`) are given in order, the last one again and again; an RPC with no
    script is answered by its handler (:attr:`handlers`), and without one it is lost in transit.
    """

    def __init__(
        self,
        answers: Mapping[str, Sequence[ApiResult]] | None = None,
        *,
        account: User | None = None,
        password: str = "secret",
        signed_in: bool = False,
    ) -> None:
        """Answer RPCs from ``answers``; ``account`` signs in with ``password`` (and is, if ``signed_in``)."""
        self.answers: dict[str, list[ApiResult]] = {k: list(v) for k, v in (answers or {}).items()}
        #: Answers computed from the call's arguments, for RPCs without scripted answers.
        self.handlers: dict[str, Callable[[Mapping[str, object]], ApiResult]] = {}
        #: Every RPC made: its name and arguments.
        self.calls: list[tuple[str, dict[str, object]]] = []
        #: While set and not yet open, every RPC waits for it (after it is recorded).
        self.gate: asyncio.Event | None = None
        #: While true, every call fails in transit (an outage).
        self.down = False
        #: Names of the RPCs sent with :meth:`rpc_on_unload`.
        self.unload_calls: list[str] = []
        #: Their arguments, in the same order.
        self.unload_args: list[dict[str, object]] = []
        #: Rows of each table, for ``select`` and ``update``.
        self.tables: dict[str, list[dict[str, object]]] = {}
        #: Every ``select``: the table and its filters.
        self.selects: list[tuple[str, dict[str, object]]] = []
        #: Every ``update``: the table, the values and the match.
        self.updates: list[tuple[str, dict[str, object], dict[str, str]]] = []
        #: Every ``insert``: the table and the values.
        self.inserts: list[tuple[str, dict[str, object]]] = []
        #: Every ``delete``: the table and the match.
        self.deletes: list[tuple[str, dict[str, str]]] = []
        #: Writes to a table named here (insert, update, delete) get this answer (a refusal).
        self.refusals: dict[str, ApiResult] = {}
        self.account = account
        self.password = password
        self.user: User | None = account if signed_in else None
        self._listeners: list[Callable[[str, User | None], None]] = []
        #: Every ``sign_up``: the e-mail and password sent.
        self.sign_ups: list[tuple[str, str]] = []
        #: What ``sign_up`` answers (no user, no error: "check your e-mail").
        self.sign_up_answer: tuple[User | None, str | None] = (None, None)
        #: Every ``request_password_reset``: the e-mail.
        self.resets: list[str] = []
        #: What ``request_password_reset`` answers.
        self.reset_error: str | None = None
        #: What the page's link brought (``link_outcome``).
        self.link = LinkOutcome()

    # -- scripting ----------------------------------------------------------------------------

    def names(self) -> list[str]:
        """The names of the RPCs made, in order."""
        return [name for name, _ in self.calls]

    def args_of(self, name: str) -> list[dict[str, object]]:
        """The arguments of every call of RPC ``name``, in order."""
        return [args for n, args in self.calls if n == name]

    def answer(self, name: str, *results: ApiResult) -> None:
        """Answer RPC ``name`` with ``results`` in order (the last one from then on)."""
        self.answers[name] = list(results)

    def refuse(self, name: str, code: str | None, *, status: int = 400, message: str = "refused") -> None:
        """Refuse every call of RPC ``name`` with ``code`` and HTTP ``status``."""
        self.answer(name, refused(code, status, message))

    def accept_writes(self, outcome: str | None = None) -> None:
        """Acknowledge every entry of every outbox write (``inserted``, ``updated``, ``opened``, ``closed``).

        ``outcome`` (e.g. ``duplicate``) answers every entry with that outcome instead. Scripted answers
        of these RPCs are dropped.
        """
        for name, (arg, default) in _WRITES.items():
            self.answers.pop(name, None)
            self.handlers[name] = _acknowledging(arg, default, outcome)

    # -- Backend ------------------------------------------------------------------------------

    async def _enter(self) -> None:
        if self.gate is not None:
            await self.gate.wait()

    async def rpc(self, name: str, args: Mapping[str, object]) -> ApiResult:
        """See :meth:`~.ports.Backend.rpc`."""
        self.calls.append((name, dict(args)))
        await self._enter()
        if self.down:
            return lost()
        queue = self.answers.get(name)
        if queue:
            return queue.pop(0) if len(queue) > 1 else queue[0]
        handler = self.handlers.get(name)
        if handler is not None:
            return handler(args)
        return ApiResult(None, ApiError("no answer", "NETWORK"), 0)

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
        """See :meth:`~.ports.Backend.select`: the rows of :attr:`tables` (every column) that match.

        ``after`` compares as text (ISO times of one format compare in order).
        """
        filters: dict[str, object] = {"columns": columns, "order": order, "descending": descending}
        filters |= {"limit": limit, "match": dict(match or {}), "among": dict(among or {})}
        filters |= {"after": dict(after or {})}
        self.selects.append((table, filters))
        await self._enter()
        if self.down:
            return lost()
        rows = [
            dict(r)
            for r in _matching(self.tables.get(table, []), match, among)
            if all(str(r.get(k)) > v for k, v in (after or {}).items())
        ]
        if order is not None:
            rows.sort(key=lambda r: str(r.get(order)), reverse=descending)
        return ok(rows[:limit] if limit is not None else rows)

    async def update(
        self,
        table: str,
        values: Mapping[str, object],
        *,
        match: Mapping[str, str],
        returning: str | None = None,
    ) -> ApiResult:
        """See :meth:`~.ports.Backend.update`: the rows of :attr:`tables` equal to ``match`` change."""
        self.updates.append((table, dict(values), dict(match)))
        await self._enter()
        if self.down:
            return lost()
        refusal = self.refusals.get(table)
        if refusal is not None:
            return refusal
        changed = list(_matching(self.tables.get(table, []), match, None))
        for row in changed:
            row.update(values)
        return ok([dict(r) for r in changed])

    async def insert(self, table: str, values: Mapping[str, object], *, returning: str) -> ApiResult:
        """See :meth:`~.ports.Backend.insert`: a row of :attr:`tables` with a made-up ``id``."""
        self.inserts.append((table, dict(values)))
        await self._enter()
        if self.down:
            return lost()
        refusal = self.refusals.get(table)
        if refusal is not None:
            return refusal
        rows = self.tables.setdefault(table, [])
        row = {"id": f"00000000-0000-4000-8000-{len(self.inserts):012d}", **values}
        rows.append(row)
        return ok([dict(row)])

    async def delete(self, table: str, *, match: Mapping[str, str]) -> ApiResult:
        """See :meth:`~.ports.Backend.delete`: the rows of :attr:`tables` equal to ``match`` go."""
        self.deletes.append((table, dict(match)))
        await self._enter()
        if self.down:
            return lost()
        refusal = self.refusals.get(table)
        if refusal is not None:
            return refusal
        gone = list(_matching(self.tables.get(table, []), match, None))
        self.tables[table] = [r for r in self.tables.get(table, []) if r not in gone]
        return ok([])

    async def sign_in(self, email: str, password: str) -> tuple[User | None, str | None]:
        """See :meth:`~.ports.Backend.sign_in`: the account's email and password sign in."""
        await self._enter()
        if self.down:
            return None, "The database API is not reachable (fake)"
        account = self.account
        if account is None or account.email != email or password != self.password:
            return None, "Invalid login credentials"
        self.user = account
        self.auth_change("SIGNED_IN", account)
        return account, None

    async def current_user(self) -> User | None:
        """See :meth:`~.ports.Backend.current_user`."""
        return self.user

    async def sign_up(self, email: str, password: str) -> tuple[User | None, str | None]:
        """See :meth:`~.ports.Backend.sign_up`: recorded; answers :attr:`sign_up_answer`."""
        await self._enter()
        self.sign_ups.append((email, password))
        if self.down:
            return None, "The database API is not reachable (fake)"
        return self.sign_up_answer

    async def request_password_reset(self, email: str) -> str | None:
        """See :meth:`~.ports.Backend.request_password_reset`: recorded; answers :attr:`reset_error`."""
        await self._enter()
        self.resets.append(email)
        return "The database API is not reachable (fake)" if self.down else self.reset_error

    async def update_password(self, password: str) -> str | None:
        """See :meth:`~.ports.Backend.update_password`: the account's password becomes ``password``."""
        await self._enter()
        if self.down:
            return "The database API is not reachable (fake)"
        if self.user is None:
            return "Auth session missing!"
        if password == self.password:
            return "New password should be different from the old password."
        self.password = password
        return None

    async def link_outcome(self) -> LinkOutcome:
        """See :meth:`~.ports.Backend.link_outcome`: :attr:`link`."""
        return self.link

    async def sign_out(self) -> str | None:
        """See :meth:`~.ports.Backend.sign_out`."""
        self.user = None
        self.auth_change("SIGNED_OUT", None)
        return None

    def on_auth_change(self, callback: Callable[[str, User | None], None]) -> None:
        """See :meth:`~.ports.Backend.on_auth_change`."""
        self._listeners.append(callback)

    def auth_change(self, event: str, user: User | None) -> None:
        """Tell the listeners the session changed (as another tab's sign-in or sign-out does)."""
        for listener in list(self._listeners):
            listener(event, user)

    def rpc_on_unload(self, name: str, args: Mapping[str, object]) -> bool:
        """See :meth:`~.ports.Backend.rpc_on_unload` (recorded; not sent during an outage)."""
        self.unload_calls.append(name)
        self.unload_args.append(dict(args))
        return not self.down


def _acknowledging(
    arg: str, default: Callable[[Mapping[str, object]], str], outcome: str | None
) -> Callable[[Mapping[str, object]], ApiResult]:
    def handler(args: Mapping[str, object]) -> ApiResult:
        items = args.get(arg)
        entries = [e for e in items if isinstance(e, Mapping)] if isinstance(items, list) else []
        return ok([{"index": i, "outcome": outcome or default(e)} for i, e in enumerate(entries)])

    return handler


def _matching(
    rows: Iterable[dict[str, object]],
    match: Mapping[str, str] | None,
    among: Mapping[str, Sequence[str]] | None,
) -> Iterable[dict[str, object]]:
    for row in rows:
        if all(str(row.get(k)) == v for k, v in (match or {}).items()) and all(
            str(row.get(k)) in values for k, values in (among or {}).items()
        ):
            yield row


class FakeAttention:
    """The page's attention channels and its preferences, recorded (see the module documentation)."""

    def __init__(self, permission: Permission = Permission.DEFAULT) -> None:
        """Start with ``permission``; the user is looking until :attr:`is_looking` is cleared."""
        self.current = permission
        #: What the user answers when asked (``default``: the prompt was dismissed).
        self.answer = Permission.GRANTED
        #: How many times the browser was asked.
        self.asked = 0
        self.is_looking = True
        #: Every notification shown: (title, body, tag).
        self.notes: list[tuple[str, str, str]] = []
        self.chimes = 0
        self.title_count = 0
        #: The preferences (``localStorage``), shared by every page given this dict.
        self.prefs: dict[str, str] = {}
        self._look: list[Callable[[], None]] = []

    def permission(self) -> Permission:
        """See :meth:`~.ports.Attention.permission`."""
        return self.current

    def request_permission(self, done: Callable[[Permission], None]) -> None:
        """Ask: the answer is :attr:`answer`, given at once."""
        self.asked += 1
        if self.current is Permission.DEFAULT:
            self.current = self.answer
        done(self.current)

    def notify(self, title: str, body: str, tag: str) -> bool:
        """Record a notification (refused unless the permission is granted)."""
        if self.current is not Permission.GRANTED:
            return False
        self.notes.append((title, body, tag))
        return True

    def chime(self) -> None:
        """Count a chime."""
        self.chimes += 1

    def set_title_count(self, count: int) -> None:
        """Record the title's count."""
        self.title_count = count

    def looking(self) -> bool:
        """Whether the user looks at the tab (:attr:`is_looking`)."""
        return self.is_looking

    def on_look(self, callback: Callable[[], None]) -> None:
        """Remember ``callback`` for :meth:`look`."""
        self._look.append(callback)

    def look(self) -> None:
        """The user looks at the tab again."""
        self.is_looking = True
        for callback in self._look:
            callback()

    def get(self, key: str) -> str | None:
        """A preference."""
        return self.prefs.get(key)

    def put(self, key: str, value: str) -> None:
        """Store a preference."""
        self.prefs[key] = value


class StoreUnavailable(RuntimeError):
    """What :class:`FakeStore` raises on a read while :attr:`FakeStore.fail_reads` is set."""


class FakeStore:
    """A ``KeyValueStore`` on a dict (:attr:`data`): where the outbox is kept."""

    def __init__(self, data: Mapping[str, str] | None = None) -> None:
        """Hold ``data``."""
        self.data: dict[str, str] = dict(data or {})
        #: While true, reads raise :class:`StoreUnavailable` (IndexedDB not available).
        self.fail_reads = False
        #: While set, writes change nothing and answer it as their error (quota exceeded…).
        self.fail_writes: str | None = None
        #: While set and not yet open, reads and writes wait for it.
        self.gate: asyncio.Event | None = None
        #: Every key read, in order.
        self.gets: list[str] = []
        #: Every write that changed :attr:`data`: its key and value.
        self.puts: list[tuple[str, str]] = []

    async def _enter(self) -> None:
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)  # a real store answers on a later turn of the loop

    async def get(self, key: str) -> str | None:
        """The stored value, or None (see ``KeyValueStore.get``)."""
        self.gets.append(key)
        await self._enter()
        if self.fail_reads:
            raise StoreUnavailable("the fake store cannot be read")
        return self.data.get(key)

    async def put(self, key: str, value: str) -> str | None:
        """Store ``value``; an error message, or None (see ``KeyValueStore.put``)."""
        await self._enter()
        if self.fail_writes is not None:
            return self.fail_writes
        self.data[key] = value
        self.puts.append((key, value))
        return None


class FakeTasks:
    """Background tasks on the running event loop: :meth:`spawn` and :meth:`start_task` start them.

    Unlike the page's, what a task raises is not only reported: :meth:`settle`, :meth:`idle` and
    :meth:`check` raise it in the test.
    """

    def __init__(self) -> None:
        """No task yet."""
        #: Every task started, in order.
        self.tasks: list[asyncio.Task[None]] = []
        #: The qualified names of their coroutines (``SignalSync._pump``…), in the same order.
        self.started: list[str] = []
        self._checked: set[int] = set()

    def spawn(self, coro: Coroutine[object, object, None]) -> None:
        """See :data:`~.ports.Spawn`."""
        self.start_task(coro)

    def start_task(self, coro: Coroutine[object, object, None]) -> asyncio.Future[None]:
        """Run ``coro`` as a task and return it (see :data:`~signalguard.browser.generation.StartTask`)."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.append(task)
        self.started.append(str(getattr(coro, "__qualname__", type(coro).__name__)))
        return task

    @property
    def pending(self) -> list[asyncio.Task[None]]:
        """The tasks not yet done."""
        return [t for t in self.tasks if not t.done()]

    def count(self, qualname: str) -> int:
        """How many tasks ran a coroutine of this name (e.g. ``MarketFeed.run``)."""
        return self.started.count(qualname)

    def check(self) -> None:
        """Raise the first exception a finished task raised that was not raised here yet."""
        for i, task in enumerate(self.tasks):
            if i in self._checked or not task.done() or task.cancelled():
                continue
            self._checked.add(i)
            exc = task.exception()
            if exc is not None:
                raise exc

    async def settle(self, timeout: float = 2.0) -> None:
        """Wait until every task is done, those they start included; raise what one of them raised.

        A task still running after ``timeout`` seconds fails the test (use :meth:`idle` or :meth:`until`
        while a task runs for good, such as the market feed).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while pending := self.pending:
            left = deadline - loop.time()
            if left <= 0:
                names = [self.started[self.tasks.index(t)] for t in pending]
                raise AssertionError(f"tasks still running after {timeout} s: {names}")
            await asyncio.wait(pending, timeout=left)
        self.check()

    async def idle(self, turns: int = 100) -> None:
        """Let the loop run ``turns`` times (fewer once every task is done); raise what a task raised."""
        for _ in range(turns):
            if not self.pending:
                break
            await asyncio.sleep(0)
        self.check()

    async def until(self, condition: Callable[[], bool], timeout: float = 2.0) -> None:
        """Let the loop run until ``condition()`` holds; fail the test if it does not within ``timeout`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        turns = 0
        while not condition():
            self.check()
            if loop.time() > deadline:
                raise AssertionError("the condition did not come true")
            turns += 1
            await asyncio.sleep(0 if turns < 100 else 0.001)
        self.check()

    async def cancel(self) -> None:
        """Cancel the tasks still running and wait for them to end."""
        pending = self.pending
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


class FakeTab:
    """One tab's doubles wired together, and a :class:`~.sync.SignalSync` on them (:attr:`sync`).

    What the sync reports is recorded: :attr:`counts`, :attr:`verdicts`, :attr:`problems`,
    :attr:`written`.
    """

    def __init__(self, user_id: str, *, store: FakeStore | None = None, now: float = 100.0) -> None:
        """A tab of ``user_id`` whose monotonic clock reads ``now``; its outbox kept in ``store``."""
        self.clock = FakeClock(now)
        self.timers = FakeTimers(self.clock)
        self.backend = FakeBackend()
        self.store = store if store is not None else FakeStore()
        self.tasks = FakeTasks()
        #: Every ``on_count``: the writes waiting, and why (empty when nothing is wrong).
        self.counts: list[tuple[int, str]] = []
        #: Every ``on_verdict``.
        self.verdicts: list[GuardError] = []
        #: Every ``on_problem`` line.
        self.problems: list[str] = []
        #: How many times ``on_written`` was called.
        self.written = 0
        self.sync = SignalSync(
            user_id,
            self.backend,
            self.store,
            self.timers,
            self.clock,
            self.tasks.spawn,
            on_count=lambda count, detail: self.counts.append((count, detail)),
            on_verdict=self.verdicts.append,
            on_written=self._written,
            on_problem=self.problems.append,
        )

    def _written(self) -> None:
        self.written += 1


def on_loop(test: Callable[_P, Coroutine[object, object, None]]) -> Callable[_P, None]:
    """Make an ``async def`` test a plain one that runs it on a new event loop (``asyncio.run``)."""

    @functools.wraps(test)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


if TYPE_CHECKING:
    # The doubles implement the ports (checked by mypy, never run).
    _backend: Backend = FakeBackend()
    _timers: Timers = FakeTimers()
    _clock: Callable[[], float] = FakeClock()
    _spawn: Spawn = FakeTasks().spawn
    _start: StartTask = FakeTasks().start_task
