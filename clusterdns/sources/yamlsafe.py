"""Bounded YAML loading: PyYAML's safe loader with aliases checked before they expand.

YAML aliases may not refer to a node containing them (a recursive structure, which no
Kubernetes object is) nor expand a document beyond :data:`MAX_ALIAS_EXPANSION` times the
nodes written in it (the "billion laughs"; Kubernetes CVE-2019-11253, which the API
server answers with the same kind of limit). Both are :class:`ManifestError`. The only
module that imports PyYAML: :data:`YAMLError` is its error type, re-exported.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_ALIAS_EXPANSION = 10  # YAML: nodes after alias expansion / nodes written ...
ALIAS_EXPANSION_FLOOR = 100_000  # ... unless the expanded document stays this small

YAMLError = yaml.YAMLError  # any PyYAML parse or construction error

try:
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader


class ManifestError(ValueError):
    """A file that cannot be loaded as a whole (too big, an alias bomb, too deep); the
    message says why, without the file name (the caller adds it)."""


def yaml_error_where(exc: yaml.YAMLError) -> tuple[int, int, str]:
    """Where and what a PyYAML error is: (line, column, problem), line and column 1-based
    (0, 0 when PyYAML gave no position), the problem on one line without PyYAML's
    ``in "<unicode string>"`` (it was given text, not the file: the caller names the file).

    The problem's position is used when there is one, else the context's; a context at
    another place is kept in brackets (``did not find expected ',' or '}' (while parsing
    a flow mapping at line 3, column 11)``).
    """
    if not isinstance(exc, yaml.MarkedYAMLError):
        return 0, 0, " ".join(str(exc).split())
    mark = exc.problem_mark or exc.context_mark
    problem = " ".join((exc.problem or exc.context or "invalid YAML").split())
    if exc.context and exc.problem and exc.context_mark is not None:
        at, context = exc.context_mark, " ".join(exc.context.split())
        problem += f" ({context} at line {at.line + 1}, column {at.column + 1})"
    if mark is None:
        return 0, 0, problem
    return mark.line + 1, mark.column + 1, problem


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """The number of nodes of ``root`` once every alias is expanded, counted without
    expanding (each distinct node once, memoised), stopping early past ``limit``.

    Raises ManifestError for an alias that refers to a node containing it (a recursive
    structure, which no Kubernetes object is).
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            total = 1
            for child in _children(node):
                total += sizes[id(child)]
                if total > limit:
                    return total
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise ManifestError("a YAML alias refers to a node containing it (recursive alias)")
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise ManifestError("a YAML alias refers to a node containing it (recursive alias)")
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _distinct(root: yaml.Node) -> int:
    """Distinct nodes below ``root`` (each aliased node once)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(_children(node))
    return len(seen)


def yaml_documents(text: str) -> list[Any]:
    """Every document of ``text`` as ``yaml.safe_load_all`` gives them (None for an empty
    one), with aliases bounded (see the module doc).

    Raises :class:`ManifestError` for a recursive alias or an alias bomb, :data:`YAMLError`
    for text that does not parse, RecursionError for nesting too deep for the parser.
    """
    loader = _Loader(text)
    docs = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if "*" in text:  # cheap: a document without '*' has no alias to expand
                written = _distinct(node)
                limit = max(ALIAS_EXPANSION_FLOOR, MAX_ALIAS_EXPANSION * written)
                if _expanded_size(node, limit) > limit:
                    raise ManifestError(
                        f"YAML aliases expand {written} nodes to more than {limit} (an alias bomb?)"
                    )
            docs.append(loader.construct_document(node))
    finally:
        loader.dispose()
    return docs
