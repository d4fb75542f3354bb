"""The page's JavaScript objects as the Python side uses them: one protocol each, only the members it touches.

Pyodide hands a JavaScript object to Python as a ``JsProxy``, which has whatever members the object
has. These protocols say which of them :mod:`~signalguard.browser.jsbridge`,
:mod:`~signalguard.browser.dom` and :mod:`~signalguard.browser.main` use, with the types the values
arrive as, so that mypy checks those modules; they are for type checking only. Never test a value
against them with ``isinstance``: a ``JsProxy`` is no instance of a Python protocol.

What crossing the boundary does to values (Pyodide as vendored, 0.28 and later):

- JavaScript strings, numbers and booleans arrive as ``str``, ``int``/``float`` and ``bool``; a timer
  handle is a number, hence an ``int``. Everything else arrives as a proxy.
- ``undefined`` arrives as ``None``, but ``null`` as ``pyodide.ffi.jsnull`` (:class:`JsNull`), which is
  falsy and *not* None. A member that may answer ``null`` is typed ``X | JsNull`` and read with
  :func:`present` (or, for a string, ``isinstance(value, str)``), never with ``is None``.
- A proxy's truth value is not JavaScript's: an object with a numeric ``size`` or ``length`` of 0 is
  falsy, and a ``<select>`` has ``size`` 0. So elements are never tested with ``if element``.
- A Python callable handed to JavaScript for later calls must be wrapped by ``create_proxy``
  (:class:`CreateProxy`); the proxy Pyodide makes by itself is destroyed when the call returns.
- A Promise's proxy is awaitable: a method answering a Promise is typed ``Awaitable[...]``.
- A member named like a Python keyword (``from``, ``in``) is reached with ``getattr`` and typed where
  it is read; a JavaScript constructor is called as ``Class.new(...)``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Literal, Protocol, TypeGuard, TypeVar, final

if TYPE_CHECKING:

    @final
    class JsNull:
        """``pyodide.ffi.JsNull``: the type of ``jsnull``, JavaScript's ``null`` in Python.

        Declared for type checking only (this module imports nothing from the platform, so that it runs
        in CPython too); at run time the value is Pyodide's own.
        """

        def __bool__(self) -> Literal[False]: ...


_T = TypeVar("_T")

#: A JavaScript value Python only hands back to JavaScript (an options object from ``JSON.parse``,
#: a message); no member of it is read.
JsObject = object
#: A Python callable wrapped by :class:`CreateProxy`, as JavaScript sees it: a function. Python only
#: passes it to JavaScript (a listener, a callback) and keeps a reference so that it stays alive.
JsFunction = object
#: ``JSON.parse`` of the page: the cheapest way to give JavaScript a plain object.
Parse = Callable[[str], JsObject]


def present(value: _T | JsNull | None) -> TypeGuard[_T]:
    """Whether a JavaScript answer is a value: neither ``null`` (``jsnull``) nor ``undefined`` (None).

    By the type's name, so that no platform import is needed (``pyodide.ffi.JsNull``).
    """
    kind = type(value)
    return value is not None and not (kind.__name__ == "JsNull" and kind.__module__ == "pyodide.ffi")


class CreateProxy(Protocol):
    """``pyodide.ffi.create_proxy``: a JavaScript function calling ``func``, alive until destroyed."""

    def __call__(self, func: Callable[..., object], /) -> JsFunction:
        """Wrap ``func``."""
        ...


# -- web/facade.js -------------------------------------------------------------------------------


class JsonRequest(Protocol):
    """A request the facade prepared (an RPC): sent when asked for its answer."""

    def executeJson(self) -> Awaitable[str]:
        """Send it; ``{data, error, status}`` as one JSON string (errors are values, never thrown)."""
        ...


class Query(JsonRequest, Protocol):
    """A supabase-js query builder as the facade wraps it (``then`` hidden, so Pyodide does not await it).

    Its ``in`` filter is a Python keyword: it is read with ``getattr`` where it is used.
    """

    def select(self, columns: str) -> Query:
        """Read ``columns`` (a PostgREST select list)."""
        ...

    def update(self, values: JsObject) -> Query:
        """Update to ``values`` (a plain object)."""
        ...

    def insert(self, values: JsObject) -> Query:
        """Insert ``values`` (a plain object: one row)."""
        ...

    def delete(self) -> Query:
        """Delete the rows the filters that follow select."""
        ...

    def eq(self, column: str, value: str) -> Query:
        """Only rows whose ``column`` equals ``value``."""
        ...

    def order(self, column: str, options: JsObject) -> Query:
        """Sort by ``column``; ``options`` is ``{ascending}``."""
        ...

    def limit(self, count: int) -> Query:
        """At most ``count`` rows."""
        ...

    def gt(self, column: str, value: str) -> Query:
        """Only rows whose ``column`` is greater than ``value``."""
        ...


class DatabaseFacade(Protocol):
    """The facade's supabase-js part: requests and the session (``globalThis.signalguard``).

    Its ``from(table)`` is a Python keyword: it is read with ``getattr`` where it is used, and answers
    a :class:`Query`. Structured answers are JSON strings: one crossing of the FFI each.
    """

    def rpc(self, name: str, args_json: str) -> JsonRequest:
        """A call of ``/rest/v1/rpc/<name>`` with the JSON arguments."""
        ...

    def signIn(self, email: str, password: str) -> Awaitable[str]:
        """Sign in: JSON ``{user: {id, email} | null, error: string | null, code: string | null}``."""
        ...

    def currentUser(self) -> Awaitable[str]:
        """The stored session's user: JSON ``{id, email}`` or ``null``."""
        ...

    def signOut(self) -> Awaitable[str]:
        """End the session: JSON ``{error: string | null}``."""
        ...

    def signUp(self, email: str, password: str) -> Awaitable[str]:
        """Create an account (``emailRedirectTo``: this page): JSON ``{user, error, code}``.

        ``user`` is set only when the project signed the new account straight in.
        """
        ...

    def resetPassword(self, email: str) -> Awaitable[str]:
        """Ask for a password-reset mail (``redirectTo``: this page): JSON ``{error, code}``."""
        ...

    def updatePassword(self, password: str) -> Awaitable[str]:
        """Set the signed-in user's password: JSON ``{error, code}``."""
        ...

    def linkOutcome(self) -> Awaitable[str]:
        """What the link the page was opened from brought: JSON ``{type, error}``."""
        ...

    def onAuthChange(self, callback: JsFunction) -> JsObject:
        """Call ``callback(event, userJson)`` on session changes; answers an unsubscribe function."""
        ...

    def rpcOnUnload(self, name: str, args_json: str) -> bool:
        """Send an RPC with ``keepalive``; whether it could be sent (a session is known)."""
        ...


