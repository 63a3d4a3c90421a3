"""`manage.py create_admin_key --email EMAIL [--name NAME]`: print a new admin key, only that."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from apps.accounts.selectors import personal_organization_for, user_by_email
from apps.keys.services import admin_key_create


class Command(BaseCommand):
    help = "Create an admin key for the organization admin API of EMAIL's personal organization."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True)
        parser.add_argument("--name", default="Command-line admin key")

    @transaction.atomic
    def handle(self, *args: Any, email: str, name: str, **options: Any) -> None:
        # Unlike create_api_key, no user is created: an admin key acts as an existing owner.
        user = user_by_email(email=email)
        if user is None:
            raise CommandError(f"No user with the email address {email}.")
        organization = personal_organization_for(user=user)
        _, raw_key = admin_key_create(organization=organization, created_by=user, name=name)
        self.stdout.write(raw_key)
