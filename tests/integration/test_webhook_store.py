"""Webhooks in the database: the user's webhook, a delivery row per stored signal, claim and record.

A stored signal gets its delivery row in the same transaction (when the user has an enabled webhook);
the executor claims due rows under its live lease epoch, each then in flight for 30 s, and records the
outcomes under the same epoch; a holder that lost the lease records nothing, and the next holder posts
the row again once its in-flight window has ended. The in-flight window and retry times are exercised
by backdating ``next_attempt_at`` with the superuser connection, never by sleeping.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from stackkit import Actor, Actors, Api, backdate_lease, db_now, seconds_ago, signal
from test_lease import claim, cloud_claim, heartbeat

from signalguard.core import webhooks as core_webhooks
from signalguard.core.codes import GuardError

pytestmark = pytest.mark.stack

URL = "https://hooks.example.test/signalguard"


# -- helpers -------------------------------------------------------------------------------------


def set_webhook(api: Api, a: Actor, url: str = URL, secret: str | None = "s3cret", **extra: Any) -> Any:
    r = api.insert("webhooks", {"url": url, "secret": secret, **extra}, a.token)
    assert r.status == 201, r.body
    return r.body[0]


#: Each user's candle close time (see store).
_CLOSES: dict[str, Any] = {}


def store(api: Api, db: Any, a: Actor, epoch: int, *symbols: str, token: str | None = None) -> list[str]:
    """Store one signal per symbol under ``epoch`` (their candles closed a second before the user's
    first store, so that a symbol stored again is the same signal); their keys."""
    source = "cloud" if token is not None and token == a.machine_token else "local"
    close = _CLOSES.setdefault(a.user_id, seconds_ago(db, 1))
    rows = [signal(a, epoch, close, symbol=s, source=source) for s in symbols]
    r = api.rpc("write_signals", {"p_signals": rows}, token or a.token)
    assert r.status == 200, r.body
    assert {o["outcome"] for o in r.body} <= {"inserted", "duplicate"}, r.body
    return [o["signal_key"] for o in r.body]


def deliveries(db: Any, a: Actor) -> dict[str, dict[str, Any]]:
    cur = db.execute(
        "select signal_key, status, attempts, claimed_epoch, last_error, last_http_status, delivered_at,"
        " next_attempt_at - clock_timestamp() as due_in"
        " from webhook_deliveries where user_id = %s",
        (a.user_id,),
    )
    cols = [c.name for c in cur.description]
    return {r[0]: dict(zip(cols, r, strict=True)) for r in cur.fetchall()}


def claim_hooks(api: Api, a: Actor, epoch: int, token: str | None = None, limit: int | None = None) -> Any:
    args: dict[str, Any] = {"p_epoch": epoch}
    if limit is not None:
        args["p_limit"] = limit
    return api.rpc("claim_webhook_deliveries", args, token or a.token)


def claimed_keys(api: Api, a: Actor, epoch: int, token: str | None = None) -> list[str]:
    r = claim_hooks(api, a, epoch, token)
    assert r.status == 200, r.body
    return [d["signal_key"] for d in r.body["deliveries"]]


def record(api: Api, a: Actor, epoch: int, results: Any, token: str | None = None) -> Any:
    return api.rpc("record_webhook_deliveries", {"p_epoch": epoch, "p_results": results}, token or a.token)


def outcomes(r: Any) -> list[str]:
    assert r.status == 200, r.body
    return [o["outcome"] for o in r.body]


def come_due(db: Any, a: Actor, seconds: float = 31) -> None:
    """Move every delivery's next attempt ``seconds`` into the past (an in-flight window that ended)."""
    db.execute(
        "update webhook_deliveries set next_attempt_at = next_attempt_at - make_interval(secs => %s)"
        " where user_id = %s",
        (seconds, a.user_id),
    )