class LockFacade(Protocol):
    """The facade's Web Locks helper."""

    def holdTabLock(self, name: str, on_change: JsFunction) -> Callable[[], None]:
        """Ask for the lock; ``on_change(held)`` says whether it is held; answers the release function."""
        ...


class StoreFacade(Protocol):
    """The facade's IndexedDB helpers (one object store of strings)."""

    def storeGet(self, key: str) -> Awaitable[str | JsNull]:
        """The stored string, or ``null``."""
        ...

    def storePut(self, key: str, text: str) -> Awaitable[str]:
        """Store durably: JSON ``{error: string | null}``."""
        ...


class MarketFacade(Protocol):
    """The facade's market-data helpers (``fetch`` and ``WebSocket``)."""

    def marketGet(self, url: str) -> Awaitable[str]:
        """``GET url``: JSON ``{status, body, error}`` (status 0 and an error when unreachable)."""
        ...

    def openStream(self, url: str, on_event: JsFunction) -> Callable[[], None]:
        """A WebSocket; ``on_event(kind, text)`` for ``open``, ``message``, ``close``; answers ``close()``."""
        ...


class Response(Protocol):
    """A ``fetch`` Response."""

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
        ...

    @property
    def status(self) -> int:
        """The HTTP status."""
        ...

    def text(self) -> Awaitable[str]:
        """The body as text."""
        ...


