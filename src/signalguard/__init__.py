"""signalguard: trading-signal screening with the database as the judge of who may execute.

The package is split by what each part may touch:

- :mod:`signalguard.core` is pure Python shared by the browser (Pyodide) and the cloud worker
  (CPython): no I/O, no clock reads, no platform imports.
- :mod:`signalguard.devstack` runs the local Supabase-compatible stack (PostgreSQL, PostgREST and a
  gateway) for development and tests.
"""

__version__ = "0.1.0"
