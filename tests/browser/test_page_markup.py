"""What index.html must keep for the page to start the same way on every network."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

INDEX = Path(__file__).resolve().parents[2] / "index.html"


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "mpy-config"):
            self.tags.append((tag, dict(attrs)))


def test_pyscript_runs_after_the_page_is_parsed() -> None:
    # PyScript reads its config (<mpy-config>, <script type="py" config>, at the end of the body) once,
    # when its module runs. An async module can run before they are parsed when the page arrives in
    # pieces, and PyScript then loads every plugin (not vendored) and fails: it must be deferred.
    parser = _Scripts()
    parser.feed(INDEX.read_text())
    [core] = [
        a for t, a in parser.tags if t == "script" and (a.get("src") or "").endswith("pyscript/core.js")
    ]
    assert core.get("type") == "module" and "async" not in core
    assert any(t == "mpy-config" for t, _ in parser.tags)
    assert [a.get("config") for t, a in parser.tags if a.get("type") == "py"] == ["./pyscript.toml"]
