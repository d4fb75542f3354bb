"""What the chart and the "by source" summary show, computed from API answers (no platform imports).

The chart is a candlestick chart of one (symbol, interval) that the user's traders watch, with a marker
under each candle that triggered a signal, coloured by the source that wrote it (this browser, or the
cloud machine). Candles come from the market-data service (Binance's kline REST API, or the local
replay server); markers come from the ``signals`` table, plus this tab's signals still waiting in the
outbox. The page draws it with TradingView's Lightweight Charts (``web/chart.js``), handed JSON.

The summary is ``signal_summary(p_days)``: the last days' signals by source and the cloud's signals by
machine (the seed's analysis queries), shown as text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from signalguard.core.candles import parse_rest_klines, timestamp_us
from signalguard.core.engine import TraderRecord
from signalguard.core.preview import Preview
from signalguard.core.traders import TraderDefinitionError, parse_trader

#: Candles drawn (one REST page).
CHART_CANDLES: Final = 200
#: Markers at most (the newest), so that a busy trader cannot make the chart heavy.
CHART_MARKERS: Final = 500
#: Marker colours by source; the legend in ``index.html`` uses the same ones.
SOURCE_COLORS: Final[Mapping[str, str]] = {"local": "#2962ff", "cloud": "#e8590c", "preview": "#7b2cbf"}
#: Marker text by source ("preview": where the definition in the editor would have signalled).
SOURCE_LETTERS: Final[Mapping[str, str]] = {"local": "B", "cloud": "C", "preview": "P"}
SUMMARY_DAYS: Final = 7
SOURCE_NAMES: Final[Mapping[str, str]] = {"local": "Browser (local)", "cloud": "Cloud"}


def stream_label(symbol: str, interval: str) -> str:
    """How a (symbol, interval) is named in the chart's selector, e.g. ``BTCUSDT · 1m``."""
    return f"{symbol} · {interval}"


def chart_streams(traders: Iterable[TraderRecord]) -> list[tuple[str, str]]:
    """The (symbol, interval) pairs the traders watch, enabled traders' first, in a stable order."""
    enabled: dict[tuple[str, str], None] = {}
    others: dict[tuple[str, str], None] = {}
    for record in traders:
        try:
            definition = parse_trader(record.definition)
        except TraderDefinitionError:
            continue
        target = enabled if record.enabled else others
        for symbol in definition.symbols:
            target[(symbol, definition.interval)] = None
    return list(enabled) + [s for s in others if s not in enabled]


