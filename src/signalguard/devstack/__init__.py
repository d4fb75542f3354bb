"""The local Supabase-compatible stack: PostgreSQL, PostgREST 12 and a gateway, without Docker.

DEVELOPMENT AND TESTS ONLY: it binds 127.0.0.1 and signs tokens with a secret kept in its state folder.
"""
