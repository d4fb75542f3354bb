"""Check that the declarative schema files describe what the migrations build.

``supabase/schemas/*.sql`` state the database's final shape, one concern a file; ``supabase/migrations/``
are the history that a hosted project replays. The next migration is diffed from the schema files, so
they must agree with the migrations at every commit. The Supabase CLI's ``db diff`` needs Docker, so
this check does the comparison on a plain PostgreSQL cluster instead:

1. two fresh databases in one cluster, each with the local-only bootstrap (``sql/00_supabase_compat.sql``:
   Supabase's roles, ``auth``, default grants) that a hosted project already has;
2. all migrations applied to one (as the local stack applies them), the schema files in the order
   ``supabase/config.toml`` lists them (``[db.migrations] schema_paths``) to the other;
3. both catalogs read into one text per object and compared: schemas, tables and views (columns in
   order, with type, nullability, default, generation, column privileges), constraints, indexes,
   functions (``pg_get_functiondef``: arguments, result, language, volatility, security definer,
   parallel safety, ``SET`` options, body), triggers, row level security (switch and policies), types,
   sequences, rules, publications, extensions, privileges of every object and default privileges,
   owners and comments.

Privileges are compared as sets (the order of an ACL depends on the order of the grants that built
it), and an object that never had a grant counts as having its default privileges. Rows are not
compared: the component registry (``private.schema_components``) is data each migration writes.

Run it after editing a schema file or writing a migration::

    .venv/bin/python -m signalguard.devstack.schemacheck     # or scripts/schema-check

It starts a throwaway cluster, prints what differs (one unified diff per object) and exits 1, or
prints that the two agree and exits 0.
"""

from __future__ import annotations

import argparse
import difflib
import glob
import shutil
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from signalguard.devstack import schema
from signalguard.devstack.config import REPO_ROOT, StackConfig
from signalguard.devstack.postgres import Postgres

#: The Supabase CLI's project folder: ``config.toml``, ``migrations/``, ``schemas/``.
SUPABASE_DIR = REPO_ROOT / "supabase"

#: One object of a catalog: its kind and qualified name (``function private.seconds(interval)``) to the
#: lines that describe it.
Snapshot = dict[str, str]

# -- the schema files ----------------------------------------------------------------------------


class SchemaFilesError(ValueError):
    """``config.toml`` does not list the schema files usably; the message says what to fix."""


def schema_files(supabase_dir: Path = SUPABASE_DIR) -> list[Path]:
    """The schema files in the order ``config.toml``'s ``[db.migrations] schema_paths`` gives.

    Patterns are relative to the ``supabase`` folder and may be globs, as the Supabase CLI reads them;
    the files a glob matches come in name order, and a file listed twice is applied once. Every
    ``.sql`` file under ``schemas/`` must be listed: one left out would be in the repository but in
    neither the check nor the next ``db diff``.
    """
    config_path = supabase_dir / "config.toml"
    try:
        config = tomllib.loads(config_path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SchemaFilesError(f"{config_path}: {exc}") from exc
    patterns = config.get("db", {}).get("migrations", {}).get("schema_paths")
    if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) for p in patterns):
        raise SchemaFilesError(f"{config_path}: [db.migrations] schema_paths must list the schema files")
    files: list[Path] = []
    for pattern in patterns:
        matched = sorted(Path(p).resolve() for p in glob.glob(str(supabase_dir / pattern)))
        if not matched:
            raise SchemaFilesError(f"{config_path}: schema_paths entry {pattern!r} matches no file")
        files += [p for p in matched if p not in files]
    unlisted = sorted(set((supabase_dir / "schemas").resolve().rglob("*.sql")) - set(files))
    if unlisted:
        names = ", ".join(str(p.relative_to(supabase_dir.resolve())) for p in unlisted)
        raise SchemaFilesError(f"{config_path}: schema_paths does not list {names}")
    return files


def apply_schema_files(conn: psycopg.Connection[tuple[object, ...]], files: list[Path]) -> None:
    """Run the schema files in order, in one transaction; a failure names its file."""
    with conn.transaction():
        for path in files:
            try:
                conn.execute(path.read_text())
            except psycopg.Error as exc:
                raise RuntimeError(f"schema file {path.name} failed: {exc}") from exc


