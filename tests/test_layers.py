"""The package's layers (DESIGN.md "Shape"): a module imports only from its own folder or
the folders below it, and only net/wire.py opens sockets. Read from the source with ast."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "phoenix_hook"
# Bottom to top. Modules at the package root are placed by name.
RANK = {"errors": 0, "paths": 0, "records": 0, "net": 1, "pve": 2, "checks": 3, "watch": 4,
        "settings": 5, "cli": 5, "hook": 5, "__main__": 6, "__init__": 6}


def _layer(rel: Path) -> str:
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "phoenix_hook":
                for a in node.names:
                    yield node.lineno, f"phoenix_hook.{a.name}"
            elif node.module.startswith("phoenix_hook."):
                yield node.lineno, node.module
        elif isinstance(node, ast.ImportFrom) and node.level:
            yield node.lineno, "." * node.level + (node.module or "")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("phoenix_hook."):
                    yield node.lineno, a.name


MODULES = sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_import_points_up(path):
    rel = path.relative_to(PKG)
    mine = _layer(rel)
    if path.name == "__init__.py" and len(rel.parts) > 1:
        mine = rel.parts[0]
    bad = []
    for line, target in _imports(path):
        assert not target.startswith("."), f"{rel}:{line}: relative import {target}; use phoenix_hook.*"
        parts = target.split(".")[1:]
        if not parts:
            continue
        theirs = parts[0]
        if theirs == "__version__":
            continue
        assert theirs in RANK, f"{rel}:{line}: {target} is in no known layer"
        if theirs != mine and RANK[theirs] > RANK[mine]:
            bad.append(f"{rel}:{line} imports {target} ({theirs} is above {mine})")
    assert not bad, "\n".join(bad)


def test_sockets_only_in_wire():
    offenders = []
    for path in MODULES:
        rel = path.relative_to(PKG)
        if rel == Path("net/wire.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "socket" and \
                    isinstance(node.value, ast.Name) and node.value.id == "socket":
                offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, "socket.socket outside net/wire.py: " + ", ".join(offenders)


def test_layers_are_folders():
    for folder in ("net", "pve", "checks", "cli"):
        assert (PKG / folder / "__init__.py").is_file(), folder
    loose = sorted(p.stem for p in PKG.glob("*.py"))
    assert set(loose) <= {"__init__", "__main__", "errors", "paths", "records", "settings", "hook"}, loose
