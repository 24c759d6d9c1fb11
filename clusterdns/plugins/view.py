"""The ``view`` plugin (CoreDNS plugin/view): the conditions under which a query is routed to
this server block, for split-horizon DNS.

    view NAME {
        expr EXPRESSION
        ...
    }

Several server blocks may serve the same zone on the same port when they have views
(CoreDNS core/dnsserver register.go: a block with a filter is not registered for the
"already defined" check). Per query, the zones are walked from the longest matching one to
the root, and among each zone's blocks, in Corefile order, the first whose view matches
handles it; a block without ``view`` matches everything (the fallback). No block matching:
REFUSED. The choice is made by ``plugins.chain.Mux`` before any kept answer is looked at,
so one view's kept answers are never served to another view's clients.

Every ``expr`` line must be true (CoreDNS ``View.Filter``: lines ANDed; one that fails while
evaluating, e.g. ``incidr`` of something that is no IP, is false); a view without ``expr``
matches everything. The expression language and the request functions are
:mod:`.viewexpr`'s. A block has at most one ``view`` (CoreDNS: ``plugin.ErrOnce``).

No step in the chain: the build records the filter on the block (``Build.view``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.errors import ConfigError
from .plugin import Build, Plugin, Step
from .viewexpr import ExprError, Request, ViewExpr, compile_view

if TYPE_CHECKING:
    from ..corefile.reader import Reader, Setup

MAX_EXPRS = 64  # expr lines in one view: each is evaluated per query on the shared port


@dataclass(frozen=True)
class View:
    """A parsed ``view``: its ``name`` (CoreDNS: metadata ``view/name``, metrics) and its
    compiled ``exprs``, all of which must be true."""

    name: str
    exprs: tuple[ViewExpr, ...]

    def matches(self, request: Request) -> bool:
        """True when every expression is true for ``request`` (CoreDNS ``View.Filter``)."""
        return all(expr.matches(request) for expr in self.exprs)


def _parse(r: Reader, setup: Setup) -> View:
    if "view" in setup.configs:
        # CoreDNS: plugin.ErrOnce ("this plugin can only be used once per Server Block")
        raise r.error("only one view per server block")
    r.count(r.d.args, 1, 1, "NAME")
    exprs: list[ViewExpr] = []
    for sub in r.d.block:
        if sub.name != "expr":
            raise r.error(f"unknown property {sub.name!r}", sub.line)
        if len(exprs) >= MAX_EXPRS:
            raise r.error(f"more than {MAX_EXPRS} expr lines", sub.line)
        try:
            # CoreDNS setup.go joins the line's arguments with spaces
            exprs.append(compile_view(" ".join(sub.args), sub.line))
        except ExprError as exc:
            raise ConfigError(
                f"{r.filename}:{exc.line}: view: expr column {exc.column}: {exc.msg}"
            ) from None
    return View(r.d.args[0], tuple(exprs))


def _build(view: View, build: Build) -> Step | None:
    build.view = view
    return None


PLUGIN = Plugin("view", _parse, _build, in_class=False, filters=True)
"""CoreDNS plugin/view: picks this block among those on the same zone and port."""