# -- reading a catalog -----------------------------------------------------------------------------

#: Schemas of the application and of the bootstrap (equal on both sides, so they cost nothing).
_USER_SCHEMA = "{ns}.nspname not like 'pg\\_%' and {ns}.nspname <> 'information_schema'"


def _not_from_extension(oid: str, catalog: str) -> str:
    """A condition: the object is not a member of an extension (pgcrypto's functions are not ours)."""
    return (
        f"not exists (select 1 from pg_depend x where x.classid = '{catalog}'::regclass "
        f"and x.objid = {oid} and x.deptype = 'e')"
    )


def _acl(acl: str, kind: str | None = None, owner: str | None = None) -> str:
    """An expression: the privileges in ``acl`` as sorted lines ``grantee: PRIVILEGES (by grantor)``.

    With ``kind`` (an SQL expression: ``acldefault``'s object type) and ``owner``, a null ACL (never
    granted nor revoked) reads as the object's default privileges, so a function whose grants were
    taken and given back equals one never touched.
    """
    source = f"coalesce({acl}, acldefault({kind}, {owner}))" if kind else acl
    return f"""(
      select coalesce(string_agg(g.line, '; ' order by g.line), 'none')
        from (select case a.grantee when 0 then 'PUBLIC' else pg_get_userbyid(a.grantee) end || ': '
                     || string_agg(a.privilege_type
                                   || case when a.is_grantable then ' WITH GRANT OPTION' else '' end,
                                   ', ' order by a.privilege_type)
                     || ' (by ' || pg_get_userbyid(a.grantor) || ')' as line
                from aclexplode({source}) a
               group by a.grantee, a.grantor) g)"""


#: ``acldefault``'s object type for a relation: a sequence's defaults differ from a table's.
_RELATION_KIND = "(case when c.relkind = 'S' then 's' else 'r' end)::\"char\""

