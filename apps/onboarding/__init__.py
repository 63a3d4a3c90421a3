"""Onboarding: the steps that make a new account usable, across accounts and billing.

Layers point down: accounts (users, organizations, members) is the lowest, billing sits above it
and knows nothing of who calls it. The trial rule spans both, so it lives here, above them:

    an organization receives its trial credit (once, see billing.ledger.trial_grant) as soon as
    it has a verified owner: at creation when the owner is already verified (users created by
    operators: create_api_key, the admin), otherwise when the owner clicks the link emailed at
    signup or accepts an invitation (which proves the address too).

The entry points (views, the admin, management commands) call these functions instead of the
accounts services of the same name. They are those services plus the trial, in one transaction.
Calling `apps.accounts.services` directly gives an account without credit: that is the
primitive, for code that means it. No signals: the orchestration is written out here.
"""
