"""The trader workbench: make, edit, duplicate and delete traders in the page.

It holds the one :class:`~.editor.Draft` being edited, keeps it in the browser's store on every
change (a half-edited trader survives a reload), saves it through the API and draws it with
:meth:`~.ports.View.show_editor`.

Who may change traders follows the toggles' rule: only while this tab generates (Browser Mode and
this is the generating tab). Elsewhere the editor still opens, read-only, with the note that says
why; an open draft is kept, not lost, until the tab may save it. A saved change reaches the
generating tab through its next read of the traders (at most :data:`~.app.TRADERS_SECONDS` later),
and its engine runs the new definition from the next closed candle, after priming the history the
definition needs (see :meth:`~signalguard.core.engine.SignalManager.set_traders`).

The database checks the definition again (``private.trader_definition_problem``); its refusal names
the field and is shown there. A failed save keeps the form as it was.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from signalguard.browser.editor import Draft, EditorView, draft_key
from signalguard.browser.ports import Backend, Spawn
from signalguard.browser.preview_text import PREVIEW_SYMBOLS, PreviewSummary, summarize
from signalguard.core.candles import Candle, MarketDataError
from signalguard.core.engine import TraderRecord
from signalguard.core.ports import KeyValueStore
from signalguard.core.preview import Preview, Previewer
from signalguard.core.traders import TraderDefinition, TraderDefinitionError, parse_trader
from signalguard.core.traders.templates import TEMPLATES
from signalguard.market.klines import MarketUnavailable

__all__ = ["SymbolSearch", "Workbench"]

#: Most symbol suggestions shown under the search field.
SUGGESTIONS: Final = 12
#: Columns the editor reads back after a save.
SAVED_COLUMNS: Final = "id,name"
#: The status line while the draft differs from what is stored and this browser keeps it.
KEPT: Final = "Not saved yet; kept in this browser until saved or cancelled."
#: What the store holds instead of a draft once it is saved or dropped.
_NO_DRAFT: Final = ""

#: The closed history of a stream for the preview, oldest first (raises when the market data fails).
History = Callable[[str, str], Awaitable[Sequence[Candle]]]
#: Search the exchange's symbols: ``(query, limit) -> symbols``, best first (empty if unknown).
SymbolSearch = Callable[[str, int], Awaitable[Sequence[str]]]


class Workbench:
    """The editor of one signed-in tab; see the module documentation."""

    def __init__(
        self,
        user_id: str,
        backend: Backend,
        store: KeyValueStore,
        spawn: Spawn,
        *,
        show: Callable[[EditorView | None], None],
        toast: Callable[[str], None],
        traders: Callable[[], Sequence[TraderRecord]],
        saved: Callable[[], Awaitable[None]],
        search: SymbolSearch | None = None,
        history: History | None = None,
        on_preview: Callable[[Preview | None], None] | None = None,
    ) -> None:
        """Edit ``user_id``'s traders, drawn with ``show``.

        ``traders`` answers the ones listed, ``saved`` re-reads them after a save or a delete.
        ``search`` finds symbols for the picker; ``history`` loads what the preview runs on, and
        ``on_preview`` hears of every preview drawn (None when there is none), for the chart.
        """
        self.user_id = user_id
        self.backend = backend
        self._show = show
        self._toast = toast
        self.store = store
        self.spawn = spawn
        self._traders = traders
        self._saved = saved
        self._search = search
        self._history = history
        self._on_preview = on_preview
        #: The loaded history and what was computed on it (kept while the tab lives: reopening the
        #: editor on the same symbols previews at once).
        self._previewer = Previewer()
        #: Per stream: "" loaded, "…" loading, else why it could not be loaded.
        self._loads: dict[tuple[str, str], str] = {}
        self._shown_preview: tuple[TraderDefinition, int, Preview] | None = None
        self.draft: Draft | None = None
        self.editable = False
        self.note = ""
        self.saving = False
        self.status = ""
        self.suggestions: tuple[str, ...] = ()
        self._query = ""

    # -- opening and closing --------------------------------------------------------------------

    async def restore(self) -> None:
        """Reopen the draft this browser kept, if any (after a reload or a crash)."""
        text = await self.store.get(draft_key(self.user_id))
        draft = Draft.loads(text) if text else None
        if draft is not None and self.draft is None:
            self.draft = draft
            self.status = "Unsaved changes kept in this browser were restored."
            self._draw()

    def new(self, template_key: str = "") -> None:
        """Open the editor on a new trader from a starter template."""
        self._open(Draft.new(template_key) if template_key else Draft.new())

    def edit(self, trader_id: str) -> None:
        """Open the editor on a listed trader."""
        record = self._record(trader_id)
        if record is not None:
            self._open(Draft.of(record.id, record.name, record.definition))

    def duplicate(self, trader_id: str) -> None:
        """Open the editor on a new trader copied from a listed one."""
        record = self._record(trader_id)
        if record is not None:
            self._open(Draft.duplicate(record.name, record.definition))

    def close(self) -> None:
        """Drop the draft (Cancel) and forget the kept copy."""
        self.draft = None
        self.status = ""
        self.suggestions = ()
        self.spawn(self._forget())
        self._draw()

    def _open(self, draft: Draft) -> None:
        self._loads = {k: v for k, v in self._loads.items() if v in ("", "…")}
        self.draft = draft
        self.status = ""
        self.suggestions = ()
        self._changed()
        # The picker offers the most traded pairs before anything is typed.
        self.action("search", "")

    def _record(self, trader_id: str) -> TraderRecord | None:
        return next((r for r in self._traders() if r.id.lower() == trader_id.lower()), None)

    # -- control --------------------------------------------------------------------------------

    def set_editable(self, editable: bool, note: str) -> None:
        """Whether this tab may change traders now, and why not (the traders' note)."""
        if (editable, note) != (self.editable, self.note):
            self.editable, self.note = editable, note
            self._draw()

    # -- edits ----------------------------------------------------------------------------------

    def field(self, path: str, raw: str) -> None:
        """A field changed (``json`` is the JSON view)."""
        if self.draft is None or not self.editable:
            return
        if path == "json":
            self.draft.set_json(raw)
        else:
            self.draft.set_field(path, raw)
        self._changed()

    def action(self, name: str, arg: str) -> None:
        """A button or control of the editor (``new``, ``edit``, ``save``, ``add-symbol``…)."""
        if name == "new":
            self.new(arg)
        elif name == "edit":
            self.edit(arg)
        elif name == "duplicate":
            self.duplicate(arg)
        elif name == "cancel":
            self.close()
        elif name == "search":
            self._query = arg
            self.spawn(self._suggest(arg))
        elif self.draft is not None and self.editable:
            self._edit(self.draft, name, arg)

    def _edit(self, draft: Draft, name: str, arg: str) -> None:
        if name == "save":
            if not self.saving:
                self.spawn(self.save())
            return
        if name == "delete":
            if not self.saving and draft.trader_id is not None:
                self.spawn(self.delete())
            return
        if name == "template":
            draft.use_template(arg)
        elif name == "add-condition":
            draft.add_condition()
        elif name == "remove-condition" and arg.isdigit():
            draft.remove_condition(int(arg))
        elif name == "add-symbol":
            if not draft.add_symbol(arg):
                return
            self.suggestions = tuple(s for s in self.suggestions if s != arg.strip().upper())
        elif name == "remove-symbol" and arg.isdigit():
            draft.remove_symbol(int(arg))
        elif name == "trade":
            draft.set_trade(arg == "on")
        else:
            return
        self._changed()

    async def _suggest(self, query: str) -> None:
        if self._search is None:
            return
        found = await self._search(query, SUGGESTIONS * 2)
        if query != self._query or self.draft is None:
            return  # a newer search is under way, or the editor closed
        chosen = set(self.draft.form().symbols)
        self.suggestions = tuple(s for s in found if s not in chosen)[:SUGGESTIONS]
        self._draw()

    # -- saving ---------------------------------------------------------------------------------

    async def save(self) -> None:
        """Store the draft: a new trader is inserted (enabled), an edited one updated.

        Saved only when the validator accepts it; a refusal (the database's check, a lost request)
        keeps the form and says why next to the field it names.
        """
        draft = self.draft
        if draft is None or not self.editable or not draft.valid():
            self._draw()
            return
        self.saving = True
        self.status = "Saving…"
        self._draw()
        values: dict[str, object] = {"name": draft.name.strip(), "definition": draft.definition}
        if draft.trader_id is None:
            result = await self.backend.insert(
                "traders", {**values, "enabled": True}, returning=SAVED_COLUMNS
            )
        else:
            result = await self.backend.update(
                "traders", values, match={"id": draft.trader_id}, returning=SAVED_COLUMNS
            )
        self.saving = False
        if self.draft is not draft:
            return  # closed meanwhile
        if result.error is not None:
            draft.refuse(result.error.message)
            self.status = f"Not saved: {result.error.message}"
            self._changed()
            return
        if not isinstance(result.data, list) or not result.data:
            self.status = (
                "Not saved: this trader no longer exists (deleted elsewhere). Duplicate it to keep it."
            )
            self._draw()
            return
        self._toast(f"Saved {draft.name.strip()}.")
        self.draft = None
        self.status = ""
        await self._forget()
        self._draw()
        await self._saved()

    async def delete(self) -> None:
        """Delete the edited trader (its signals and trades go with it, as the schema says)."""
        draft = self.draft
        if draft is None or draft.trader_id is None or not self.editable:
            return
        self.saving = True
        self._draw()
        result = await self.backend.delete("traders", match={"id": draft.trader_id})
        self.saving = False
        if result.error is not None:
            self.status = f"Not deleted: {result.error.message}"
            self._draw()
            return
        self._toast(f"Deleted {draft.stored[0] if draft.stored else draft.name}.")
        self.draft = None
        self.status = ""
        await self._forget()
        self._draw()
        await self._saved()

    # -- keeping and drawing --------------------------------------------------------------------

    def _changed(self) -> None:
        draft = self.draft
        if draft is not None:
            self.spawn(self._keep(draft.dumps()))
        self._draw()

    async def _keep(self, text: str) -> None:
        error = await self.store.put(draft_key(self.user_id), text)
        draft = self.draft
        if error is not None:
            self.status = f"This browser could not keep the draft ({error}); save it before closing the tab."
            self._draw()
        elif draft is not None and draft.dirty and not self.saving and self.status in ("", KEPT):
            # Said once it is true, so that a reload from here on finds the draft.
            self.status = KEPT
            self._draw()

    async def _forget(self) -> None:
        await self.store.put(draft_key(self.user_id), _NO_DRAFT)

    def _draw(self) -> None:
        draft = self.draft
        if draft is None:
            self._show(None)
            self._tell_preview(None)
            return
        form = draft.form()
        templates = (
            tuple((t.key, t.name, t.description) for t in TEMPLATES) if draft.trader_id is None else ()
        )
        self._show(
            EditorView(
                form=form,
                read_only=not self.editable,
                note="" if self.editable else self.note,
                saving=self.saving,
                status=self.status,
                templates=templates,
                suggestions=self.suggestions,
                preview=self._preview(draft),
            )
        )

    # -- the preview ----------------------------------------------------------------------------

    def _tell_preview(self, preview: Preview | None) -> None:
        if self._on_preview is not None:
            self._on_preview(preview)

    def _preview(self, draft: Draft) -> PreviewSummary | None:
        """Preview the draft on the loaded history (loading what it lacks), or say why not."""
        if self._history is None:
            return None
        try:
            definition = parse_trader(draft.definition)
        except TraderDefinitionError:
            self._tell_preview(None)
            return PreviewSummary("invalid", "Preview: once every field is valid.")
        wanted = [(symbol, definition.interval) for symbol in definition.symbols[:PREVIEW_SYMBOLS]]
        for stream in wanted:
            if stream not in self._loads:
                self._loads[stream] = "…"
                self.spawn(self._load(*stream))
        loading = [s for s in wanted if self._loads[s] == "…"]
        failed = [
            f"{s} {i}: {self._loads[(s, i)]}" for s, i in wanted if self._loads[(s, i)] not in ("", "…")
        ]
        version = sum(self._previewer.candles(*s) for s in wanted)
        last = self._shown_preview
        if last is not None and last[0] == definition and last[1] == version:
            preview = last[2]
        else:
            preview = self._previewer.preview(definition)
            self._shown_preview = (definition, version, preview)
        self._tell_preview(preview if preview.symbols else None)
        if not preview.symbols:
            if loading:
                return PreviewSummary("loading", "Preview: loading the history…")
            return PreviewSummary("unavailable", "Preview: no history. " + "; ".join(failed))
        summary = summarize(preview)
        if loading:
            return PreviewSummary("loading", summary.headline + " Loading more history…", summary.figures,
                                  summary.per_symbol, summary.signals)  # fmt: skip
        return summary

    async def _load(self, symbol: str, interval: str) -> None:
        assert self._history is not None
        try:
            candles = await self._history(symbol, interval)
        except (MarketUnavailable, MarketDataError) as exc:
            # Shown until the editor opens again, which retries (not every keystroke).
            self._loads[(symbol, interval)] = str(exc)
            if self.draft is not None:
                self._draw()
            return
        self._previewer.add(candles)
        self._loads[(symbol, interval)] = ""
        if self.draft is not None:
            self._draw()
