"""The emails accounts sends: rendered from templates, with absolute links to this server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse

if TYPE_CHECKING:
    from apps.accounts.models import Invitation, User


def _send(*, to: str, template: str, context: dict[str, object]) -> None:
    subject = render_to_string(f"accounts/email/{template}_subject.txt", context).strip()
    body = render_to_string(f"accounts/email/{template}.txt", context)
    send_mail(subject=subject, message=body, from_email=None, recipient_list=[to])


def verification_send(*, user: User, token: str, base_url: str) -> None:
    link = base_url.rstrip("/") + reverse("accounts:verify", kwargs={"token": token})
    _send(to=user.email, template="verify", context={"user": user, "link": link})


def invitation_send(*, invitation: Invitation, token: str, base_url: str) -> None:
    link = base_url.rstrip("/") + reverse("accounts:invitation", kwargs={"token": token})
    context = {"invitation": invitation, "link": link}
    _send(to=invitation.email, template="invitation", context=context)
