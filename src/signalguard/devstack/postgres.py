"""A throwaway PostgreSQL cluster on 127.0.0.1, owned by an unprivileged system user.

``initdb`` and ``postgres`` refuse to run as root, so when the stack is started by root the cluster's
folder is handed to the ``postgres`` system user (created by Debian's postgresql package) and both
programs run as that user; run by anyone else, they run as the caller. The cluster lives in the state
folder, so a restart keeps its data.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from signalguard.devstack.config import HOST, StackConfig

SYSTEM_USER = "postgres"


class StackError(RuntimeError):
    """The local stack cannot start; the message says why and what to do."""


def find_binary(name: str) -> str:
    """Locate a PostgreSQL server program on PATH or in Debian's versioned folders."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if candidates:
        return candidates[-1]
    raise StackError(
        f"PostgreSQL's `{name}` was not found. Install the server (Debian: "
        "`apt-get install postgresql`) or run `make dev`, which installs it."
    )


@dataclass(frozen=True)
class RunAs:
    """The system identity the cluster's programs run as."""

    uid: int
    gid: int
    name: str

    @classmethod
    def for_current_process(cls) -> RunAs:
        """Root hands the cluster to the `postgres` user; anyone else runs it as themselves."""
        if os.geteuid() != 0:
            me = pwd.getpwuid(os.geteuid())
            return cls(me.pw_uid, me.pw_gid, me.pw_name)
        try:
            pg = pwd.getpwnam(SYSTEM_USER)
        except KeyError as exc:
            raise StackError(
                "Running as root, the cluster needs the `postgres` system user, which Debian's "
                "postgresql package creates (`apt-get install postgresql`)."
            ) from exc
        return cls(pg.pw_uid, pg.pw_gid, pg.pw_name)

    @property
    def switches(self) -> bool:
        """Whether starting a program as this identity means leaving the caller's."""
        return os.geteuid() != self.uid

    def popen_identity(self) -> tuple[int | None, int | None, list[int] | None]:
        """``user``, ``group`` and ``extra_groups`` for :class:`subprocess.Popen` (None: keep)."""
        if not self.switches:
            return None, None, None
        return self.uid, self.gid, []


def _check_traversable(path: Path, run_as: RunAs) -> None:
    """Fail early, with a clear message, if the cluster's user cannot reach ``path``."""
    if not run_as.switches:
        return
    for parent in [*reversed(path.parents), path]:
        if not parent.exists():
            break
        mode = parent.stat().st_mode
        if parent.stat().st_uid != run_as.uid and not mode & 0o001:
            raise StackError(
                f"The `{run_as.name}` user cannot reach {path}: {parent} is not traversable by "
                "others. Put the state folder elsewhere, e.g. "
                "SIGNALGUARD_STATE_DIR=/var/tmp/signalguard make dev"
            )


class Postgres:
    """One cluster: make it on first use, start it, connect to it, stop it."""

    def __init__(self, config: StackConfig) -> None:
        """Prepare (but do not start) the cluster described by ``config``."""
        self.config = config
        self.run_as = RunAs.for_current_process()
        self.data_dir = config.pg_dir / "data"
        self.socket_dir = config.pg_dir / "run"
        self.log_path = config.pg_dir / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def exists(self) -> bool:
        """Whether the cluster has been made (``initdb`` ran to completion)."""
        return (self.data_dir / "PG_VERSION").exists()

    def _prepare_dirs(self) -> None:
        state = self.config.state_dir
        state.mkdir(parents=True, exist_ok=True)
        # The state folder holds the secrets (0600) next to the cluster folder: others may pass
        # through it to reach the cluster but not list it.
        state.chmod(0o711)
        _check_traversable(state, self.run_as)
        for d in (self.config.pg_dir, self.socket_dir):
            d.mkdir(parents=True, exist_ok=True)
            os.chown(d, self.run_as.uid, self.run_as.gid)
            d.chmod(0o700)

    def init(self) -> None:
        """Make the cluster (``initdb``) with a random superuser password; no-op if it exists."""
        self._prepare_dirs()
        if self.exists:
            return
        if self.data_dir.exists():
            # A previous initdb was interrupted: start over rather than trust a partial cluster.
            shutil.rmtree(self.data_dir)
        pwfile = self.config.pg_dir / "initdb.pw"
        pwfile.write_text(self.config.secrets().postgres_password)
        os.chown(pwfile, self.run_as.uid, self.run_as.gid)
        pwfile.chmod(0o600)
        user, group, groups = self.run_as.popen_identity()
        try:
            result = subprocess.run(
                [
                    find_binary("initdb"),
                    "--pgdata",
                    str(self.data_dir),
                    "--username",
                    "postgres",
                    "--pwfile",
                    str(pwfile),
                    "--auth-local",
                    "scram-sha-256",
                    "--auth-host",
                    "scram-sha-256",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C.UTF-8",
                    "--no-sync",
                ],
                capture_output=True,
                cwd=self.config.pg_dir,
                check=False,
                user=user,
                group=group,
                extra_groups=groups,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise StackError("initdb failed:\n" + result.stderr.decode(errors="replace"))

    def start(self, timeout: float = 30.0) -> None:
        """Start the server in the foreground of a child process and wait until it accepts."""
        settings = {
            "listen_addresses": HOST,
            "port": str(self.config.pg_port),
            "unix_socket_directories": str(self.socket_dir),
            "max_connections": "100",
            "shared_buffers": "128MB",
            "timezone": "UTC",
            "log_min_messages": "warning",
            "log_line_prefix": "%m [%p] %q%u@%d ",
        }
        if self.config.ephemeral:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        args = [find_binary("postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed on stop
        os.chown(self.log_path, self.run_as.uid, self.run_as.gid)
        user, group, groups = self.run_as.popen_identity()
        self.process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.config.pg_dir,
            # Its own process group: Ctrl-C in the terminal reaches the stack, which then stops
            # the server cleanly, instead of reaching the server directly.
            start_new_session=True,
            user=user,
            group=group,
            extra_groups=groups,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise StackError(
                    f"postgres exited with code {self.process.returncode}; see {self.log_path}:\n"
                    + self.log_tail()
                )
            try:
                with psycopg.connect(self.config.superuser_dsn(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise StackError(
                        f"postgres did not accept connections within {timeout:.0f} s; see "
                        f"{self.log_path}:\n" + self.log_tail()
                    ) from None
                time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection[tuple[object, ...]]:
        """Connect as the cluster's superuser."""
        return psycopg.connect(self.config.superuser_dsn(), autocommit=autocommit)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server with a fast shutdown (SIGINT), killing it if it does not stop in time."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        # Signalling a process of another user needs root, which started it; SIGINT is PostgreSQL's
        # "fast shutdown": roll back open transactions, checkpoint, exit.
        proc.send_signal(2)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
