"""The trader editor's model: a draft trader, the form that shows it, and the core's verdict on it.

The page's editor is a plain form over one :class:`Draft`. Every keystroke becomes
:meth:`Draft.set_field` (a field's path and the text in it), a button becomes one of the other
methods, and :meth:`Draft.form` describes the whole form again: each field with its value and the
validator's message for it. The view draws that description and nothing else, so everything the
editor decides is here and tested without a browser.

The validator is the core's own :func:`~signalguard.core.traders.parse_trader`: the definition a
person saves is exactly what the engine runs, and what the database checks. The core names the
first offending field of a definition; to put a message next to *every* faulty condition, each
condition and the trade plan are also checked on their own inside a known-good definition.

Field paths are the validator's: ``symbols[1]``, ``conditions[0].period``, ``trade.side``. The
trader's ``name`` is not part of the definition; it has the path ``name``.

Values typed into number fields keep what the person wrote: ``14`` is the integer 14, ``2.5`` the
number 2.5, and ``abc`` stays the text ``"abc"`` so that the validator says what is wrong with it
instead of the form silently dropping it. An empty field removes the key (the validator then says
it is required, or the default applies for optional ones).
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from signalguard.browser.preview_text import PreviewSummary
from signalguard.core.candles import INTERVALS, MONTH
from signalguard.core.ports import JsonValue
from signalguard.core.traders import TraderDefinitionError, parse_trader
from signalguard.core.traders.rules import (
    CONDITION_RULES,
    DEFINITION_RULES,
    TRADE_PLAN_RULES,
    Depends,
    Integer,
    Number,
    Rule,
    problem_from_database,
)
from signalguard.core.traders.templates import TEMPLATES, template

__all__ = [
    "DEFAULT_CONDITIONS",
    "MAX_NAME",
    "ConditionGroup",
    "Draft",
    "EditorForm",
    "EditorView",
    "FieldKind",
    "FormField",
    "draft_key",
]

#: Longest trader name (the database's bound).
MAX_NAME: Final = 100
#: A new trader made without a template starts as this one.
BLANK_TEMPLATE: Final = "rsi_oversold"


class FieldKind(enum.StrEnum):
    """How a form field is typed in, and how its text becomes a JSON value."""

    TEXT = "text"  # free text, kept as a string (the name)
    INTEGER = "integer"  # a whole number (periods, candles)
    NUMBER = "number"  # any finite number (thresholds, percentages, amounts)
    CHOICE = "choice"  # one of a fixed list (indicator, operator, interval, side…)


@dataclass(frozen=True, slots=True)
class FormField:
    """One field of the form, as the view draws it."""

    #: The validator's path of the value (``conditions[0].period``), or ``name``.
    path: str
    #: The label shown beside it.
    label: str
    kind: FieldKind
    #: The text in the field.
    value: str
    #: For a choice: (value, label) pairs, in the order shown.
    options: tuple[tuple[str, str], ...] = ()
    #: The validator's message for this field ("" when it is fine).
    error: str = ""
    #: What the rules allow, in a few characters (``2–500``, ``> 0, ≤ 1,000``); "" for choices.
    hint: str = ""


@dataclass(frozen=True, slots=True)
class ConditionGroup:
    """One condition's fields."""

    index: int
    #: How the condition reads when valid (``RSI(14) < 30``), else "".
    label: str
    fields: tuple[FormField, ...]
    #: A message about the condition as a whole (a duplicate, an unknown key).
    error: str = ""


