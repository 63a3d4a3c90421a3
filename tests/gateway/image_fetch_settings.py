"""Settings for a live server that may fetch images from the tests' own server on 127.0.0.1.

PLUGSKY_IMAGE_FETCH_ALLOWED_NETWORKS exempts networks from the fetcher's public-address rule;
it is empty in real deployments and exists for tests like these only.
"""

from plugsky_site.settings import *  # noqa: F403

PLUGSKY_IMAGE_FETCH_ALLOWED_NETWORKS = ["127.0.0.1/32"]
PLUGSKY_IMAGE_FETCH_TIMEOUT_S = 2.0
PLUGSKY_IMAGE_MAX_BYTES = 200_000
