"""Alerts for new signals: a browser notification, a chime, a count in the tab title.

Each trader has its own choice of channels (:class:`Channel`), kept per browser in its preferences
(``localStorage``): a notification or a sound is a property of the device a trader sits at, not of the
account, and the permission to notify is the browser's anyway.

What is new
    A signal is new to the page when the database stored it after the page first looked
    (:class:`AlertFeed`). The first read only primes: what was stored before the page opened, and
    everything a list loads as history, never alerts. Reads go by the database's ``created_at`` with
    an overlap (:data:`OVERLAP_MS`), because a transaction that began earlier may commit a row with an
    older ``created_at`` after a later one was read; the keys seen in the overlap are remembered, so the
    overlap never alerts twice. Signals of both sources alert: the cloud's and this browser's, the
    caught-up ones too (they were not seen either).

Once per signal across tabs
    Every tab reads, but only the tab holding the browser's tab lock (the one that would generate)
    notifies and chimes. Keys it alerted go into a small shared ledger (:class:`Ledger`), and a tab
    that is not the holder keeps what it saw for a while (:data:`WAIT_MS`): if the holder closes before
    it alerted them, the next holder does, and whatever the old holder did alert is in the ledger and
    not repeated. The title count is this tab's own: what arrived while the tab was not being looked at.

Nothing here touches the page: :class:`~signalguard.browser.ports.Attention` does, and
:class:`~signalguard.browser.ports.Preferences` keeps the choices.
"""

from __future__ import annotations

import enum
import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from signalguard.browser.formats import Formats
from signalguard.browser.ports import Attention, Permission, Preferences

__all__ = [
    "ALERT_COLUMNS",
    "DEFAULT_CHANNELS",
    "Alert",
    "AlertCenter",
    "AlertFeed",
    "Arrival",
    "Attention",
    "Channel",
    "Ledger",
    "Permission",
    "Preferences",
    "arrivals",
    "compose",
    "dump_channels",
    "parse_channels",
]


class Channel(enum.Enum):
    """A way a new signal gets the user's attention."""

    #: A browser notification (the Notification API; permission is asked from a click, never on load).
    NOTIFY = "notify"
    #: A short chime played by the page.
    SOUND = "sound"
    #: The tab's title counts the signals that arrived while the tab was not looked at.
    COUNT = "count"


#: What a trader alerts with until the user chooses: the title count only (it needs no permission and
#: makes no noise).
DEFAULT_CHANNELS: Final = frozenset({Channel.COUNT})
#: The columns an alert read asks for.
ALERT_COLUMNS: Final = (
    "signal_key,trader_id,symbol,interval,price,source,candle_open_time,matched_conditions,created_at"
)
#: Rows per read; a backlog larger than this is read over the next reads (the cursor moves on).
ALERT_READ_LIMIT: Final = 100
#: Each read goes back this far before the newest ``created_at`` seen (rows commit out of order).
OVERLAP_MS: Final = 60_000
#: A tab that is not the alerting one keeps what it saw this long, for a takeover before it was alerted.
WAIT_MS: Final = 120_000
#: Keys in the shared ledger (the newest are kept).
LEDGER_SIZE: Final = 500
#: More new signals than this in one read make one notification that counts them.
GROUP_OVER: Final = 3
#: Key of the shared ledger in the browser's preferences.
LEDGER_KEY: Final = "signalguard:alerted"


def channels_key(user_id: str) -> str:
    """Key of a user's per-trader channels in the browser's preferences."""
    return f"signalguard:alerts:{user_id}"


def parse_channels(text: str | None) -> tuple[dict[str, frozenset[Channel]], str | None]:
    """A user's stored choices by trader id, and a problem if the stored text was unreadable.

    Unknown channels are dropped (a newer page may know more); anything malformed gives no choices
    and says so, so the defaults apply and the user is told rather than the page failing.
    """
    if text is None:
        return {}, None
    try:
        raw = json.loads(text)
    except ValueError:
        return {}, "the stored alert choices were unreadable and were reset"
    if not isinstance(raw, dict):
        return {}, "the stored alert choices were unreadable and were reset"
    known = {c.value: c for c in Channel}
    out: dict[str, frozenset[Channel]] = {}
    for trader_id, names in raw.items():
        if isinstance(names, list):
            out[str(trader_id)] = frozenset(known[n] for n in names if isinstance(n, str) and n in known)
    return out, None