_QUERIES: dict[str, str] = {
    "schema": f"""
      select n.nspname,
             'owner ' || pg_get_userbyid(n.nspowner),
             'privileges ' || {_acl("n.nspacl", "'n'", "n.nspowner")},
             'comment ' || obj_description(n.oid, 'pg_namespace')
        from pg_namespace n
       where {_USER_SCHEMA.format(ns="n")}""",
    "extension": """
      select e.extname, 'version ' || e.extversion, 'schema ' || n.nspname
        from pg_extension e join pg_namespace n on n.oid = e.extnamespace""",
    "relation": f"""
      select c.oid::regclass::text,
             'kind ' || c.relkind::text || ', persistence ' || c.relpersistence::text
               || ', replica identity ' || c.relreplident::text,
             'row level security ' || case when c.relrowsecurity then 'enabled' else 'disabled' end
               || case when c.relforcerowsecurity then ', forced' else '' end,
             'options ' || c.reloptions::text,
             'columns ' || (select string_agg(quote_ident(a.attname), ', ' order by a.attnum)
                              from pg_attribute a
                             where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped),
             'view ' || pg_get_viewdef(c.oid),
             'sequence ' || (select format('%s start %s increment %s min %s max %s cache %s cycle %s',
                                           format_type(s.seqtypid, null), s.seqstart, s.seqincrement,
                                           s.seqmin, s.seqmax, s.seqcache, s.seqcycle)
                               from pg_sequence s where s.seqrelid = c.oid),
             'owner ' || pg_get_userbyid(c.relowner),
             'privileges ' || {_acl("c.relacl", _RELATION_KIND, "c.relowner")},
             'comment ' || obj_description(c.oid, 'pg_class')
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where c.relkind in ('r', 'p', 'v', 'm', 'S', 'f') and {_USER_SCHEMA.format(ns="n")}
         and {_not_from_extension("c.oid", "pg_class")}""",
    "column": f"""
      select c.oid::regclass::text || '.' || quote_ident(a.attname),
             'type ' || format_type(a.atttypid, a.atttypmod)
               || case when a.attcollation <> t.typcollation
                       then ' collate ' || (select quote_ident(l.collname) from pg_collation l
                                             where l.oid = a.attcollation) else '' end,
             case when a.attnotnull then 'not null' else 'null' end,
             case a.attgenerated when 's' then 'generated always as ' || pg_get_expr(d.adbin, d.adrelid)
                                 || ' stored'
                  else 'default ' || pg_get_expr(d.adbin, d.adrelid) end,
             case a.attidentity when 'a' then 'identity always' when 'd' then 'identity by default' end,
             'privileges ' || case when a.attacl is not null then {_acl("a.attacl")} end,
             'comment ' || col_description(c.oid, a.attnum)
        from pg_attribute a
        join pg_class c on c.oid = a.attrelid
        join pg_namespace n on n.oid = c.relnamespace
        join pg_type t on t.oid = a.atttypid
        left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
       where c.relkind in ('r', 'p', 'v', 'm', 'f') and a.attnum > 0 and not a.attisdropped
         and {_USER_SCHEMA.format(ns="n")} and {_not_from_extension("c.oid", "pg_class")}""",
    "constraint": f"""
      select co.conrelid::regclass::text || '.' || quote_ident(co.conname),
             pg_get_constraintdef(co.oid),
             case when co.condeferrable then 'deferrable' end,
             case when co.condeferred then 'initially deferred' end,
             case when not co.convalidated then 'not valid' end,
             'comment ' || obj_description(co.oid, 'pg_constraint')
        from pg_constraint co
        join pg_class c on c.oid = co.conrelid
        join pg_namespace n on n.oid = c.relnamespace
       where {_USER_SCHEMA.format(ns="n")} and {_not_from_extension("c.oid", "pg_class")}""",
    "index": f"""
      select i.indexrelid::regclass::text,
             pg_get_indexdef(i.indexrelid),
             case when i.indisclustered then 'clustered' end,
             'options ' || ic.reloptions::text,
             'comment ' || obj_description(i.indexrelid, 'pg_class')
        from pg_index i
        join pg_class ic on ic.oid = i.indexrelid
        join pg_class c on c.oid = i.indrelid
        join pg_namespace n on n.oid = c.relnamespace
       where {_USER_SCHEMA.format(ns="n")} and {_not_from_extension("c.oid", "pg_class")}""",
    "function": f"""
      select p.oid::regprocedure::text,
             case when p.prokind in ('f', 'p', 'w') then pg_get_functiondef(p.oid)
                  else 'kind ' || p.prokind::text end,
             'owner ' || pg_get_userbyid(p.proowner),
             'privileges ' || {_acl("p.proacl", "'f'", "p.proowner")},
             'comment ' || obj_description(p.oid, 'pg_proc')
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where {_USER_SCHEMA.format(ns="n")} and {_not_from_extension("p.oid", "pg_proc")}""",
    "trigger": f"""
      select t.tgrelid::regclass::text || '.' || quote_ident(t.tgname),
             pg_get_triggerdef(t.oid),
             'enabled ' || t.tgenabled::text,
             'comment ' || obj_description(t.oid, 'pg_trigger')
        from pg_trigger t
        join pg_class c on c.oid = t.tgrelid
        join pg_namespace n on n.oid = c.relnamespace
       where not t.tgisinternal and {_USER_SCHEMA.format(ns="n")}""",
    "policy": f"""
      select p.polrelid::regclass::text || '.' || quote_ident(p.polname),
             'for ' || case p.polcmd when 'r' then 'select' when 'a' then 'insert' when 'w' then 'update'
                                     when 'd' then 'delete' else 'all' end
               || case when p.polpermissive then ' (permissive)' else ' (restrictive)' end,
             'to ' || (select string_agg(case r when 0 then 'PUBLIC' else pg_get_userbyid(r) end, ', '
                                         order by 1)
                         from unnest(p.polroles) r),
             'using ' || pg_get_expr(p.polqual, p.polrelid),
             'with check ' || pg_get_expr(p.polwithcheck, p.polrelid),
             'comment ' || obj_description(p.oid, 'pg_policy')
        from pg_policy p
        join pg_class c on c.oid = p.polrelid
        join pg_namespace n on n.oid = c.relnamespace
       where {_USER_SCHEMA.format(ns="n")}""",
    # Types of their own: enums, domains, ranges and free-standing composites (not a table's row
    # type, nor the array type PostgreSQL makes beside every type).
    "type": f"""
      select t.oid::regtype::text,
             'kind ' || t.typtype::text,
             case t.typtype
               when 'e' then 'labels ' || (select string_agg(quote_literal(e.enumlabel), ', '
                                                             order by e.enumsortorder)
                                             from pg_enum e where e.enumtypid = t.oid)
               when 'd' then 'over ' || format_type(t.typbasetype, t.typtypmod)
                             || coalesce(' default ' || t.typdefault, '')
                             || case when t.typnotnull then ' not null' else '' end
                             || coalesce((select string_agg(' constraint ' || quote_ident(k.conname) || ' '
                                                            || pg_get_constraintdef(k.oid), ''
                                                            order by k.conname)
                                            from pg_constraint k where k.contypid = t.oid), '')
               when 'c' then 'attributes ' || (select string_agg(quote_ident(a.attname) || ' '
                                                                 || format_type(a.atttypid, a.atttypmod),
                                                                 ', ' order by a.attnum)
                                                 from pg_attribute a
                                                where a.attrelid = t.typrelid and a.attnum > 0
                                                  and not a.attisdropped)
               when 'r' then 'range of ' || (select format_type(r.rngsubtype, null) from pg_range r
                                             where r.rngtypid = t.oid)
             end,
             'owner ' || pg_get_userbyid(t.typowner),
             'privileges ' || {_acl("t.typacl", "'T'", "t.typowner")},
             'comment ' || obj_description(t.oid, 'pg_type')
        from pg_type t join pg_namespace n on n.oid = t.typnamespace
       where {_USER_SCHEMA.format(ns="n")} and {_not_from_extension("t.oid", "pg_type")}
         and (t.typrelid = 0 or (select c.relkind from pg_class c where c.oid = t.typrelid) = 'c')
         and not exists (select 1 from pg_type e where e.typarray = t.oid)""",
    "rule": """
      select quote_ident(r.schemaname) || '.' || quote_ident(r.tablename) || '.' || quote_ident(r.rulename),
             r.definition
        from pg_rules r
       where r.schemaname not like 'pg\\_%' and r.schemaname <> 'information_schema'""",
    "publication": """
      select p.pubname,
             'all tables ' || p.puballtables,
             'publishes ' || concat_ws(', ', case when p.pubinsert then 'insert' end,
                                       case when p.pubupdate then 'update' end,
                                       case when p.pubdelete then 'delete' end,
                                       case when p.pubtruncate then 'truncate' end),
             'tables ' || (select string_agg(quote_ident(t.schemaname) || '.' || quote_ident(t.tablename),
                                             ', ' order by 1)
                             from pg_publication_tables t where t.pubname = p.pubname)
        from pg_publication p""",
    "default privileges": f"""
      select pg_get_userbyid(d.defaclrole) || ' in ' || coalesce(quote_ident(n.nspname), 'every schema')
               || ' on ' || case d.defaclobjtype when 'r' then 'tables' when 'S' then 'sequences'
                                 when 'f' then 'functions' when 'T' then 'types' when 'n' then 'schemas'
                                 else d.defaclobjtype::text end,
             {_acl("d.defaclacl")}
        from pg_default_acl d left join pg_namespace n on n.oid = d.defaclnamespace""",
}


