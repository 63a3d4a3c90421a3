from django.apps import AppConfig


class AdminApiConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "apps.admin_api"
    verbose_name = "Organization admin API"

    def ready(self) -> None:
        from apps.accounts.signals import invitation_accepted
        from apps.admin_api import receivers

        invitation_accepted.connect(receivers.invitation_accepted, dispatch_uid="audit-invite")
