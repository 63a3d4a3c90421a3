"""Public ids in OpenAI's style (`key_12`, `user_3`, `invite_7`): a prefix names the kind."""

from __future__ import annotations

API_KEY = "key_"
USER = "user_"
INVITE = "invite_"


def public_id(prefix: str, pk: int) -> str:
    return f"{prefix}{pk}"


def pk_of(prefix: str, value: str) -> int | None:
    """The primary key behind a public id of this kind; None for anything else."""
    digits = value.removeprefix(prefix) if value.startswith(prefix) else ""
    if not digits.isdigit() or len(digits) > 18:
        return None
    return int(digits)
