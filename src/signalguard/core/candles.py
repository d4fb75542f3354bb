"""Candles: the value type, Binance kline parsers, and a bounded per-stream history.

Binance delivers klines two ways, and both are parsed here without any I/O:

- REST ``GET /api/v3/klines`` returns rows
  ``[open_time, "open", "high", "low", "close", "volume", close_time, ...]`` (prices as strings).
  A row carries neither symbol nor interval (they were request parameters) nor whether the kline
  has closed; the caller passes all three facts in, closedness as ``now_ms``.
- WebSocket kline events, either from a single stream (``{"e": "kline", "s": ..., "k": {...}}``) or
  wrapped by a combined stream (``{"stream": "btcusdt@kline_1m", "data": {...}}``).

The ``parse_*`` functions raise :class:`MarketDataError` — with a stable :class:`ErrorCode` and a
message naming the offending field — and nothing else, whatever they are given. A stream consumer
that must count bad messages and carry on uses :class:`KlineParser` instead, which never raises.

Times are UTC epoch milliseconds. Only UTC klines are supported: Binance's ``timeZone`` option
shifts kline boundaries, and such klines are rejected as misaligned.

Intervals: every Binance interval is supported. All but ``"1M"`` have a fixed length, listed in
:data:`INTERVALS`. ``"1M"`` is a calendar month (open time 00:00 UTC on the 1st), so it has no entry
there; :func:`next_open_time` and :func:`candle_index` handle it with calendar arithmetic.
"""

from __future__ import annotations

import enum
import math
import re
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Final

from signalguard.core import safejson

__all__ = [
    "INTERVALS",
    "MAX_MESSAGE_SIZE",
    "MAX_OPEN_TIME",
    "MONTH",
    "SUPPORTED_INTERVALS",
    "Applied",
    "Candle",
    "CandleHistory",
    "Change",
    "ErrorCode",
    "KlineParser",
    "MarketDataError",
    "candle_index",
    "is_aligned",
    "iso_from_ms",
    "next_open_time",
    "normalize_symbol",
    "parse_rest_kline",
    "parse_rest_klines",
    "parse_ws_kline",
]

_SECOND: Final = 1_000
_MINUTE: Final = 60 * _SECOND
_HOUR: Final = 60 * _MINUTE
_DAY: Final = 24 * _HOUR

INTERVALS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "1s": _SECOND,
        "1m": _MINUTE,
        "3m": 3 * _MINUTE,
        "5m": 5 * _MINUTE,
        "15m": 15 * _MINUTE,
        "30m": 30 * _MINUTE,
        "1h": _HOUR,
        "2h": 2 * _HOUR,
        "4h": 4 * _HOUR,
        "6h": 6 * _HOUR,
        "8h": 8 * _HOUR,
        "12h": 12 * _HOUR,
        "1d": _DAY,
        "3d": 3 * _DAY,
        "1w": 7 * _DAY,
    }
)
"""Fixed-length Binance intervals and their length in milliseconds (everything but ``"1M"``)."""

MONTH: Final = "1M"
"""The calendar-month interval: variable length, handled explicitly."""

SUPPORTED_INTERVALS: Final[frozenset[str]] = frozenset(INTERVALS) | {MONTH}
"""Every interval a :class:`Candle` may have."""

MAX_MESSAGE_SIZE: Final = 64 * 1024
"""Largest raw (str/bytes) message the parsers decode; a kline event is well under 1 KiB."""

_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
# Binance weeks open on Monday 00:00 UTC; the epoch was a Thursday, so weeks are offset by 4 days.
_WEEK_OFFSET: Final = 4 * _DAY
# Latest open time accepted: the start of the last month whose successor `date` can represent.
MAX_OPEN_TIME: Final = (date(9999, 11, 1).toordinal() - _EPOCH_ORDINAL) * _DAY
"""Latest open time (epoch ms) a candle may have: 9999-11-01T00:00:00Z."""

_SYMBOL = re.compile(r"[A-Z0-9]{2,20}")
# A plain decimal as Binance writes it; deliberately narrower than float(), which also accepts
# "nan", "inf", "1_000", surrounding whitespace and non-ASCII digits.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_MAX_DECIMAL_LEN: Final = 64
_MAX_SHOWN: Final = 40


