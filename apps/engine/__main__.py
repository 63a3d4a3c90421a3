"""`python -m apps.engine [--url URL] [--preload all|ID,…]`: serve the local engine."""

from __future__ import annotations

import argparse
import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "plugsky_site.settings")
    from django.conf import settings

    parser = argparse.ArgumentParser(prog="python -m apps.engine", description=__doc__)
    parser.add_argument("--url", default=settings.PLUGSKY_ENGINE_URL)
    parser.add_argument(
        "--preload",
        default=os.environ.get("PLUGSKY_ENGINE_PRELOAD", ""),
        help="models to load at start: 'all' (installed ones) or comma-separated ids",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return _serve(args.url, tuple(item for item in args.preload.split(",") if item))


def _serve(url: str, preload: tuple[str, ...]) -> int:
    import uvicorn

    from apps.engine.server import EngineApp
    from apps.providers.engine_wire import engine_address

    address = engine_address(url)
    where = (
        {"uds": address.socket_path}
        if address.socket_path
        else {"host": address.host, "port": address.port}
    )
    if address.socket_path and os.path.exists(address.socket_path):
        os.unlink(address.socket_path)  # left by an engine that did not stop cleanly
    uvicorn.run(
        EngineApp(preload=preload),
        **where,
        workers=1,  # uvicorn would read WEB_CONCURRENCY, which is the web tier's
        http="h11",
        lifespan="on",
        access_log=False,
        log_level="warning",
        # Longer than the client's keep-alive expiry, so it never reuses a closed connection.
        timeout_keep_alive=30,
        # On SIGTERM, streams still running after this are cut (their clients see a 502).
        timeout_graceful_shutdown=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
