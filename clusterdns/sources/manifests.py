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

from ..convert import CONVERTERS, convert_or_error
from ..memory import release_memory
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


class _Converted:
    """An object the JSON parser has already converted (or failed to): see _early."""

    __slots__ = ("record", "error")

    def __init__(self, record: Record | None, error: str) -> None:
        self.record = record
        self.error = error


def _early(obj: dict[str, Any]) -> Any:
    """json ``object_hook``: convert each complete Kubernetes object as soon as the parser
    has built it, so that only one object's dicts are alive at a time. A 45 MB dump of
    100,000 pods otherwise leaves its records scattered among the freed dicts of the whole
    document, and the process keeps ~400 MB. Objects without a kind (the items of a raw
    ``ServiceList``) stay dicts and are converted later."""
    kind = obj.get("kind")
    if kind not in CONVERTERS or "metadata" not in obj or "apiVersion" not in obj:
        return obj
    return _Converted(*convert_or_error(obj))


def _documents(path: Path, text: str) -> list[Any]:
    if path.suffix == ".json":
        return [json.loads(text, object_hook=_early)]
    return list(yaml.load_all(text, Loader=_Loader))


def _objects(doc: Any, where: str, result: FileResult) -> Iterator[Mapping[str, Any] | _Converted]:
    """Yield the objects of one document, unwrapping ``List`` kinds; count skipped kinds."""
    if doc is None:
        return
    if isinstance(doc, _Converted):
        yield doc
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
    elif not isinstance(kind, str) or not kind:
        result.errors.append(f"{where}: an object without a kind (a cut or partial file?)")
    else:
        result.skipped[kind] += 1


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
            if isinstance(obj, _Converted):
                if obj.error:
                    result.errors.append(f"{path}: {obj.error}")
                elif obj.record is not None:
                    result.records.append(obj.record)
                continue
            record, error = convert_or_error(obj)
            if error:
                result.errors.append(f"{path}: {error}")
            elif record is not None:
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


def summary(result: LoadResult) -> str:
    """``Namespace 6, Service 8, EndpointSlice 7, Pod 9 from 2 files`` (+ skipped kinds,
    + the error count)."""
    by_kind = result.by_kind()
    # The exposure kinds (Ingress, Gateway, routes) only when there are some.
    text = ", ".join(
        f"{kind} {len(by_kind[kind])}" for kind in KINDS if kind in KINDS[:4] or by_kind[kind]
    )
    text += f" from {len(result.files)} file{'s' if len(result.files) != 1 else ''}"
    if result.skipped:
        text += "; skipped " + ", ".join(f"{k} {n}" for k, n in sorted(result.skipped.items()))
    if result.errors:
        text += f"; {len(result.errors)} error{'s' if len(result.errors) != 1 else ''}"
    return text


def load(paths: Sequence[Path]) -> LoadResult:
    """Load every manifest file below ``paths``. Raises FileNotFoundError for a missing path."""
    return LoadResult({path: load_file(path) for path in manifest_files(paths)})


Stamp = tuple[int, int]  # (mtime in ns, size in bytes): a file changed when this did


def _stamp(path: Path) -> Stamp | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


class ManifestSource:
    """Feeds the records of ``paths`` into a store as the source ``"zones"`` and follows
    changes to them.

    A changed file is read again; if it no longer parses, its last good objects stay and
    the error is logged; a deleted file takes its objects with it.
    """

    def __init__(self, store: Store, paths: Sequence[Path]) -> None:
        self.store = store
        self.paths = list(paths)
        self.result = LoadResult()
        self._stamps: dict[Path, Stamp] = {}
        store.add_source(SOURCE)

    def load(self, now: float) -> LoadResult:
        """Read every file and replace the source's objects in the store; log errors.

        ``now``: Unix time in seconds (the SOA serial if anything changed). Raises
        FileNotFoundError if a path given does not exist.
        """
        files = manifest_files(self.paths)
        self._stamps = {path: stamp for path in files if (stamp := _stamp(path))}
        self.result = LoadResult({path: load_file(path) for path in files})
        for line in self.result.errors:
            log.error("%s", line)
        self._apply(now)
        release_memory()
        self.store.mark_synced(SOURCE)
        return self.result

    def scan(self) -> LoadResult | None:
        """Read the files that changed since the last look (safe off the loop thread).

        Returns the next result, or None when nothing changed. A file that fails to parse
        keeps its last good records in the new result; its errors are logged.
        """
        try:
            files = manifest_files(self.paths)
        except FileNotFoundError as exc:
            log.error("zones: %s; keeping the last good state", exc)
            return None
        stamps = {path: stamp for path in files if (stamp := _stamp(path))}
        if stamps == self._stamps:
            return None
        old = self.result.files
        new: dict[Path, FileResult] = {}
        for path, stamp in stamps.items():
            if self._stamps.get(path) == stamp and path in old:
                new[path] = old[path]
                continue
            result = load_file(path)
            for line in result.errors:
                log.error("%s", line)
            if not result.parsed and path in old:
                log.error("%s: keeping its last good objects", path)
                result.records = old[path].records
            new[path] = result
        for path in old.keys() - new.keys():
            log.info("%s: removed; its objects are gone", path)
        self._stamps = stamps
        return LoadResult(new)

    def apply(self, result: LoadResult, now: float) -> None:
        """Make ``result`` (from :meth:`scan`) the source's state. Call on the loop thread."""
        self.result = result
        self._apply(now)
        release_memory()

    def _apply(self, now: float) -> None:
        for kind, records in self.result.by_kind().items():
            self.store.replace(SOURCE, kind, records, now)
