"""Candle series for the replay: their shape, the two candle-file formats, and Binance's payloads.

A replay takes only the *shape* of a series from a file (the OHLCV sequence); the replay gives the
candles new open times (see :mod:`signalguard.replay.engine`). So a :class:`Bar` has no times, and its
values are the file's own strings, served unchanged.

Candle files:

- **Binance data-dump CSV** (``data.binance.vision``), one symbol per file, optionally with a header::

      open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore

  Symbol and interval come from the file name, as the dumps name them (``BTCUSDT-1m-2024-01.csv``),
  and the rows must agree (``close_time - open_time + 1``). Times may be milliseconds or, as in the
  dumps since 2025, microseconds. A ``.zip`` holding one such CSV (as downloaded) is read directly.
- **JSON**: ``{"interval": "1m", "symbols": {"BTCUSDT": [[...12-element kline rows...], ...]}}`` with
  rows as ``GET /api/v3/klines`` returns them (times as integers, prices and volumes as strings); any
  number of symbols. :func:`to_document` writes this form.

Rows must have increasing open times on the file's interval (gaps are allowed: they vanish when the
series is re-stamped), prices above zero with high and low enclosing open and close, and volumes of at
least zero. A bad file raises :class:`CandleFileError` naming the file and the line (CSV, or JSON
syntax) or the row's JSON path.

This module is pure Python (no I/O beyond reading the given files), so it also runs in Pyodide.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from signalguard.core.candles import INTERVALS, is_aligned

__all__ = [
    "Bar",
    "CandleFileError",
    "Series",
    "interval_ms",
    "kline_row",
    "load_files",
    "parse_csv",
    "parse_json",
    "price_tick",
    "to_document",
]

_SYMBOL = re.compile(r"[A-Z0-9]{2,20}")
# Binance writes plain decimals ("42000.01000000"): no sign, exponent, spaces, "NaN" or "Infinity".
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_DIGITS = re.compile(r"[0-9]{1,20}")
# Millisecond epoch times stay below 10**14 until the year 5138; microsecond ones are above it.
_MICROSECONDS_FROM = 10**14
_CSV_COLUMNS = 12
# How data.binance.vision names its files: BTCUSDT-1m-2024-01-01.csv (or .zip).
_DUMP_NAME = re.compile(
    r"(?P<symbol>[A-Z0-9]{2,20})-(?P<interval>\w+)(?:-[\w-]*)?\.(?:csv|zip)", re.IGNORECASE
)


class CandleFileError(ValueError):
    """A candle file could not be read; the message names the file and the line or row."""


@dataclass(frozen=True, slots=True)
class Bar:
    """One candle without its times: the values of a kline row, as the file wrote them."""

    open: str
    high: str
    low: str
    close: str
    volume: str
    quote_volume: str
    trades: int
    taker_buy_volume: str
    taker_buy_quote_volume: str

    def forming(self, fraction: Fraction, tick: Decimal) -> Bar:
        """The candle ``fraction`` (0 < f < 1) of the way through its interval, for unclosed updates.

        The close moves in a straight line from the open to the final close, rounded to ``tick`` (see
        :func:`price_tick`), and high/low enclose open and close so far; so every update is a valid
        candle that the final one encloses. Volumes and the trade count grow in proportion.
        """
        o, c = Decimal(self.open), Decimal(self.close)
        now = (o + (c - o) * fraction.numerator / fraction.denominator).quantize(tick)
        close = format(now.quantize(Decimal(self.close)), "f")  # printed like the file's values
        return Bar(
            open=self.open,
            high=self.open if o >= now else close,
            low=self.open if o <= now else close,
            close=close,
            volume=_part(self.volume, fraction),
            quote_volume=_part(self.quote_volume, fraction),
            trades=self.trades * fraction.numerator // fraction.denominator,
            taker_buy_volume=_part(self.taker_buy_volume, fraction),
            taker_buy_quote_volume=_part(self.taker_buy_quote_volume, fraction),
        )


def _part(value: str, fraction: Fraction) -> str:
    """Return ``value * fraction``, printed with the decimals of ``value``."""
    return format((Decimal(value) * fraction.numerator / fraction.denominator).quantize(Decimal(value)), "f")


def price_tick(bars: Sequence[Bar], sample: int = 1000) -> Decimal:
    """The price grid of a series: the finest decimal place its first ``sample`` bars' prices use.

    Files print prices with trailing zeros (``"42000.01000000"``), so the grid is not the number of
    decimals written; it is at most 1.
    """
    exponent = 0
    for bar in bars[:sample]:
        for price in (bar.open, bar.high, bar.low, bar.close):
            used = Decimal(price).normalize().as_tuple().exponent
            if isinstance(used, int):
                exponent = min(exponent, used)
    return Decimal(1).scaleb(exponent)


@dataclass(frozen=True)
class Series:
    """Candle shapes on one interval: for each symbol, its bars in order."""

    interval: str
    bars: Mapping[str, Sequence[Bar]]

    def __post_init__(self) -> None:
        """Check that the series can be replayed: a fixed interval and at least one bar per symbol."""
        interval_ms(self.interval)
        if not self.bars:
            raise ValueError("a series needs at least one symbol")
        for symbol, bars in self.bars.items():
            if not _SYMBOL.fullmatch(symbol):
                raise ValueError(f"bad symbol {symbol!r}: expected 2-20 of A-Z and 0-9")
            if not bars:
                raise ValueError(f"{symbol}: no candles")

    @property
    def symbols(self) -> list[str]:
        """The symbols, in file order."""
        return list(self.bars)


def interval_ms(interval: str) -> int:
    """Return the length of a fixed Binance interval in ms (the replay cannot do calendar months)."""
    try:
        return INTERVALS[interval]
    except KeyError:
        raise ValueError(f"unsupported interval {interval!r}; use one of {', '.join(INTERVALS)}") from None


# --- rows -------------------------------------------------------------------------------------------


def _int(value: object, what: str) -> int:
    """Read a non-negative integer written as digits (CSV) or a JSON integer."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    raise ValueError(f"{what}: expected a non-negative integer, got {value!r:.40}")


