"""The web processes' listening socket (plugsky_site.launch, also used by tests.live)."""

from __future__ import annotations

import socket

from plugsky_site.launch import web_listener


def test_accepted_connections_send_small_writes_at_once():
    # TCP_NODELAY, inherited from the listener: Twisted never sets it, and without it a
    # stream's second small chunk waited for the client's delayed ACK.
    with (
        web_listener("127.0.0.1", 0) as listener,
        socket.create_connection(listener.getsockname()),
    ):
        accepted, _ = listener.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
