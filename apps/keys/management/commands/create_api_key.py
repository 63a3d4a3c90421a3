"""`manage.py create_api_key --email EMAIL [--name NAME]`: print a new key, and nothing else."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from apps.accounts.selectors import personal_organization_for, user_by_email
from apps.keys.services import api_key_create
from apps.onboarding.services import user_create


class Command(BaseCommand):
    help = "Create an API key for EMAIL's personal organization (creating the user if missing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True)
        parser.add_argument("--name", default="Command-line key")

    @transaction.atomic
    def handle(self, *args: Any, email: str, name: str, **options: Any) -> None:
        user = user_by_email(email=email)
        if user is None:
            user = user_create(email=email)
            self.stderr.write(f"Created user {user.email} and their organization.")
        organization = personal_organization_for(user=user)
        _, raw_key = api_key_create(organization=organization, created_by=user, name=name)
        self.stdout.write(raw_key)