def snapshot(conn: psycopg.Connection[tuple[object, ...]]) -> Snapshot:
    """Every object of ``conn``'s database that the schema describes, as ``{kind name: lines}``.

    Read with an empty search path, so every name outside ``pg_catalog`` comes schema-qualified and
    both databases print the same object the same way.
    """
    found: Snapshot = {}
    with conn.transaction():
        conn.execute("set local search_path = ''")
        for kind, query in _QUERIES.items():
            for name, *facts in conn.execute(query).fetchall():
                found[f"{kind} {name}"] = "\n".join(str(f) for f in facts if f is not None)
    return found


# -- comparing -------------------------------------------------------------------------------------

MIGRATIONS_LABEL = "migrations"
SCHEMA_FILES_LABEL = "schema files"


def differences(migrated: Snapshot, declared: Snapshot) -> list[str]:
    """What differs between the migrated and the declared database, one readable entry per object.

    An object only one side has is named with its lines; an object both have but describe differently
    comes with a unified diff (``-`` what the migrations built, ``+`` what the schema files declare).
    """
    found: list[str] = []
    for key in sorted(migrated.keys() | declared.keys()):
        if key not in declared:
            found.append(f"only in the {MIGRATIONS_LABEL}: {key}\n" + _indent(migrated[key]))
        elif key not in migrated:
            found.append(f"only in the {SCHEMA_FILES_LABEL}: {key}\n" + _indent(declared[key]))
        elif migrated[key] != declared[key]:
            diff = difflib.unified_diff(
                migrated[key].splitlines(),
                declared[key].splitlines(),
                fromfile=MIGRATIONS_LABEL,
                tofile=SCHEMA_FILES_LABEL,
                lineterm="",
            )
            found.append(f"differs: {key}\n" + _indent("\n".join(diff)))
    return found


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


