"""The trader workbench with fakes: who may save, what is saved, what a refusal keeps, kept drafts."""

from __future__ import annotations

from collections.abc import Sequence

from signalguard.browser.editor import Draft, EditorView, draft_key
from signalguard.browser.ports import ApiError, ApiResult
from signalguard.browser.testing import FakeBackend, FakeStore, FakeTasks, on_loop
from signalguard.browser.workbench import KEPT, Workbench
from signalguard.core.engine import TraderRecord

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
