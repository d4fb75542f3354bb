"""The pure core shared by the browser tab and the cloud worker.

Nothing in this package performs I/O or reads a clock: time is always passed in. The rule is enforced
by ``src/signalguard/core/ruff.toml`` (banned imports) and by mypy in strict mode.
"""