@dataclass(frozen=True, slots=True)
class EditorForm:
    """Everything the editor shows, derived from a :class:`Draft` (see :meth:`Draft.form`)."""

    #: "New trader", or "Edit" and the trader's name as stored.
    title: str
    #: The stored trader's id; None for a trader not saved yet.
    trader_id: str | None
    general: tuple[FormField, ...]
    symbols: tuple[str, ...]
    #: Message per symbol (same order as :attr:`symbols`), "" where fine.
    symbol_errors: tuple[str, ...]
    #: A message about the symbols as a whole (none, too many).
    symbols_error: str
    conditions: tuple[ConditionGroup, ...]
    conditions_error: str
    #: Whether the trader has a paper-trade plan.
    trade_on: bool
    trade: tuple[FormField, ...]
    trade_error: str
    #: The definition as JSON (or the person's own text while it does not parse).
    json_text: str
    json_error: str
    #: A message no field shows (the definition as a whole).
    error: str
    #: Whether the draft may be saved (valid, and not read-only).
    valid: bool
    #: The one-line reading of the trader when valid ("BTCUSDT · 15m · RSI(14) < 30").
    summary: str
    #: Whether the draft differs from what is stored.
    dirty: bool


@dataclass(frozen=True, slots=True)
class EditorView:
    """What the page's editor shows: the form and the state around it."""

    form: EditorForm
    #: The fields cannot be changed and nothing can be saved (see :attr:`note`).
    read_only: bool
    #: Why it is read-only ("" when it is not).
    note: str
    #: A save is under way (the buttons wait for it).
    saving: bool
    #: A line about the draft ("Restored…", "Could not save: …"); "" for none.
    status: str
    #: The starter traders, (key, name, description), offered while the trader is new.
    templates: tuple[tuple[str, str, str], ...]
    #: Symbols matching the search field, not yet chosen.
    suggestions: tuple[str, ...]
    #: What the draft would have done on the loaded history (None: no market data to preview on).
    preview: PreviewSummary | None = None


# -- what each indicator takes -------------------------------------------------------------------

_OPS: Final = (("<", "<"), ("<=", "≤"), (">", ">"), (">=", "≥"))
_DIRECTIONS: Final = (("up", "crosses above"), ("down", "crosses below"))
_BANDS: Final = (("upper", "upper band"), ("middle", "middle band"), ("lower", "lower band"))
_INDICATORS: Final = (
    ("rsi", "RSI"),
    ("volume_spike", "Volume spike"),
    ("price_change_pct", "Price change %"),
    ("close_vs_sma", "Close vs SMA"),
    ("close_vs_ema", "Close vs EMA"),
    ("close_vs_bollinger", "Close vs Bollinger band"),
    ("ema_cross", "EMA cross"),
    ("sma_cross", "SMA cross"),
    ("macd_histogram", "MACD histogram"),
    ("macd_cross", "MACD cross"),
)

#: A condition of each indicator as it is first offered (textbook parameters).
DEFAULT_CONDITIONS: Final[Mapping[str, Mapping[str, JsonValue]]] = {
    "rsi": {"indicator": "rsi", "period": 14, "op": "<", "value": 30},
    "volume_spike": {"indicator": "volume_spike", "period": 20, "op": ">", "value": 2},
    "price_change_pct": {"indicator": "price_change_pct", "period": 1, "op": "<=", "value": -3},
    "close_vs_sma": {"indicator": "close_vs_sma", "period": 50, "op": ">"},
    "close_vs_ema": {"indicator": "close_vs_ema", "period": 200, "op": "<"},
    "close_vs_bollinger": {
        "indicator": "close_vs_bollinger",
        "period": 20,
        "k": 2,
        "band": "lower",
        "op": "<",
    },
    "ema_cross": {"indicator": "ema_cross", "fast": 9, "slow": 21, "direction": "up"},
    "sma_cross": {"indicator": "sma_cross", "fast": 50, "slow": 200, "direction": "up"},
    "macd_histogram": {
        "indicator": "macd_histogram",
        "fast": 12,
        "slow": 26,
        "signal": 9,
        "op": ">",
        "value": 0,
    },
    "macd_cross": {"indicator": "macd_cross", "fast": 12, "slow": 26, "signal": 9, "direction": "up"},
}

