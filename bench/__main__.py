"""Run every benchmark: ``python -m bench`` (or ``make bench``).

Each prints its figures beside a baseline measured in the same run.
"""

from bench import burst, guard_cost, indicators, lease_and_writes, preview, snapshot, startup

if __name__ == "__main__":
    print("== indicators: update throughput vs talipp, accuracy vs TA-Lib")
    indicators.main()
    print("\n== candle burst: 20,000 trader x symbol evaluations, Pyodide and CPython")
    burst.main()
    print("\n== trader preview: first preview, threshold edit and engine from scratch, Pyodide and CPython")
    preview.main()
    print("\n== the database guard: stack start, claim latency, fenced writes")
    lease_and_writes.main()
    print("\n== the write guard per signal, before and after the write hardening")
    guard_cost.main()
    print("\n== start-up: navigation to ready, the app vs a bare loadPyodide() page, in Chromium")
    startup.main([])
    print("\n== Pyodide memory snapshot: its size, and start-up from it vs a cold start, in Chromium")
    snapshot.main(["--brotli-quality", "9"])
