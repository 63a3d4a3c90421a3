"""`make run`: migrate, then serve the ASGI app with Daphne next to a Celery worker with beat.

Without DATABASE_URL / REDIS_URL it starts the embedded PostgreSQL and Redis first, so a fresh
machine needs nothing installed by hand. HOST and PORT choose where Daphne listens.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from plugsky_site import embedded


def _manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], check=True, cwd=embedded.REPO_ROOT)


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "plugsky_site.settings")
    embedded.configure_environment()
    _manage("migrate", "--noinput", "-v", "0")
    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    bin_dir = os.path.dirname(sys.executable)
    worker = subprocess.Popen(
        [
            os.path.join(bin_dir, "celery"), "-A", "plugsky_site", "worker", "--beat",
            # Threads: tester jobs share one in-process engine (one copy of each model in memory).
            "--pool", "threads", "--concurrency", "8", "--loglevel", "warning",
            "--schedule", str(embedded.DATA_DIR / "celerybeat-schedule"),
        ],
        cwd=embedded.REPO_ROOT,
    )  # fmt: skip
    web = subprocess.Popen(
        [os.path.join(bin_dir, "daphne"), "-b", host, "-p", port, "plugsky_site.asgi:application"],
        cwd=embedded.REPO_ROOT,
    )
    print(f"Plugsky is serving on http://{host}:{port}  (Ctrl-C to stop)", flush=True)

    def _stop(signum: int, frame: object) -> None:
        for process in (web, worker):
            process.terminate()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    code = web.wait()
    worker.terminate()
    worker.wait(timeout=30)
    return code


if __name__ == "__main__":
    sys.exit(main())
