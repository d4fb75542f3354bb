"""The exchange's symbols, read and ranked for a symbol picker (pure: no I/O, the same on both hosts).

- :class:`SymbolInfo`: one symbol of Binance's ``GET /api/v3/exchangeInfo``, as the app needs it;
- :func:`parse_exchange_symbols`: the decoded answer to a sorted tuple of them (the request itself is
  :func:`signalguard.market.klines.exchange_symbols`);
- :func:`search_symbols`: the symbols matching what the user typed, best first;
- :func:`split_symbol` and :data:`QUOTE_ASSETS`: a symbol's base and quote asset when only its name is
  known (the replay's answer, the test doubles), and the order quote assets are shown in.

Only symbols the app can trade on are kept: the trader definitions' rule, ``^[A-Z0-9]{2,20}$``
(:func:`~signalguard.core.candles.normalize_symbol`). Binance lists a few others (names in other
scripts); a picker offering them would offer a trader that cannot be saved.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MAX_QUERY",
    "QUOTE_ASSETS",
    "TRADING",
    "SymbolInfo",
    "SymbolListError",
    "normalize_query",
    "parse_exchange_symbols",
    "price_precision",
    "quote_rank",
    "search_symbols",
    "split_symbol",
]

#: Binance's status of a symbol that trades now (the others: ``HALT``, ``BREAK``, ``PRE_TRADING``...).
TRADING: Final = "TRADING"

#: Quote assets Binance spot lists (or listed) symbols in, in the order a picker shows them: the
#: dollar stablecoins first (USDT has by far the most pairs and volume), then the crypto quotes, then
#: fiat and the rest. :func:`split_symbol` matches them as suffixes, longest first; a symbol that ends
#: in none of them has no known quote (it is shown last). This list is a heuristic for the replay and
#: the doubles only: an exchange's own answer names each symbol's base and quote asset.
QUOTE_ASSETS: Final[tuple[str, ...]] = (
    "USDT",
    "FDUSD",
    "USDC",
    "TUSD",
    "BUSD",
    "USDP",
    "DAI",
    "BTC",
    "ETH",
    "BNB",
    "XRP",
    "TRX",
    "DOGE",
    "DOT",
    "TRY",
    "EUR",
    "BRL",
    "JPY",
    "GBP",
    "AUD",
    "ARS",
    "MXN",
    "COP",
    "ZAR",
    "PLN",
    "RON",
    "UAH",
    "NGN",
    "RUB",
    "IDRT",
    "BIDR",
    "AEUR",
    "EURI",
    "UST",
    "VAI",
    "PAX",
)

#: Longest first, so that ``BTCTUSD`` is BTC/TUSD and ``ETHFDUSD`` ETH/FDUSD whatever the list order.
_BY_LENGTH: Final = tuple(sorted(QUOTE_ASSETS, key=len, reverse=True))
_QUOTE_RANK: Final[Mapping[str, int]] = {quote: rank for rank, quote in enumerate(QUOTE_ASSETS)}

#: The trader definitions' symbols (core.candles.normalize_symbol), already upper case.
_SYMBOL: Final = re.compile(r"[A-Z0-9]{2,20}")
#: An asset or status name: Binance's are short upper-case words; anything longer is not one.
_MAX_NAME: Final = 20
#: A tick size as Binance writes it ("0.01000000"): a plain decimal, no sign or exponent.
_TICK: Final = re.compile(r"([0-9]{1,20})(?:\.([0-9]{1,20}))?")
#: Characters of a query looked at: a symbol has 20 at most, separators and spaces add a few.
MAX_QUERY: Final = 64


class SymbolListError(ValueError):
    """An exchangeInfo answer that is not one: the wrong shape, or not one symbol readable."""


@dataclass(frozen=True, slots=True)
class SymbolInfo:
    """One symbol the exchange lists.

    ``base`` and ``quote`` are the exchange's asset names (``BTC``, ``USDT``; ``quote`` is empty when
    not known). ``price_precision`` is the number of decimals its prices move in, from the symbol's
    ``PRICE_FILTER`` ``tickSize`` (``"0.01000000"``: 2), or None when the exchange gives none.
    Binance's ``quotePrecision`` is not it: that is the quote *asset's* precision, 8 on nearly every
    symbol, and would print BTCUSDT with 8 decimals.
    """

    symbol: str
    base: str
    quote: str
    status: str
    price_precision: int | None = None

    @property
    def trading(self) -> bool:
        """Whether the symbol trades now (``status`` is ``TRADING``)."""
        return self.status == TRADING


def split_symbol(symbol: str) -> tuple[str, str]:
    """``(base, quote)`` of ``symbol`` by the longest :data:`QUOTE_ASSETS` suffix that leaves a base.

    ``BTCUSDT`` → ``("BTC", "USDT")``, ``TUSDT`` → ``("T", "USDT")``; ``(symbol, "")`` when it ends in
    no known quote. A heuristic (a base ending in a quote's letters splits wrongly): use it only where
    the exchange's own answer is not at hand.
    """
    for quote in _BY_LENGTH:
        if len(symbol) > len(quote) and symbol.endswith(quote):
            return symbol[: -len(quote)], quote
    return symbol, ""


def quote_rank(quote: str) -> int:
    """Where ``quote`` comes in :data:`QUOTE_ASSETS` (unknown quotes after every known one)."""
    return _QUOTE_RANK.get(quote, len(QUOTE_ASSETS))


# --- reading exchangeInfo -----------------------------------------------------------------------------


def _name(value: object) -> str | None:
    return value if isinstance(value, str) and len(value) <= _MAX_NAME else None


def price_precision(filters: object) -> int | None:
    """Decimals of the ``tickSize`` of the first ``PRICE_FILTER`` in ``filters``; None if there is none.

    Binance writes ``"0.01000000"`` (2) and ``"1.00000000"`` (0); a tick of zero means the filter is
    off, so the precision is unknown, as it is for anything that is not a plain decimal.
    """
    if not isinstance(filters, list):
        return None
    for item in filters:
        if isinstance(item, dict) and item.get("filterType") == "PRICE_FILTER":
            tick = item.get("tickSize")
            match = _TICK.fullmatch(tick) if isinstance(tick, str) else None
            if match is None:
                return None
            whole, fraction = match.group(1), (match.group(2) or "").rstrip("0")
            if whole.strip("0") == "" and fraction == "":
                return None  # zero
            return len(fraction)
    return None


def _symbol(entry: object) -> SymbolInfo | None:
    """One entry of ``symbols``, or None if it is not one the app can use."""
    if not isinstance(entry, dict):
        return None
    symbol = entry.get("symbol")
    if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol):
        return None
    base, quote, status = (
        _name(entry.get("baseAsset")),
        _name(entry.get("quoteAsset")),
        _name(entry.get("status")),
    )
    if base is None or quote is None or status is None:
        return None
    return SymbolInfo(symbol, base, quote, status, price_precision(entry.get("filters")))


def parse_exchange_symbols(answer: object, *, trading_only: bool = True) -> tuple[SymbolInfo, ...]:
    """The symbols of a decoded ``GET /api/v3/exchangeInfo`` answer, sorted by symbol.

    Only ``TRADING`` ones with ``trading_only``. An entry the app cannot use (not an object, a symbol
    outside ``^[A-Z0-9]{2,20}$``, an asset or status that is not a short string) is left out, so one
    odd listing does not empty the picker; a symbol listed twice is kept once (the first). Raises
    :class:`SymbolListError` when ``answer`` is not an object with a ``symbols`` array, or when it
    lists symbols and none is readable.
    """
    if not isinstance(answer, dict):
        raise SymbolListError(f"expected an object with a symbols array, got {_json_type(answer)}")
    entries = answer.get("symbols")
    if not isinstance(entries, list):
        raise SymbolListError(f"expected a symbols array, got {_json_type(entries)}")
    found: dict[str, SymbolInfo] = {}
    readable = 0
    for entry in entries:
        info = _symbol(entry)
        if info is None:
            continue
        readable += 1
        if (not trading_only or info.trading) and info.symbol not in found:
            found[info.symbol] = info
    if entries and not readable:
        raise SymbolListError(f"no symbol listed is readable ({len(entries)} listed)")
    return tuple(found[symbol] for symbol in sorted(found))


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


# --- searching ----------------------------------------------------------------------------------------


def normalize_query(query: str) -> str:
    """What the user typed, as a symbol fragment: upper case, ASCII letters and digits only.

    ``" btc/usdt "``, ``"BTC-USDT"`` and the full-width ``"ＢＴＣ"`` an East Asian keyboard types
    become ``"BTCUSDT"`` and ``"BTC"``. Only the first :data:`MAX_QUERY` characters are read.
    """
    out: list[str] = []
    for char in query[:MAX_QUERY]:
        code = ord(char)
        if 0xFF01 <= code <= 0xFF5E:  # full-width ASCII (no unicodedata: the page imports it slowly)
            char = chr(code - 0xFEE0)
        if char.isascii() and char.isalnum():
            out.append(char.upper())
    return "".join(out)


def _tier(info: SymbolInfo, query: str) -> int | None:
    """How well ``info`` matches a normalised, non-empty ``query`` (lower is better), None if not."""
    if info.symbol == query:
        return 0  # the symbol itself: "BTCUSDT", "btc/usdt"
    if info.base == query:
        return 1  # the coin itself: "ETH" finds ETHUSDT, ETHBTC... before ETHFIUSDT
    if info.symbol.startswith(query):
        return 2  # "ET", "ETHF", "BTCUS"
    if info.base.startswith(query):
        return 3  # for an exchange whose symbol does not start with its base asset
    if query in info.symbol:
        return 4  # "USDT", "WBTC" inside "WBTCUSDT"
    return None


def search_symbols(symbols: Iterable[SymbolInfo], query: str, limit: int = 50) -> tuple[SymbolInfo, ...]:
    """The ``limit`` symbols that match ``query`` best, best first (case and separators ignored).

    Ranked by: the symbol itself, then the pairs of that base asset, then symbols starting with the
    query, then base assets starting with it, then symbols containing it; within each, by quote asset
    (:data:`QUOTE_ASSETS` order, USDT first), then shorter symbols, then alphabetically. An empty
    query (or one with no letter or digit) gives the first ``limit`` symbols in that quote order.
    """
    if limit <= 0:
        return ()
    needle = normalize_query(query)
    ranked: list[tuple[int, int, int, str, SymbolInfo]] = []
    for info in symbols:
        tier = _tier(info, needle) if needle else 0
        if tier is not None:
            ranked.append((tier, quote_rank(info.quote), len(info.symbol), info.symbol, info))
    ranked.sort(key=lambda row: row[:4])
    return tuple(row[4] for row in ranked[:limit])
