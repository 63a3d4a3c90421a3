"""What accounts tells the apps above it, without importing them.

`invitation_accepted` is sent inside the transaction of the acceptance, with `invitation` and
`membership`: a receiver's writes (the audit log, apps.admin_api) commit or roll back with it.
"""

from django.dispatch import Signal

invitation_accepted = Signal()