# Each key a condition may have: its label, kind and choices (in the order the form shows them).
_PARAMS: Final[Mapping[str, tuple[str, FieldKind, tuple[tuple[str, str], ...]]]] = {
    "period": ("Period", FieldKind.INTEGER, ()),
    "fast": ("Fast", FieldKind.INTEGER, ()),
    "slow": ("Slow", FieldKind.INTEGER, ()),
    "signal": ("Signal", FieldKind.INTEGER, ()),
    "k": ("Deviations (k)", FieldKind.NUMBER, ()),
    "band": ("Band", FieldKind.CHOICE, _BANDS),
    "op": ("Comparison", FieldKind.CHOICE, _OPS),
    "value": ("Threshold", FieldKind.NUMBER, ()),
    "direction": ("Direction", FieldKind.CHOICE, _DIRECTIONS),
}

_TRADE: Final[tuple[tuple[str, str, FieldKind, tuple[tuple[str, str], ...]], ...]] = (
    ("side", "Side", FieldKind.CHOICE, (("long", "Long"), ("short", "Short"))),
    ("notional", "Size (quote amount)", FieldKind.NUMBER, ()),
    ("take_profit_pct", "Take profit %", FieldKind.NUMBER, ()),
    ("stop_loss_pct", "Stop loss %", FieldKind.NUMBER, ()),
    ("max_hold_candles", "Max hold (candles)", FieldKind.INTEGER, ()),
)
_DEFAULT_TRADE: Final[Mapping[str, JsonValue]] = {"side": "long", "notional": 100, "stop_loss_pct": 2}

_GENERAL_KINDS: Final[Mapping[str, FieldKind]] = {
    "name": FieldKind.TEXT,
    "interval": FieldKind.CHOICE,
    "match": FieldKind.CHOICE,
    "cooldown_candles": FieldKind.INTEGER,
}

# A path the form edits: a key of the root, a condition's key, or a trade plan's key.
_PATH: Final = re.compile(r"(?:conditions\[(\d{1,2})\]\.|(trade)\.)?([a-z_]{1,40})")
_INTEGER: Final = re.compile(r"[+-]?\d{1,30}")
_NUMBER: Final = re.compile(r"[+-]?(?:\d{1,30}(?:\.\d{0,30})?|\.\d{1,30})(?:[eE][+-]?\d{1,3})?")
#: The core's ``path: problem``, the path as :class:`~signalguard.core.traders.TraderDefinitionError`
#: writes it (a quoted key may itself hold ``": "``).
_REFUSAL: Final = re.compile(
    r'(?P<path>[A-Za-z_]\w*(?:\[(?:\d+|"(?:[^"\\]|\\.)*")\]|\.[A-Za-z_]\w*)*): (?P<problem>.*)', re.DOTALL
)


#: What :meth:`Draft.form` passes to its helpers: the message for a path (marking it shown).
_Message = Callable[[str], str]


def draft_key(user_id: str) -> str:
    """The key under which the page keeps a user's half-edited trader (one per user and browser)."""
    return f"trader-draft:{user_id.lower()}"


def _typed(raw: str, kind: FieldKind) -> JsonValue:
    """The JSON value of text typed into a field of ``kind`` (see the module documentation)."""
    text = raw.strip()
    if kind in (FieldKind.INTEGER, FieldKind.NUMBER):
        if _INTEGER.fullmatch(text):
            return int(text)
        if _NUMBER.fullmatch(text):
            value = float(text)
            if math.isfinite(value):
                return value
    return text


def _shown(value: JsonValue | None) -> str:
    """The text a field shows for a JSON value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    return json.dumps(value)


def _bound(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) and abs(value) >= 10_000 else f"{value:g}"


def _hint(rule: Rule, side: JsonValue = None) -> str:
    """What ``rule`` allows, in a few characters, for the field's caption (the side picks a bound)."""
    if isinstance(rule, Depends):
        cases = dict(rule.cases)
        if not isinstance(side, str) or side not in cases:
            return ""
        rule = cases[side]
    if isinstance(rule, Integer):
        return f"{_bound(rule.low)}–{_bound(rule.high)}"
    if isinstance(rule, Number):
        if rule.above:
            return f"> {_bound(rule.low)}, ≤ {_bound(rule.high)}"
        return f"{_bound(rule.low)} to {_bound(rule.high)}"
    return ""