# -- the whole check ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """The outcome of one check: the differences (none: the two agree) and what was compared."""

    differences: list[str]
    migrations: int
    schema_files: int
    objects: int

    @property
    def agree(self) -> bool:
        """Whether the schema files describe exactly what the migrations build."""
        return not self.differences

    def report(self) -> str:
        """The text the command prints."""
        if self.agree:
            return (
                f"schema files agree with the migrations: {self.schema_files} schema files, "
                f"{self.migrations} migrations, {self.objects} objects compared"
            )
        head = (
            f"schema files and migrations differ in {len(self.differences)} object(s) "
            f"('-' {MIGRATIONS_LABEL}, '+' {SCHEMA_FILES_LABEL}):"
        )
        return "\n\n".join([head, *self.differences])


@contextmanager
def _scratch_database(admin: psycopg.Connection[tuple[object, ...]], prefix: str) -> Iterator[str]:
    """A new empty database in ``admin``'s cluster, dropped on leaving; yields its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def check(admin_dsn: str, authenticator_password: str, supabase_dir: Path = SUPABASE_DIR) -> Result:
    """Build both databases in the cluster of ``admin_dsn`` (a superuser) and compare them.

    ``supabase_dir`` holds ``config.toml``, ``migrations/`` and ``schemas/``; the scratch databases are
    dropped afterwards, whatever happens.
    """
    files = schema_files(supabase_dir)
    migrations_dir = supabase_dir / "migrations"
    base = admin_dsn.rsplit("/", 1)[0]
    with (
        psycopg.connect(admin_dsn, autocommit=True) as admin,
        _scratch_database(admin, "schemacheck_migrations") as migrated_db,
        _scratch_database(admin, "schemacheck_files") as declared_db,
    ):
        with psycopg.connect(f"{base}/{migrated_db}", autocommit=True) as conn:
            schema.bootstrap(conn, authenticator_password)
            applied = schema.migrate(conn, migrations_dir)
            migrated = snapshot(conn)
        with psycopg.connect(f"{base}/{declared_db}", autocommit=True) as conn:
            schema.bootstrap(conn, authenticator_password)
            apply_schema_files(conn, files)
            declared = snapshot(conn)
    return Result(
        differences=differences(migrated, declared),
        migrations=len(applied),
        schema_files=len(files),
        objects=len(migrated.keys() | declared.keys()),
    )


def main(argv: list[str] | None = None) -> int:
    """Run the check on a throwaway cluster; 0 when the two agree, 1 when they differ, 2 on error."""
    parser = argparse.ArgumentParser(
        prog="python -m signalguard.devstack.schemacheck",
        description="Compare the database the schema files declare with the one the migrations build.",
    )
    parser.add_argument(
        "--supabase-dir",
        type=Path,
        default=SUPABASE_DIR,
        help="the folder with config.toml, migrations/ and schemas/ (default: the checkout's supabase/)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    state = Path(tempfile.mkdtemp(prefix="signalguard-schemacheck-"))
    config = StackConfig.for_tests(state)
    cluster = Postgres(config)
    try:
        cluster.init()
        cluster.start()
        result = check(config.superuser_dsn(), config.secrets().authenticator_password, args.supabase_dir)
    except (SchemaFilesError, RuntimeError) as exc:
        print(f"schema check failed: {exc}", file=sys.stderr)
        return 2
    finally:
        cluster.stop()
        shutil.rmtree(state, ignore_errors=True)
    print(result.report())
    print(f"({time.monotonic() - started:.1f} s)")
    return 0 if result.agree else 1


if __name__ == "__main__":
    sys.exit(main())
