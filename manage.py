#!/usr/bin/env python
"""Django's command-line utility. Without DATABASE_URL/REDIS_URL it uses the embedded services."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "plugsky_site.settings")
    from plugsky_site import embedded

    embedded.configure_environment()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
