"""Every project module that the code imports exists, also where the import is inside a function.

Lazy imports (in `make run`'s launcher, management commands, optional paths) run only when that
path does: a module that was moved or renamed would break them with no test noticing.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("apps", "plugsky_site")


def _project_imports() -> Iterator[tuple[Path, str]]:
    for source in SOURCES:
        for path in sorted((ROOT / source).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    if name.split(".")[0] in SOURCES:
                        yield path, name


def test_every_project_import_resolves() -> None:
    missing = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path, name in _project_imports()
        if importlib.util.find_spec(name) is None
    ]
    assert missing == []


def test_the_check_sees_lazy_imports() -> None:
    launcher = ROOT / "plugsky_site" / "launch.py"
    assert (launcher, "apps.providers.engine_wire") in set(_project_imports())
