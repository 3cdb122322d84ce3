"""Every package the code imports is declared in pyproject.toml, and nothing declared is unused.

Read from the source (imports inside functions too, which an import of every module would
not run), so a dependency that only some other package happens to pull in fails here. The
packaging test (test_packaging.py) checks the same from the other side: the built wheel in
a fresh venv.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "bramble"
# Declared, used, and never imported by name: what uvicorn picks up when it is installed.
USED_UNIMPORTED = {
    "httptools": "uvicorn's fast HTTP parser",
    "uvloop": "uvicorn's event loop",
}


def _name(requirement: str) -> str:
    """The normalised project name of a requirement ("Jinja2>=3.1" -> "jinja2")."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def _project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        project: dict[str, object] = tomllib.load(f)["project"]
    return project


def third_party_imports() -> dict[str, list[str]]:
    """Each top-level module imported from outside the standard library and bramble, with
    where ("file:line")."""
    found: dict[str, list[str]] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "bramble" or top in sys.stdlib_module_names:
                    continue
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                found.setdefault(top, []).append(where)
    return found


def test_the_scan_sees_lazy_imports() -> None:
    imports = third_party_imports()
    # jobs/tls.py imports cryptography only inside its functions.
    assert any("jobs/tls.py" in where for where in imports["cryptography"])
    assert "typer" in imports and "pydantic" in imports


def test_every_import_is_a_declared_dependency() -> None:
    declared = {_name(r) for r in _project()["dependencies"]}  # type: ignore[attr-defined]
    providers = importlib.metadata.packages_distributions()
    missing = []
    for module, where in sorted(third_party_imports().items()):
        projects = {_name(p) for p in providers.get(module, [module])}
        if not projects & declared:
            missing.append(f"{module} ({', '.join(sorted(projects))}) imported at {where[0]}")
    assert missing == [], "imported but not in [project] dependencies: " + "; ".join(missing)


def test_every_dependency_is_used() -> None:
    providers = importlib.metadata.packages_distributions()
    imported = {
        _name(project)
        for module in third_party_imports()
        for project in providers.get(module, [module])
    }
    declared = {_name(r) for r in _project()["dependencies"]}  # type: ignore[attr-defined]
    unused = declared - imported - set(USED_UNIMPORTED)
    assert unused == set(), f"declared but never imported: {sorted(unused)}"


def test_extras_are_named_for_what_they_are_for() -> None:
    extras = _project()["optional-dependencies"]
    assert isinstance(extras, dict)
    assert {_name(r) for r in extras["mpi"]} == {"mpi4py"}
    assert {_name(r) for r in extras["dask-dashboard"]} == {"bokeh"}
    assert _project()["name"] == "bramble-cluster"