def _copy(value: JsonValue) -> JsonValue:
    # JSON values only: a round trip is the simplest faithful deep copy.
    copied: JsonValue = json.loads(json.dumps(value))
    return copied


def _problem(definition: object) -> TraderDefinitionError | None:
    try:
        parse_trader(definition)
    except TraderDefinitionError as exc:
        return exc
    return None


# A definition every part of which is valid: each condition and the trade plan are checked inside it,
# alone, so that every faulty one gets its own message.
_PROBE_ROOT: Final[dict[str, JsonValue]] = {"version": 1, "symbols": ["BTCUSDT"], "interval": "1m"}
_PROBE_CONDITION: Final[JsonValue] = {"indicator": "rsi", "period": 14, "op": "<", "value": 30}


def _parts(condition: JsonValue) -> list[JsonValue]:
    """The condition itself, then each of its values alone in an otherwise textbook condition.

    The validator stops at a condition's first fault; checking each value on its own finds them all
    (a period too short *and* a threshold that is not a number).
    """
    parts: list[JsonValue] = [condition]
    if isinstance(condition, dict):
        default = DEFAULT_CONDITIONS.get(str(condition.get("indicator")))
        if default is not None:
            parts += [{**default, key: value} for key, value in condition.items() if key in default]
    return parts


def problems(name: str, definition: object) -> dict[str, str]:
    """Every message the editor shows, by field path (``name``, ``conditions[1].period``, ``definition``).

    The whole definition's first refusal, plus one per faulty condition and for the trade plan, each
    found by checking that part alone. Empty when the trader may be saved.
    """
    found: dict[str, str] = {}
    stripped = name.strip()
    if not stripped:
        found["name"] = "required"
    elif len(stripped) > MAX_NAME:
        found["name"] = f"at most {MAX_NAME} characters"
    first = _problem(definition)
    if first is None:
        return found
    found[first.path] = first.problem
    if isinstance(definition, Mapping):
        conditions = definition.get("conditions")
        if isinstance(conditions, list):
            for i, condition in enumerate(conditions):
                for part in _parts(condition):
                    alone = _problem({**_PROBE_ROOT, "conditions": [part]})
                    if alone is not None and alone.path.startswith("conditions[0]"):
                        found.setdefault(
                            f"conditions[{i}]" + alone.path[len("conditions[0]") :], alone.problem
                        )
        if "trade" in definition:
            alone = _problem({**_PROBE_ROOT, "conditions": [_PROBE_CONDITION], "trade": definition["trade"]})
            if alone is not None and alone.path.startswith("trade"):
                found.setdefault(alone.path, alone.problem)
    return found


