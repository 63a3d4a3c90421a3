from __future__ import annotations

from django import forms


class TopUpForm(forms.Form):
    organization = forms.IntegerField(min_value=1)
    amount_usd = forms.DecimalField(min_value=0, max_digits=9, decimal_places=2)

    @property
    def amount_cents(self) -> int:
        return int(self.cleaned_data["amount_usd"] * 100)
