"""Every module of the package imports with only what pyproject.toml declares installed.

A plain install (the README's first command) gets the runtime dependencies and what they
need, nothing else: a module that imports a test or dev package at load time breaks every
command of that install. Two checks: each import at module level in ``clusterdns/`` names
the standard library, the package itself or a declared dependency; and in a subprocess where
every other top-level package is hidden, every module imports and every command's --help runs.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import ROOT

PACKAGE = ROOT / "clusterdns"


def declared() -> set[str]:
    """Canonical names of the runtime dependencies whose markers hold here."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(text) for text in project["dependencies"]]
    return {canonicalize_name(r.name) for r in reqs if r.marker is None or r.marker.evaluate()}


def closure(names: set[str]) -> set[str]:
    """``names`` and everything they require (markers evaluated without extras)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


def modules_of(dists: set[str]) -> set[str]:
    """Top-level module names that the installed distributions ``dists`` provide."""
    return {
        module
        for module, owners in packages_distributions().items()
        if any(canonicalize_name(owner) in dists for owner in owners)
    }


def load_time_imports(tree: ast.Module) -> set[str]:
    """Top-level names imported when the module loads (not inside functions, not under
    ``if TYPE_CHECKING:``, not in ``try: ... except ImportError``)."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try) and not any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                for h in node.handlers
            ):
                visit(node.body)

    visit(tree.body)
    return found


def test_each_load_time_import_is_declared() -> None:
    allowed = modules_of(declared()) | set(sys.stdlib_module_names) | {"clusterdns", "__future__"}
    undeclared = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for name in load_time_imports(ast.parse(path.read_text(), str(path)))
        if name not in allowed
    }
    assert not undeclared, sorted(undeclared)


HIDE_THE_REST = """
import importlib, importlib.abc, json, pkgutil, sys
allowed = set(json.loads(sys.argv[1]))

class Hidden(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in allowed or top in sys.stdlib_module_names:
            return None
        raise ModuleNotFoundError(f"No module named {name!r} (not a declared dependency)")

sys.meta_path.insert(0, Hidden())
import clusterdns
for info in pkgutil.walk_packages(clusterdns.__path__, "clusterdns."):
    importlib.import_module(info.name)
from clusterdns.__main__ import main
for argv in (["--help"], ["serve", "--help"], ["check", "--help"], ["resolve", "--help"],
             ["resolvconf", "--help"], ["env", "--help"], ["-conf", "Corefile", "--help"]):
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code == 0, (argv, exc.code)
print("imported", len(sys.modules))
"""


def test_every_module_imports_with_only_the_declared_dependencies() -> None:
    allowed = modules_of(closure(declared())) | {"clusterdns"}
    done = subprocess.run(
        [sys.executable, "-c", HIDE_THE_REST, json.dumps(sorted(allowed))],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("imported"), done.stdout[-500:]


def test_the_check_sees_an_undeclared_import() -> None:
    """The subprocess check can fail: hiding a declared package breaks the import."""
    allowed = (modules_of(closure(declared())) | {"clusterdns"}) - {"yaml"}
    done = subprocess.run(
        [sys.executable, "-c", HIDE_THE_REST, json.dumps(sorted(allowed))],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode != 0
    assert "No module named 'yaml' (not a declared dependency)" in done.stderr, done.stderr
