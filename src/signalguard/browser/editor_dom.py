"""The trader editor on the page's DOM (``#editor`` in ``index.html``).

It draws an :class:`~.editor.EditorView` and reports what the person does as
:meth:`~.ports.Intents.editor_field` (a field's path and text) and
:meth:`~.ports.Intents.editor_action` (a button: its ``data-action`` and ``data-arg``). It decides
nothing: :mod:`~signalguard.browser.editor` does.

Redrawn on every change, so it must not disturb typing: a group of fields is rebuilt only when its
shape changes (a condition added, an indicator switched); otherwise values are set in place, except
in the field that has the focus, and the messages change. Every text from the person or the database
goes in as ``textContent`` or ``value``, never as HTML.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from signalguard.browser.editor import ConditionGroup, EditorView, FieldKind, FormField
from signalguard.browser.jstypes import present
from signalguard.browser.ports import Intents
from signalguard.browser.preview_text import PreviewSummary

if TYPE_CHECKING:
    from signalguard.browser.jstypes import Document, Element, Event, Window

#: The editor's fixed elements (``index.html``).
EDITOR_IDS: Final = (
    "editor", "editor-title", "editor-note", "editor-status", "editor-templates", "editor-body",
    "editor-general", "editor-symbols", "editor-symbol-search", "editor-suggestions",
    "editor-symbols-error", "editor-conditions", "editor-conditions-error", "editor-trade-on",
    "editor-trade", "editor-trade-error", "editor-json", "editor-json-error", "editor-summary",
    "editor-error", "editor-save", "editor-delete", "editor-cancel", "trader-new", "editor-preview",
    "editor-preview-headline", "editor-preview-figures", "editor-preview-symbols",
)  # fmt: skip

_Shape = tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...]
Listen = Callable[["Element", str, Callable[["Event"], None]], None]


def _shape(fields: Sequence[FormField]) -> _Shape:
    # The hint is drawn once with the field: a short side changes the bounds of target and stop.
    return tuple((f.path, f"{f.kind.value} {f.hint}", f.options) for f in fields)


def _show(el: Element, text: str) -> None:
    el.textContent = text
    el.hidden = not text


class EditorDom:
    """The editor's elements; see the module documentation."""

    def __init__(self, document: Document, window: Window, elements: dict[str, Element]) -> None:
        """Draw into the elements of :data:`EDITOR_IDS` (already found by the view)."""
        self._doc = document
        self._window = window
        self._el = elements
        self._shapes: dict[str, object] = {}

    # -- events ---------------------------------------------------------------------------------

    def bind(self, intents: Intents, listen: Listen) -> None:
        """Report the editor's inputs and buttons (and the traders list's Edit/Duplicate buttons)."""
        el = self._el

        def typed(event: Event) -> None:
            target = event.target
            path = target.getAttribute("data-path")
            if isinstance(path, str):
                intents.editor_field(path, str(target.value))
            elif target.getAttribute("id") == "editor-json":
                intents.editor_field("json", str(target.value))
            elif target.getAttribute("id") == "editor-symbol-search":
                intents.editor_action("search", str(target.value))

        def changed(event: Event) -> None:
            target = event.target
            if target.getAttribute("id") == "editor-trade-on":
                intents.editor_action("trade", "on" if target.checked else "off")
            elif target.tagName == "SELECT":
                path = target.getAttribute("data-path")
                if isinstance(path, str):
                    intents.editor_field(path, str(target.value))

        def clicked(event: Event) -> None:
            target = event.target
            action = target.getAttribute("data-action") if target.tagName == "BUTTON" else None
            if not isinstance(action, str):
                return
            arg = target.getAttribute("data-arg")
            question = target.getAttribute("data-confirm")
            if isinstance(question, str) and not self._window.confirm(question):
                return
            intents.editor_action(action, arg if isinstance(arg, str) else "")

        def key(event: Event) -> None:
            target = event.target
            if event.key == "Enter" and target.getAttribute("id") == "editor-symbol-search":
                event.preventDefault()
                intents.editor_action("add-symbol", str(target.value))
                target.value = ""
                intents.editor_action("search", "")

        listen(el["editor"], "input", typed)
        listen(el["editor"], "change", changed)
        listen(el["editor"], "click", clicked)
        listen(el["editor"], "keydown", key)
        listen(el["trader-new"], "click", lambda _e: intents.editor_action("new", ""))
        listen(el["traders"], "click", clicked)

    # -- drawing --------------------------------------------------------------------------------

    def show(self, view: EditorView | None) -> None:
        """Draw the editor (None: hide it)."""
        el = self._el
        if view is None:
            el["editor"].hidden = True
            el["editor"].removeAttribute("data-valid")
            self._shapes.clear()
            return
        form = view.form
        box = el["editor"]
        box.hidden = False
        box.setAttribute("data-valid", "1" if form.valid else "0")
        box.setAttribute("data-read-only", "1" if view.read_only else "0")
        box.setAttribute("data-trader-id", form.trader_id or "")
        el["editor-title"].textContent = form.title
        _show(el["editor-note"], view.note)
        _show(el["editor-status"], view.status)
        el["editor-body"].disabled = view.read_only
        self._templates(view.templates)
        self._fields("editor-general", form.general)
        self._symbols(form.symbols, form.symbol_errors, view.suggestions)
        _show(el["editor-symbols-error"], form.symbols_error)
        self._conditions(form.conditions)
        _show(el["editor-conditions-error"], form.conditions_error)
        el["editor-trade-on"].checked = form.trade_on
        self._fields("editor-trade", form.trade)
        _show(el["editor-trade-error"], form.trade_error)
        json_box = el["editor-json"]
        if not self._focused(json_box) and str(json_box.value) != form.json_text:
            json_box.value = form.json_text
        _show(el["editor-json-error"], form.json_error)
        _show(el["editor-summary"], form.summary)
        _show(el["editor-error"], form.error)
        el["editor-save"].disabled = view.read_only or view.saving or not form.valid or not form.dirty
        el["editor-save"].textContent = "Saving…" if view.saving else "Save"
        el["editor-delete"].hidden = form.trader_id is None
        el["editor-delete"].disabled = view.read_only or view.saving
        self._preview(view.preview)

    def _preview(self, summary: PreviewSummary | None) -> None:
        el = self._el
        box = el["editor-preview"]
        box.hidden = summary is None
        if summary is None:
            return
        box.setAttribute("data-state", summary.state)
        box.setAttribute("data-signals", str(summary.signals))
        el["editor-preview-headline"].textContent = summary.headline
        if self._shapes.get("preview") != summary.figures:
            self._shapes["preview"] = summary.figures
            items = []
            for key, label, value in summary.figures:
                pair = self._doc.createElement("div")
                pair.setAttribute("data-testid", f"preview-{key}")
                term = self._doc.createElement("dt")
                term.textContent = label
                figure = self._doc.createElement("dd")
                figure.textContent = value
                pair.append(term, figure)
                items.append(pair)
            el["editor-preview-figures"].replaceChildren(*items)
        per_symbol = summary.per_symbol
        el["editor-preview-symbols"].textContent = (
            "Signals by symbol: " + ", ".join(f"{s} {n:,}" for s, n in per_symbol)
            if len(per_symbol) > 1
            else ""
        )

    def _focused(self, el: Element) -> bool:
        # Equality, not identity: each read of a JS object may give another proxy of it, and ``==``
        # compares the objects themselves (``===``).
        active = self._doc.activeElement
        return present(active) and active == el

    def _templates(self, templates: Sequence[tuple[str, str, str]]) -> None:
        box = self._el["editor-templates"]
        if self._shapes.get("templates") == templates:
            return
        self._shapes["templates"] = templates
        buttons = []
        for key, name, description in templates:
            button = self._button("template", key, name)
            button.setAttribute("data-testid", "editor-template")
            button.setAttribute("title", description)
            buttons.append(button)
        box.replaceChildren(*buttons)
        box.hidden = not buttons

    def _button(self, action: str, arg: str, text: str) -> Element:
        button = self._doc.createElement("button")
        button.type = "button"
        button.textContent = text
        button.setAttribute("data-action", action)
        button.setAttribute("data-arg", arg)
        return button

    def _fields(self, container: str, fields: Sequence[FormField]) -> None:
        """Draw ``fields`` into ``#container``: rebuilt when their shape changed, else updated."""
        shape = _shape(fields)
        box = self._el[container]
        if self._shapes.get(container) != shape:
            self._shapes[container] = shape
            box.replaceChildren(*(self._field(f) for f in fields))
        self._update(box, fields)

    def _field(self, f: FormField) -> Element:
        doc = self._doc
        label = doc.createElement("label")
        label.className = "field"
        caption = doc.createElement("span")
        caption.textContent = f.label
        if f.hint:
            hint = doc.createElement("small")
            hint.className = "hint"
            hint.textContent = f" ({f.hint})"
            caption.append(hint)
        if f.kind is FieldKind.CHOICE:
            control = doc.createElement("select")
            for value, text in f.options:
                option = doc.createElement("option")
                option.value = value
                option.textContent = text
                control.append(option)
        else:
            control = doc.createElement("input")
            # Text, not type=number: a number field hides what was typed when it does not parse,
            # and the validator must see it to say what is wrong.
            control.type = "text"
            if f.kind is not FieldKind.TEXT:
                control.setAttribute("inputmode", "decimal" if f.kind is FieldKind.NUMBER else "numeric")
            control.setAttribute("autocomplete", "off")
        control.setAttribute("data-path", f.path)
        control.setAttribute("data-testid", f"field-{f.path}")
        error = doc.createElement("span")
        error.className = "field-error"
        error.setAttribute("data-testid", "field-error")
        error.setAttribute("data-for", f.path)
        error.hidden = True
        label.append(caption, control, error)
        return label

    def _update(self, box: Element, fields: Sequence[FormField]) -> None:
        controls = {str(c.getAttribute("data-path")): c for c in box.querySelectorAll("[data-path]")}
        errors = {str(e.getAttribute("data-for")): e for e in box.querySelectorAll(".field-error")}
        for f in fields:
            control = controls.get(f.path)
            if control is not None:
                if not self._focused(control) and str(control.value) != f.value:
                    control.value = f.value
                if f.error:
                    control.setAttribute("aria-invalid", "true")
                else:
                    control.removeAttribute("aria-invalid")
            error = errors.get(f.path)
            if error is not None:
                _show(error, f.error)

    def _symbols(self, symbols: Sequence[str], errors: Sequence[str], suggestions: Sequence[str]) -> None:
        key = (tuple(symbols), tuple(errors))
        if self._shapes.get("symbols") != key:
            self._shapes["symbols"] = key
            chips = []
            for i, (symbol, error) in enumerate(zip(symbols, errors, strict=True)):
                chip = self._doc.createElement("span")
                chip.className = "chip bad" if error else "chip"
                chip.setAttribute("data-testid", "editor-symbol")
                chip.setAttribute("data-symbol", symbol)
                name = self._doc.createElement("span")
                name.textContent = f"{symbol} — {error}" if error else symbol
                remove = self._button("remove-symbol", str(i), "×")
                remove.setAttribute("aria-label", f"Remove {symbol}")
                remove.setAttribute("data-testid", "editor-symbol-remove")
                chip.append(name, remove)
                chips.append(chip)
            self._el["editor-symbols"].replaceChildren(*chips)
        if self._shapes.get("suggestions") != tuple(suggestions):
            self._shapes["suggestions"] = tuple(suggestions)
            buttons = []
            for symbol in suggestions:
                button = self._button("add-symbol", symbol, symbol)
                button.setAttribute("data-testid", "editor-suggestion")
                buttons.append(button)
            self._el["editor-suggestions"].replaceChildren(*buttons)

    def _conditions(self, groups: Sequence[ConditionGroup]) -> None:
        shape = tuple((g.index, _shape(g.fields)) for g in groups)
        box = self._el["editor-conditions"]
        if self._shapes.get("conditions") != shape:
            self._shapes["conditions"] = shape
            doc = self._doc
            sets = []
            for g in groups:
                fieldset = doc.createElement("fieldset")
                fieldset.className = "condition"
                fieldset.setAttribute("data-testid", "editor-condition")
                fieldset.setAttribute("data-index", str(g.index))
                legend = doc.createElement("legend")
                fields = doc.createElement("div")
                fields.className = "fields"
                fields.append(*(self._field(f) for f in g.fields))
                error = doc.createElement("p")
                error.className = "error"
                error.setAttribute("data-testid", "condition-error")
                error.hidden = True
                remove = self._button("remove-condition", str(g.index), "Remove")
                remove.setAttribute("data-testid", "editor-condition-remove")
                fieldset.append(legend, fields, error, remove)
                sets.append(fieldset)
            box.replaceChildren(*sets)
        for g, fieldset in zip(groups, box.querySelectorAll("fieldset.condition"), strict=False):
            title = fieldset.querySelector("legend")
            if present(title):
                title.textContent = f"Condition {g.index + 1}" + (f" · {g.label}" if g.label else "")
            message = fieldset.querySelector("p.error")
            if present(message):
                _show(message, g.error)
            self._update(fieldset, g.fields)