class ErrorCode(enum.StrEnum):
    """Why a market-data message was rejected. The values are stable: count and log them."""

    NOT_JSON = "not_json"  # str/bytes that is not valid JSON (or has NaN, duplicate keys, ...)
    TOO_LARGE = "too_large"  # str/bytes longer than MAX_MESSAGE_SIZE
    NOT_KLINE = "not_kline"  # valid JSON, but another event (e.g. a subscription reply)
    MISSING_FIELD = "missing_field"  # a required field is absent
    WRONG_TYPE = "wrong_type"  # a field has the wrong JSON type
    BAD_NUMBER = "bad_number"  # a price or volume is not a finite decimal number
    BAD_SYMBOL = "bad_symbol"  # the symbol does not match ^[A-Z0-9]{2,20}$ (after upper-casing)
    BAD_INTERVAL = "bad_interval"  # not a Binance kline interval
    BAD_TIME = "bad_time"  # open time negative, too late or misaligned; close time inconsistent
    BAD_PRICES = "bad_prices"  # non-positive prices, or high/low not enclosing open and close
    BAD_VOLUME = "bad_volume"  # negative volume
    MISMATCH = "mismatch"  # parts of one message disagree (stream name, outer and inner symbol)
    BAD_SEQUENCE = "bad_sequence"  # REST rows not in strictly increasing open-time order


class MarketDataError(ValueError):
    """A market-data message was malformed. ``code`` says why; the message says where."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        """Create the error with a stable ``code`` and a human-readable ``message``."""
        super().__init__(message)
        self.code: ErrorCode = code
        self.message: str = message


def _shown(value: object) -> str:
    """Return a short rendering of ``value`` for error messages (payloads can be huge or deep)."""
    if value is None or isinstance(value, bool | float):
        return repr(value)
    if isinstance(value, int):
        # repr() of an integer beyond 4300 digits raises; beyond 18 it is noise anyway.
        return repr(value) if -(10**18) < value < 10**18 else f"<{value.bit_length()}-bit integer>"
    if isinstance(value, str):
        return repr(value) if len(value) <= _MAX_SHOWN else repr(value[:_MAX_SHOWN]) + "..."
    return f"<{_json_type(value)}>"


def _json_type(value: object) -> str:
    """Name the JSON type of a decoded value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


# --- intervals and time -------------------------------------------------------------------------


def _check_interval(interval: object) -> str:
    if not isinstance(interval, str) or interval not in SUPPORTED_INTERVALS:
        raise MarketDataError(
            ErrorCode.BAD_INTERVAL, f"interval: {_shown(interval)} is not a Binance kline interval"
        )
    return interval


def _check_time(open_time: object) -> int:
    if type(open_time) is not int or not 0 <= open_time <= MAX_OPEN_TIME:
        raise MarketDataError(
            ErrorCode.BAD_TIME,
            f"open time: {_shown(open_time)} is not an integer in [0, {MAX_OPEN_TIME}]",
        )
    return open_time


