"""The trader workbench with fakes: who may save, what is saved, what a refusal keeps, kept drafts."""

from __future__ import annotations

from collections.abc import Sequence

from signalguard.browser.editor import Draft, EditorView, draft_key
from signalguard.browser.ports import ApiError, ApiResult
from signalguard.browser.preview_text import duration, summarize
from signalguard.browser.testing import FakeBackend, FakeStore, FakeTasks, on_loop
from signalguard.browser.workbench import KEPT, Workbench
from signalguard.core.candles import Candle
from signalguard.core.engine import TraderRecord
from signalguard.core.preview import Preview, preview
from signalguard.core.traders import parse_trader
from signalguard.market.klines import MarketUnavailable

USER = "0000aaaa-0000-4000-8000-000000000001"
TRADER = "0000bbbb-0000-4000-8000-000000000002"


class Bench:
    """A workbench on fakes, with what it drew and said."""

    def __init__(self, *, editable: bool = True, store: FakeStore | None = None) -> None:
        self.backend = FakeBackend()
        self.store = store if store is not None else FakeStore()
        self.tasks = FakeTasks()
        self.drawn: list[EditorView | None] = []
        self.toasts: list[str] = []
        self.reloads = 0
        definition = Draft.new().definition
        self.backend.tables["traders"] = [{"id": TRADER, "name": "Mine", "definition": definition}]
        self.records = [TraderRecord(TRADER, "Mine", definition, True)]
        self.bench = Workbench(
            USER,
            self.backend,
            self.store,
            self.tasks.spawn,
            show=self.drawn.append,
            toast=self.toasts.append,
            traders=lambda: self.records,
            saved=self._saved,
            search=self._search,
        )
        self.bench.set_editable(editable, "" if editable else "Read-only: your cloud machine is generating.")

    async def _saved(self) -> None:
        self.reloads += 1

    async def _search(self, query: str, limit: int) -> Sequence[str]:
        return [s for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BTCFDUSD") if query.upper() in s][:limit]

    @property
    def shown(self) -> EditorView | None:
        return self.drawn[-1] if self.drawn else None


@on_loop
async def test_a_new_trader_is_saved_enabled_and_the_list_re_read() -> None:
    b = Bench()
    b.bench.action("new", "ema_cross")
    shown = b.shown
    assert shown is not None and shown.form.title == "New trader" and shown.templates
    b.bench.field("name", "My cross")
    b.bench.action("save", "")
    await b.tasks.settle()
    assert b.backend.inserts == [
        ("traders", {"name": "My cross", "definition": Draft.new("ema_cross").definition, "enabled": True})
    ]
    assert b.shown is None and b.toasts == ["Saved My cross."]
    assert b.reloads == 1
    assert b.store.data[draft_key(USER)] == ""  # the kept draft is forgotten


@on_loop
async def test_an_invalid_draft_is_never_saved() -> None:
    b = Bench()
    b.bench.action("edit", TRADER)
    b.bench.field("conditions[0].period", "1")
    b.bench.action("save", "")
    await b.tasks.settle()
    assert b.backend.updates == [] and b.backend.inserts == []
    assert b.shown is not None and not b.shown.form.valid


@on_loop
async def test_a_refused_save_keeps_the_form_and_names_the_field() -> None:
    b = Bench()
    b.bench.action("edit", TRADER)
    b.bench.field("conditions[0].value", "25")
    message = "invalid_argument: definition.conditions[0].value: must be a number between 0 and 100"
    b.backend.refusals["traders"] = ApiResult(None, ApiError(message, "SG009"), 400)
    b.bench.action("save", "")
    await b.tasks.settle()
    shown = b.shown
    assert shown is not None
    value = next(f for g in shown.form.conditions for f in g.fields if f.path == "conditions[0].value")
    assert value.error == "must be a number between 0 and 100" and value.value == "25"
    assert shown.status.startswith("Not saved:")
    assert b.reloads == 0
    # The draft is still there, and kept.
    assert b.bench.draft is not None and b.bench.draft.trader_id == TRADER
    kept = Draft.loads(b.store.data[draft_key(USER)])
    assert kept is not None and kept.definition["conditions"][0]["value"] == 25  # type: ignore[index,call-overload]


@on_loop
async def test_a_lost_save_keeps_the_form() -> None:
    b = Bench()
    b.bench.action("edit", TRADER)
    b.bench.field("name", "Renamed")
    b.backend.down = True
    b.bench.action("save", "")
    await b.tasks.settle()
    assert b.shown is not None and b.shown.status.startswith("Not saved:")
    assert b.bench.draft is not None and b.bench.draft.name == "Renamed"


@on_loop
async def test_saving_a_trader_deleted_elsewhere_says_so() -> None:
    b = Bench()
    b.bench.action("edit", TRADER)
    b.bench.field("name", "Renamed")
    b.backend.tables["traders"] = []
    b.bench.action("save", "")
    await b.tasks.settle()
    assert b.shown is not None and "no longer exists" in b.shown.status


@on_loop
async def test_read_only_shows_but_changes_nothing() -> None:
    b = Bench(editable=False)
    b.bench.action("edit", TRADER)
    shown = b.shown
    assert shown is not None and shown.read_only and "cloud machine" in shown.note
    before = b.bench.draft.definition if b.bench.draft else None
    b.bench.field("conditions[0].value", "10")
    for action in ("add-condition", "save", "delete", "trade"):
        b.bench.action(action, "off")
    await b.tasks.settle()
    assert b.bench.draft is not None and b.bench.draft.definition == before
    assert (b.backend.inserts, b.backend.updates, b.backend.deletes) == ([], [], [])
    # The tab may generate again: the same draft becomes editable.
    b.bench.set_editable(True, "")
    assert b.shown is not None and not b.shown.read_only and b.shown.note == ""


@on_loop
async def test_delete_removes_the_trader() -> None:
    b = Bench()
    b.bench.action("edit", TRADER)
    b.bench.action("delete", "")
    await b.tasks.settle()
    assert b.backend.deletes == [("traders", {"id": TRADER})]
    assert b.backend.tables["traders"] == [] and b.shown is None and b.reloads == 1


@on_loop
async def test_duplicate_starts_a_new_trader_from_a_copy() -> None:
    b = Bench()
    b.bench.action("duplicate", TRADER)
    assert b.shown is not None and b.shown.form.trader_id is None
    b.bench.action("save", "")
    await b.tasks.settle()
    assert [values["name"] for _, values in b.backend.inserts] == ["Mine (copy)"]


@on_loop
async def test_a_kept_draft_is_restored_and_the_status_says_it_is_kept() -> None:
    store = FakeStore()
    b = Bench(store=store)
    b.bench.action("new", "")
    b.bench.field("name", "Half done")
    await b.tasks.settle()
    assert b.shown is not None and b.shown.status == KEPT
    again = Bench(store=store)
    await again.bench.restore()
    shown = again.shown
    assert shown is not None and shown.form.general[0].value == "Half done"
    assert "restored" in shown.status
    again.bench.action("cancel", "")
    await again.tasks.settle()
    assert store.data[draft_key(USER)] == "" and again.shown is None


@on_loop
async def test_a_store_that_cannot_keep_the_draft_is_said() -> None:
    store = FakeStore()
    store.fail_writes = "QuotaExceededError"
    b = Bench(store=store)
    b.bench.action("new", "")
    await b.tasks.settle()
    assert b.shown is not None and "could not keep the draft (QuotaExceededError)" in b.shown.status


@on_loop
async def test_symbol_search_suggests_those_not_chosen_and_adds_one() -> None:
    b = Bench()
    b.bench.action("new", "")
    b.bench.action("search", "btc")
    await b.tasks.settle()
    assert b.shown is not None and b.shown.suggestions == ("BTCFDUSD",)  # BTCUSDT is already chosen
    b.bench.action("add-symbol", "BTCFDUSD")
    assert b.shown.form.symbols[-1] == "BTCFDUSD" and b.shown.suggestions == ()


# -- the preview ----------------------------------------------------------------------------------


def candles(symbol: str, interval: str = "15m", count: int = 300) -> list[Candle]:
    """A seeded zig-zag of closed candles: RSI swings through 30 and 70 again and again."""
    out = []
    price = 100.0
    step = 900_000
    for i in range(count):
        move = 1.5 if (i // 20) % 2 else -1.4
        close = price + move
        out.append(
            Candle(symbol, interval, 1_699_999_200_000 + i * step, price, max(price, close) + 0.2,
                   min(price, close) - 0.2, close, 10.0 + i % 5, True)
        )  # fmt: skip
        price = close
    return out


class PreviewBench(Bench):
    def __init__(self, *, fail: str = "") -> None:
        self.loads: list[tuple[str, str]] = []
        self.previews: list[Preview | None] = []
        self.fail = fail
        super().__init__()
        self.bench._history = self._load
        self.bench._on_preview = self.previews.append

    async def _load(self, symbol: str, interval: str) -> Sequence[Candle]:
        self.loads.append((symbol, interval))
        if self.fail:
            raise MarketUnavailable(self.fail)
        return candles(symbol, interval)


@on_loop
async def test_the_preview_loads_each_stream_once_and_follows_the_threshold() -> None:
    b = PreviewBench()
    b.bench.action("new", "rsi_oversold")
    assert b.shown is not None and b.shown.preview is not None and b.shown.preview.state == "loading"
    await b.tasks.settle()
    shown = b.shown
    assert shown is not None and shown.preview is not None and shown.preview.state == "ready"
    at_30 = shown.preview.signals
    assert at_30 > 0
    assert dict(shown.preview.per_symbol) == {"BTCUSDT": at_30 // 2, "ETHUSDT": at_30 // 2}
    b.bench.field("conditions[0].value", "45")
    assert b.shown is not None and b.shown.preview is not None and b.shown.preview.signals > at_30
    b.bench.field("conditions[0].value", "30")
    assert b.shown.preview is not None and b.shown.preview.signals == at_30
    # The same engine, from scratch, says the same.
    fresh = preview(
        parse_trader(Draft.new("rsi_oversold").definition), candles("BTCUSDT") + candles("ETHUSDT")
    )
    assert fresh.stats.signals == at_30
    assert sorted(b.loads) == [("BTCUSDT", "15m"), ("ETHUSDT", "15m")]
    last = b.previews[-1]
    assert last is not None and last.symbols[0].symbol == "BTCUSDT"


@on_loop
async def test_an_invalid_draft_has_no_preview_and_clears_the_chart_markers() -> None:
    b = PreviewBench()
    b.bench.action("new", "")
    await b.tasks.settle()
    b.bench.field("conditions[0].period", "1")
    assert b.shown is not None and b.shown.preview is not None and b.shown.preview.state == "invalid"
    assert b.previews[-1] is None
    b.bench.action("cancel", "")
    assert b.previews[-1] is None


@on_loop
async def test_history_that_cannot_be_loaded_is_said_and_retried_when_the_editor_reopens() -> None:
    b = PreviewBench(fail="klines BTCUSDT 15m: HTTP 451")
    b.bench.action("new", "")
    await b.tasks.settle()
    shown = b.shown
    assert shown is not None and shown.preview is not None and shown.preview.state == "unavailable"
    assert "HTTP 451" in shown.preview.headline
    b.bench.field("conditions[0].value", "31")  # typing does not ask again
    await b.tasks.settle()
    assert len(b.loads) == 2
    b.bench.action("cancel", "")
    b.bench.action("new", "")
    await b.tasks.settle()
    assert len(b.loads) == 4


def test_preview_figures_are_worded_as_a_preview() -> None:
    definition = parse_trader(Draft.new("rsi_oversold").definition)
    summary = summarize(preview(definition, candles("BTCUSDT")))
    assert summary.state == "ready"
    assert summary.headline.startswith("Preview, not a promise: what this definition would have done")
    assert "300 closed 15m candles of BTCUSDT (1 more symbol not previewed)" in summary.headline
    keys = [k for k, _, _ in summary.figures]
    assert keys[:6] == ["signals", "trades", "win-rate", "return", "drawdown", "hold"]
    plain = {k: v for k, v in Draft.new().definition.items() if k != "trade"}
    assert [k for k, _, _ in summarize(preview(parse_trader(plain), candles("BTCUSDT"))).figures] == [
        "signals"
    ]
    assert [duration(ms) for ms in (4_000, 720_000, 12_000_000, 190_800_000)] == [
        "4 s",
        "12 min",
        "3 h 20 min",
        "2 d 5 h",
    ]
