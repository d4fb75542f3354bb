"""The adapters on the page's JavaScript objects, against plain Python stand-ins for them.

JavaScript's ``null`` reaches Python as Pyodide's ``jsnull`` (falsy, not None); the stand-in below is
a class of that name in ``pyodide.ffi``, which is all :func:`~signalguard.browser.jstypes.present` reads.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from signalguard.browser.dom import TOAST_MAX, DomView
from signalguard.browser.jsbridge import IndexedDbStore, SupabaseBackend
from signalguard.browser.jstypes import present


class JsNull:
    def __bool__(self) -> bool:
        return False


JsNull.__module__ = "pyodide.ffi"
jsnull = JsNull()


class FakeElement:
    def __init__(self, tag: str = "div", parent: FakeElement | None = None) -> None:
        self.tagName = tag.upper()
        self.parent = parent
        self.children: list[FakeElement] = []
        self.attributes: dict[str, str] = {}
        self.hidden = False
        self.textContent = ""
        self.size = 0  # a <select>'s: a proxy of it is falsy under Pyodide

    @property
    def childElementCount(self) -> int:
        return len(self.children)

    @property
    def firstElementChild(self) -> FakeElement | JsNull:
        return self.children[0] if self.children else jsnull

    def setAttribute(self, name: str, value: str) -> None:
        self.attributes[name] = value

    def getAttribute(self, name: str) -> str | JsNull:
        return self.attributes.get(name, jsnull)

    def querySelector(self, selectors: str) -> FakeElement | JsNull:
        return next((c for c in self.children if c.tagName == selectors.upper()), jsnull)

    def appendChild(self, node: FakeElement) -> FakeElement:
        node.parent = self
        self.children.append(node)
        return node

    def remove(self) -> None:
        if self.parent is not None:
            self.parent.children.remove(self)
            self.parent = None

    def addEventListener(self, *_args: object) -> None:
        pass


class FakeDocument:
    def __init__(self, missing: str = "") -> None:
        self.body = FakeElement("body")
        self.elements: dict[str, FakeElement] = {}
        self.missing = missing

    def getElementById(self, element_id: str) -> FakeElement | JsNull:
        if element_id == self.missing:
            return jsnull
        return self.elements.setdefault(element_id, FakeElement())

    def createElement(self, tag: str) -> FakeElement:
        return FakeElement(tag)


class FakeWindow:
    def __init__(self) -> None:
        self.timeouts: list[tuple[object, float, tuple[object, ...]]] = []

    def setTimeout(self, handler: object, ms: float, *args: object) -> int:
        self.timeouts.append((handler, ms, args))
        return len(self.timeouts)


def same(func: Callable[..., object]) -> object:
    return func


def test_present_tells_null_and_undefined_from_values() -> None:
    assert not present(jsnull) and not present(None)
    assert present("") and present(0) and present(FakeElement("select"))


def test_a_missing_element_fails_at_start_although_null_is_not_none() -> None:
    with pytest.raises(RuntimeError, match=r"index\.html has no #chart"):
        DomView(FakeDocument(missing="chart"), FakeWindow(), same)


def test_toasts_beyond_the_limit_drop_the_oldest() -> None:
    doc, window = FakeDocument(), FakeWindow()
    view = DomView(doc, window, same)
    for i in range(TOAST_MAX + 2):
        view.toast(f"notice {i}")
    shown = doc.elements["toasts"].children
    assert [t.textContent for t in shown] == [f"notice {i}" for i in range(2, TOAST_MAX + 2)]
    assert len(window.timeouts) == TOAST_MAX + 2


class FakeQuery:
    def __init__(self, calls: list[tuple[object, ...]]) -> None:
        self.calls = calls
        setattr(self, "in", lambda column, values: self._add("in", column, values))

    def _add(self, *call: object) -> FakeQuery:
        self.calls.append(call)
        return self

    def select(self, columns: str) -> FakeQuery:
        return self._add("select", columns)

    def eq(self, column: str, value: str) -> FakeQuery:
        return self._add("eq", column, value)

    def order(self, column: str, options: object) -> FakeQuery:
        return self._add("order", column, options)

    def limit(self, count: int) -> FakeQuery:
        return self._add("limit", count)

    async def executeJson(self) -> str:
        return json.dumps({"data": [], "error": None, "status": 200})


class FakeFacade:
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []
        setattr(self, "from", lambda table: FakeQuery(self.calls)._add("from", table))

    async def signIn(self, email: str, password: str) -> str:
        return json.dumps({"user": {"id": "u1", "email": email}, "error": None})

    async def storeGet(self, key: str) -> str | JsNull:
        return jsnull

    async def storePut(self, key: str, text: str) -> str:
        return json.dumps({"error": "quota"})


def test_the_facade_is_reached_through_its_keyword_named_methods() -> None:
    facade = FakeFacade()
    backend = SupabaseBackend(facade, json.loads, same)
    result = asyncio.run(
        backend.select("signals", "*", order="created_at", descending=True, limit=5, among={"k": ["a", "b"]})
    )
    assert result.status == 200 and result.error is None
    assert facade.calls == [
        ("from", "signals"),
        ("select", "*"),
        ("in", "k", ["a", "b"]),
        ("order", "created_at", {"ascending": False}),
        ("limit", 5),
    ]
    user, error = asyncio.run(backend.sign_in("a@b.test", "pw"))
    assert user is not None and user.id == "u1" and error is None


def test_the_store_reads_null_as_nothing_and_reports_errors() -> None:
    store = IndexedDbStore(FakeFacade())
    assert asyncio.run(store.get("outbox")) is None
    assert asyncio.run(store.put("outbox", "[]")) == "quota"
