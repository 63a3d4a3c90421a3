"""Settings for a live server that also serves the slow /v1 test views of admission_urls."""

from plugsky_site.settings import *  # noqa: F403

ROOT_URLCONF = "tests.gateway.admission_urls"