def chart_candles(rows: object, symbol: str, interval: str, now_ms: int) -> list[dict[str, float]]:
    """Kline REST rows as Lightweight Charts' bars (``time`` in epoch seconds, UTC).

    The candle still forming is drawn too (it is what the user looks at). Raises
    :class:`~signalguard.core.candles.MarketDataError` for a malformed answer.
    """
    candles = parse_rest_klines(rows, symbol=symbol, interval=interval, now_ms=now_ms)
    return [
        {"time": c.open_time // 1000, "open": c.open, "high": c.high, "low": c.low, "close": c.close}
        for c in candles[-CHART_CANDLES:]
    ]


def _open_ms(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    us = timestamp_us(value)  # as the engine reads stored signals (an offset-less time is UTC)
    return None if us is None else us // 1000


@dataclass(frozen=True, slots=True)
class Marker:
    """One signal on the chart."""

    open_ms: int
    source: str
    key: str
    #: Found by a catch-up after a handoff, not live: drawn as a square instead of an arrow.
    caught_up: bool = False

    def to_json(self) -> dict[str, object]:
        """Lightweight Charts' series marker.

        Live signals are arrows under the bar in their source's colour, caught-up ones squares (with a
        lower-case letter: ``b``, ``c``), a preview's dots above the bar: three kinds told apart by
        shape as well as by colour, so that they read in either colour scheme and without colour.
        """
        preview = self.source == "preview"
        letter = SOURCE_LETTERS.get(self.source, "?")
        return {
            "time": self.open_ms // 1000,
            "position": "aboveBar" if preview else "belowBar",
            "shape": "circle" if preview else "square" if self.caught_up else "arrowUp",
            "color": SOURCE_COLORS.get(self.source, "#868e96"),
            "text": letter.lower() if self.caught_up else letter,
        }


def preview_markers(preview: Preview) -> list[Marker]:
    """The first previewed symbol's triggers as markers of their own kind (newest :data:`CHART_MARKERS`)."""
    if not preview.symbols:
        return []
    first = preview.symbols[0]
    markers = [Marker(t.open_time, "preview", f"preview:{t.open_time}") for t in first.triggers]
    return markers[-CHART_MARKERS:]


def chart_markers(
    stored: object, pending: Sequence[tuple[str, Mapping[str, object]]], symbol: str, interval: str
) -> list[Marker]:
    """Markers for the stored signal rows of this stream plus the pending outbox ``(key, payload)``s.

    A key appears once (a stored row wins over its pending copy); rows of other streams and rows
    without a readable candle time are skipped. Oldest first, as the chart library wants them.
    """
    seen: dict[str, Marker] = {}
    rows = stored if isinstance(stored, list) else []
    for row in rows:
        if not isinstance(row, dict) or row.get("symbol") != symbol or row.get("interval") != interval:
            continue
        key, ms, source = row.get("signal_key"), _open_ms(row.get("candle_open_time")), row.get("source")
        if isinstance(key, str) and ms is not None and isinstance(source, str):
            seen[key] = Marker(ms, source, key, caught_up=row.get("caught_up") is True)
    for key, payload in pending:
        if payload.get("symbol") != symbol or payload.get("interval") != interval:
            continue
        ms = _open_ms(payload.get("candle_open_time"))
        if ms is not None and key not in seen:
            seen[key] = Marker(ms, "local", key)
    markers = sorted(seen.values(), key=lambda m: (m.open_ms, m.source, m.key))
    return markers[-CHART_MARKERS:]


@dataclass(frozen=True, slots=True)
class ChartData:
    """One drawing of the chart."""

    streams: list[tuple[str, str]]
    selected: tuple[str, str] | None
    candles: list[dict[str, float]] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    #: Why there are no candles (market data unavailable), or "".
    problem: str = ""

    def counts(self) -> dict[str, int]:
        """Markers by source, and the caught-up ones (the page exposes them for tests and readers)."""
        out = {"local": 0, "cloud": 0, "preview": 0, "caught_up": 0}
        for m in self.markers:
            out[m.source] = out.get(m.source, 0) + 1
            out["caught_up"] += m.caught_up
        return out

    def candles_json(self) -> str:
        """The bars, as JSON for the chart library."""
        return json.dumps(self.candles, separators=(",", ":"))

    def markers_json(self) -> str:
        """The markers that fall on a drawn candle, as JSON (the library drops the others anyway)."""
        times = {c["time"] for c in self.candles}
        return json.dumps(
            [m.to_json() for m in self.markers if m.open_ms // 1000 in times], separators=(",", ":")
        )


# -- the summary ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SummaryLine:
    """A row of the summary: a source, or (indented) one cloud machine."""

    #: ``local``/``cloud``, or the machine's name.
    key: str
    label: str
    signals: int
    traders: int
    last: str
    machine: bool = False


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _when(value: object) -> str:
    if not isinstance(value, str):
        return "—"
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return "—"


def summary_lines(answer: object) -> list[SummaryLine]:
    """``signal_summary``'s answer as rows: each source, each machine under the cloud.

    Malformed parts are skipped (the summary is informative; a bad row must not hide the others).
    """
    if not isinstance(answer, dict):
        return []
    by_machine = answer.get("by_machine")
    machines = [m for m in by_machine if isinstance(m, dict)] if isinstance(by_machine, list) else []
    by_source = answer.get("by_source")
    lines: list[SummaryLine] = []
    for row in by_source if isinstance(by_source, list) else []:
        if not isinstance(row, dict) or row.get("source") not in SOURCE_NAMES:
            continue
        source = str(row["source"])
        lines.append(
            SummaryLine(
                source, SOURCE_NAMES[source], _count(row.get("signals")), _count(row.get("traders")),
                _when(row.get("last_signal_at")),
            )
        )  # fmt: skip
        if source == "cloud":
            for m in machines:
                region = m.get("region")
                machine_id = str(m.get("machine_id", "?"))
                name = machine_id + (f" ({region})" if isinstance(region, str) else "")
                lines.append(
                    SummaryLine(
                        machine_id, name, _count(m.get("signals")), _count(m.get("traders")),
                        _when(m.get("last_signal_at")), machine=True,
                    )
                )  # fmt: skip
    return lines
