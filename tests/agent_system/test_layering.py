"""Dependencies point one way: ``agent_system`` never imports ``verl.trainer`` (DESIGN.md, Layout)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

FORBIDDEN = "verl.trainer"


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, dotted name) of every module an ``import`` / ``from ... import`` statement can bind."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _violations(root: Path) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        for line, name in _imported_modules(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if name == FORBIDDEN or name.startswith(FORBIDDEN + "."):
                bad.append(f"{path.relative_to(root.parent)}:{line} imports {name}")
    return bad


def test_agent_system_never_imports_verl_trainer():
    assert _violations(REPO_ROOT / "agent_system") == []


def test_the_scan_sees_every_import_form(tmp_path):
    pkg = tmp_path / "agent_system"
    pkg.mkdir()
    (pkg / "a.py").write_text("import verl.trainer.ppo.core_algos as ca\n")
    (pkg / "b.py").write_text("def f():\n    from verl.trainer.ppo import core_algos\n")
    (pkg / "c.py").write_text("from verl import trainer\nfrom verl import utils\nimport verl.trainers_like\n")
    assert _violations(pkg) == ["agent_system/a.py:1 imports verl.trainer.ppo.core_algos",
                                "agent_system/b.py:2 imports verl.trainer.ppo",
                                "agent_system/b.py:2 imports verl.trainer.ppo.core_algos",
                                "agent_system/c.py:1 imports verl.trainer"]
