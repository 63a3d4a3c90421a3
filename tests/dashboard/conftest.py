from __future__ import annotations


def login(client, user):  # type: ignore[no-untyped-def]
    client.force_login(user)
    return client