@dataclass
class Draft:
    """A trader being made or edited; see the module documentation."""

    #: The stored trader's id (None: not saved yet).
    trader_id: str | None
    name: str
    #: The definition as edited (any JSON: it is checked, not trusted).
    definition: dict[str, JsonValue]
    #: What is stored (name, definition) for an existing trader, to tell whether anything changed.
    stored: tuple[str, JsonValue] | None = None
    #: The JSON view's text while it does not parse (None: the view shows the definition).
    json_text: str | None = None
    json_error: str = ""
    #: The refusal of the last save, by path (the database's or the API's answer).
    refused: dict[str, str] = field(default_factory=dict)

    # -- making one ---------------------------------------------------------------------------

    @classmethod
    def new(cls, template_key: str = BLANK_TEMPLATE) -> Draft:
        """A new trader from a starter template (its name and definition, to be tuned)."""
        chosen = template(template_key)
        return cls(None, chosen.name, chosen.as_json())

    @classmethod
    def of(cls, trader_id: str, name: str, definition: object) -> Draft:
        """Edit a stored trader (a definition that is not an object is shown as an empty one)."""
        body: dict[str, JsonValue] = _copy(definition) if isinstance(definition, dict) else {}  # type: ignore[assignment]
        return cls(trader_id, name, body, stored=(name, _copy(body)))

    @classmethod
    def duplicate(cls, name: str, definition: object) -> Draft:
        """A new trader that starts as a copy of a stored one."""
        body: dict[str, JsonValue] = _copy(definition) if isinstance(definition, dict) else {}  # type: ignore[assignment]
        copy_name = f"{name} (copy)"[:MAX_NAME]
        return cls(None, copy_name, body)

    # -- edits --------------------------------------------------------------------------------

    def _edited(self) -> None:
        self.json_text = None
        self.json_error = ""
        self.refused = {}

    def set_field(self, path: str, raw: str) -> None:
        """Put the text ``raw`` typed into the field at ``path``; unknown paths are ignored."""
        match = _PATH.fullmatch(path)
        if match is None:
            return
        index, trade, key = match.groups()
        if index is None and trade is None:
            if key == "name":
                self.name = raw
                self._edited()
                return
            if key not in _GENERAL_KINDS:
                return
            target: dict[str, JsonValue] = self.definition
            kind = _GENERAL_KINDS[key]
        elif trade is not None:
            kinds = {k: kind for k, _, kind, _ in _TRADE}
            plan = self.definition.get("trade")
            if key not in kinds or not isinstance(plan, dict):
                return
            target, kind = plan, kinds[key]
        else:
            conditions = self.definition.get("conditions")
            i = int(index)
            if key not in (*_PARAMS, "indicator") or not isinstance(conditions, list) or i >= len(conditions):
                return
            condition = conditions[i]
            if not isinstance(condition, dict):
                return
            if key == "indicator":
                self.set_indicator(i, raw)
                return
            target, kind = condition, _PARAMS[key][1]
        if raw.strip() == "":
            target.pop(key, None)
        else:
            target[key] = _typed(raw, kind)
        self._edited()

    def set_indicator(self, index: int, indicator: str) -> None:
        """Change condition ``index`` to ``indicator``, keeping the parameters both kinds have."""
        conditions = self.definition.get("conditions")
        default = DEFAULT_CONDITIONS.get(indicator)
        if default is None or not isinstance(conditions, list) or not 0 <= index < len(conditions):
            return
        old = conditions[index]
        new = dict(default)
        if isinstance(old, dict) and old.get("indicator") != indicator:
            # A period stays a period; a threshold and its comparison belong to the indicator (RSI
            # under 30 is not volume under 30 times its average) and start as the textbook ones.
            for key in ("period", "fast", "slow", "signal"):
                if key in new and key in old:
                    new[key] = old[key]
        conditions[index] = new
        self._edited()

    def add_condition(self, indicator: str = "rsi") -> None:
        """Append a condition (with textbook parameters)."""
        conditions = self.definition.get("conditions")
        if not isinstance(conditions, list):
            conditions = self.definition["conditions"] = []
        conditions.append(dict(DEFAULT_CONDITIONS.get(indicator, DEFAULT_CONDITIONS["rsi"])))
        self._edited()

    def remove_condition(self, index: int) -> None:
        """Remove condition ``index``."""
        conditions = self.definition.get("conditions")
        if isinstance(conditions, list) and 0 <= index < len(conditions):
            del conditions[index]
            self._edited()

    def add_symbol(self, raw: str) -> bool:
        """Add a symbol (upper-cased); False if it is empty or already there."""
        symbol = raw.strip().upper()
        symbols = self.definition.get("symbols")
        if not isinstance(symbols, list):
            symbols = self.definition["symbols"] = []
        if not symbol or symbol in symbols:
            return False
        symbols.append(symbol)
        self._edited()
        return True

    def remove_symbol(self, index: int) -> None:
        """Remove symbol ``index``."""
        symbols = self.definition.get("symbols")
        if isinstance(symbols, list) and 0 <= index < len(symbols):
            del symbols[index]
            self._edited()

    def set_trade(self, on: bool) -> None:
        """Give the trader a paper-trade plan (a modest default) or take it away."""
        if on and not isinstance(self.definition.get("trade"), dict):
            self.definition["trade"] = dict(_DEFAULT_TRADE)
        elif not on:
            self.definition.pop("trade", None)
        self._edited()

    def use_template(self, key: str) -> None:
        """Start again from a starter template (only for a trader not saved yet)."""
        if self.trader_id is None and any(t.key == key for t in TEMPLATES):
            chosen = template(key)
            self.name, self.definition = chosen.name, chosen.as_json()
            self._edited()

    def set_json(self, text: str) -> None:
        """The JSON view was edited: take its object, or keep the text and say why it does not parse."""
        try:
            value = json.loads(text)
        except ValueError as exc:
            self.json_text, self.json_error = text, f"not valid JSON: {exc}"
            return
        if not isinstance(value, dict):
            self.json_text, self.json_error = text, "the definition is a JSON object ({…})"
            return
        self.definition = value
        self.refused = {}
        self.json_text, self.json_error = text, ""

    def refuse(self, message: str) -> None:
        """The save was refused with ``message``; show it by the field it names, if it names one.

        The database refuses a definition the core would refuse with the core's own message,
        ``invalid_argument: definition.<path>: <problem>`` (see
        :func:`~signalguard.core.traders.rules.problem_from_database`); anything else is shown as is.
        """
        problem = problem_from_database(message)
        found = _REFUSAL.fullmatch(problem) if problem is not None else None
        if found is not None:
            self.refused = {found["path"]: found["problem"]}
        elif message.startswith("invalid_argument: a trader's name"):
            self.refused = {"name": message.removeprefix("invalid_argument: ")}
        else:
            self.refused = {"definition": message}

    # -- reading it ---------------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        """Whether there is anything to save."""
        return self.stored is None or self.stored != (self.name, self.definition)

    def problems(self) -> dict[str, str]:
        """The validator's messages by path (and the last refusal's)."""
        found = problems(self.name, self.definition)
        for path, message in self.refused.items():
            found.setdefault(path, message)
        if self.json_error:
            found["json"] = self.json_error
        return found

    def valid(self) -> bool:
        """Whether the draft may be saved."""
        return not self.problems()

    def form(self) -> EditorForm:
        """The form that shows this draft."""
        found = self.problems()
        placed: set[str] = set()

        def message(path: str) -> str:
            if path in found:
                placed.add(path)
                return found[path]
            return ""

        d = self.definition
        interval_options = tuple((i, i) for i in (*INTERVALS, MONTH))
        general = (
            FormField("name", "Name", FieldKind.TEXT, self.name, error=message("name")),
            FormField(
                "interval", "Interval", FieldKind.CHOICE, _shown(d.get("interval")), interval_options,
                message("interval"),
            ),
            FormField(
                "match", "Signal when", FieldKind.CHOICE, _shown(d.get("match", "all")),
                (("all", "all conditions hold"), ("any", "any condition holds")), message("match"),
            ),
            FormField(
                "cooldown_candles", "Cooldown (candles)", FieldKind.INTEGER,
                _shown(d.get("cooldown_candles")), error=message("cooldown_candles"),
                hint=_hint(DEFINITION_RULES.field("cooldown_candles").rule),
            ),
        )  # fmt: skip

        raw_symbols = d.get("symbols")
        symbols = tuple(_shown(s) for s in raw_symbols) if isinstance(raw_symbols, list) else ()
        symbol_errors = tuple(message(f"symbols[{i}]") for i in range(len(symbols)))

        groups: list[ConditionGroup] = []
        raw_conditions = d.get("conditions")
        for i, condition in enumerate(raw_conditions if isinstance(raw_conditions, list) else []):
            groups.append(self._group(i, condition, message))

        plan = d.get("trade")
        trade: tuple[FormField, ...] = ()
        if isinstance(plan, dict):
            side = plan.get("side")
            trade = tuple(
                FormField(f"trade.{key}", label, kind, _shown(plan.get(key)), options,
                          message(f"trade.{key}"), _hint(TRADE_PLAN_RULES.field(key).rule, side))
                for key, label, kind, options in _TRADE
            )  # fmt: skip
        try:
            parsed = parse_trader(d)
        except TraderDefinitionError:
            summary = ""
        else:
            joiner = " and " if str(parsed.match) == "all" else " or "
            summary = f"{', '.join(parsed.symbols)} · {parsed.interval} · {joiner.join(parsed.labels)}"
        symbols_error = message("symbols")
        conditions_error = message("conditions")
        trade_error = message("trade")
        json_error = message("json")
        rest = [f"{p}: {m}" if p != "definition" else m for p, m in found.items() if p not in placed]
        title = (
            "New trader" if self.trader_id is None else f"Edit {self.stored[0] if self.stored else self.name}"
        )
        return EditorForm(
            title=title,
            trader_id=self.trader_id,
            general=general,
            symbols=symbols,
            symbol_errors=symbol_errors,
            symbols_error=symbols_error,
            conditions=tuple(groups),
            conditions_error=conditions_error,
            trade_on=isinstance(plan, dict),
            trade=trade,
            trade_error=trade_error,
            json_text=self.json_text if self.json_text is not None else json.dumps(d, indent=2),
            json_error=json_error,
            error="; ".join(rest),
            valid=not found,
            summary=summary,
            dirty=self.dirty,
        )

    def _group(self, i: int, condition: JsonValue, message: _Message) -> ConditionGroup:
        base = f"conditions[{i}]"
        if not isinstance(condition, dict):
            return ConditionGroup(i, "", (), message(base) or "must be a JSON object")
        indicator = _shown(condition.get("indicator"))
        fields = [FormField(f"{base}.indicator", "Indicator", FieldKind.CHOICE, indicator, _INDICATORS,
                            message(f"{base}.indicator"))]  # fmt: skip
        # The rules' own fields of this indicator, in their order (one source of truth with the
        # validator and the database), then whatever else the condition holds that the form knows.
        rules = dict(CONDITION_RULES.variants).get(indicator)
        known = {f.name: f.rule for f in rules.fields} if rules is not None else {}
        keys = [k for k in known if k in _PARAMS]
        keys += [k for k in _PARAMS if k in condition and k not in keys]
        for key in keys:
            label, kind, options = _PARAMS[key]
            hint = _hint(known[key]) if key in known else ""
            fields.append(
                FormField(f"{base}.{key}", label, kind, _shown(condition.get(key)), options,
                          message(f"{base}.{key}"), hint)
            )  # fmt: skip
        label = ""
        own = _problem({**_PROBE_ROOT, "conditions": [condition]})
        if own is None:
            label = parse_trader({**_PROBE_ROOT, "conditions": [condition]}).labels[0]
        return ConditionGroup(i, label, tuple(fields), message(base))

    # -- kept locally -------------------------------------------------------------------------

    def dumps(self) -> str:
        """The draft as the page keeps it across a reload."""
        record: dict[str, JsonValue] = {
            "trader_id": self.trader_id,
            "name": self.name,
            "definition": self.definition,
            "stored": list(self.stored) if self.stored is not None else None,
            "json_text": self.json_text,
        }
        return json.dumps(record)

    @classmethod
    def loads(cls, text: str) -> Draft | None:
        """A draft kept by :meth:`dumps`; None for anything else (an old or damaged record)."""
        try:
            record = json.loads(text)
        except ValueError:
            return None
        if not isinstance(record, dict):
            return None
        tid, name, body, stored = (record.get(k) for k in ("trader_id", "name", "definition", "stored"))
        if (
            not (tid is None or isinstance(tid, str))
            or not isinstance(name, str)
            or not isinstance(body, dict)
        ):
            return None
        kept: tuple[str, JsonValue] | None = None
        if isinstance(stored, list) and len(stored) == 2 and isinstance(stored[0], str):
            kept = (stored[0], stored[1])
        draft = cls(tid, name, body, stored=kept)
        json_text = record.get("json_text")
        if isinstance(json_text, str):
            draft.set_json(json_text)
            if not draft.json_error:
                draft.json_text = None
        return draft