def _month_of(open_time: int) -> tuple[int, int]:
    """Return (year, month) of the UTC day containing ``open_time``."""
    day = date.fromordinal(_EPOCH_ORDINAL + open_time // _DAY)
    return day.year, day.month


def is_aligned(interval: str, open_time: int) -> bool:
    """Tell whether ``open_time`` is a possible Binance open time for ``interval`` (UTC).

    Intervals up to a day are aligned to the epoch, weeks to Mondays, months to the 1st. For
    ``"3d"`` only the day boundary is checked: Binance does not document the phase of its
    three-day grid. Times outside ``[0, MAX_OPEN_TIME]`` are never aligned.
    """
    _check_interval(interval)
    if type(open_time) is not int or not 0 <= open_time <= MAX_OPEN_TIME:
        return False
    if interval == MONTH:
        return open_time % _DAY == 0 and date.fromordinal(_EPOCH_ORDINAL + open_time // _DAY).day == 1
    if interval == "1w":
        return (open_time - _WEEK_OFFSET) % INTERVALS["1w"] == 0
    if interval == "3d":
        return open_time % _DAY == 0
    return open_time % INTERVALS[interval] == 0


def next_open_time(interval: str, open_time: int) -> int:
    """Return the open time of the candle after the one opening at ``open_time``."""
    _check_interval(interval)
    _check_time(open_time)
    if interval == MONTH:
        year, month = _month_of(open_time)
        following = date(year + month // 12, month % 12 + 1, 1)
        return (following.toordinal() - _EPOCH_ORDINAL) * _DAY
    return open_time + INTERVALS[interval]


def candle_index(interval: str, open_time: int) -> int:
    """Return the candle's ordinal number: consecutive candles of ``interval`` differ by exactly 1.

    Differences of indices count candles: gaps, cooldowns and staleness are measured with it.
    """
    _check_interval(interval)
    _check_time(open_time)
    if interval == MONTH:
        year, month = _month_of(open_time)
        return year * 12 + month - 1
    if interval == "1w":
        return (open_time - _WEEK_OFFSET) // INTERVALS["1w"]
    return open_time // INTERVALS[interval]


_UNIX: Final = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp_us(value: object) -> int | None:
    """A JSON timestamp (ISO 8601, as PostgREST prints ``timestamptz``) as epoch microseconds.

    None if ``value`` is not such a string; an offset-less time is read as UTC.
    """
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _UNIX) // timedelta(microseconds=1)


def iso_from_ms(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC text (what PostgREST takes for a ``timestamptz`` argument)."""
    return (_UNIX + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")


def normalize_symbol(symbol: object) -> str:
    """Return ``symbol`` upper-cased, or raise :class:`MarketDataError` if it is not a symbol.

    A symbol is 2 to 20 ASCII letters or digits (``^[A-Z0-9]{2,20}$`` after upper-casing).
    """
    # isascii() first: str.upper() maps some non-ASCII letters to ASCII ("ı" -> "I").
    if isinstance(symbol, str) and symbol.isascii():
        upper = symbol.upper()
        if _SYMBOL.fullmatch(upper):
            return upper
    raise MarketDataError(
        ErrorCode.BAD_SYMBOL, f"symbol: {_shown(symbol)} is not 2-20 ASCII letters or digits"
    )


# --- the candle ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candle:
    """One kline of one symbol and interval. Construction validates every field.

    Prices are positive and finite, ``low <= min(open, close)`` and ``high >= max(open, close)``,
    volume is finite and non-negative, and ``open_time`` is an aligned epoch-millisecond time in
    ``[0, MAX_OPEN_TIME]``. ``closed`` is False while the kline is still forming.
    """

    symbol: str
    interval: str
    open_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    closed: bool

    def __post_init__(self) -> None:
        """Reject impossible candles with :class:`MarketDataError`."""
        if not isinstance(self.symbol, str) or not _SYMBOL.fullmatch(self.symbol):
            raise MarketDataError(
                ErrorCode.BAD_SYMBOL,
                f"candle: symbol {_shown(self.symbol)} is not 2-20 upper-case ASCII letters/digits",
            )
        if not isinstance(self.interval, str) or self.interval not in SUPPORTED_INTERVALS:
            raise MarketDataError(
                ErrorCode.BAD_INTERVAL,
                f"candle: interval {_shown(self.interval)} is not a Binance kline interval",
            )
        t = self.open_time
        if type(t) is not int or not 0 <= t <= MAX_OPEN_TIME:
            raise MarketDataError(
                ErrorCode.BAD_TIME,
                f"candle: open time {_shown(t)} is not an integer in [0, {MAX_OPEN_TIME}]",
            )
        if not is_aligned(self.interval, t):
            raise MarketDataError(
                ErrorCode.BAD_TIME,
                f"candle: open time {t} is not aligned to a {self.interval} boundary (UTC)",
            )
        o, h, lo, c, v = self.open, self.high, self.low, self.close, self.volume
        for name, x in (("open", o), ("high", h), ("low", lo), ("close", c), ("volume", v)):
            if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
                raise MarketDataError(
                    ErrorCode.BAD_NUMBER, f"candle: {name} {_shown(x)} is not a finite number"
                )
        if lo <= 0.0:
            raise MarketDataError(ErrorCode.BAD_PRICES, f"candle: low {lo!r} is not positive")
        if h < max(o, c):
            raise MarketDataError(
                ErrorCode.BAD_PRICES, f"candle: high {h!r} is below max(open, close) {max(o, c)!r}"
            )
        if lo > min(o, c):
            raise MarketDataError(
                ErrorCode.BAD_PRICES, f"candle: low {lo!r} is above min(open, close) {min(o, c)!r}"
            )
        if v < 0.0:
            raise MarketDataError(ErrorCode.BAD_VOLUME, f"candle: volume {v!r} is negative")
        if not isinstance(self.closed, bool):
            raise MarketDataError(
                ErrorCode.WRONG_TYPE, f"candle: closed {_shown(self.closed)} is not a boolean"
            )

    @property
    def close_time(self) -> int:
        """Last millisecond of the candle (Binance's "close time")."""
        return next_open_time(self.interval, self.open_time) - 1


# --- field readers ------------------------------------------------------------------------------


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key in object")
    return result


def _decode(message: object) -> object:
    """Decode str/bytes JSON; pass anything else through (it was decoded already)."""
    if isinstance(message, str | bytes | bytearray):
        if len(message) > MAX_MESSAGE_SIZE:
            raise MarketDataError(
                ErrorCode.TOO_LARGE,
                f"message: {len(message)} characters, more than {MAX_MESSAGE_SIZE}",
            )
        try:
            return safejson.loads(message, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
        except (ValueError, RecursionError) as exc:
            # JSONDecodeError and UnicodeDecodeError are ValueErrors; deep nesting recurses.
            raise MarketDataError(ErrorCode.NOT_JSON, f"message: not valid JSON ({str(exc)[:200]})") from None
    return message


def _field(obj: Mapping[str, object], key: str, where: str) -> object:
    try:
        return obj[key]
    except KeyError:
        raise MarketDataError(ErrorCode.MISSING_FIELD, f"{where}: missing") from None


def _object(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise MarketDataError(ErrorCode.WRONG_TYPE, f"{where}: expected an object, got {_json_type(value)}")
    return value


def _int(value: object, where: str) -> int:
    if type(value) is not int:
        raise MarketDataError(ErrorCode.WRONG_TYPE, f"{where}: expected an integer, got {_shown(value)}")
    return value


def _decimal(value: object, where: str) -> float:
    """Read a price or volume: a decimal string (as Binance sends) or a JSON number."""
    if isinstance(value, str):
        if len(value) > _MAX_DECIMAL_LEN or not _DECIMAL.fullmatch(value):
            raise MarketDataError(ErrorCode.BAD_NUMBER, f"{where}: {_shown(value)} is not a decimal number")
        number = float(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            raise MarketDataError(ErrorCode.BAD_NUMBER, f"{where}: {_shown(value)} is out of range") from None
    else:
        raise MarketDataError(
            ErrorCode.WRONG_TYPE, f"{where}: expected a decimal string, got {_json_type(value)}"
        )
    if not math.isfinite(number):
        raise MarketDataError(ErrorCode.BAD_NUMBER, f"{where}: {_shown(value)} is not finite")
    return number


def _open_time(value: object, interval: str, where: str) -> int:
    t = _int(value, where)
    if not 0 <= t <= MAX_OPEN_TIME:
        raise MarketDataError(ErrorCode.BAD_TIME, f"{where}: {_shown(t)} is outside [0, {MAX_OPEN_TIME}]")
    if not is_aligned(interval, t):
        raise MarketDataError(
            ErrorCode.BAD_TIME, f"{where}: {t} is not aligned to a {interval} boundary (UTC)"
        )
    return t


def _check_close_time(value: object, interval: str, open_time: int, where: str) -> int:
    close_time = _int(value, where)
    expected = next_open_time(interval, open_time) - 1
    if close_time != expected:
        raise MarketDataError(
            ErrorCode.BAD_TIME,
            f"{where}: {_shown(close_time)} does not close the {interval} kline opened at {open_time} "
            f"(expected {expected})",
        )
    return close_time


def _candle(
    symbol: str,
    interval: str,
    open_time: int,
    prices: tuple[float, float, float, float, float],
    closed: bool,
    where: str,
) -> Candle:
    try:
        return Candle(symbol, interval, open_time, *prices, closed)
    except MarketDataError as exc:
        # Candle names the field ("candle: high ..."); say which message it came from.
        raise MarketDataError(exc.code, f"{where}: {exc.message.removeprefix('candle: ')}") from None


# --- REST ---------------------------------------------------------------------------------------

_REST_FIELDS: Final = ((1, "open"), (2, "high"), (3, "low"), (4, "close"), (5, "volume"))


def _parse_row(row: object, symbol: str, interval: str, now_ms: int, where: str) -> Candle:
    if not isinstance(row, list | tuple):
        raise MarketDataError(ErrorCode.WRONG_TYPE, f"{where}: expected an array, got {_json_type(row)}")
    if len(row) < 7:
        # Binance sends 12 fields; only the first 7 are used, so later additions are harmless.
        raise MarketDataError(ErrorCode.MISSING_FIELD, f"{where}: {len(row)} fields, expected at least 7")
    open_time = _open_time(row[0], interval, f"{where}[0] (open time)")
    close_time = _check_close_time(row[6], interval, open_time, f"{where}[6] (close time)")
    o, h, lo, c, v = (_decimal(row[i], f"{where}[{i}] ({name})") for i, name in _REST_FIELDS)
    return _candle(symbol, interval, open_time, (o, h, lo, c, v), now_ms > close_time, where)


def _check_now(now_ms: object) -> int:
    if type(now_ms) is not int:
        raise TypeError(f"now_ms must be an int (epoch milliseconds), got {now_ms!r}")
    return now_ms


def parse_rest_kline(row: object, *, symbol: str, interval: str, now_ms: int) -> Candle:
    """Parse one row of ``GET /api/v3/klines`` into a :class:`Candle`.

    ``symbol`` and ``interval`` are the request's parameters (``symbol`` is normalised). The kline
    counts as closed when ``now_ms`` (the caller's clock, ideally synchronised with Binance's) is
    past its close time. Raises :class:`MarketDataError` for a malformed row or a bad
    ``symbol``/``interval``; ``TypeError`` if ``now_ms`` is not an int (a programming error).
    """
    now = _check_now(now_ms)
    return _parse_row(row, normalize_symbol(symbol), _check_interval(interval), now, "row")


def parse_rest_klines(rows: object, *, symbol: str, interval: str, now_ms: int) -> list[Candle]:
    """Parse a whole ``GET /api/v3/klines`` response (already decoded, or as str/bytes JSON).

    Rows must have strictly increasing open times (:attr:`ErrorCode.BAD_SEQUENCE`); gaps are
    allowed (Binance has them after outages) and show up in :class:`CandleHistory`. Only the last
    row can be unclosed. Raises :class:`MarketDataError` at the first bad row.
    """
    now = _check_now(now_ms)
    sym = normalize_symbol(symbol)
    ivl = _check_interval(interval)
    decoded = _decode(rows)
    if not isinstance(decoded, list | tuple):
        raise MarketDataError(ErrorCode.WRONG_TYPE, f"rows: expected an array, got {_json_type(decoded)}")
    candles: list[Candle] = []
    for i, row in enumerate(decoded):
        candle = _parse_row(row, sym, ivl, now, f"rows[{i}]")
        if candles and candle.open_time <= candles[-1].open_time:
            raise MarketDataError(
                ErrorCode.BAD_SEQUENCE,
                f"rows[{i}][0] (open time): {candle.open_time} is not after the previous row's "
                f"{candles[-1].open_time}",
            )
        candles.append(candle)
    return candles


# --- WebSocket ----------------------------------------------------------------------------------

_WS_FIELDS: Final = (("o", "open"), ("h", "high"), ("l", "low"), ("c", "close"), ("v", "volume"))


def _parse_event(event: Mapping[str, object], where: str) -> Candle:
    kind = event.get("e")
    if kind != "kline":
        shown = "no event type" if kind is None else f"event type {_shown(kind)}"
        raise MarketDataError(ErrorCode.NOT_KLINE, f"{where}e: not a kline event ({shown})")
    symbol = _symbol_at(_field(event, "s", f"{where}s"), f"{where}s")
    k = _object(_field(event, "k", f"{where}k"), f"{where}k")
    inner = _symbol_at(_field(k, "s", f"{where}k.s"), f"{where}k.s")
    if inner != symbol:
        raise MarketDataError(
            ErrorCode.MISMATCH, f"{where}k.s: {inner!r} differs from the event symbol {symbol!r}"
        )
    interval_value = _field(k, "i", f"{where}k.i")
    if not isinstance(interval_value, str) or interval_value not in SUPPORTED_INTERVALS:
        raise MarketDataError(
            ErrorCode.BAD_INTERVAL,
            f"{where}k.i: {_shown(interval_value)} is not a Binance kline interval",
        )
    interval = interval_value
    open_time = _open_time(_field(k, "t", f"{where}k.t"), interval, f"{where}k.t (open time)")
    _check_close_time(_field(k, "T", f"{where}k.T"), interval, open_time, f"{where}k.T (close time)")
    o, h, lo, c, v = (
        _decimal(_field(k, key, f"{where}k.{key}"), f"{where}k.{key} ({name})") for key, name in _WS_FIELDS
    )
    closed = _field(k, "x", f"{where}k.x")
    if not isinstance(closed, bool):
        raise MarketDataError(ErrorCode.WRONG_TYPE, f"{where}k.x: expected a boolean, got {_shown(closed)}")
    return _candle(symbol, interval, open_time, (o, h, lo, c, v), closed, f"{where}k")


def _symbol_at(symbol: object, where: str) -> str:
    """Normalise a symbol like :func:`normalize_symbol`, naming the field ``where`` on error."""
    try:
        return normalize_symbol(symbol)
    except MarketDataError as exc:
        raise MarketDataError(exc.code, f"{where}: {exc.message.removeprefix('symbol: ')}") from None


def parse_ws_kline(message: object) -> Candle:
    """Parse a WebSocket kline event (single or combined stream) into a :class:`Candle`.

    ``message`` is the frame as received (str or bytes JSON) or already decoded. Fields other than
    the ones a candle needs are ignored, so Binance may add fields. For a combined stream the
    stream name must be ``<lower-case symbol>@kline_<interval>`` of the wrapped event.
    Raises :class:`MarketDataError` and nothing else.
    """
    obj = _object(_decode(message), "message")
    if "stream" not in obj and "data" not in obj:
        return _parse_event(obj, "")
    stream = _field(obj, "stream", "stream")
    if not isinstance(stream, str):
        raise MarketDataError(ErrorCode.WRONG_TYPE, f"stream: expected a string, got {_json_type(stream)}")
    candle = _parse_event(_object(_field(obj, "data", "data"), "data"), "data.")
    expected = f"{candle.symbol.lower()}@kline_{candle.interval}"
    if stream != expected:
        raise MarketDataError(
            ErrorCode.MISMATCH,
            f"stream: {_shown(stream)} does not match its data (expected {expected!r})",
        )
    return candle


class KlineParser:
    """Parse a stream of kline messages, counting instead of raising.

    ``parse`` returns a :class:`Candle`, or None for a rejected message; the rejection is counted in
    ``rejected`` and ``rejected_by_code`` and kept as ``last_error`` for logging. Nothing a peer can
    send makes it raise.
    """

    __slots__ = ("accepted", "last_error", "rejected", "rejected_by_code")

    def __init__(self) -> None:
        """Create a parser with zeroed counters."""
        self.accepted: int = 0
        """Messages parsed into a candle."""
        self.rejected: int = 0
        """Messages rejected."""
        self.rejected_by_code: dict[ErrorCode, int] = {}
        """Rejections per :class:`ErrorCode` (codes never seen are absent)."""
        self.last_error: MarketDataError | None = None
        """The most recent rejection."""

    def _reject(self, error: MarketDataError) -> None:
        self.rejected += 1
        self.rejected_by_code[error.code] = self.rejected_by_code.get(error.code, 0) + 1
        self.last_error = error

    def parse(self, message: object) -> Candle | None:
        """Parse a WebSocket kline message; return None (and count why) if it is malformed."""
        try:
            candle = parse_ws_kline(message)
        except MarketDataError as exc:
            self._reject(exc)
            return None
        self.accepted += 1
        return candle

    def parse_rest(self, row: object, *, symbol: str, interval: str, now_ms: int) -> Candle | None:
        """Parse one REST kline row; return None (and count why) if it is malformed."""
        try:
            candle = parse_rest_kline(row, symbol=symbol, interval=interval, now_ms=now_ms)
        except MarketDataError as exc:
            self._reject(exc)
            return None
        self.accepted += 1
        return candle


# --- history ------------------------------------------------------------------------------------


class Change(enum.Enum):
    """What :meth:`CandleHistory.apply` did with a candle."""

    OPENED = "opened"  # unclosed candle for a new open time: it is now the live candle
    UPDATED = "updated"  # newer snapshot of the live candle: replaced in place
    CLOSED = "closed"  # closed candle directly after the previous one: appended
    GAP = "gap"  # closed candle appended, but candles are missing before it (see Applied.missing)
    DUPLICATE = "duplicate"  # the newest closed candle again (REST/stream overlap): ignored
    STALE = "stale"  # older than the newest closed candle, or an older live snapshot: ignored


@dataclass(frozen=True, slots=True)
class Applied:
    """Outcome of :meth:`CandleHistory.apply`."""

    change: Change
    missing: int = 0
    """For ``GAP``: how many closed candles are missing before the appended one."""
    first_missing: int | None = None
    """For ``GAP``: open time of the first missing candle (re-fetch from there by REST)."""

    @property
    def accepted(self) -> bool:
        """Whether the candle changed the history (it was not a duplicate or stale)."""
        return self.change not in (Change.DUPLICATE, Change.STALE)


_OPENED: Final = Applied(Change.OPENED)
_UPDATED: Final = Applied(Change.UPDATED)
_CLOSED: Final = Applied(Change.CLOSED)
_DUPLICATE: Final = Applied(Change.DUPLICATE)
_STALE: Final = Applied(Change.STALE)


class CandleHistory:
    """The last ``maxlen`` closed candles of one (symbol, interval), plus the live candle.

    Feed every candle of the stream — closed or not — to :meth:`apply`, in arrival order:

    - an unclosed candle opens or replaces the *live* candle (only the newest snapshot is kept);
    - a closed candle with the live candle's open time finalises it; any closed candle newer than
      the newest closed one is appended, and the oldest is dropped beyond ``maxlen``;
    - a closed candle at the newest closed open time is a ``DUPLICATE``, an older one or an
      outdated live snapshot is ``STALE``: both are ignored and reported, never raised;
    - a closed candle that skips open times is appended and reported as a ``GAP`` with the number
      of missing candles; indicators fed across a gap are no longer comparable to TA-Lib on the
      complete series, so the usual response is to re-fetch and rebuild.
    """

    __slots__ = ("_closed", "interval", "live", "maxlen", "symbol")

    def __init__(self, symbol: str, interval: str, maxlen: int = 1000) -> None:
        """Create an empty history (``maxlen`` ≥ 1 closed candles are kept)."""
        self.symbol: str = normalize_symbol(symbol)
        self.interval: str = _check_interval(interval)
        if type(maxlen) is not int or maxlen < 1:
            raise ValueError(f"maxlen must be a positive integer, got {maxlen!r}")
        self.maxlen: int = maxlen
        self.live: Candle | None = None
        """The newest unclosed candle, if one is forming."""
        self._closed: deque[Candle] = deque(maxlen=maxlen)

    def __len__(self) -> int:
        """Return the number of closed candles held."""
        return len(self._closed)

    def __iter__(self) -> Iterator[Candle]:
        """Iterate over the closed candles, oldest first."""
        return iter(self._closed)

    @property
    def last_closed(self) -> Candle | None:
        """The newest closed candle, if any."""
        return self._closed[-1] if self._closed else None

    def closed(self) -> list[Candle]:
        """Return a copy of the closed candles, oldest first."""
        return list(self._closed)

    def apply(self, candle: Candle) -> Applied:
        """Record ``candle`` and report what changed (see the class documentation).

        Raises ``ValueError`` if the candle belongs to another symbol or interval (a routing bug).
        """
        if candle.symbol != self.symbol or candle.interval != self.interval:
            raise ValueError(
                f"candle for {candle.symbol} {candle.interval} applied to the history of "
                f"{self.symbol} {self.interval}"
            )
        last = self._closed[-1] if self._closed else None
        t = candle.open_time
        if not candle.closed:
            if last is not None and t <= last.open_time:
                return _STALE
            live = self.live
            if live is not None and t <= live.open_time:
                if t < live.open_time:
                    return _STALE
                self.live = candle
                return _UPDATED
            self.live = candle
            return _OPENED
        if last is not None and t <= last.open_time:
            return _DUPLICATE if t == last.open_time else _STALE
        if self.live is not None and self.live.open_time <= t:
            # Finalised, or superseded by a newer closed candle (its own close was lost).
            self.live = None
        self._closed.append(candle)
        if last is None:
            return _CLOSED
        expected = next_open_time(self.interval, last.open_time)
        if t == expected:
            return _CLOSED
        missing = candle_index(self.interval, t) - candle_index(self.interval, last.open_time) - 1
        return Applied(Change.GAP, missing=missing, first_missing=expected)
