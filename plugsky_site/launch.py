"""`make run`: migrate, then start the model engine, the web processes and a Celery worker.

Without DATABASE_URL / REDIS_URL it starts the embedded PostgreSQL and Redis first, so a fresh
machine needs nothing installed by hand. HOST and PORT choose where the web listens.

- The engine (`python -m apps.engine`, on PLUGSKY_ENGINE_URL) starts first and alone holds the
  models. The web does not wait for it: until it answers, model calls get a 503 and /readyz says
  so. A PLUGSKY_ENGINE_URL on another host names an engine that runs there: none starts here.
- WEB_CONCURRENCY Daphne processes (default: one per core) serve one listening socket that this
  process opens and they inherit (`daphne --fd`); the kernel spreads connections over them.
  WebSockets work from any of them: the Channels layer is Redis, shared by all.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from plugsky_site import embedded

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], check=True, cwd=embedded.REPO_ROOT)


def _start_engine(url: str) -> subprocess.Popen[bytes] | None:
    from apps.providers.engine_wire import engine_address

    address = engine_address(url)
    if not address.socket_path and address.host not in _LOCAL_HOSTS:
        print(f"Using the engine at {url} (not started here)", flush=True)
        return None
    return subprocess.Popen([sys.executable, "-m", "apps.engine"], cwd=embedded.REPO_ROOT)


def web_listener(host: str, port: int) -> socket.socket:
    """The web processes' listening socket, to be inherited (`daphne --fd`).

    With TCP_NODELAY, which the connections it accepts inherit (Linux): Twisted never sets it,
    so a stream's small chunk written while the previous one was unacknowledged waited for the
    client's delayed ACK (~40 ms; it was most of the first token's delay on the local engine).
    """
    if ":" in host:
        # Twisted adopts inherited sockets as IPv4 only (its fd: endpoint takes no family).
        raise SystemExit(f"HOST must be an IPv4 address or name, not {host!r}")
    listener = socket.create_server((host, port), backlog=1024)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.set_inheritable(True)
    return listener


def _start_web(listener: socket.socket, count: int) -> list[subprocess.Popen[bytes]]:
    fd = listener.fileno()
    command = [
        os.path.join(os.path.dirname(sys.executable), "daphne"),
        "--fd", str(fd), "plugsky_site.asgi:application",
    ]  # fmt: skip
    return [subprocess.Popen(command, cwd=embedded.REPO_ROOT, pass_fds=(fd,)) for _ in range(count)]


def _start_worker() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            os.path.join(os.path.dirname(sys.executable), "celery"), "-A", "plugsky_site",
            "worker", "--beat",
            # Threads: tester jobs mostly wait on the engine and the channel layer.
            "--pool", "threads", "--concurrency", "8", "--loglevel", "warning",
            "--schedule", str(embedded.DATA_DIR / "celerybeat-schedule"),
        ],
        cwd=embedded.REPO_ROOT,
    )  # fmt: skip


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "plugsky_site.settings")
    embedded.configure_environment()
    from django.conf import settings

    engine_url = settings.PLUGSKY_ENGINE_URL
    os.environ["PLUGSKY_ENGINE_URL"] = engine_url  # one URL for every process started here
    _manage("migrate", "--noinput", "-v", "0")
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    web_count = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
    engine = _start_engine(engine_url)
    listener = web_listener(host, port)
    processes = [*_start_web(listener, web_count), _start_worker()]
    if engine is not None:
        processes.append(engine)
    listener.close()  # the web processes hold their own copies
    print(
        f"Plugsky is serving on http://{host}:{port} with {web_count} web process(es); "
        f"models on {engine_url}  (Ctrl-C to stop)",
        flush=True,
    )

    def _stop(signum: int, frame: object) -> None:
        for process in processes:
            process.terminate()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    _pid, status = os.wait()  # the first process to end stops them all
    _stop(signal.SIGTERM, None)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
