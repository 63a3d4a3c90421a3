"""Check sum(ledger) == balance and sum(active holds) == held for every organization."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.billing.selectors import ledger_drifts


class Command(BaseCommand):
    help = "Check every organization's cached balance and holds; exit 1 if any drifted."

    def handle(self, *args: Any, **options: Any) -> None:
        drifts = ledger_drifts()
        for drift in drifts:
            self.stdout.write(
                f"organization {drift.organization_id}: balance {drift.balance_micros} µ$, "
                f"ledger {drift.ledger_micros} µ$; held {drift.held_micros} µ$, "
                f"active holds {drift.active_holds_micros} µ$"
            )
        if drifts:
            raise CommandError(f"{len(drifts)} organization(s) drifted from the ledger")
        self.stdout.write("Every organization's balance matches its ledger.")