class WebhookFacade(Protocol):
    """The facade's webhook post."""

    def webhookPost(self, url: str, headers_json: str, body: str, timeout_ms: float) -> Awaitable[str]:
        """POST to a receiver: JSON ``{status, error}`` (status 0 with an error when none came)."""
        ...


class AlertsFacade(Protocol):
    """``globalThis.signalguardAlerts`` (``web/alerts.js``): notifications, the chime, the title."""

    def permission(self) -> str:
        """``default``, ``granted``, ``denied`` or ``unsupported``."""
        ...

    def requestPermission(self, done: JsFunction) -> None:
        """Ask the browser; ``done(answer)`` (call from a click's handler)."""
        ...

    def notify(self, title: str, body: str, tag: str) -> bool:
        """Show a notification; whether the browser took it."""
        ...

    def chime(self) -> None:
        """Play the alert sound."""
        ...

    def setTitleCount(self, count: int) -> None:
        """Put the count in the tab title (0: the plain title)."""
        ...

    def looking(self) -> bool:
        """Whether the tab is visible and focused."""
        ...

    def onLook(self, callback: JsFunction) -> None:
        """Call ``callback()`` when the tab is shown or focused again."""
        ...

    def prefGet(self, key: str) -> str | JsNull:
        """``localStorage.getItem``."""
        ...

    def prefPut(self, key: str, value: str) -> None:
        """``localStorage.setItem`` (a full store is ignored)."""
        ...


class Facade(DatabaseFacade, LockFacade, StoreFacade, MarketFacade, WebhookFacade, Protocol):
    """``globalThis.signalguard`` as a whole (``web/facade.js``)."""

    def init(self, url: str, anon_key: str) -> None:
        """Create the one supabase-js client (or take the early start's, if made with these)."""
        ...

    def configFetch(self) -> Awaitable[Response]:
        """The answer to ``/config.json``, requested while the runtime loaded."""
        ...


# -- the DOM -------------------------------------------------------------------------------------


class EventTarget(Protocol):
    """Something events are listened for on."""

    def addEventListener(self, kind: str, listener: JsFunction, options: JsObject = ..., /) -> None:
        """Call ``listener(event)`` on each ``kind`` event."""
        ...


