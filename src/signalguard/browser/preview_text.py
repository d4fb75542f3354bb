"""How the editor shows a preview: a few plain figures, labelled as a preview.

:mod:`signalguard.core.preview` computes what a definition would have done on the loaded history;
this module only words it. Everything is text for ``textContent``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from signalguard.core.preview import Preview, PreviewStats

__all__ = ["PREVIEW_CANDLES", "PREVIEW_SYMBOLS", "PreviewSummary", "duration", "summarize"]

#: Closed candles loaded per symbol for a preview.
PREVIEW_CANDLES: Final = 1000
#: Most symbols of one trader previewed (the first ones): each needs its own history request.
PREVIEW_SYMBOLS: Final = 10


@dataclass(frozen=True, slots=True)
class PreviewSummary:
    """The preview block of the editor."""

    #: ``ready``, ``loading``, ``unavailable`` (no history) or ``invalid`` (nothing to preview).
    state: str
    #: One line on what was previewed, or why nothing was.
    headline: str
    #: (key, label, value) figures, in the order shown; ``key`` names it for tests.
    figures: tuple[tuple[str, str, str], ...] = ()
    #: Signals per previewed symbol.
    per_symbol: tuple[tuple[str, int], ...] = ()
    #: Signals in all (-1 when not ready).
    signals: int = -1


def duration(ms: float) -> str:
    """A hold time in words: ``45 s``, ``12 min``, ``3 h 20 min``, ``2 d 4 h``."""
    seconds = round(ms / 1000)
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _pct(value: float, *, signed: bool = True) -> str:
    return f"{value:+.2f} %" if signed else f"{value:.2f} %"


def _figures(stats: PreviewStats, trading: bool) -> tuple[tuple[str, str, str], ...]:
    figures = [("signals", "Signals", f"{stats.signals:,}")]
    if not trading:
        return tuple(figures)
    figures.append(("trades", "Closed trades", f"{stats.trades:,}"))
    figures.append(
        ("win-rate", "Win rate", "—" if stats.win_rate is None else _pct(stats.win_rate * 100, signed=False))
    )
    figures.append(("return", "Total return (sum of trades)", _pct(stats.summed_return_pct)))
    figures.append(("drawdown", "Max drawdown", _pct(stats.max_drawdown_pct, signed=False)))
    hold = "—"
    if stats.avg_hold_candles is not None and stats.avg_hold_ms is not None:
        hold = f"{stats.avg_hold_candles:.1f} candles ({duration(stats.avg_hold_ms)})"
    figures.append(("hold", "Average hold", hold))
    if stats.open_trades:
        figures.append(
            ("open", "Still open", f"{stats.open_trades:,} ({_pct(stats.open_return_pct)} at the last close)")
        )
    return tuple(figures)


def summarize(preview: Preview, *, left_out: int = 0) -> PreviewSummary:
    """Word a preview; ``left_out`` symbols of the trader were not previewed (beyond the limit)."""
    definition = preview.definition
    if not preview.symbols:
        return PreviewSummary("unavailable", "Preview: no history for these symbols.")
    counts = sorted({s.candles for s in preview.symbols})
    candles = f"{counts[0]:,}" if len(counts) == 1 else f"{counts[0]:,}–{counts[-1]:,}"
    names = ", ".join(s.symbol for s in preview.symbols)
    headline = (
        f"Preview, not a promise: what this definition would have done on the last {candles} closed "
        f"{definition.interval} candles of {names}"
    )
    skipped = len(preview.missing) + left_out
    if skipped:
        headline += f" ({skipped} more symbol{'s' if skipped != 1 else ''} not previewed)"
    return PreviewSummary(
        "ready",
        headline + ".",
        _figures(preview.stats, definition.trade is not None),
        tuple((s.symbol, s.stats.signals) for s in preview.symbols),
        preview.stats.signals,
    )
