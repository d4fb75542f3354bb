"""The database RPCs under hostile arguments, over HTTP against the real stack (PostgREST 12 behind the
gateway), as a browser tab or a cloud machine would call them.

Hypothesis builds arguments for ``write_signals``, ``update_signal_statuses``, ``claim_local_lease``,
``execution_status`` and ``machine_heartbeat``: mostly valid calls with one to three fields changed to a
wrong type, an out-of-range or non-finite number, markup, unicode, NUL or a very long string, plus
bodies broken as text (keys written twice, NaN, thousands of nested brackets, truncated, a BOM, invalid
UTF-8) and the other kind of token. Every answer must be:

- never a 5xx;
- a refusal: a 4xx whose JSON carries a ``code`` and a ``message``, and then nothing changed in the
  database (signals, the lease and its epochs, the machine);
- or an answer: per-item outcomes for the batch RPCs (``rejected`` ones with a ``code`` and a
  ``message``), and exactly the accepted items, and nothing else, changed in the database.

``SIGNALGUARD_FUZZ_CASES`` sets the number of calls of the family (split evenly between the five RPCs);
the test command runs 2,000.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from fuzzkit import (
    UNDECODABLE,
    Tally,
    cases,
    fuzz_settings,
    get,
    nested,
    pick,
    with_duplicate,
    with_fragment,
)
from hypothesis import given
from hypothesis import strategies as st
from stackkit import Actor, Actors

from signalguard.devstack.stack import LocalStack

pytestmark = pytest.mark.stack

#: Calls of the whole family; the test command runs this many, ``SIGNALGUARD_FUZZ_CASES`` more.
RPC_CASES = cases(2_000)
PER_RPC = max(1, RPC_CASES // 5)
HOLDER = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
STATUSES = ("new", "active", "expired", "closed")
TRANSITIONS = {
    ("new", "active"),
    ("new", "expired"),
    ("new", "closed"),
    ("active", "expired"),
    ("active", "closed"),
}
MACHINE_STATUSES = ("starting", "running", "stopping", "stopped", "error")
DAY_MS = 86_400_000
EMPTY_LEASE = "(,,,0,,)"

WEIRD: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31,
    2**63,
    -(2**63) - 1,
    10**30,
    1.5,
    -0.0,
    1e300,
    float("nan"),
    float("inf"),
    "",
    " ",
    "x",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "12345678",
    "<img src=x onerror=alert(1)>",
    "\u202eevil",
    "é",
    "\U0001f680",
    "\ud800",
    "\u0000",
    "null",
    "true",
    [],
    {},
    [1, "a"],
    {"a": {"b": []}},
    "x" * 300,
    "y" * 20_000,
]
LABELS = ["RSI(14) < 30", "<script>alert(1)</script>", "é\u202e", "", "x" * 500]
#: Values that are almost right for one field (by name): the checks a wrong type never reaches.
NEAR_MISSES: dict[str, list[Any]] = {
    "price": ["NaN", "Infinity", "-Infinity", "0", -1, "1e-400", " 2 ", "1,5", 10**400],
    "candle_open_time": [
        "infinity",
        "-infinity",
        "2026-13-01T00:00:00Z",
        "2026-01-01",
        1.5,
        -1,
        253402300800000,
    ],
    "symbol": ["btcusdt", "BTC-USDT", "A" * 21, "B", "BTCUSDT ", "ＢＴＣ"],
    "interval": ["2m", "1y", "1S", " 1m", "1M"],
    "source": ["cloud", "LOCAL", "local "],
    "epoch": [0, -1, 2, 999, "1", 1.0, 2**63],
    "updated_epoch": [0, -1, 2, "1", 1.5, 2**63],
    "machine_id": ["00000000-0000-0000-0000-000000000000", "not-a-uuid"],
    "trader_id": ["00000000-0000-0000-0000-000000000000", "not-a-uuid", ""],
    "matched_conditions": [["x"] * 33, "x", [1, None], [["nested"]], {"a": "b"}],
    "status": ["closed", "active", "expired", "new", "bogus", "ACTIVE", "new "],
    "signal_key": ["", "x" * 5000, "%", "' or 1=1 --"],
    "p_status": ["provisioning", "Running", "error", "stopped"],
    "p_holder_id": ["tab-aaaa-0001", "tab aaaa", "A" * 65, "12345678"],
    "p_confirm_takeover": ["true", 1, None],
}
SYMBOLS = ["BTCUSDT", "ETHUSDT", "1000SATSUSDT", "XY"]
INTERVALS = ["1s", "1m", "5m", "1h", "1d"]


@dataclass
class Ctx:
    """One test's actor, its lease epoch, and the superuser connection that watches the database."""

    stack: LocalStack
    http: httpx.Client
    conn: psycopg.Connection[Any]
    actor: Actor
    epoch: int = 0
    now_ms: int = 0
    keys: list[str] = field(default_factory=list)
    other_key: str = ""

    def token(self, kind: str) -> str:
        if kind == "machine":
            assert self.actor.machine_token is not None
            return self.actor.machine_token
        if kind == "anon":
            return self.stack.config.anon_key()
        return self.actor.token