class Element(EventTarget, Protocol):
    """An element of ``index.html`` or one the view creates: the members the view reads or sets.

    One protocol for every element, so that the view can find them all by id alike; members that only
    some elements have (inputs, ``<select>``, ``<dialog>``) are grouped below.
    """

    hidden: bool
    textContent: str
    className: str

    @property
    def tagName(self) -> str:
        """The upper-case tag name (``BUTTON``)."""
        ...

    @property
    def childElementCount(self) -> int:
        """How many child elements it has."""
        ...

    @property
    def firstElementChild(self) -> Element | JsNull:
        """The first child element, or ``null``."""
        ...

    def getAttribute(self, name: str) -> str | JsNull:
        """An attribute's value, or ``null`` if it has none."""
        ...

    def setAttribute(self, name: str, value: str) -> None:
        """Set an attribute."""
        ...

    def removeAttribute(self, name: str) -> None:
        """Remove an attribute."""
        ...

    def querySelector(self, selectors: str) -> Element | JsNull:
        """The first descendant matching ``selectors``, or ``null``."""
        ...

    def querySelectorAll(self, selectors: str) -> Iterable[Element]:
        """The descendants matching ``selectors`` (a NodeList, iterable from Python)."""
        ...

    def append(self, *nodes: Element) -> None:
        """Append children."""
        ...

    def appendChild(self, node: Element) -> JsObject:
        """Append one child (answers it)."""
        ...

    def replaceChildren(self, *nodes: Element) -> None:
        """Replace all children."""
        ...

    def remove(self) -> None:
        """Take it out of the document."""
        ...

    def matches(self, selectors: str) -> bool:
        """Whether the element matches ``selectors`` (``:focus``: the user is in it)."""
        ...

    def closest(self, selectors: str) -> Element | JsNull:
        """The nearest ancestor (or itself) matching ``selectors``."""
        ...

    def scrollIntoView(self, align_to_top: bool, /) -> None:
        """Scroll the page so that the element is in view (its top or its bottom aligned)."""
        ...

    def toggleAttribute(self, name: str, force: bool, /) -> bool:
        """Set (``force`` true) or remove a boolean attribute; whether it is set now."""
        ...

    def focus(self) -> None:
        """Move the keyboard focus to the element."""
        ...

    def select(self) -> None:
        """Select an input's whole text."""
        ...

    # Form controls (<input>, <select>, <button>).
    disabled: bool
    value: str
    checked: bool
    type: str

    @property
    def options(self) -> Iterable[Element]:
        """A ``<select>``'s options."""
        ...

    # <dialog>.
    @property
    def open(self) -> bool:
        """Whether the dialog is shown."""
        ...

    @property
    def returnValue(self) -> str:
        """The value the dialog was closed with."""
        ...

    def showModal(self) -> None:
        """Show the dialog, modal."""
        ...

    def close(self, return_value: str, /) -> None:
        """Close the dialog with ``return_value``."""
        ...


class Event(Protocol):
    """A DOM event the view or the entry point listens for."""

    @property
    def target(self) -> Element:
        """The element it happened on (never ``null`` for the events listened for here)."""
        ...

    def preventDefault(self) -> None:
        """Cancel the browser's default action (a form's submission)."""
        ...

    @property
    def key(self) -> str:
        """A keyboard event's key (``Enter``); only read on ``keydown``."""
        ...


class PageTransitionEvent(Event, Protocol):
    """``pageshow``/``pagehide``."""

    @property
    def persisted(self) -> bool:
        """Whether the page comes from (or goes to) the back/forward cache."""
        ...


class MessageEvent(Protocol):
    """A message from the timer worker."""

    @property
    def data(self) -> str:
        """What the worker posted: the id of the timer that fired."""
        ...


class Document(EventTarget, Protocol):
    """The page's ``document``."""

    @property
    def body(self) -> Element:
        """``<body>``."""
        ...

    @property
    def readyState(self) -> str:
        """``loading``, ``interactive`` or ``complete``."""
        ...

    @property
    def activeElement(self) -> Element | JsNull:
        """The element with the focus (``body`` or ``null`` when none has it)."""
        ...

    def getElementById(self, element_id: str) -> Element | JsNull:
        """The element with this id, or ``null``."""
        ...

    def createElement(self, tag: str) -> Element:
        """A new element."""
        ...


class Performance(Protocol):
    """``performance``."""

    def now(self) -> float:
        """Milliseconds since navigation, monotonic."""
        ...


class TimerScope(Protocol):
    """The timer functions of ``window``."""

    def setTimeout(self, handler: JsFunction, ms: float, /, *args: object) -> int:
        """Call ``handler(*args)`` once after ``ms``; a handle."""
        ...

    def setInterval(self, handler: JsFunction, ms: float, /, *args: object) -> int:
        """Call ``handler(*args)`` every ``ms``; a handle."""
        ...

    def clearTimeout(self, handle: int, /) -> None:
        """Cancel a timeout."""
        ...

    def clearInterval(self, handle: int, /) -> None:
        """Cancel an interval."""
        ...


