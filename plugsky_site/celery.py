"""Celery application: the broker is REDIS_URL; tasks live in each app's tasks.py."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "plugsky_site.settings")

app = Celery("plugsky")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