def dump_channels(choices: Mapping[str, frozenset[Channel]]) -> str:
    """The text :func:`parse_channels` reads (sorted, so equal choices store equal text)."""
    return json.dumps(
        {tid: sorted(c.value for c in chosen) for tid, chosen in sorted(choices.items())},
        separators=(",", ":"),
    )


@dataclass(frozen=True, slots=True)
class Arrival:
    """A stored signal as an alert needs it."""

    key: str
    trader_id: str
    symbol: str
    interval: str
    price: str
    source: str
    #: The candle's open time (ISO text, as stored).
    candle: str
    #: When the database stored it, epoch milliseconds.
    stored_ms: int
    #: What triggered it: the matched conditions with their figures (``RSI(14) 27.4 < 30``).
    conditions: tuple[str, ...] = ()


def _ms(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def arrivals(rows: object) -> list[Arrival]:
    """The rows of an alert read; a row without a key or a readable ``created_at`` is skipped."""
    out: list[Arrival] = []
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        key, stored = row.get("signal_key"), _ms(row.get("created_at"))
        if not isinstance(key, str) or not key or stored is None:
            continue
        out.append(
            Arrival(
                key=key,
                trader_id=str(row.get("trader_id") or "").lower(),
                symbol=str(row.get("symbol") or ""),
                interval=str(row.get("interval") or ""),
                price=str(row.get("price") if row.get("price") is not None else ""),
                source=str(row.get("source") or ""),
                candle=str(row.get("candle_open_time") or ""),
                stored_ms=stored,
                conditions=tuple(str(c) for c in labels)
                if isinstance(labels := row.get("matched_conditions"), list)
                else (),
            )
        )
    return out


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as the ISO text PostgREST compares ``created_at`` with."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


class AlertFeed:
    """Which stored signals are new to this page (see the module documentation)."""

    def __init__(self) -> None:
        """Not primed: the first :meth:`observe` only learns what is already there."""
        self._primed = False
        #: The newest ``created_at`` read, epoch ms.
        self._cursor: int | None = None
        #: Keys read within the overlap, by when they were stored.
        self._seen: dict[str, int] = {}

    @property
    def primed(self) -> bool:
        """Whether the first read has been observed."""
        return self._primed

    def after(self) -> str | None:
        """Read the rows stored after this (ISO text); None: the priming read (the newest rows)."""
        if self._cursor is None:
            return None
        return iso_ms(self._cursor - OVERLAP_MS)

    def observe(self, rows: Iterable[Arrival]) -> list[Arrival]:
        """The rows of a read that are new, oldest first (none on the priming read)."""
        new: list[Arrival] = []
        for row in sorted(rows, key=lambda a: (a.stored_ms, a.key)):
            if row.key in self._seen:
                continue
            self._seen[row.key] = row.stored_ms
            if self._primed:
                new.append(row)
            if self._cursor is None or row.stored_ms > self._cursor:
                self._cursor = row.stored_ms
        self._primed = True
        if self._cursor is not None:
            # Keys older than the overlap can never be read again: forget them.
            horizon = self._cursor - 2 * OVERLAP_MS
            self._seen = {k: t for k, t in self._seen.items() if t >= horizon}
        return new


class Ledger:
    """The keys alerted by any tab of this browser (the newest :data:`LEDGER_SIZE`), in preferences."""

    def __init__(self, prefs: Preferences) -> None:
        """Read and write through ``prefs`` (every call reads afresh: another tab may have written)."""
        self._prefs = prefs

    def _load(self) -> OrderedDict[str, None]:
        try:
            raw = json.loads(self._prefs.get(LEDGER_KEY) or "[]")
        except ValueError:
            raw = []
        keys = [k for k in raw if isinstance(k, str)] if isinstance(raw, list) else []
        return OrderedDict.fromkeys(keys)

    def claim(self, keys: Sequence[str]) -> list[str]:
        """Of ``keys``, those no tab alerted yet, now recorded as alerted."""
        known = self._load()
        fresh = [k for k in dict.fromkeys(keys) if k not in known]
        if fresh:
            for key in fresh:
                known[key] = None
            while len(known) > LEDGER_SIZE:
                known.popitem(last=False)
            self._prefs.put(LEDGER_KEY, json.dumps(list(known), separators=(",", ":")))
        return fresh


@dataclass(frozen=True, slots=True)
class Alert:
    """One notification and whether to chime for it."""

    title: str
    body: str
    #: The notification's tag: one per signal (a group's is its newest signal's).
    tag: str
    notify: bool
    sound: bool


def _price(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def compose(
    arrived: Sequence[Arrival],
    choices: Callable[[str], frozenset[Channel]],
    names: Mapping[str, str],
    fmt: Formats | None = None,
) -> Alert | None:
    """The alert for signals that arrived together (None: no trader of theirs wants one).

    One signal gets its own notification (trader, stream, price, candle, source, what triggered it);
    more than :data:`GROUP_OVER` at once get one that counts them, so a catch-up does not bury the
    screen. ``fmt`` writes the price and the candle's time as the page's tables do.
    """
    fmt = fmt or Formats()
    wanted = [a for a in arrived if choices(a.trader_id) & {Channel.NOTIFY, Channel.SOUND}]
    if not wanted:
        return None
    notify = [a for a in wanted if Channel.NOTIFY in choices(a.trader_id)]
    sound = any(Channel.SOUND in choices(a.trader_id) for a in wanted)
    shown = notify or wanted
    newest = shown[-1]
    if len(shown) > GROUP_OVER:
        streams = sorted({a.symbol for a in shown})
        more = f" and {len(streams) - 4} more" if len(streams) > 4 else ""
        title = f"{len(shown)} new signals"
        body = ", ".join(streams[:4]) + more
    else:
        lines = []
        for a in shown:
            trader = names.get(a.trader_id, "A trader")
            when = f"{fmt.clock(_ms(a.candle))} {fmt.zone_label}"
            price = fmt.price(a.symbol, _price(a.price))
            why = f": {', '.join(a.conditions)}" if a.conditions else ""
            lines.append(f"{trader}: {a.symbol} {a.interval} at {price}, candle {when} ({a.source}){why}")
        title = "New signal" if len(shown) == 1 else f"{len(shown)} new signals"
        body = "\n".join(lines)
    return Alert(title, body, f"signalguard:{newest.key}", notify=bool(notify), sound=sound)


class AlertCenter:
    """Turns new signals into alerts for one signed-in user (see the module documentation)."""

    def __init__(
        self,
        user_id: str,
        prefs: Preferences,
        attention: Attention,
        names: Callable[[], Mapping[str, str]],
        *,
        on_note: Callable[[str], None],
        formats: Callable[[], Formats] = Formats,
    ) -> None:
        """Alert for ``user_id`` through ``attention``, the choices kept in ``prefs``.

        ``names`` gives trader names by id; ``on_note`` shows a line about the alerts; ``formats`` is
        the page's way to write prices and times.
        """
        self._key = channels_key(user_id)
        self._prefs = prefs
        self._attention = attention
        self._names = names
        self._formats = formats
        self._on_note = on_note
        self._ledger = Ledger(prefs)
        self._choices, problem = parse_channels(prefs.get(self._key))
        self._leader = False
        self._waiting: list[Arrival] = []
        self._unseen = 0
        self.feed = AlertFeed()
        attention.on_look(self.looked)
        if problem:
            on_note(f"Alerts: {problem}.")

    # -- choices --------------------------------------------------------------------------------

    def channels(self, trader_id: str) -> frozenset[Channel]:
        """What ``trader_id`` alerts with on this browser."""
        return self._choices.get(trader_id.lower(), DEFAULT_CHANNELS)

    def note(self) -> str:
        """A line on what the browser allows, for the traders' list ("" when nothing is in the way)."""
        wants = any(Channel.NOTIFY in c for c in self._choices.values())
        permission = self._attention.permission()
        if permission is Permission.DENIED:
            return (
                "Notifications are blocked for this site in the browser's settings: allow them there "
                "to be notified (the title count and the sound still work)."
            )
        if permission is Permission.UNSUPPORTED and wants:
            return "This browser cannot show notifications here; the title count and the sound still work."
        return ""

    def choose(self, trader_id: str, channel: Channel, on: bool, drawn: Callable[[], None]) -> None:
        """Switch one channel of one trader; ``drawn`` redraws the list once the choice is settled.

        Switching notifications on asks for the permission first if the browser has not been asked
        (this runs inside the click's handler, as browsers require). A refusal is shown, and the
        switch stays off; a browser that refused is not asked again.
        """
        if channel is Channel.NOTIFY and on:
            permission = self._attention.permission()
            if permission is Permission.DEFAULT:

                def answered(result: Permission) -> None:
                    if result is Permission.GRANTED:
                        self._set(trader_id, channel, on=True)
                    drawn()

                self._attention.request_permission(answered)
                return
            if permission is not Permission.GRANTED:
                drawn()
                return
        self._set(trader_id, channel, on=on)
        drawn()

    def _set(self, trader_id: str, channel: Channel, *, on: bool) -> None:
        # Another tab may have changed other traders' choices meanwhile: start from the stored ones.
        stored, _ = parse_channels(self._prefs.get(self._key))
        self._choices = stored
        current = set(self.channels(trader_id))
        if on:
            current.add(channel)
        else:
            current.discard(channel)
        self._choices[trader_id.lower()] = frozenset(current)
        self._prefs.put(self._key, dump_channels(self._choices))

    def reload_choices(self) -> None:
        """Read the choices again (another tab of this browser may have changed them)."""
        self._choices, _ = parse_channels(self._prefs.get(self._key))

    # -- arrivals -------------------------------------------------------------------------------

    def set_leader(self, leader: bool, now_ms: int) -> None:
        """Whether this tab alerts (it holds the tab lock); a new leader alerts what waited."""
        was, self._leader = self._leader, leader
        if leader and not was and self._waiting:
            waiting = [a for a in self._waiting if a.stored_ms >= now_ms - WAIT_MS]
            self._waiting = []
            self._fire(waiting)

    def arrived(self, new: Sequence[Arrival], now_ms: int) -> None:
        """Signals the feed found new: count them in the title, and alert them if this tab alerts."""
        if not new:
            return
        self.reload_choices()
        counted = sum(1 for a in new if Channel.COUNT in self.channels(a.trader_id))
        if counted and not self._attention.looking():
            self._unseen += counted
            self._attention.set_title_count(self._unseen)
        if self._leader:
            self._fire(new)
        else:
            horizon = now_ms - WAIT_MS
            self._waiting = [a for a in self._waiting if a.stored_ms >= horizon] + list(new)

    def _fire(self, arrived: Sequence[Arrival]) -> None:
        fresh = set(self._ledger.claim([a.key for a in arrived]))
        alert = compose([a for a in arrived if a.key in fresh], self.channels, self._names(), self._formats())
        if alert is None:
            return
        if alert.notify and self._attention.permission() is Permission.GRANTED:
            self._attention.notify(alert.title, alert.body, alert.tag)
        if alert.sound:
            self._attention.chime()

    def looked(self) -> None:
        """The user looks at the tab: nothing is unseen any more."""
        if self._unseen:
            self._unseen = 0
            self._attention.set_title_count(0)

    @property
    def unseen(self) -> int:
        """Signals counted in the title now."""
        return self._unseen
