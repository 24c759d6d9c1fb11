"""The plugin.cfg of clusterdns: every plugin, one line each, in the order the chain runs
them (CoreDNS's plugin.cfg order, but for ``loop``, which only counts its own probes and so
must see them before any plugin answers, and ``zones``, the block's own zone check).

Adding a plugin: its module (exporting ``PLUGIN``), one line here, its tests and its docs.
The Corefile's directive table, each block's chain, block start/stop, the metrics'
``coredns_plugin_enabled`` and the kinds the live source lists all come from this table.
A module is imported the first time a Corefile (or ``serve``) uses its plugin.
"""

from __future__ import annotations

import importlib
from functools import cache

from .plugin import Plugin

ORDER: tuple[tuple[str, str], ...] = (
    # (directive, module under clusterdns.plugins)
    ("loop", "loop"),
    ("log", "querylog"),
    ("any", "any"),
    ("chaos", "chaos"),
    ("loadbalance", "loadbalance"),
    ("cache", "cache"),
    ("rewrite", "rewrite"),
    ("autopath", "autopath"),
    ("template", "template"),
    ("zones", "zones"),
    ("hosts", "hosts"),
    ("k8s_gateway", "k8s_gateway"),
    ("k8s_external", "k8s_external"),
    ("kubernetes", "kubernetes"),
    ("multicluster", "multicluster"),  # external; its README: just below kubernetes
    ("forward", "forward"),
    ("whoami", "whoami"),
    ("view", "view"),  # no step: picks the block (chain.Mux), after whoami in plugin.cfg
)
"""(directive name, module) in chain order."""

NAMES: tuple[str, ...] = tuple(name for name, _ in ORDER)
_MODULES = dict(ORDER)


@cache
def plugin(name: str) -> Plugin | None:
    """The plugin of directive ``name`` (its module imported on first use), or None when
    clusterdns has no such plugin."""
    module = _MODULES.get(name)
    if module is None:
        return None
    found: Plugin = importlib.import_module(f"{__package__}.{module}").PLUGIN
    assert found.name == name, f"plugins/{module}.py exports {found.name!r}, not {name!r}"
    return found


ALWAYS: tuple[str, ...] = ("zones",)
"""Built for every block, with no directive: the block's own zone check."""