class ChartLib(Protocol):
    """``globalThis.signalguardChart`` (``web/chart.js``); absent if that script did not load."""

    def render(self, el: Element, key: str, candles_json: str, markers_json: str) -> bool:
        """Draw the candles and markers of stream ``key`` into ``el``; whether it is (or will be) drawn."""
        ...

    def clear(self) -> None:
        """Empty the chart."""
        ...


class Window(TimerScope, EventTarget, Protocol):
    """The page's ``window``.

    Its optional ``signalguardChart`` (:class:`ChartLib`) is read with ``getattr``.
    """

    @property
    def performance(self) -> Performance:
        """``window.performance``."""
        ...

    def confirm(self, message: str, /) -> bool:
        """Ask the user; whether they said yes."""
        ...


class Worker(EventTarget, Protocol):
    """A dedicated ``Worker`` (``web/timer-worker.js``)."""

    def postMessage(self, message: JsObject, /) -> None:
        """Send a message (a plain object)."""
        ...


# -- the globals the entry point reads (the ``js`` module) ---------------------------------------


class WorkerClass(Protocol):
    """The ``Worker`` constructor; Pyodide calls a constructor as ``Worker.new(...)``."""

    def new(self, url: str, /) -> Worker:
        """Start a worker on the script at ``url``."""
        ...


class Console(Protocol):
    """``console``."""

    def error(self, message: str, /) -> None:
        """Log an error."""
        ...

    def warn(self, message: str, /) -> None:
        """Log a warning."""
        ...


class JsDate(Protocol):
    """A ``Date``."""

    def getTimezoneOffset(self) -> int:
        """Minutes *west* of UTC at this instant in the browser's zone (JavaScript's sign)."""
        ...


class DateClass(Protocol):
    """The ``Date`` constructor's static members."""

    def now(self) -> float:
        """Milliseconds since the epoch."""
        ...

    def new(self, ms: float, /) -> JsDate:
        """``new Date(ms)``."""
        ...


class ResolvedOptions(Protocol):
    """``Intl.DateTimeFormat().resolvedOptions()``."""

    timeZone: str | None


class DateTimeFormat(Protocol):
    """An ``Intl.DateTimeFormat``."""

    def resolvedOptions(self) -> ResolvedOptions:
        """Its settings, the browser's time zone among them."""
        ...


class DateTimeFormatClass(Protocol):
    """The ``Intl.DateTimeFormat`` constructor."""

    def new(self) -> DateTimeFormat:
        """``new Intl.DateTimeFormat()``: the browser's defaults."""
        ...


class Intl(Protocol):
    """The ``Intl`` namespace."""

    DateTimeFormat: DateTimeFormatClass


class Storage(Protocol):
    """``sessionStorage``."""

    def getItem(self, key: str, /) -> str | JsNull:
        """The stored string, or ``null``."""
        ...

    def setItem(self, key: str, value: str, /) -> None:
        """Store a string."""
        ...


class Crypto(Protocol):
    """``crypto``."""

    def randomUUID(self) -> str:
        """A random (version 4) UUID."""
        ...


class Json(Protocol):
    """``JSON``."""

    def parse(self, text: str, /) -> JsObject:
        """Parse JSON into JavaScript values."""
        ...


class Location(Protocol):
    """``location``."""

    @property
    def origin(self) -> str:
        """The page's origin (``http://127.0.0.1:8000``)."""
        ...

    def reload(self) -> None:
        """Load the page again."""
        ...


class Globals(Protocol):
    """The page's global scope, as Pyodide's ``js`` module gives it.

    Its optional ``signalguard`` (:class:`Facade`, absent if ``web/facade.js`` did not run) is read
    with ``getattr``. The members are only read, never assigned, from Python.
    """

    console: Console
    Date: DateClass
    Intl: Intl
    performance: Performance
    sessionStorage: Storage
    crypto: Crypto
    JSON: Json
    location: Location
    Worker: WorkerClass
    document: Document
    window: Window

    def fetch(self, url: str, options: JsObject, /) -> Awaitable[Response]:
        """``fetch(url, options)``."""
        ...