# -- the webhook ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "secret", "message"),
    [
        ("ftp://example.test/x", None, "invalid_argument: webhook url: must start with http:// or https://"),
        ("example.test/hook", None, "invalid_argument: webhook url: must start with http:// or https://"),
        ("javascript:alert(1)", None, "invalid_argument: webhook url: must start with http:// or https://"),
        (
            "https://example.test/" + "a" * 2030,
            None,
            "invalid_argument: webhook url: at most 2048 characters",
        ),
        (
            "https://example.test/a b",
            None,
            "invalid_argument: webhook url: no spaces or control characters (percent-encode them)",
        ),
        (
            "https://user:pw@example.test/",
            None,
            "invalid_argument: webhook url: no user name or password in the URL (use the secret)",
        ),
        ("https://", None, "invalid_argument: webhook url: names no host"),
        ("http:///path", None, "invalid_argument: webhook url: names no host"),
        (URL, "x" * 201, "invalid_argument: webhook secret: at most 200 characters"),
    ],
)
def test_a_bad_webhook_is_refused_in_one_line(
    api: Api, actors: Actors, url: str, secret: str | None, message: str
) -> None:
    a = actors.make(machine=False)
    r = api.insert("webhooks", {"url": url, "secret": secret}, a.token)
    assert r.status == 400 and r.code == GuardError.INVALID_ARGUMENT, r.body
    assert r.body["message"] == message
    assert "x" * 50 not in str(r.body)  # the secret is not echoed
    # An update is checked the same way.
    set_webhook(api, a)
    r = api.update("webhooks", f"user_id=eq.{a.user_id}", {"url": url, "secret": secret}, a.token)
    assert r.status == 400 and r.body["message"] == message, r.body


