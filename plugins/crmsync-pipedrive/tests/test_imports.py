"""The plug-in imports only crmsync's public connector contract and kit (``connectors``),
never the engine (``sync``) or crmsync's faces: checked here, in the plug-in's own tests,
as a plug-in kept in its own repository would check it (crmsync's import-linter contract
checks the installed package too)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
#: crmsync's top-level packages a plug-in must not import: only ``connectors`` is public
CRMSYNC_INTERNALS = {"sync", "cli", "api", "tasks", "sandbox", "bench"}
ALLOWED = {"connectors", "crmsync_pipedrive", "httpx", "pydantic", "pytest", "harness"}


def _imported(source: Path) -> set[str]:
    tree = ast.parse(source.read_text(encoding="utf-8"), str(source))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_the_plugin_and_its_tests_import_only_the_connector_contract_and_kit() -> None:
    sources = sorted((PACKAGE / "crmsync_pipedrive").rglob("*.py"))
    sources += sorted((PACKAGE / "tests").rglob("*.py"))
    assert len(sources) > 10
    for source in sources:
        imported = _imported(source) - set(sys.stdlib_module_names)
        assert not imported & CRMSYNC_INTERNALS, (
            f"{source.name} imports {imported & CRMSYNC_INTERNALS}"
        )
        assert imported <= ALLOWED, f"{source.name} imports {imported - ALLOWED}"