def _decimal(value: object, what: str) -> Decimal:
    """Read a price or volume: a string holding a plain decimal number."""
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        raise ValueError(f"{what}: expected a decimal number as a string, got {value!r:.40}")
    return Decimal(value)


def _row(fields: Sequence[object]) -> tuple[int, int, Bar]:
    """Validate one 12-field kline row; return (open time in ms, interval in ms, bar)."""
    if len(fields) != _CSV_COLUMNS:
        raise ValueError(f"expected {_CSV_COLUMNS} fields, got {len(fields)}")
    open_time, close_time = _int(fields[0], "open_time"), _int(fields[6], "close_time")
    unit = 1000 if open_time >= _MICROSECONDS_FROM else 1
    span = close_time - open_time + 1
    if span <= 0 or span % unit or span // unit not in INTERVALS.values():
        raise ValueError(f"close_time {close_time} - open_time {open_time} + 1 is not an interval's length")
    names = ("open", "high", "low", "close", "volume")
    o, h, lo, c, _volume = (_decimal(fields[i + 1], name) for i, name in enumerate(names))
    if min(o, h, lo, c) <= 0:
        raise ValueError("prices must be above zero")
    if h < max(o, c, lo) or lo > min(o, c):
        raise ValueError(
            f"high {fields[2]} and low {fields[3]} do not enclose open {fields[1]} and close {fields[4]}"
        )
    for i, name in ((7, "quote_volume"), (9, "taker_buy_volume"), (10, "taker_buy_quote_volume")):
        _decimal(fields[i], name)
    bar = Bar(
        open=str(fields[1]),
        high=str(fields[2]),
        low=str(fields[3]),
        close=str(fields[4]),
        volume=str(fields[5]),
        quote_volume=str(fields[7]),
        trades=_int(fields[8], "count"),
        taker_buy_volume=str(fields[9]),
        taker_buy_quote_volume=str(fields[10]),
    )
    return open_time // unit, span // unit, bar


class _Collector:
    """Collect the rows of one symbol, checking that they share an interval and move forward in time."""

    def __init__(self, interval: int | None = None) -> None:
        self.interval = interval
        self.last_open: int | None = None
        self.bars: list[Bar] = []

    def add(self, fields: Sequence[object]) -> None:
        open_time, interval, bar = _row(fields)
        if self.interval is None:
            self.interval = interval
        elif interval != self.interval:
            raise ValueError(f"a {_name(interval)} candle in a {_name(self.interval)} series")
        if not is_aligned(_name(interval), open_time):  # (weeks open on Mondays)
            raise ValueError(f"open_time {fields[0]} is not on a {_name(interval)} boundary")
        if self.last_open is not None and open_time <= self.last_open:
            raise ValueError(f"open_time {fields[0]} is not after the previous row's")
        self.last_open = open_time
        self.bars.append(bar)


def _name(interval: int) -> str:
    """The Binance name of an interval length in ms."""
    return next(name for name, ms in INTERVALS.items() if ms == interval)


# --- files --------------------------------------------------------------------------------------------


def parse_csv(text: str, *, symbol: str, interval: str | None = None, source: str = "<csv>") -> Series:
    """Parse a Binance data-dump CSV of one symbol; ``source`` names the file in errors.

    ``interval``, if given, is checked against the rows; otherwise the rows tell it.
    """
    if not _SYMBOL.fullmatch(symbol):
        raise CandleFileError(f"{source}: bad symbol {symbol!r}: expected 2-20 of A-Z and 0-9")
    collector = _Collector(None if interval is None else interval_ms(interval))
    for number, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not fields or (number == 1 and fields[0].strip().lower() == "open_time"):
            continue  # blank line, or the header the newer dumps carry
        try:
            collector.add([field.strip() for field in fields])
        except ValueError as exc:
            raise CandleFileError(f"{source}:{number}: {exc}") from None
    if collector.interval is None or not collector.bars:
        raise CandleFileError(f"{source}: no candles")
    return Series(_name(collector.interval), {symbol: collector.bars})