def test_one_webhook_per_user_owned_by_the_database(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    row = set_webhook(api, a, "HTTP://Example.test:8443/hook?x=1#frag", secret="")
    assert row["user_id"] == a.user_id and row["secret"] is None and row["enabled"] is True
    again = api.insert("webhooks", {"url": URL}, a.token)
    assert again.status == 409, again.body
    # A client does not choose the times, and an update does not move the row to another user.
    r = api.update("webhooks", f"user_id=eq.{a.user_id}", {"created_at": "2000-01-01T00:00:00Z"}, a.token)
    assert r.status == 200 and r.body[0]["created_at"] == row["created_at"]
    # The machine reads it but never changes it.
    assert api.select("webhooks", a.machine_token).body == [api.select("webhooks", a.token).body[0]]
    r = api.update("webhooks", f"user_id=eq.{a.user_id}", {"enabled": False}, a.machine_token)
    assert r.status == 200 and r.body == []
    r = api.delete("webhooks", f"user_id=eq.{a.user_id}", a.machine_token)
    assert r.body == []
    r = api.delete("webhooks", f"user_id=eq.{a.user_id}", a.token)
    assert r.status == 200 and len(r.body) == 1


def test_row_level_security_keeps_webhooks_and_deliveries_to_their_owner(
    api: Api, actors: Actors, db: Any
) -> None:
    a, b = actors.make(), actors.make()
    set_webhook(api, a)
    epoch = claim(api, a)["lease"]["epoch"]
    (key,) = store(api, db, a, epoch, "AAAUSDT")
    # B sees nothing of A's, and cannot write a webhook for A.
    assert api.select("webhooks", b.token).body == []
    assert api.select("webhook_deliveries", b.token).body == []
    assert api.select("webhook_deliveries", b.machine_token).body == []
    r = api.insert("webhooks", {"user_id": a.user_id, "url": URL}, b.token)
    assert r.status == 403 and r.code == "42501", r.body
    assert api.update("webhooks", f"user_id=eq.{a.user_id}", {"url": URL + "/b"}, b.token).body == []
    # A and A's machine read A's deliveries; nobody writes them but the RPCs.
    mine = api.select("webhook_deliveries", a.token).body
    assert [(d["signal_key"], d["status"]) for d in mine] == [(key, "pending")]
    assert api.select("webhook_deliveries", a.machine_token).body == mine
    r = api.update("webhook_deliveries", f"signal_key=eq.{key}", {"status": "delivered"}, a.token)
    assert r.status == 403 and r.code == "42501", r.body
    r = api.insert("webhook_deliveries", {"signal_key": key}, a.token)
    assert r.status == 403 and r.code == "42501", r.body
    r = api.delete("webhook_deliveries", f"signal_key=eq.{key}", a.token)
    assert r.status == 403 and r.code == "42501", r.body
    # The anonymous key reaches nothing.
    assert api.select("webhooks", None).status in (401, 403)
    assert api.select("webhook_deliveries", None).status in (401, 403)
    assert api.rpc("claim_webhook_deliveries", {"p_epoch": epoch}, None).status in (401, 403)
    assert deliveries(db, a)[key]["status"] == "pending"


# -- the trigger ---------------------------------------------------------------------------------


def test_a_stored_signal_gets_its_delivery_row_when_a_webhook_is_set(
    api: Api, actors: Actors, db: Any
) -> None:
    a = actors.make(machine=False)
    epoch = claim(api, a)["lease"]["epoch"]
    before = store(api, db, a, epoch, "AAAUSDT")
    assert deliveries(db, a) == {}  # stored while no webhook was set: none
    set_webhook(api, a)
    keys = store(api, db, a, epoch, "BBBUSDT", "CCCUSDT")
    got = deliveries(db, a)
    assert set(got) == set(keys)
    assert {(d["status"], d["attempts"], d["claimed_epoch"]) for d in got.values()} == {("pending", 0, None)}
    # A duplicate write stores nothing and queues nothing more.
    assert store(api, db, a, epoch, "BBBUSDT", "AAAUSDT") == [keys[0], before[0]]
    assert set(deliveries(db, a)) == set(keys)
    # Switched off: new signals get none (and the pending ones wait).
    api.update("webhooks", f"user_id=eq.{a.user_id}", {"enabled": False}, a.token)
    store(api, db, a, epoch, "DDDUSDT")
    assert set(deliveries(db, a)) == set(keys)
    assert claimed_keys(api, a, epoch) == []
    api.update("webhooks", f"user_id=eq.{a.user_id}", {"enabled": True}, a.token)
    assert sorted(claimed_keys(api, a, epoch)) == sorted(keys)


# -- the claim -----------------------------------------------------------------------------------


def test_the_claim_needs_the_live_lease_under_its_epoch(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make()
    set_webhook(api, a)
    epoch = claim(api, a)["lease"]["epoch"]
    (key,) = store(api, db, a, epoch, "AAAUSDT")
    for wrong in (epoch - 1, epoch + 1):
        r = claim_hooks(api, a, wrong)
        assert r.status == 400 and r.code == GuardError.LEASE_NOT_HELD, r.body
        assert r.body["message"].startswith("lease_not_held: claiming webhook deliveries")
    # The machine does not hold the browser's lease, whatever epoch it names.
    r = claim_hooks(api, a, epoch, a.machine_token)
    assert r.status == 400 and r.code == GuardError.LEASE_NOT_HELD, r.body
    for limit in (0, 101):
        r = claim_hooks(api, a, epoch, limit=limit)
        assert r.status == 400 and r.code == GuardError.INVALID_ARGUMENT, r.body
    assert deliveries(db, a)[key]["attempts"] == 0  # refused claims claimed nothing
    # Another user's claim, under that user's own live lease, never sees A's rows.
    b = actors.make()
    set_webhook(api, b)
    b_epoch = claim(api, b)["lease"]["epoch"]
    assert claimed_keys(api, b, b_epoch) == []
    # An expired lease claims nothing either.
    backdate_lease(db, a.user_id, 31)
    assert claim_hooks(api, a, epoch).code == GuardError.LEASE_NOT_HELD


def test_the_claim_gives_everything_needed_to_post_and_marks_it_in_flight(
    api: Api, actors: Actors, db: Any
) -> None:
    a = actors.make()
    set_webhook(api, a, secret="s3cret")
    epoch = claim(api, a)["lease"]["epoch"]
    (key,) = store(api, db, a, epoch, "AAAUSDT")
    r = claim_hooks(api, a, epoch)
    assert r.status == 200, r.body
    assert r.body["epoch"] == epoch
    assert r.body["in_flight_seconds"] == core_webhooks.IN_FLIGHT_SECONDS
    assert r.body["max_attempts"] == core_webhooks.MAX_ATTEMPTS
    (d,) = r.body["deliveries"]
    stored = db.execute(
        "select s.trader_id::text, t.name, s.symbol, s.interval, s.price, s.source, s.caught_up,"
        " s.status, s.matched_conditions, s.candle_open_time"
        " from signals s join traders t on t.id = s.trader_id where s.signal_key = %s",
        (key,),
    ).fetchone()
    assert d["signal_key"] == key and d["attempts"] == 1
    assert (d["url"], d["secret"]) == (URL, "s3cret")
    assert (d["trader_id"], d["trader_name"], d["symbol"], d["interval"]) == stored[:4]
    assert d["price"] == float(stored[4])
    assert (d["source"], d["caught_up"], d["status"], d["matched_conditions"]) == (
        "local",
        stored[6],
        "new",
        stored[8],
    )
    # The core reads it as it is.
    batch = core_webhooks.parse_claim(r.body)
    assert batch.malformed == ()
    (parsed,) = batch.deliveries
    assert parsed.signal_key == key and parsed.trader_name == stored[1]
    assert parsed.candle_open_ms == int(stored[9].timestamp() * 1000)
    # In flight: not claimed again, by this caller or any other, until the window ends.
    row = deliveries(db, a)[key]
    assert row["claimed_epoch"] == epoch and row["attempts"] == 1
    assert timedelta(seconds=28) < row["due_in"] <= timedelta(seconds=30)
    assert claimed_keys(api, a, epoch) == []
    come_due(db, a)
    again = claim_hooks(api, a, epoch).body["deliveries"]
    assert [(x["signal_key"], x["attempts"]) for x in again] == [(key, 2)]


def test_the_claim_takes_at_most_its_limit_oldest_first(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make(machine=False)
    set_webhook(api, a)
    epoch = claim(api, a)["lease"]["epoch"]
    keys = store(api, db, a, epoch, "AAAUSDT", "BBBUSDT", "CCCUSDT")
    db.execute(
        "update webhook_deliveries set next_attempt_at = now() - make_interval(secs => %s)"
        " where signal_key = %s",
        (100, keys[2]),
    )
    first = claim_hooks(api, a, epoch, limit=2).body["deliveries"]
    assert len(first) == 2 and keys[2] in {d["signal_key"] for d in first}
    assert len(claim_hooks(api, a, epoch, limit=2).body["deliveries"]) == 1
    # Not due yet: a retry in the future is not claimed.
    db.execute(
        "update webhook_deliveries set next_attempt_at = now() + interval '1 minute' where user_id = %s",
        (a.user_id,),
    )
    come_due(db, a, 31)
    assert claimed_keys(api, a, epoch) == []


# -- the record ----------------------------------------------------------------------------------


def test_record_delivered_retry_and_failed(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make(machine=False)
    set_webhook(api, a)
    epoch = claim(api, a)["lease"]["epoch"]
    ok, later, refused, spent = store(api, db, a, epoch, "AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT")
    # The fourth has had all but one of its attempts.
    db.execute(
        "update webhook_deliveries set attempts = %s where signal_key = %s",
        (core_webhooks.MAX_ATTEMPTS - 1, spent),
    )
    assert len(claimed_keys(api, a, epoch)) == 4
    r = record(
        api,
        a,
        epoch,
        [
            {"signal_key": ok, "delivered": True, "http_status": 204},
            {"signal_key": later, "delivered": False, "http_status": 503, "error": "HTTP 503", "retry_in": 4},
            {"signal_key": refused, "delivered": False, "http_status": 404, "error": "HTTP 404: not retried"},
            {"signal_key": spent, "delivered": False, "error": "ConnectError: refused", "retry_in": 5},
        ],
    )
    assert outcomes(r) == ["delivered", "retry", "failed", "failed"]
    assert r.body[3]["attempts"] == core_webhooks.MAX_ATTEMPTS
    got = deliveries(db, a)
    assert got[ok]["status"] == "delivered" and got[ok]["delivered_at"] is not None
    assert got[ok]["last_http_status"] == 204 and got[ok]["last_error"] is None
    assert got[later]["status"] == "pending" and got[later]["last_error"] == "HTTP 503"
    assert timedelta(seconds=2) < got[later]["due_in"] <= timedelta(seconds=4)
    assert (got[refused]["status"], got[refused]["last_http_status"]) == ("failed", 404)
    assert got[refused]["last_error"] == "HTTP 404: not retried"
    assert (got[spent]["status"], got[spent]["last_error"]) == ("failed", "ConnectError: refused")
    # A second outcome changes nothing; a key not in flight under this epoch neither.
    r = record(
        api,
        a,
        epoch,
        [
            {"signal_key": ok, "delivered": False, "retry_in": 1},
            {"signal_key": refused, "delivered": True},
            {"signal_key": "no-such-key", "delivered": True},
        ],
    )
    assert outcomes(r) == ["already_delivered", "not_claimed", "not_found"]
    assert deliveries(db, a)[refused]["status"] == "failed"
    # The retried one comes due after its retry time, and is delivered on its second attempt; a
    # delivered one is never claimed again.
    come_due(db, a, 5)
    again = claim_hooks(api, a, epoch).body["deliveries"]
    assert [(d["signal_key"], d["attempts"]) for d in again] == [(later, 2)]
    assert outcomes(
        record(api, a, epoch, [{"signal_key": later, "delivered": True, "http_status": 200}])
    ) == ["delivered"]
    come_due(db, a, 3600)
    assert claimed_keys(api, a, epoch) == []
    # A long error is kept to its first 500 characters.
    (long,) = store(api, db, a, epoch, "EEEUSDT")
    claimed_keys(api, a, epoch)
    assert outcomes(
        record(api, a, epoch, [{"signal_key": long, "delivered": False, "error": "e" * 900}])
    ) == ["failed"]
    assert deliveries(db, a)[long]["last_error"] == "e" * 500


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ("x", "each result must be an object"),
        ({"delivered": True}, "signal_key must be a text of 1 to 200 characters"),
        ({"signal_key": "", "delivered": True}, "signal_key must be a text of 1 to 200 characters"),
        ({"signal_key": "k"}, "delivered must be true or false"),
        ({"signal_key": "k", "delivered": "yes"}, "delivered must be true or false"),
        ({"signal_key": "k", "delivered": True, "http_status": 99}, "http_status must be an integer"),
        ({"signal_key": "k", "delivered": True, "http_status": 200.5}, "http_status must be an integer"),
        ({"signal_key": "k", "delivered": False, "error": 5}, "error must be a text or null"),
        ({"signal_key": "k", "delivered": False, "retry_in": -1}, "retry_in must be a number of seconds"),
        ({"signal_key": "k", "delivered": False, "retry_in": "5"}, "retry_in must be a number of seconds"),
    ],
)
def test_a_malformed_result_is_rejected_alone(
    api: Api, actors: Actors, db: Any, item: Any, problem: str
) -> None:
    a = actors.make(machine=False)
    set_webhook(api, a)
    epoch = claim(api, a)["lease"]["epoch"]
    (key,) = store(api, db, a, epoch, "AAAUSDT")
    claimed_keys(api, a, epoch)
    r = record(api, a, epoch, [item, {"signal_key": key, "delivered": True}])
    assert outcomes(r) == ["rejected", "delivered"]
    assert r.body[0]["code"] == GuardError.INVALID_ARGUMENT
    assert r.body[0]["message"].startswith("invalid_argument: " + problem)


def test_a_malformed_call_is_refused(api: Api, actors: Actors) -> None:
    a = actors.make(machine=False)
    epoch = claim(api, a)["lease"]["epoch"]
    for bad in ({"signal_key": "k"}, None, [{"signal_key": "k", "delivered": True}] * 101):
        r = record(api, a, epoch, bad)
        assert r.status == 400 and r.code == GuardError.INVALID_ARGUMENT, r.body
    r = record(api, a, epoch, [{"signal_key": "k", "delivered": True}] * 2)
    assert outcomes(r) == ["not_found", "rejected"]
    assert r.body[1]["message"] == "invalid_argument: signal_key is named twice in one call"


def test_a_holder_that_lost_the_lease_records_nothing(api: Api, actors: Actors, db: Any) -> None:
    a = actors.make(machine=False)
    set_webhook(api, a)
    epoch = claim(api, a)["lease"]["epoch"]
    (key,) = store(api, db, a, epoch, "AAAUSDT")
    assert claimed_keys(api, a, epoch) == [key]
    backdate_lease(db, a.user_id, 31)
    r = record(api, a, epoch, [{"signal_key": key, "delivered": True, "http_status": 200}])
    assert r.status == 400 and r.code == GuardError.LEASE_NOT_HELD, r.body
    assert r.body["message"].startswith("lease_not_held: recording webhook deliveries")
    assert deliveries(db, a)[key]["status"] == "pending"
    # The next holder (another tab) may not record the old epoch's claim either: it claims it anew
    # once the window has ended, and records under its own epoch.
    new = claim(api, a, a.other_holder())["lease"]["epoch"]
    assert new == epoch + 1
    assert outcomes(record(api, a, new, [{"signal_key": key, "delivered": True}])) == ["not_claimed"]
    come_due(db, a)
    assert claimed_keys(api, a, new) == [key]
    assert outcomes(record(api, a, new, [{"signal_key": key, "delivered": True}])) == ["delivered"]


# -- retrying a failed delivery ------------------------------------------------------------------


def test_the_user_retries_a_failed_delivery(api: Api, actors: Actors, db: Any) -> None:
    a, b = actors.make(machine=False), actors.make(machine=False)
    set_webhook(api, a)
    epoch = claim(api, a)["lease"]["epoch"]
    failed, ok = store(api, db, a, epoch, "AAAUSDT", "BBBUSDT")
    claimed_keys(api, a, epoch)
    record(
        api,
        a,
        epoch,
        [
            {"signal_key": failed, "delivered": False, "http_status": 410},
            {"signal_key": ok, "delivered": True},
        ],
    )
    # Changing the webhook, or switching it off and on, leaves a failed delivery failed.
    api.update("webhooks", f"user_id=eq.{a.user_id}", {"url": URL + "/v2", "secret": "new"}, a.token)
    api.update("webhooks", f"user_id=eq.{a.user_id}", {"enabled": False}, a.token)
    api.update("webhooks", f"user_id=eq.{a.user_id}", {"enabled": True}, a.token)
    assert deliveries(db, a)[failed]["status"] == "failed"
    come_due(db, a, 3600)
    assert claimed_keys(api, a, epoch) == []
    # Another user cannot retry it, and learns nothing about it.
    r = api.rpc("retry_webhook_delivery", {"p_signal_key": failed}, b.token)
    assert r.body == {"signal_key": failed, "retried": False, "status": None}
    r = api.rpc("retry_webhook_delivery", {"p_signal_key": failed}, a.token)
    assert r.status == 200 and r.body == {"signal_key": failed, "retried": True, "status": "pending"}
    row = deliveries(db, a)[failed]
    assert (row["status"], row["attempts"], row["claimed_epoch"]) == ("pending", 0, None)
    assert row["last_error"] == "HTTP 410"  # until the next attempt
    again = claim_hooks(api, a, epoch).body["deliveries"]
    assert [(d["signal_key"], d["attempts"], d["url"]) for d in again] == [(failed, 1, URL + "/v2")]
    # Only a failed one is retried.
    r = api.rpc("retry_webhook_delivery", {"p_signal_key": ok}, a.token)
    assert r.body == {"signal_key": ok, "retried": False, "status": "delivered"}
    r = api.rpc("retry_webhook_delivery", {"p_signal_key": ""}, a.token)
    assert r.status == 400 and r.code == GuardError.INVALID_ARGUMENT


# -- the handoff ---------------------------------------------------------------------------------


def test_a_delivery_the_dead_tab_claimed_is_posted_once_by_the_machine(
    api: Api, actors: Actors, db: Any
) -> None:
    a = actors.make()
    set_webhook(api, a)
    tab_epoch = claim(api, a)["lease"]["epoch"]
    (key,) = store(api, db, a, tab_epoch, "AAAUSDT")
    # The tab claims the delivery, posts (perhaps) and dies before recording it.
    assert claimed_keys(api, a, tab_epoch) == [key]
    backdate_lease(db, a.user_id, 31)
    heartbeat(api, a, "starting")
    cloud = cloud_claim(api, a)
    assert cloud["granted"], cloud
    machine_epoch = cloud["lease"]["epoch"]
    assert machine_epoch == tab_epoch + 1
    # While the tab's attempt may still run, the machine does not post it.
    assert claimed_keys(api, a, machine_epoch, a.machine_token) == []
    # Once the in-flight window has ended, the machine claims it (its second attempt) and delivers it.
    come_due(db, a)
    again = claim_hooks(api, a, machine_epoch, a.machine_token).body["deliveries"]
    assert [(d["signal_key"], d["attempts"], d["url"]) for d in again] == [(key, 2, URL)]
    r = record(
        api, a, machine_epoch, [{"signal_key": key, "delivered": True, "http_status": 200}], a.machine_token
    )
    assert outcomes(r) == ["delivered"]
    # The tab's late record is fenced off; the machine's own signals are delivered alike.
    r = record(api, a, tab_epoch, [{"signal_key": key, "delivered": False, "retry_in": 1}])
    assert r.code == GuardError.LEASE_NOT_HELD
    (cloud_key,) = store(api, db, a, machine_epoch, "BBBUSDT", token=a.machine_token)
    come_due(db, a, 3600)
    assert claimed_keys(api, a, machine_epoch, a.machine_token) == [cloud_key]
    row = deliveries(db, a)[key]
    assert (row["status"], row["attempts"], row["claimed_epoch"]) == ("delivered", 2, machine_epoch)


def test_the_core_mirrors_the_numbers(db: Any) -> None:
    row = db.execute(
        "select private.webhook_max_attempts(), private.seconds(private.webhook_in_flight())"
    ).fetchone()
    assert row == (core_webhooks.MAX_ATTEMPTS, core_webhooks.IN_FLIGHT_SECONDS)
    # A post's own time limit ends well inside the in-flight window.
    assert core_webhooks.POST_TIMEOUT * 2 <= core_webhooks.IN_FLIGHT_SECONDS
    assert db_now(db) is not None
