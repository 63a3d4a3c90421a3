"""Forms of the dashboard pages."""

from __future__ import annotations

from decimal import Decimal

from django import forms

from apps.billing.pricing import MICROS_PER_DOLLAR
from apps.catalog.selectors import catalog_models


def _model_choices() -> list[tuple[str, str]]:
    return [(entry.id, entry.id) for entry in catalog_models()]


class KeyCreateForm(forms.Form):
    name = forms.CharField(
        label="Name",
        max_length=100,
        widget=forms.TextInput(attrs={"placeholder": "e.g. Production backend"}),
    )
    monthly_limit_usd = forms.DecimalField(
        label="Monthly spend limit (USD)",
        required=False,
        min_value=Decimal("0"),
        max_digits=9,
        decimal_places=2,
        widget=forms.NumberInput(attrs={"placeholder": "No limit", "step": "0.01", "min": "0"}),
        help_text="Calls that would take this key past the limit in a UTC month get a 429.",
    )
    allowed_models = forms.MultipleChoiceField(
        label="Allowed models",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Leave all unticked to allow every model.",
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["allowed_models"].choices = _model_choices()  # type: ignore[attr-defined]

    @property
    def monthly_limit_micros(self) -> int | None:
        amount = self.cleaned_data.get("monthly_limit_usd")
        return None if amount is None else int(amount * MICROS_PER_DOLLAR)


class UsageRangeForm(forms.Form):
    days = forms.TypedChoiceField(
        choices=[(7, "7 days"), (30, "30 days"), (90, "90 days")], coerce=int, required=False
    )
    by = forms.ChoiceField(choices=[("model", "By model"), ("key", "By key")], required=False)

    def range(self) -> tuple[int, str]:
        if not self.is_valid():
            return 30, "model"
        return self.cleaned_data.get("days") or 30, self.cleaned_data.get("by") or "model"


class AdminKeyCreateForm(forms.Form):
    name = forms.CharField(
        label="Name",
        max_length=100,
        widget=forms.TextInput(attrs={"placeholder": "e.g. Finance export"}),
    )