@pytest.fixture()
def ctx(stack: LocalStack, actors: Actors) -> Any:
    with stack.connect() as conn, httpx.Client(timeout=30) as http:
        yield Ctx(stack, http, conn, actors.make(), now_ms=int(time.time() * 1000))


def call(ctx: Ctx, rpc: str, body: bytes, content_type: str | None, token: str) -> httpx.Response:
    headers = {"apikey": ctx.stack.config.anon_key(), "Authorization": f"Bearer {token}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return ctx.http.post(f"{ctx.stack.url}/rest/v1/rpc/{rpc}", content=body, headers=headers)


# -- the database, before and after ------------------------------------------------------------


@dataclass(frozen=True)
class State:
    lease: Any
    epochs: Any
    machine: Any
    signals: int
    own_signals: int
    last_change: datetime
    heartbeat: datetime | None


def state(ctx: Ctx) -> State:
    row = ctx.conn.execute(
        "select (select row(l.holder_kind, l.holder_id, l.machine_id, l.epoch, l.acquired_at,"
        "                   l.expires_at)::text"
        "          from public.execution_leases l where l.user_id = %(u)s),"
        "       (select string_agg(row(e.epoch, e.holder_id, e.started_at, e.valid_until,"
        "                              e.ended_reason)::text, ',' order by e.epoch)"
        "          from public.lease_epochs e where e.user_id = %(u)s),"
        "       (select row(m.status, m.last_health_check, m.error_message, m.started_at, m.stopped_at,"
        "                   m.status_changed_at)::text from public.cloud_machines m where m.user_id = %(u)s),"
        "       (select count(*) from public.signals),"
        "       (select count(*) from public.signals s where s.user_id = %(u)s),"
        "       (select coalesce(max(s.updated_at), 'epoch') from public.signals s),"
        "       (select m.last_health_check from public.cloud_machines m where m.user_id = %(u)s)",
        {"u": ctx.actor.user_id},
    ).fetchone()
    assert row is not None
    return State(*row)


def changed_signals(ctx: Ctx, since: datetime) -> dict[str, tuple[str, str, str, Decimal, int | None]]:
    """Signals written after ``since``: key -> (id, user, status, price, updated_epoch)."""
    rows = ctx.conn.execute(
        "select signal_key, id::text, user_id::text, status, price, updated_epoch from public.signals "
        "where updated_at > %s",
        (since,),
    ).fetchall()
    return {r[0]: (r[1], r[2], r[3], r[4], r[5]) for r in rows}


def machine_row(ctx: Ctx) -> tuple[str, datetime | None, str | None]:
    row = ctx.conn.execute(
        "select status, last_health_check, error_message from public.cloud_machines where user_id = %s",
        (ctx.actor.user_id,),
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


# -- bodies -----------------------------------------------------------------------------------


class Call:
    """One call: the RPC, the arguments it was built from, the body as sent, and the token's kind."""

    def __init__(
        self, rpc: str, args: Any, body: bytes, content_type: str | None, token: str, how: str
    ) -> None:
        self.rpc, self.args, self.body, self.content_type, self.token, self.how = (
            rpc,
            args,
            body,
            content_type,
            token,
            how,
        )

    def __repr__(self) -> str:
        return f"Call({self.rpc}, {self.how}, token={self.token}, body={self.body[:600]!r})"

    @property
    def parsed(self) -> Any:
        """The body as a JSON reader that keeps the last of repeated keys sees it (None: not JSON).

        PostgREST reads an empty body, or one that is not declared JSON, as no arguments, and an array
        of objects as its first object.
        """
        if not self.body or self.content_type in (None, "text/plain", "application/x-www-form-urlencoded"):
            return {}
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 20_000))  # PostgreSQL reads a few thousand levels
        try:
            doc = json.loads(self.body.decode("utf-8"), parse_int=_integer, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            return None
        finally:
            sys.setrecursionlimit(limit)
        if isinstance(doc, list) and doc and all(isinstance(x, dict) for x in doc):
            return doc[0]
        return doc


def _integer(digits: str) -> int | Decimal:
    # PostgREST reads integers of any length; Python's int() refuses more than 4,300 digits.
    return int(digits) if len(digits) < 4000 else Decimal(digits)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def weird(draw: st.DrawFn) -> Any:
    value = pick(draw, WEIRD)
    return json.loads(json.dumps(value)) if isinstance(value, list | dict) else value


def paths_of(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for k, v in items:
        out.append((*prefix, k))
        out += paths_of(v, (*prefix, k))
    return out


def mutate(draw: st.DrawFn, args: dict[str, Any], names: tuple[str, ...]) -> None:
    """Change one to three things of ``args``: a value, a missing or extra field, an unknown argument."""
    for _ in range(draw(st.integers(1, 3))):
        paths = paths_of(args)
        how = draw(st.integers(0, 9))
        if how <= 5 and paths:
            path = pick(draw, paths)
            near = NEAR_MISSES.get(str(path[-1]))
            value = pick(draw, near) if near and draw(st.booleans()) else weird(draw)
            get(args, path[:-1])[path[-1]] = value
        elif how == 6 and paths:
            path = pick(draw, paths)
            parent = get(args, path[:-1])
            del parent[path[-1]]
        elif how == 7:
            objects = [p for p in paths if isinstance(get(args, p), dict)]
            if objects:
                get(args, pick(draw, objects))[pick(draw, ["user_id", "id", "zz", "<b>", ""])] = weird(draw)
        elif how == 8:
            args[pick(draw, ["p_extra", "p_holder", "P_SIGNALS", "", "p_signals"])] = weird(draw)
        else:
            name = pick(draw, names) if names else "p_x"
            args.pop(name, None)


def near_misses(draw: st.DrawFn, items: list[dict[str, Any]]) -> None:
    """Give about half of ``items`` one field that is almost right."""
    for item in items:
        if draw(st.booleans()):
            name = pick(draw, [k for k in item if k in NEAR_MISSES] or ["price"])
            item[name] = pick(draw, NEAR_MISSES[name])


@st.composite
def bodies(draw: st.DrawFn, rpc: str, args: Any, token: str) -> Call:
    text = json.dumps(args)
    how = draw(st.integers(0, 19))
    paths = paths_of(args)
    if how <= 14 or not paths:
        return Call(rpc, args, text.encode(), "application/json", token, "json")
    if how == 15:
        members = [p for p in paths if isinstance(p[-1], str)]
        if members:
            member = pick(draw, members)
            second = json.dumps(weird(draw))
            return Call(
                rpc, args, with_duplicate(args, member, second).encode(), "application/json", token, "dup"
            )
    if how == 16:
        depth = draw(st.one_of(st.integers(1, 40), st.sampled_from([1000, 5000, 50_000])))
        path = pick(draw, paths)
        fragment = nested(json.dumps(get(args, path)), depth, objects=draw(st.booleans()))
        return Call(
            rpc, args, with_fragment(args, path, fragment).encode(), "application/json", token, "nested"
        )
    if how == 17:
        _, fragment = pick(draw, UNDECODABLE)
        body = with_fragment(args, pick(draw, paths), fragment).encode()
        return Call(rpc, args, body, "application/json", token, "undecodable")
    if how == 18:
        damage = pick(draw, ["truncated", "bom", "trailing", "utf8", "array", "empty", "string"])
        body = {
            "truncated": text[: max(0, len(text) - 1 - draw(st.integers(0, 5)))].encode(),
            "bom": b"\xef\xbb\xbf" + text.encode(),
            "trailing": text.encode() + b" x",
            "utf8": text[:1].encode() + b"\xff\xfe" + text[1:].encode(),
            "array": f"[{text}]".encode(),
            "empty": b"",
            "string": json.dumps(text).encode(),
        }[damage]
        return Call(rpc, args, body, "application/json", token, f"doc:{damage}")
    content_type = pick(
        draw, ["text/plain", None, "application/x-www-form-urlencoded", "application/json; charset=latin1"]
    )
    return Call(rpc, args, text.encode(), content_type, token, f"content-type:{content_type}")


# -- the verdict on every answer --------------------------------------------------------------


def refusal(response: httpx.Response, c: Call) -> str:
    """A 4xx refusal with a JSON ``code`` and ``message``; returns the code."""
    assert 400 <= response.status_code < 500, f"{c}: HTTP {response.status_code} {response.text[:300]}"
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(
            f"{c}: HTTP {response.status_code} is not JSON: {response.text[:300]!r}"
        ) from None
    assert isinstance(body, dict), f"{c}: {body!r:.300}"
    code, message = body.get("code"), body.get("message")
    assert isinstance(code, str) and code, f"{c}: refusal without a code: {body!r:.300}"
    assert isinstance(message, str) and message.strip(), f"{c}: refusal without a message: {body!r:.300}"
    return code


def answered(response: httpx.Response, c: Call) -> Any:
    assert response.status_code < 500, f"{c}: HTTP {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        return None
    assert response.status_code == 200, f"{c}: HTTP {response.status_code} {response.text[:300]}"
    assert c.parsed is not None, f"{c}: a body that is not JSON was answered"
    return response.json()


def outcomes(body: Any, c: Call, sent: Any) -> list[dict[str, Any]]:
    """Per-item outcomes: one per item sent, in order, each rejection with a code and a message."""
    assert isinstance(body, list), f"{c}: {body!r:.300}"
    if isinstance(sent, list):
        assert [o.get("index") for o in body] == list(range(len(sent))), f"{c}: {body!r:.500}"
    for o in body:
        assert o.get("outcome") in ("inserted", "duplicate", "updated", "rejected"), f"{c}: {o!r:.300}"
        if o["outcome"] == "rejected":
            assert isinstance(o.get("code"), str) and o["code"], f"{c}: rejected without a code: {o!r:.300}"
            assert isinstance(o.get("message"), str) and o["message"], (
                f"{c}: rejected without a message: {o!r:.300}"
            )
    return body


def run_family(rpc: str, ctx: Ctx, strategy: st.SearchStrategy[Call], judge: Any) -> Tally:
    tally = Tally()
    started = time.monotonic()

    @fuzz_settings(PER_RPC)
    @given(strategy)
    def run(c: Call) -> None:
        before = state(ctx)
        response = call(ctx, rpc, c.body, c.content_type, ctx.token(c.token))
        tally.judge(lambda: judge(ctx, c, response, before, tally))

    run()
    print(f"\n{rpc}: {tally.summary()} in {time.monotonic() - started:.1f} s")
    tally.check(PER_RPC)
    return tally


def unchanged(ctx: Ctx, before: State, c: Call) -> None:
    after = state(ctx)
    assert after == before, f"{c}: the call changed the database\n{before}\n{after}"


# -- write_signals ---------------------------------------------------------------------------------


def claim_wide_lease(ctx: Ctx, holder: str) -> None:
    """Hold the browser lease, with a window over the last 40 days (candles of the fuzz close in it)."""
    r = call(
        ctx,
        "claim_local_lease",
        json.dumps({"p_holder_id": holder}).encode(),
        "application/json",
        ctx.actor.token,
    )
    assert r.status_code == 200 and r.json()["granted"], r.text
    ctx.epoch = r.json()["lease"]["epoch"]
    ctx.conn.execute(
        "update public.lease_epochs set started_at = now() - interval '40 days', "
        "valid_until = now() + interval '1 day' where user_id = %s and epoch = %s",
        (ctx.actor.user_id, ctx.epoch),
    )
    ctx.conn.execute(
        "update public.execution_leases set expires_at = now() + interval '1 day' where user_id = %s",
        (ctx.actor.user_id,),
    )


@st.composite
def signal_items(draw: st.DrawFn, ctx: Ctx) -> dict[str, Any]:
    interval = pick(draw, INTERVALS)
    open_ms = ctx.now_ms - 2 * DAY_MS - draw(st.integers(0, 28 * DAY_MS))
    if draw(st.integers(0, 4)) == 0:
        # One of a few candles, written again and again: duplicates.
        interval, open_ms = (
            "1m",
            ctx.now_ms - 2 * DAY_MS - ctx.now_ms % 60_000 - draw(st.integers(0, 9)) * 60_000,
        )
    as_text = draw(st.booleans())
    return {
        "trader_id": ctx.actor.trader_id,
        "symbol": pick(draw, SYMBOLS),
        "interval": interval,
        "candle_open_time": datetime.fromtimestamp(open_ms / 1000).astimezone().isoformat()
        if as_text
        else open_ms,
        "price": pick(draw, [1.5, 0.00000001, 65000, "123.456", 1e12]),
        "matched_conditions": draw(st.lists(st.sampled_from(LABELS), max_size=3)),
        "source": "local",
        "machine_id": None,
        "epoch": ctx.epoch,
    }


@st.composite
def write_calls(draw: st.DrawFn, ctx: Ctx) -> Call:
    items = [draw(signal_items(ctx)) for _ in range(draw(st.integers(0, 5)))]
    args: dict[str, Any] = {"p_signals": items}
    how = draw(st.integers(0, 9))
    if how >= 7:
        mutate(draw, args, ("p_signals",))
    elif how >= 3:
        near_misses(draw, items)
    if draw(st.integers(0, 49)) == 0:
        args = {"p_signals": [{}] * 501}
    token = pick(draw, ["user"] * 8 + ["machine", "anon"])
    return draw(bodies("write_signals", args, token))


def judge_write(ctx: Ctx, c: Call, response: httpx.Response, before: State, tally: Tally) -> None:
    body = answered(response, c)
    if body is None:
        code = refusal(response, c)
        unchanged(ctx, before, c)
        tally.reject(f"http {response.status_code} {code}")
        return
    sent = c.parsed.get("p_signals") if isinstance(c.parsed, dict) else None
    results = outcomes(body, c, sent)
    inserted = {o["signal_key"]: o["id"] for o in results if o["outcome"] == "inserted"}
    after = state(ctx)
    written = changed_signals(ctx, before.last_change)
    assert after.signals - before.signals == len(inserted) == len(written), f"{c}: {results!r:.500}"
    assert after.own_signals - before.own_signals == len(inserted)
    assert (after.lease, after.epochs, after.machine) == (before.lease, before.epochs, before.machine)
    for key, (sid, user, status, price, _) in written.items():
        assert inserted.get(key) == sid and user == ctx.actor.user_id, f"{c}: {key} was written unannounced"
        assert status in STATUSES
        assert price.is_finite() and price > 0, f"{c}: stored the price {price}"
    if any(o["outcome"] == "rejected" for o in results):
        tally.reject("item rejected")
    else:
        tally.accept()


def test_write_signals_under_hostile_arguments(ctx: Ctx) -> None:
    claim_wide_lease(ctx, "fuzz-holder-1")
    run_family("write_signals", ctx, write_calls(ctx), judge_write)


# -- update_signal_statuses ------------------------------------------------------------------------


def seed_signals(ctx: Ctx, user_id: str, trader_id: str, epoch: int, count: int) -> list[str]:
    """Signals written directly (maintenance writes are not fenced), status 'new'; their keys."""
    keys = []
    for i in range(count):
        row = ctx.conn.execute(
            "insert into public.signals (trader_id, user_id, symbol, interval, candle_open_time, price, "
            "matched_conditions, source, epoch, updated_epoch) values (%s, %s, 'BTCUSDT', '1m', "
            "to_timestamp(%s / 1000.0), 1.5, '{}', 'local', %s, %s) returning signal_key",
            (trader_id, user_id, ctx.now_ms - DAY_MS - (ctx.now_ms % 60_000) - i * 60_000, epoch, epoch),
        ).fetchone()
        assert row is not None
        keys.append(row[0])
    return keys


def reset_signals(ctx: Ctx) -> None:
    ctx.conn.execute(
        "update public.signals set status = 'new', updated_epoch = epoch "
        "where user_id = %s and status <> 'new'",
        (ctx.actor.user_id,),
    )


@st.composite
def update_calls(draw: st.DrawFn, ctx: Ctx) -> Call:
    changes = [
        {
            "signal_key": pick(draw, [*ctx.keys, ctx.keys[0], ctx.other_key, "nope"]),
            "status": pick(draw, ["active", "active", "expired", "closed", "new"]),
            "updated_epoch": ctx.epoch,
        }
        for _ in range(draw(st.integers(0, 5)))
    ]
    args: dict[str, Any] = {"p_changes": changes}
    how = draw(st.integers(0, 9))
    if how >= 7:
        mutate(draw, args, ("p_changes",))
    elif how >= 4:
        near_misses(draw, changes)
    token = pick(draw, ["user"] * 8 + ["machine", "anon"])
    return draw(bodies("update_signal_statuses", args, token))


def statuses(ctx: Ctx) -> dict[str, str]:
    rows = ctx.conn.execute(
        "select signal_key, status from public.signals where signal_key = any(%s)",
        ([*ctx.keys, ctx.other_key],),
    ).fetchall()
    return dict(rows)


def judge_update(ctx: Ctx, c: Call, response: httpx.Response, before: State, tally: Tally) -> None:
    body = answered(response, c)
    if body is None:
        code = refusal(response, c)
        unchanged(ctx, before, c)
        tally.reject(f"http {response.status_code} {code}")
        return
    sent = c.parsed.get("p_changes") if isinstance(c.parsed, dict) else None
    results = outcomes(body, c, sent)
    after = state(ctx)
    assert (after.signals, after.lease, after.epochs, after.machine) == (
        before.signals,
        before.lease,
        before.epochs,
        before.machine,
    )
    changed = changed_signals(ctx, before.last_change)
    updated = [o for o in results if o["outcome"] == "updated"]
    assert set(changed) == {o["signal_key"] for o in updated}, f"{c}: {results!r:.500} but {sorted(changed)}"
    assert ctx.other_key not in changed
    # Replay the accepted changes from 'new': each must be a step of the lifecycle (or no change).
    status = dict.fromkeys(changed, "new")
    for o in updated:
        wanted = sent[o["index"]]["status"]
        assert (status[o["signal_key"]], wanted) in TRANSITIONS or status[o["signal_key"]] == wanted, f"{c}"
        status[o["signal_key"]] = wanted
    for key, (_, user, now, _, epoch) in changed.items():
        assert user == ctx.actor.user_id and now == status[key] and epoch == ctx.epoch, f"{c}: {key}"
    if any(o["outcome"] == "rejected" for o in results):
        tally.reject("item rejected")
    else:
        tally.accept()


def test_update_signal_statuses_under_hostile_arguments(ctx: Ctx, actors: Actors) -> None:
    claim_wide_lease(ctx, "fuzz-holder-2")
    ctx.keys = seed_signals(ctx, ctx.actor.user_id, ctx.actor.trader_id, ctx.epoch, 8)
    other = actors.make()
    ctx.other_key = seed_signals(ctx, other.user_id, other.trader_id, 1, 1)[0]
    ctx.conn.execute(
        "insert into public.lease_epochs (user_id, epoch, holder_kind, holder_id, started_at, valid_until) "
        "values (%s, 1, 'local', 'other-holder', now(), now())",
        (other.user_id,),
    )

    def judge(ctx: Ctx, c: Call, response: httpx.Response, before: State, tally: Tally) -> None:
        try:
            judge_update(ctx, c, response, before, tally)
        finally:
            reset_signals(ctx)

    reset_signals(ctx)
    run_family("update_signal_statuses", ctx, update_calls(ctx), judge)


# -- claim_local_lease, execution_status -----------------------------------------------------------

HOLDERS = ["tab-aaaa-0001", "tab-bbbb-0002", "A" * 64, "a_b-c_d-"]
BAD_HOLDERS = ["short", "A" * 65, "tab aaaa 0001", "tab-é-0001", "<img src=x>", "", "12345678\n", "tab/../x"]


@st.composite
def holders(draw: st.DrawFn) -> Any:
    which = draw(st.integers(0, 9))
    if which < 5:
        return pick(draw, HOLDERS)
    if which < 7:
        return draw(st.text(alphabet="abcXYZ019-_", min_size=8, max_size=64))
    if which < 9:
        return pick(draw, BAD_HOLDERS)
    return weird(draw)


@st.composite
def claim_calls(draw: st.DrawFn) -> Call:
    args: dict[str, Any] = {"p_holder_id": draw(holders())}
    if draw(st.booleans()):
        args["p_confirm_takeover"] = pick(draw, [True, False, None, "yes", 1, "true"])
    if draw(st.integers(0, 9)) >= 7:
        mutate(draw, args, ("p_holder_id", "p_confirm_takeover"))
    token = pick(draw, ["user"] * 8 + ["machine", "anon"])
    return draw(bodies("claim_local_lease", args, token))


def lease_holder(ctx: Ctx) -> tuple[str | None, str | None, bool]:
    row = ctx.conn.execute(
        "select holder_kind, holder_id, coalesce(expires_at > clock_timestamp(), false) "
        "from public.execution_leases where user_id = %s",
        (ctx.actor.user_id,),
    ).fetchone()
    return (row[0], row[1], row[2]) if row else (None, None, False)


def judge_claim(ctx: Ctx, c: Call, response: httpx.Response, before: State, tally: Tally) -> None:
    body = answered(response, c)
    if body is None:
        code = refusal(response, c)
        unchanged(ctx, before, c)
        tally.reject(f"http {response.status_code} {code}")
        return
    assert isinstance(body, dict) and isinstance(body.get("granted"), bool), f"{c}: {body!r:.300}"
    after = state(ctx)
    assert (after.signals, after.machine) == (before.signals, before.machine)
    kind, holder, live = lease_holder(ctx)
    if body["granted"]:
        assert kind == "local" and live and holder is not None and HOLDER.match(holder), f"{c}: {holder!r}"
        sent = c.parsed.get("p_holder_id") if isinstance(c.parsed, dict) else None
        assert holder == (sent if isinstance(sent, str) else json.dumps(sent)), (
            f"{c}: the lease went to {holder!r}"
        )
        tally.accept()
    else:
        assert body.get("reason"), f"{c}: refused without a reason: {body!r:.300}"
        assert after.lease == before.lease, f"{c}: a refused claim changed the lease"
        tally.reject(f"not granted: {body['reason']}")


def test_claim_local_lease_under_hostile_arguments(ctx: Ctx) -> None:
    calls = iter(range(10**9))

    def judge(ctx: Ctx, c: Call, response: httpx.Response, before: State, tally: Tally) -> None:
        judge_claim(ctx, c, response, before, tally)
        if next(calls) % 3 == 0:
            # Let the next claim find the lease free, so that grants keep coming.
            ctx.conn.execute(
                "update public.execution_leases set expires_at = clock_timestamp() where user_id = %s "
                "and expires_at > clock_timestamp()",
                (ctx.actor.user_id,),
            )

    run_family("claim_local_lease", ctx, claim_calls(), judge)


@st.composite
def status_calls(draw: st.DrawFn) -> Call:
    args: dict[str, Any] = {}
    if draw(st.integers(0, 3)):
        args["p_holder_id"] = draw(holders())
    if draw(st.integers(0, 9)) >= 7:
        mutate(draw, args, ("p_holder_id",))
    token = pick(draw, ["user"] * 6 + ["machine"] * 3 + ["anon"])
    return draw(bodies("execution_status", args, token))


def judge_status(ctx: Ctx, c: Call, response: httpx.Response, before: State, tally: Tally) -> None:
    body = answered(response, c)
    if body is None:
        code = refusal(response, c)
        tally.reject(f"http {response.status_code} {code}")
    else:
        assert isinstance(body, dict) and isinstance(body.get("lease"), dict), f"{c}: {body!r:.300}"
        tally.accept()
    unchanged(ctx, before, c)  # a status poll never writes


def test_execution_status_under_hostile_arguments(ctx: Ctx) -> None:
    run_family("execution_status", ctx, status_calls(), judge_status)


# -- machine_heartbeat -----------------------------------------------------------------------------


@st.composite
def heartbeat_calls(draw: st.DrawFn) -> Call:
    args: dict[str, Any] = {}
    if draw(st.integers(0, 4)):
        args["p_status"] = pick(draw, [*MACHINE_STATUSES, "provisioning", "RUNNING", "", None])
    if draw(st.booleans()):
        args["p_error_message"] = pick(
            draw, ["boom", "<script>alert(1)</script>", "é" * 3000, "", None, "\u202e"]
        )
    if draw(st.integers(0, 9)) >= 7:
        mutate(draw, args, ("p_status", "p_error_message"))
    token = pick(draw, ["machine"] * 8 + ["user", "anon"])
    return draw(bodies("machine_heartbeat", args, token))


def judge_heartbeat(ctx: Ctx, c: Call, response: httpx.Response, before: State, tally: Tally) -> None:
    body = answered(response, c)
    if body is None:
        code = refusal(response, c)
        unchanged(ctx, before, c)
        tally.reject(f"http {response.status_code} {code}")
        return
    assert isinstance(body, dict) and isinstance(body.get("machine"), dict), f"{c}: {body!r:.300}"
    after = state(ctx)
    assert after.signals == before.signals
    # The heartbeat locks the lease row, making an empty one on the machine's first call.
    assert after.lease == before.lease or (before.lease is None and after.lease == EMPTY_LEASE), f"{c}"
    status, seen, error = machine_row(ctx)
    args = c.parsed if isinstance(c.parsed, dict) else {}
    wanted = args.get("p_status")
    assert status in MACHINE_STATUSES or (wanted is None and status == "stopped"), f"{c}: status {status!r}"
    if isinstance(wanted, str):
        assert status == wanted, f"{c}: status {status!r}"
    assert seen is not None and (before.heartbeat is None or seen > before.heartbeat), f"{c}: no heartbeat"
    message = args.get("p_error_message")
    if wanted == "error" and isinstance(message, str):
        assert error == message[:2000], f"{c}: error message {error!r:.100}"
    if error is not None:
        assert len(error) <= 2000
    tally.accept()


def test_machine_heartbeat_under_hostile_arguments(ctx: Ctx) -> None:
    run_family("machine_heartbeat", ctx, heartbeat_calls(), judge_heartbeat)


# -- bugs found by the runs above ----------------------------------------------------------------


def test_write_signals_refuses_a_price_that_is_not_finite(ctx: Ctx) -> None:
    # PostgreSQL's numeric NaN and Infinity are greater than every number, so they pass the check.
    claim_wide_lease(ctx, "fuzz-holder-3")
    for n, price in enumerate(["NaN", "Infinity"]):
        signal_with_price(ctx, price, n)
    stored = ctx.conn.execute(
        "select price from public.signals where user_id = %s", (ctx.actor.user_id,)
    ).fetchall()
    assert stored == []


def signal_with_price(ctx: Ctx, price: str, n: int) -> None:
    item = {
        "trader_id": ctx.actor.trader_id,
        "symbol": "BTCUSDT",
        "interval": "1m",
        "candle_open_time": ctx.now_ms - DAY_MS - ctx.now_ms % 60_000 - n * 60_000,
        "price": price,
        "matched_conditions": [],
        "source": "local",
        "machine_id": None,
        "epoch": ctx.epoch,
    }
    r = call(
        ctx, "write_signals", json.dumps({"p_signals": [item]}).encode(), "application/json", ctx.actor.token
    )
    assert r.status_code == 200
    assert r.json()[0]["outcome"] == "rejected", f"price {price}: {r.text}"
