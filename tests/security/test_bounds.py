"""No input too big or too strange: bounded labels, sane prices and sizes, exit times that happened.

A bad item of a batch is refused with one clear outcome naming its field; the good items beside it are
kept. Every value the database stores comes back through the API as JSON that Python reads.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from stackkit import Actors, Api, db_now, seconds_ago, signal
from test_signal_guard import local_lease_backdated, write
from test_trades import close_op, open_op, signals, trades

from signalguard.core.codes import GuardError
from signalguard.devstack.stack import LocalStack

pytestmark = pytest.mark.stack


class Raw(str):
    """A number written into the JSON body exactly as given (Python's json would round or refuse it)."""


def body(args: Any) -> str:
    """JSON text of ``args`` with every :class:`Raw` value as a bare number."""
    raws: list[str] = []

    def mark(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(str(value))
            return f"@@raw{len(raws) - 1}@@"
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mark(v) for v in value]
        return value

    text = json.dumps(mark(args))
    for i, raw in enumerate(raws):
        text = text.replace(f'"@@raw{i}@@"', raw)
    return text


#: Prices and sizes no market has, each with the reason it is refused.
BAD_AMOUNTS: list[tuple[str, Any]] = [
    ("100,001 digits", Raw("9" * 100_001)),
    ("above 1e15", Raw("1e15")),
    ("a 60-decimal fraction", Raw("0." + "1" * 60)),
    ("zero", 0),
    ("negative", -1.5),
    ("NaN as text", "NaN"),
    ("Infinity as text", "Infinity"),
    ("a tiny exponent", Raw("1e-40")),
]
#: What clients really send: Binance's tick sizes, and floats as Python and JavaScript print them.
GOOD_AMOUNTS: list[Any] = [
    0.00000812,
    67_234.56,
    1.6666666666666667e-05,
    123456789.123,
    1.2345678901234567e-08,
]


def raw_rpc(stack: LocalStack, api: Api, token: str, name: str, args: dict[str, Any]) -> Any:
    """An RPC whose numbers are sent exactly as written."""
    headers = {"apikey": api.anon, "Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    r = httpx.post(f"{stack.url}/rest/v1/rpc/{name}", content=body(args), headers=headers, timeout=30)
    assert r.status_code == 200, r.text[:300]
    return r.json()


@pytest.mark.parametrize(("what", "price"), BAD_AMOUNTS, ids=[w for w, _ in BAD_AMOUNTS])
def test_an_absurd_price_is_refused_by_name_and_the_batch_keeps_the_rest(
    stack: LocalStack, api: Api, actors: Actors, db: Any, what: str, price: Any
) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    bad = signal(a, epoch, seconds_ago(db, 60)) | {"price": price}
    good = signal(a, epoch, seconds_ago(db, 120))
    out = raw_rpc(stack, api, a.token, "write_signals", {"p_signals": [bad, good]})
    assert (out[0]["outcome"], out[0]["code"]) == ("rejected", GuardError.INVALID_ARGUMENT), out[0]
    assert out[0]["message"].startswith("invalid_argument: price must be"), out[0]
    assert len(out[0]["message"]) < 200  # the refused value is never echoed back
    assert out[1]["outcome"] == "inserted", out[1]
    # A direct insert is judged the same way, and the answer is short.
    direct = bad | {"candle_open_time": signal(a, epoch, seconds_ago(db, 180))["candle_open_time"]}
    headers = {"apikey": api.anon, "Authorization": f"Bearer {a.token}", "Content-Type": "application/json"}
    r = httpx.post(f"{stack.url}/rest/v1/signals", content=body([direct]), headers=headers, timeout=30)
    assert r.status_code == 400 and r.json()["code"] == GuardError.INVALID_ARGUMENT, r.text[:300]
    assert len(r.text) < 1000


@pytest.mark.parametrize("price", GOOD_AMOUNTS)
def test_real_prices_are_stored_and_read_back_exactly(api: Api, actors: Actors, db: Any, price: Any) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    out = write(api, a, [signal(a, epoch, seconds_ago(db, 60)) | {"price": price}])
    assert out[0]["outcome"] == "inserted", out
    back = api.select("signals", a.token, f"signal_key=eq.{out[0]['signal_key']}&select=price").body
    assert float(back[0]["price"]) == float(price)


@pytest.mark.parametrize(
    "labels",
    [["x" * 201], ["y" * 200_000] * 32, ["RSI(14) < 30"] * 33, [""]],
    ids=["one label of 201 characters", "32 labels of 200 kB", "33 labels", "an empty label"],
)
def test_oversized_matched_conditions_are_refused(
    api: Api, actors: Actors, db: Any, labels: list[str]
) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    out = write(
        api,
        a,
        [
            signal(a, epoch, seconds_ago(db, 60)) | {"matched_conditions": labels},
            signal(a, epoch, seconds_ago(db, 120)),
        ],
    )
    assert (out[0]["outcome"], out[0]["code"]) == ("rejected", GuardError.INVALID_ARGUMENT), out[0]
    assert "matched_conditions" in out[0]["message"]
    assert out[1]["outcome"] == "inserted"


def test_labels_at_the_limits_are_kept(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    out = write(api, a, [signal(a, epoch, seconds_ago(db, 60)) | {"matched_conditions": ["z" * 200] * 32}])
    assert out[0]["outcome"] == "inserted", out


@pytest.mark.parametrize(("what", "size"), BAD_AMOUNTS, ids=[w for w, _ in BAD_AMOUNTS])
def test_an_absurd_trade_size_or_price_is_refused_by_name(
    stack: LocalStack, api: Api, actors: Actors, db: Any, what: str, size: Any
) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    k1, k2, k3 = signals(api, a, db, epoch, 3)
    ops = [
        open_op(k1, epoch, size=size),
        open_op(k2, epoch, size=0.5),
        open_op(k3, epoch, size=0.5, take_profit_price=size),
    ]
    out = raw_rpc(stack, api, a.token, "write_trades", {"p_ops": ops})
    assert [o["outcome"] for o in out] == ["rejected", "opened", "rejected"], out
    assert all(o["code"] == GuardError.INVALID_ARGUMENT for o in (out[0], out[2])), out
    assert "size" in out[0]["message"] and len(out[0]["message"]) < 600
    close = close_op(db, k2, epoch, 101) | {"exit_price": size}
    out = raw_rpc(stack, api, a.token, "write_trades", {"p_ops": [close]})
    assert (out[0]["outcome"], out[0]["code"]) == ("rejected", GuardError.INVALID_ARGUMENT), out
    assert db.execute("select status from trades where signal_key = %s", (k2,)).fetchone() == ("open",)


def test_an_exit_in_the_future_is_refused_and_one_just_closed_is_kept(
    api: Api, actors: Actors, db: Any
) -> None:
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    k1, k2, k3 = signals(api, a, db, epoch, 3)
    assert [o["outcome"] for o in trades(api, a, [open_op(k, epoch) for k in (k1, k2, k3)])] == ["opened"] * 3
    now = db_now(db)
    in_2099 = close_op(db, k1, epoch, 101, exit_time="2099-01-01T00:00:00Z")
    a_minute_ahead = close_op(db, k2, epoch, 101, exit_time=(now + timedelta(minutes=1)).isoformat())
    just_now = close_op(db, k3, epoch, 101, exit_time=(now - timedelta(seconds=1)).isoformat())
    out = trades(api, a, [in_2099, a_minute_ahead, just_now])
    assert [(o["outcome"], o.get("code")) for o in out] == [
        ("rejected", GuardError.INVALID_ARGUMENT),
        ("rejected", GuardError.INVALID_ARGUMENT),
        ("closed", None),
    ], out
    assert "exit_time" in out[0]["message"]
    # Before the entry (the signal candle's close) stays refused, as before.
    entry = db.execute("select entry_time from trades where signal_key = %s", (k1,)).fetchone()[0]
    before = close_op(db, k1, epoch, 101, exit_time=(entry - timedelta(seconds=1)).isoformat())
    assert trades(api, a, [before])[0]["code"] == GuardError.INVALID_ARGUMENT
    # And a direct PATCH is judged the same way.
    r = api.update(
        "trades",
        f"signal_key=eq.{k1}",
        {
            "status": "closed",
            "exit_price": 101,
            "exit_time": "2099-01-01T00:00:00Z",
            "exit_reason": "manual",
            "close_epoch": epoch,
        },
        a.token,
    )
    assert r.status == 400 and r.code == GuardError.INVALID_ARGUMENT, r.body
    assert db.execute("select status from trades where signal_key = %s", (k1,)).fetchone() == ("open",)


def test_the_largest_amount_allowed_reads_back_as_json_python_parses(
    stack: LocalStack, api: Api, actors: Actors, db: Any
) -> None:
    """The bound sits well inside what any JSON reader takes: 15 digits, a point and 30 decimals."""
    a = actors.make()
    epoch = local_lease_backdated(api, a, db)
    largest = "9" * 15 + "." + "9" * 30
    row = signal(a, epoch, seconds_ago(db, 60)) | {"price": Raw(largest)}
    out = raw_rpc(stack, api, a.token, "write_signals", {"p_signals": [row]})
    assert out[0]["outcome"] == "inserted", out
    r = httpx.get(
        f"{api.base}/rest/v1/signals?select=price&signal_key=eq.{out[0]['signal_key']}",
        headers={"apikey": api.anon, "Authorization": f"Bearer {a.token}"},
        timeout=30,
    )
    assert r.text == f'[{{"price":{largest}}}]'
    assert json.loads(r.text)[0]["price"] == 1e15


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"name": "n" * 101}, "name"),
        ({"name": ""}, "name"),
        ({"name": "big", "definition": {"x": "y" * 70_000}}, "definition"),
        ({"name": "list", "definition": [1, 2]}, "definition"),
    ],
    ids=["a 101-character name", "an empty name", "a 70 kB definition", "a definition that is no object"],
)
def test_a_trader_too_big_is_refused_in_one_line(
    api: Api, actors: Actors, db: Any, row: Any, field: str
) -> None:
    a = actors.make()
    r = api.insert("traders", [row], a.token)
    assert r.status == 400 and r.code == GuardError.INVALID_ARGUMENT, str(r.body)[:300]
    assert field in r.body["message"] and len(json.dumps(r.body)) < 300
    assert db.execute("select count(*) from traders where user_id = %s", (a.user_id,)).fetchone() == (1,)
    tid = a.trader_id
    r = api.update("traders", f"id=eq.{tid}", row, a.token)
    assert r.status == 400 and r.code == GuardError.INVALID_ARGUMENT, str(r.body)[:300]
