"""The package's layers, checked over every import statement (docs/design.md, layer rules).

Each layer package imports only the layers below it; each third-party package is imported
only by the modules whose job it is; the core has no I/O, no asyncio, no threads and no clock.
Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

PACKAGE = ROOT / "clusterdns"

# layer -> the layers (of clusterdns) it may import
MAY_IMPORT = {
    "core": {"core"},
    "dns": {"core", "dns"},
    "plugins": {"core", "dns", "plugins", "corefile.reader"},  # reader: options parsing
    "corefile": {"core", "corefile", "corefile.reader", "plugins"},
    "sources": {"core", "sources"},
    "server": {"core", "dns", "plugins", "corefile", "corefile.reader", "sources", "server"},
    "tools": {"core", "dns", "plugins", "corefile", "corefile.reader", "sources", "server",
              "tools"},
    "testing": {"core", "dns", "plugins", "corefile", "corefile.reader", "sources", "server",
                "tools", "testing"},
}

# third-party top-level module -> the modules (or layer folders, ending in /) that own it
OWNERS = {
    "kubernetes": {"sources/kube.py"},
    "urllib3": {"sources/kube.py"},
    "yaml": {"sources/yamlsafe.py"},
    "prometheus_client": {"server/metrics.py"},
    "cachetools": {"plugins/forward_cache.py"},
    "uvloop": {"server/app.py"},
    "dnslib": {"plugins/"},
    "dns": {"tools/explain.py", "testing/server.py"},
    "pytest": {"testing/__init__.py"},
    "lark": {"plugins/viewexpr.py"},
    "rich": {"tools/top.py"},
}

# what the core may not use even from the standard library: I/O, concurrency, clocks
CORE_FORBIDDEN = {"asyncio", "threading", "subprocess", "time", "os", "select", "selectors"}


def imports(path: Path, package_root: Path) -> list[tuple[str, int]]:
    """Every import in ``path`` (a module under ``package_root``, the ``clusterdns`` folder)
    as (absolute dotted module, line)."""
    rel = (package_root.name, *path.relative_to(package_root).with_suffix("").parts)
    package = list(rel[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                up = package[: len(package) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            if node.module is None and node.level:  # from . import x, y: each a module
                found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
            else:
                found.append((base, node.lineno))
    return found


def violations(path: Path, package_root: Path) -> list[str]:
    """What ``path`` imports against the layer and ownership rules, one line each."""
    parts = path.relative_to(package_root).parts
    layer = parts[0] if len(parts) > 1 else None  # None: __init__/__main__ at the top
    rel = "/".join(parts)
    wrong = []
    for module, line in imports(path, package_root):
        top, _, rest = module.partition(".")
        if top == "clusterdns":
            target = rest.split(".")[0]
            if rest.startswith("corefile.reader"):
                target = "corefile.reader"  # below config: plugins parse their own options
            if layer is not None and target in MAY_IMPORT and target not in MAY_IMPORT[layer]:
                wrong.append(f"{rel}:{line}: {layer} imports {module}")
        elif top in sys.stdlib_module_names or top == "__future__":
            if layer == "core" and top in CORE_FORBIDDEN:
                wrong.append(f"{rel}:{line}: the core imports {module} (I/O, threads or clock)")
        else:
            owners = OWNERS.get(top, set())
            if not any(rel == o or (o.endswith("/") and rel.startswith(o)) for o in owners):
                wrong.append(f"{rel}:{line}: {top} belongs to {sorted(owners) or 'nobody'}")
    return wrong


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layers(path: Path) -> None:
    wrong = violations(path, PACKAGE)
    assert not wrong, "\n".join(wrong)


def test_every_module_sits_in_a_layer() -> None:
    top_level = {p.name for p in PACKAGE.glob("*.py")}
    assert top_level == {"__init__.py", "__main__.py"}, top_level
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == {layer for layer in MAY_IMPORT if "." not in layer}, folders


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The rules can fail: a core module importing the wire layer, asyncio and dnslib."""
    probe = tmp_path / "clusterdns" / "core" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("import asyncio\nimport dnslib\nfrom ..dns.wire import Query\n")
    wrong = violations(probe, tmp_path / "clusterdns")
    assert wrong == [
        "core/probe.py:1: the core imports asyncio (I/O, threads or clock)",
        "core/probe.py:2: dnslib belongs to ['plugins/']",
        "core/probe.py:3: core imports clusterdns.dns.wire",
    ]


def plugin_modules() -> set[str]:
    """The modules that define a plugin (``PLUGIN = Plugin(...)``), dotted."""
    found = set()
    for path in (PACKAGE / "plugins").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "PLUGIN" for t in node.targets
            ):
                found.add(f"clusterdns.plugins.{path.stem}")
    return found


def plugin_import_faults(root: Path) -> list[str]:
    """Imports that break "a plugin is one module and one line": a module in plugins/ other
    than the ordered table importing a plugin module, and any module importing a plugin
    module's private (underscore) names."""
    plugins = plugin_modules()
    faults = []
    for path in sorted(root.rglob("*.py")):
        dotted = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = dotted.rsplit(".", 1)[0] if node.level else ""
            for _ in range(max(node.level - 1, 0)):
                base = base.rsplit(".", 1)[0]
            target = ".".join(p for p in (base, node.module or "") if p)
            modules = {target} | {f"{target}.{a.name}" for a in node.names}
            for module in modules & plugins:
                inside = dotted.startswith("clusterdns.plugins.") and not dotted.endswith(".order")
                if inside and module != dotted:
                    faults.append(f"{dotted}:{node.lineno} imports plugin {module}")
            if target in plugins and target != dotted:
                for alias in node.names:
                    if alias.name.startswith("_"):
                        faults.append(f"{dotted}:{node.lineno} imports {target}.{alias.name}")
    return faults


def test_plugins_import_no_plugin_module() -> None:
    """plugins/order.py is the only module in plugins/ that knows the plugin modules; no
    module anywhere imports a plugin's private names (issue: one module, one line)."""
    assert len(plugin_modules()) >= 14
    assert plugin_import_faults(PACKAGE) == []


def test_the_plugin_rule_sees_a_violation(tmp_path: Path) -> None:
    """The rule above fails on a plugin module that imports another one."""
    fake = tmp_path / "clusterdns" / "plugins"
    fake.mkdir(parents=True)
    (fake / "chaos.py").write_text("PLUGIN = None\n")
    (fake / "other.py").write_text("from .chaos import PLUGIN, _build\n")
    faults = plugin_import_faults(tmp_path / "clusterdns")
    assert any("imports plugin clusterdns.plugins.chaos" in f for f in faults)
    assert any("imports clusterdns.plugins.chaos._build" in f for f in faults)
