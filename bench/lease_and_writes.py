"""What the database guard costs: stack start, claim latency, and fenced signal writes.

Every figure is paired with a baseline measured in the same run on the same throwaway stack:

- stack start, cold (new cluster) and warm (existing cluster);
- ``claim_local_lease`` (lock, decide, renew) against ``schema_version`` (a trivial RPC) through the
  same gateway and PostgREST: the price of the lease logic per 5 s poll;
- signal inserts through PostgREST into ``signals`` (RLS + write guard trigger + unique key) against
  the same rows into an unguarded copy of the table (same columns, constraints and indexes, no policy,
  no trigger), and through ``write_signals`` (one outcome per row).
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from signalguard.devstack import tokens
from signalguard.devstack.config import StackConfig
from signalguard.devstack.stack import LocalStack

N_CALLS = 400
N_SIGNALS = 6000
BATCH = 200


def timed_calls(
    http: httpx.Client, url: str, headers: dict[str, str], body: dict[str, Any], n: int
) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = http.post(url, json=body, headers=headers)
        out.append(time.perf_counter() - t)
        r.raise_for_status()
    return out


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000


def rows_for(
    user: str, trader: str, epoch: int, start: datetime, n: int, offset: int
) -> list[dict[str, Any]]:
    return [
        {
            "trader_id": trader,
            "user_id": user,
            "symbol": f"S{(offset + i) % 500:03d}USDT",
            "interval": "1s",
            "candle_open_time": (start + timedelta(seconds=(offset + i) // 500)).isoformat(),
            "price": 100.0 + i,
            "matched_conditions": ["RSI(14) < 30"],
            "source": "local",
            "epoch": epoch,
        }
        for i in range(n)
    ]


def main() -> None:
    state = Path(tempfile.mkdtemp(prefix="signalguard-bench-"))
    stack = LocalStack(StackConfig.for_tests(state))
    cold = stack.start()
    stack.stop()
    warm_stack = LocalStack(stack.config)
    warm = warm_stack.start()
    try:
        run(warm_stack, cold.total, warm.total)
    finally:
        warm_stack.reset()


def run(stack: LocalStack, cold: float, warm: float) -> None:
    print(f"stack start: cold {cold:.2f} s (new cluster), warm {warm:.2f} s (existing cluster)")
    secret = stack.config.secrets().jwt_secret
    user, trader = str(uuid.uuid4()), str(uuid.uuid4())
    with stack.connect() as conn:
        conn.execute("insert into auth.users (id, email) values (%s, 'bench@signalguard.test')", (user,))
        conn.execute("insert into traders (id, user_id, name) values (%s, %s, 'bench')", (trader, user))
        conn.execute("create table public.bench_plain (like public.signals including all)")
        conn.execute("grant all on public.bench_plain to authenticated")
        conn.execute("notify pgrst, 'reload schema'")
    token = tokens.user_token(secret, user, "bench@signalguard.test")
    headers = {"apikey": stack.config.anon_key(), "Authorization": f"Bearer {token}"}
    base = f"{stack.url}/rest/v1"
    time.sleep(0.5)  # schema cache reload

    with httpx.Client(timeout=60) as http:
        claim = timed_calls(
            http, f"{base}/rpc/claim_local_lease", headers, {"p_holder_id": "bench-holder-1"}, N_CALLS
        )
        trivial = timed_calls(http, f"{base}/rpc/schema_version", headers, {}, N_CALLS)
        print(
            f"claim_local_lease: p50 {pct(claim, 0.5):.2f} ms, p99 {pct(claim, 0.99):.2f} ms | "
            f"baseline schema_version: p50 {pct(trivial, 0.5):.2f} ms, p99 {pct(trivial, 0.99):.2f} ms"
            f" | ratio p50 {statistics.median(claim) / statistics.median(trivial):.2f}x"
        )

        epoch = http.post(
            f"{base}/rpc/claim_local_lease", json={"p_holder_id": "bench-holder-1"}, headers=headers
        ).json()["lease"]["epoch"]
        with stack.connect() as conn:
            # Reach the lease window back an hour, so every bench candle lies inside it.
            conn.execute(
                "update lease_epochs set started_at = started_at - interval '1 hour', "
                "valid_until = clock_timestamp() + interval '1 hour' where user_id = %s",
                (user,),
            )
            conn.execute(
                "update execution_leases set expires_at = clock_timestamp() + interval '1 hour' "
                "where user_id = %s",
                (user,),
            )
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=50)
        prefer = {**headers, "Prefer": "return=minimal"}
        results = {}
        for name, url, wrap in (
            ("plain table (baseline)", f"{base}/bench_plain", False),
            ("signals (RLS + guard)", f"{base}/signals", False),
            ("write_signals RPC", f"{base}/rpc/write_signals", True),
        ):
            offset = {
                "plain table (baseline)": 0,
                "signals (RLS + guard)": 0,
                "write_signals RPC": N_SIGNALS,
            }[name]
            t = time.perf_counter()
            for i in range(0, N_SIGNALS, BATCH):
                batch = rows_for(user, trader, epoch, start, BATCH, offset + i)
                body: Any = {"p_signals": batch} if wrap else batch
                r = http.post(url, json=body, headers=prefer)
                r.raise_for_status()
                if wrap:
                    assert all(o["outcome"] == "inserted" for o in r.json()), r.json()[:1]
            results[name] = N_SIGNALS / (time.perf_counter() - t)
        base_rate = results["plain table (baseline)"]
        for name, rate in results.items():
            print(
                f"insert {N_SIGNALS} signals in batches of {BATCH}, {name}: {rate:,.0f} rows/s "
                f"({base_rate / rate:.2f}x the baseline's time)"
            )


if __name__ == "__main__":
    main()
