from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "apps.catalog"
    label = "catalog"

    def ready(self) -> None:
        # Read the operator's catalog file at start-up: a malformed one stops every process
        # (and `manage.py check`) here, instead of failing each request that lists models.
        from apps.catalog.selectors import catalog_load

        catalog_load()
