"""Uploads are decoded by the engine, never in a web process: no module the web processes run
imports the decoder (a 25 MB upload of compressed speech is hours of audio, seconds of CPU
and hundreds of MB of samples)."""

import ast
from pathlib import Path

APPS = Path(__file__).resolve().parents[2] / "apps"
WEB_APPS = ("gateway", "tester", "protocol", "catalog", "billing", "usage", "keys", "accounts")
DECODER = "apps.providers.audio.decode"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_web_module_imports_the_decoder():
    importers = [
        str(path.relative_to(APPS))
        for app in WEB_APPS
        for path in (APPS / app).rglob("*.py")
        if DECODER in _imports(path)
    ]
    assert importers == []


def test_the_check_sees_the_engines_import():
    assert DECODER in _imports(APPS / "providers" / "audio" / "provider.py")
