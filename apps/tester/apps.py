from django.apps import AppConfig


class TesterConfig(AppConfig):
    name = "apps.tester"
    label = "tester"
