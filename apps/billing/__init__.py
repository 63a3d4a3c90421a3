"""Billing: the ledger, holds and settlement, spend limits, Stripe top-ups and notices.

Writes, by concern: `ledger` (entries, trial grant, adjustments), `holds` (precheck, hold,
extend, settle, release), `limits` (monthly spend limits), `topups` (Stripe Checkout and its
webhook events), `notices` (low-balance emails). Reads are in `selectors`, money math in `pricing`.

Lock order, everywhere: a hold or top-up row first, then the organization's CreditAccount, then its
SpendLimit rows (organization's before key's). Every balance change is a conditional or F()
UPDATE in the same transaction as the ledger entry that explains it.
"""
