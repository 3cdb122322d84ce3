"""How the package is put together: no import circles (through lazy imports either), Typer
only in the CLI, no spec paths below it, and an agent that stays lean."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import bramble

SRC = Path(bramble.__file__).parent


def modules() -> dict[str, ast.Module]:
    """Every module of the package, by dotted name."""
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(), str(path))
    return out


def imports(tree: ast.Module, known: set[str]) -> set[str]:
    """The package's modules TREE imports: at import time, for type checking, or inside its
    functions (a function-level import is a dependency too)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return found & known


def test_no_import_circles() -> None:
    trees = modules()
    graph = {name: imports(tree, set(trees)) - {name} for name, tree in trees.items()}
    circles = []
    for start in graph:
        stack = [(start, [start])]
        while stack:
            here, path = stack.pop()
            for nxt in graph[here]:
                if nxt == start:
                    circles.append(" -> ".join([*path, start]))
                elif nxt not in path and len(path) < 12:
                    stack.append((nxt, [*path, nxt]))
    assert circles == []


def test_typer_only_in_the_cli() -> None:
    users = [
        name
        for name, tree in modules().items()
        if not name.startswith("bramble.cli")
        and any(
            (isinstance(n, ast.Import) and any(a.name.startswith("typer") for a in n.names))
            or (isinstance(n, ast.ImportFrom) and (n.module or "").startswith("typer"))
            for n in ast.walk(tree)
        )
    ]
    assert users == []


def test_only_the_cli_and_the_loaders_find_or_load_a_spec_file() -> None:
    loaders = {"find_spec_path", "load_spec", "load_secrets", "find_cluster"}
    # the CLI's loader, the loader itself, and connect() (job scripts' own entry point)
    allowed = {"bramble.cluster", "bramble.cli.options", "bramble.jobs.dask"}
    users = [
        name
        for name, tree in modules().items()
        if not name.startswith("bramble.spec")
        and name not in allowed
        and any(
            isinstance(n, ast.ImportFrom) and any(a.name in loaders for a in n.names)
            for n in ast.walk(tree)
        )
    ]
    assert users == []


def test_the_lean_agent_imports_only_what_sampling_needs() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import bramble.telemetry.agent; "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('bramble'))))"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code, str(SRC.parent)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == [
        "bramble",
        "bramble.telemetry",
        "bramble.telemetry.agent",
        "bramble.telemetry.encode",
        "bramble.telemetry.sample",
        "bramble.telemetry.wire",
    ]
