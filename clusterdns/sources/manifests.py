"""The ``zones/`` source: Kubernetes manifests on disk -> records in the store.

Reads ``*.yaml``, ``*.yml`` and ``*.json`` below each directory (or the files named),
multi-document files, and ``kind: List`` / ``ServiceList`` ... wrappers exactly as
``kubectl get ... -o yaml|json`` writes them. Objects of other kinds are skipped and
counted. A file that does not parse, or an invalid object, gives one error line naming
the file and the object; everything else still loads.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..convert import CONVERTERS, convert, object_key
from ..errors import ClusterDNSError
from ..records import Record
from ..store import KINDS, Store

log = logging.getLogger("clusterdns.manifests")

SUFFIXES = (".yaml", ".yml", ".json")
SOURCE = "zones"

try:
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader


@dataclass
class FileResult:
    """What one manifest file holds: ``records`` converted, ``errors`` as one line each
    (``zones/shop.yaml: Service shop/web: spec.ports[1].port: not an integer``), kinds
    ``skipped`` with their counts, and whether the file parsed at all (``parsed``)."""

    records: list[Record] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    parsed: bool = True


def manifest_files(paths: Sequence[Path]) -> list[Path]:
    """The manifest files below ``paths`` (directories searched recursively), sorted.

    A path that does not exist raises FileNotFoundError.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")
    return files


def _documents(path: Path, text: str) -> list[Any]:
    if path.suffix == ".json":
        return [json.loads(text)]
    return list(yaml.load_all(text, Loader=_Loader))


def _objects(doc: Any, where: str, result: FileResult) -> Iterator[Mapping[str, Any]]:
    """Yield the objects of one document, unwrapping ``List`` kinds; count skipped kinds."""
    if doc is None:
        return
    if not isinstance(doc, Mapping):
        result.errors.append(f"{where}: not a Kubernetes object (a mapping with a kind)")
        return
    kind = doc.get("kind")
    items = doc.get("items")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(items, list):
        # The raw API writes ServiceList items without a kind; kubectl's List has them.
        item_kind = kind[: -len("List")] or None
        for item in items:
            if isinstance(item, Mapping) and "kind" not in item and item_kind:
                item = {**item, "kind": item_kind}
            yield from _objects(item, where, result)
        return
    if kind in CONVERTERS:
        yield doc
    else:
        result.skipped[str(kind)] += 1


def load_file(path: Path) -> FileResult:
    """Read and convert one manifest file; never raises for bad content."""
    result = FileResult()
    try:
        docs = _documents(path, path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        reason = " ".join(str(exc).split())
        result.errors.append(f"{path}: cannot be read: {reason}")
        result.parsed = False
        return result
    for index, doc in enumerate(docs):
        for obj in _objects(doc, f"{path}: document {index + 1}", result):
            try:
                record = convert(obj)
            except ClusterDNSError as exc:
                kind, namespace, name = object_key(obj)
                ident = f"{namespace}/{name}" if namespace else name
                result.errors.append(f"{path}: {kind} {ident}: {exc}")
                continue
            if record is not None:
                result.records.append(record)
    return result


@dataclass
class LoadResult:
    """All files of a manifest source: per-file results, in file order."""

    files: dict[Path, FileResult] = field(default_factory=dict)

    @property
    def errors(self) -> list[str]:
        """Every error line, file by file."""
        return [line for result in self.files.values() for line in result.errors]

    @property
    def skipped(self) -> Counter[str]:
        """Kinds skipped over all files, with counts."""
        total: Counter[str] = Counter()
        for result in self.files.values():
            total.update(result.skipped)
        return total

    def by_kind(self) -> dict[str, list[Record]]:
        """Records of every file grouped by kind (a later file wins on the same object)."""
        kinds: dict[str, list[Record]] = {kind: [] for kind in KINDS}
        for result in self.files.values():
            for record in result.records:
                kinds[type(record).__name__].append(record)
        return kinds


def load(paths: Sequence[Path]) -> LoadResult:
    """Load every manifest file below ``paths``. Raises FileNotFoundError for a missing path."""
    return LoadResult({path: load_file(path) for path in manifest_files(paths)})


class ManifestSource:
    """Feeds the records of ``paths`` into a store as the source ``"zones"``."""

    def __init__(self, store: Store, paths: Sequence[Path]) -> None:
        self.store = store
        self.paths = list(paths)
        store.add_source(SOURCE)

    def load(self, now: float) -> LoadResult:
        """(Re)load every file and replace the source's objects in the store; log errors.

        ``now``: Unix time in seconds (the SOA serial if anything changed).
        """
        result = load(self.paths)
        for line in result.errors:
            log.error("%s", line)
        for kind, records in result.by_kind().items():
            self.store.replace(SOURCE, kind, records, now)
        self.store.mark_synced(SOURCE)
        return result
