"""Dependencies between apps point down; a static check over the import statements of apps/.

From the bottom: accounts; keys and usage; billing; onboarding (accounts + the trial credit);
the gateway; the pages on top (dashboard, tester, site), which are not checked. catalog and
providers stand beside them and never reach into the request path.

Entry points (views, urls, admin, management commands, consumers, template tags) sit above every
domain module and may call any app's services, with one exception: accounts, the lowest app, has
no entry point that reaches past onboarding either. Imports inside functions count too: a lazy
import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

APPS = Path(__file__).resolve().parent.parent / "apps"

# app -> the other apps its domain modules (everything but the entry points) may import.
ALLOWED: dict[str, set[str]] = {
    "protocol": set(),  # OpenAI's wire schemas and error envelope: below everything
    "accounts": set(),
    "keys": {"accounts", "catalog"},
    "usage": {"accounts", "keys"},
    "billing": {"accounts", "keys", "usage", "catalog"},
    "onboarding": {"accounts", "billing"},
    "gateway": {
        *("accounts", "keys", "usage", "billing", "catalog", "providers", "protocol"),
        "responses",
    },
    "responses": {"accounts"},  # stored Responses API objects, per organization
    # The organization admin API: sits on keys, usage and billing, like the dashboard.
    "admin_api": {"accounts", "keys", "usage", "billing", "catalog", "protocol"},
    "catalog": {"providers"},
    "providers": {"catalog", "protocol"},
    "engine": {"catalog", "providers", "protocol"},  # the process that hosts the local provider
}

# What the entry points of an app may import beyond ALLOWED; None: anything.
ENTRY_POINT_EXTRA: dict[str, set[str] | None] = {"accounts": {"onboarding", "site"}}

_ENTRY_FILES = {"views.py", "urls.py", "admin.py", "consumers.py"}
_ENTRY_DIRS = {"management", "templatetags"}


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(APPS.rglob("*.py")):
        parts = path.relative_to(APPS).parts
        if len(parts) > 1 and "migrations" not in parts:
            yield parts[0], path


def _is_entry_point(path: Path) -> bool:
    parts = path.relative_to(APPS).parts
    return path.name in _ENTRY_FILES or bool(_ENTRY_DIRS.intersection(parts))


def _imported_apps(path: Path) -> set[str]:
    """The apps (`apps.<name>`) a module imports anywhere in its body, relative imports resolved."""
    package = ".".join(("apps", *path.relative_to(APPS).parent.parts)).split(".")
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module or ""]).strip(".")
            names.add(module)
            if node.module is None:  # from . import x, from apps import x
                names.update(f"{module}.{alias.name}" for alias in node.names)
    return {name.split(".")[1] for name in names if name.startswith("apps.") and "." in name}


def _violations() -> list[str]:
    found = []
    for app, path in _modules():
        if app not in ALLOWED:
            continue
        allowed = ALLOWED[app] | {app}
        if _is_entry_point(path):
            extra = ENTRY_POINT_EXTRA.get(app)
            if extra is None:
                continue
            allowed |= extra
        for imported in sorted(_imported_apps(path) - allowed):
            found.append(f"{path.relative_to(APPS.parent)} imports apps.{imported}")
    return found


def test_the_checker_sees_the_code():
    modules = {path.relative_to(APPS).as_posix() for _, path in _modules()}
    assert {"accounts/services.py", "billing/holds.py", "gateway/metering.py"} <= modules
    assert _imported_apps(APPS / "onboarding" / "services.py") == {"accounts", "billing"}


def test_dependencies_point_down():
    assert _violations() == []