def parse_json(text: str, *, source: str = "<json>") -> Series:
    """Parse the JSON candle-file form; ``source`` names the file in errors."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CandleFileError(
            f"{source}:{exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno})"
        ) from None
    if not isinstance(document, dict) or set(document) != {"interval", "symbols"}:
        raise CandleFileError(f'{source}: expected an object with exactly "interval" and "symbols"')
    interval, symbols = document["interval"], document["symbols"]
    if not isinstance(interval, str) or interval not in INTERVALS:
        raise CandleFileError(f"{source}: interval: unsupported interval {interval!r:.40}")
    if not isinstance(symbols, dict) or not symbols:
        raise CandleFileError(f"{source}: symbols: expected a non-empty object of symbol: rows")
    bars: dict[str, list[Bar]] = {}
    for symbol, rows in symbols.items():
        if not _SYMBOL.fullmatch(symbol):
            raise CandleFileError(f"{source}: symbols: bad symbol {symbol!r:.40}: expected 2-20 of A-Z, 0-9")
        if not isinstance(rows, list) or not rows:
            raise CandleFileError(f"{source}: symbols.{symbol}: expected a non-empty array of rows")
        collector = _Collector(INTERVALS[interval])
        for i, row in enumerate(rows):
            try:
                if not isinstance(row, list):
                    raise ValueError("expected an array")
                collector.add(row)
            except ValueError as exc:
                raise CandleFileError(f"{source}: symbols.{symbol}[{i}]: {exc}") from None
        bars[symbol] = collector.bars
    return Series(interval, bars)


def _read(path: Path) -> str:
    """Read a candle file's text; a ``.zip`` must hold exactly one ``.csv``."""
    if path.suffix.lower() != ".zip":
        return path.read_text(encoding="utf-8")
    with zipfile.ZipFile(path) as archive:
        members = [name for name in archive.namelist() if name.lower().endswith(".csv")]
        if len(members) != 1:
            raise CandleFileError(f"{path}: expected one .csv inside, found {len(members)}")
        return archive.read(members[0]).decode("utf-8")


def load_files(paths: Iterable[str | Path]) -> Series:
    """Load and merge candle files (CSV, zipped CSV or JSON) into one series.

    All files must have the same interval, and each symbol may come from one file only.
    """
    merged: dict[str, Sequence[Bar]] = {}
    interval: str | None = None
    for raw in paths:
        path = Path(raw)
        try:
            text = _read(path)
        except (OSError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
            raise CandleFileError(f"{path}: cannot read: {exc}") from None
        if path.suffix.lower() == ".json":
            series = parse_json(text, source=str(path))
        else:
            name = _DUMP_NAME.fullmatch(path.name)
            if name is None or name["interval"] not in INTERVALS:
                raise CandleFileError(
                    f"{path}: cannot tell symbol and interval: name it as Binance's dumps, e.g. "
                    "BTCUSDT-1m-2024-01.csv"
                )
            series = parse_csv(
                text, symbol=name["symbol"].upper(), interval=name["interval"], source=str(path)
            )
        if interval is not None and series.interval != interval:
            raise CandleFileError(f"{path}: {series.interval} candles, but the other files have {interval}")
        interval = series.interval
        for symbol, bars in series.bars.items():
            if symbol in merged:
                raise CandleFileError(f"{path}: {symbol} was already loaded from another file")
            merged[symbol] = bars
    if interval is None:
        raise CandleFileError("no candle files given")
    return Series(interval, merged)


def to_document(series: Series, *, first_open: int = 1_704_067_200_000) -> dict[str, object]:
    """Return the series in the JSON candle-file form, stamped from ``first_open`` (2024-01-01 UTC).

    ``json.dumps`` of the result can be read back with :func:`parse_json`.
    """
    step = interval_ms(series.interval)
    return {
        "interval": series.interval,
        "symbols": {
            symbol: [kline_row(bar, first_open + i * step, step) for i, bar in enumerate(bars)]
            for symbol, bars in series.bars.items()
        },
    }


def kline_row(bar: Bar, open_time: int, interval: int) -> list[object]:
    """Return the bar as a ``GET /api/v3/klines`` row opening at ``open_time`` (ms)."""
    return [
        open_time,
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        bar.volume,
        open_time + interval - 1,
        bar.quote_volume,
        bar.trades,
        bar.taker_buy_volume,
        bar.taker_buy_quote_volume,
        "0",
    ]
