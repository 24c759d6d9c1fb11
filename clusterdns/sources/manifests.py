"""The ``zones/`` source: Kubernetes manifests on disk -> records in the store.

Reads ``*.yaml``, ``*.yml`` and ``*.json`` below each directory (or the files named),
multi-document files, and ``kind: List`` / ``ServiceList`` ... wrappers exactly as
``kubectl get ... -o yaml|json`` writes them. Objects of other kinds are skipped and
counted. A file that does not parse, or an invalid object, gives one error line naming
the file and the object; everything else still loads.

Hostile files are bounded (issue 14): at most :data:`MAX_FILE_BYTES` per file and
:data:`MAX_OBJECTS` objects per file; YAML aliases may not refer to themselves nor expand
the document beyond :data:`MAX_ALIAS_EXPANSION` times its size (the "billion laughs",
Kubernetes CVE-2019-11253; checked by :mod:`clusterdns.sources.yamlsafe`); nesting too
deep for the parser is an error, not a crash; a file reports at most
:data:`MAX_ERRORS_PER_FILE` errors, then how many more.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.convert import CONVERTERS, convert_or_error, unwrap_lists
from ..core.records import Record
from ..core.store import KINDS, Key, Store, record_key
from .memory import release_memory
from .yamlsafe import (  # noqa: F401 - the limits are re-exported: part of this module's doc
    ALIAS_EXPANSION_FLOOR,
    MAX_ALIAS_EXPANSION,
    ManifestError,
    YAMLError,
    yaml_documents,
    yaml_error_where,
)

log = logging.getLogger("clusterdns.manifests")

SUFFIXES = (".yaml", ".yml", ".json")
SOURCE = "zones"

MAX_FILE_BYTES = 64 * 1024 * 1024  # per file: a 100,000-pod JSON dump is ~45 MB
MAX_OBJECTS = 250_000  # Kubernetes objects per file, List items included
MAX_ERRORS_PER_FILE = 10  # error lines kept per file; the rest are counted

@dataclass
class FileResult:
    """What one manifest file holds: ``records`` converted, ``errors`` as one line each
    (``zones/shop.yaml: Service shop/web: spec.ports[1].port: not an integer``), kinds
    ``skipped`` with their counts, and whether the file parsed at all (``parsed``)."""

    records: list[Record] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    parsed: bool = True
    more_errors: int = 0  # errors beyond MAX_ERRORS_PER_FILE, counted but not kept
    items: int = 0  # documents and List items seen (bounded by MAX_OBJECTS)

    def error(self, line: str) -> None:
        """Keep one error line, or only count it past :data:`MAX_ERRORS_PER_FILE`."""
        if len(self.errors) < MAX_ERRORS_PER_FILE:
            self.errors.append(line)
        else:
            self.more_errors += 1

    def fail(self, line: str) -> None:
        """The whole file is unusable: ``line`` is its only error, nothing of it loads."""
        self.records = []
        self.errors = [line]
        self.more_errors = 0
        self.parsed = False

    @property
    def error_count(self) -> int:
        """Errors found in the file, the ones only counted included (the ``... and N
        more`` line is not one)."""
        return len(self.errors) + self.more_errors - (1 if self.more_errors else 0)


def manifest_files(paths: Sequence[Path]) -> list[Path]:
    """The manifest files below ``paths`` (directories searched recursively), sorted.

    A path that does not exist raises FileNotFoundError naming it, and for a relative path
    where it was looked for (``zones: no such file or directory; looked for /srv/zones``:
    ``serve`` and a Corefile's ``kubernetes`` read ``./zones`` from the current directory).
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            looked = "" if path.is_absolute() else f"; looked for {path.absolute()}"
            raise FileNotFoundError(f"{path}: no such file or directory{looked}")
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
    return yaml_documents(text)


def _objects(doc: Any, where: str, result: FileResult) -> Iterator[Mapping[str, Any] | _Converted]:
    """Yield the objects of one document, ``List`` kinds unwrapped
    (:func:`~clusterdns.core.convert.unwrap_lists`); count skipped kinds.

    Every item counts against :data:`MAX_OBJECTS`, the Lists and the ones that are no
    object too (a List of a million integers is refused, not reported a million times):
    ManifestError.
    """

    def count(_: object = None) -> None:
        result.items += 1
        if result.items > MAX_OBJECTS:
            raise ManifestError(f"more than {MAX_OBJECTS} objects, the limit a file")

    for obj in unwrap_lists((doc,), on_list=count):
        if obj is None:
            continue
        count()
        if isinstance(obj, _Converted):
            yield obj
        elif not isinstance(obj, Mapping):
            result.error(f"{where}: not a Kubernetes object (a mapping with a kind)")
        elif (kind := obj.get("kind")) in CONVERTERS:
            yield obj
        elif not isinstance(kind, str) or not kind:
            result.error(f"{where}: an object without a kind (a cut or partial file?)")
        else:
            result.skipped[kind] += 1


def load_file(path: Path) -> FileResult:
    """Read and convert one manifest file; never raises for bad content.

    A file over :data:`MAX_FILE_BYTES` or :data:`MAX_OBJECTS`, an alias bomb, a recursive
    alias or nesting too deep gives one error naming the file and loads nothing of it. An
    unexpected exception (a bug, memory) is that file's error too, logged with its trace.
    """
    try:
        return _load_file(path)
    except Exception as exc:
        log.exception("%s: cannot be loaded", path)
        result = FileResult()
        result.fail(f"{path}: cannot be loaded: {type(exc).__name__}: {exc}")
        return result


def _load_file(path: Path) -> FileResult:
    result = FileResult()
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ManifestError(f"{size} bytes, over the limit of {MAX_FILE_BYTES} bytes a file")
        docs = _documents(path, path.read_text(encoding="utf-8"))
    except RecursionError:
        result.fail(f"{path}: cannot be read: nested too deeply")
        return result
    except YAMLError as exc:  # file:line:column, as editors and compilers write it
        line, column, problem = yaml_error_where(exc)
        where = f"{path}:{line}:{column}" if line else str(path)
        result.fail(f"{where}: cannot be read: {problem}")
        return result
    except json.JSONDecodeError as exc:
        result.fail(f"{path}:{exc.lineno}:{exc.colno}: cannot be read: {exc.msg}")
        return result
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        result.fail(f"{path}: cannot be read: {reason}")
        return result
    try:
        _convert_documents(path, docs, result)
    except RecursionError:
        result.fail(f"{path}: cannot be read: nested too deeply")
    except ManifestError as exc:
        result.fail(f"{path}: {exc}")
    if result.more_errors:
        result.errors.append(f"{path}: ... and {result.more_errors} more errors")
    return result


def _convert_documents(path: Path, docs: list[Any], result: FileResult) -> None:
    for index, doc in enumerate(docs):
        for obj in _objects(doc, f"{path}: document {index + 1}", result):
            if isinstance(obj, _Converted):
                if obj.error:
                    result.error(f"{path}: {obj.error}")
                elif obj.record is not None:
                    result.records.append(obj.record)
                continue
            record, error = convert_or_error(obj)
            if error:
                result.error(f"{path}: {error}")
            elif record is not None:
                result.records.append(record)


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

    @property
    def error_count(self) -> int:
        """Errors over all files, the ones only counted included."""
        return sum(result.error_count for result in self.files.values())

    def by_kind(self) -> dict[str, list[Record]]:
        """Records of every file grouped by kind, one per object: a later one (in file
        order, then in the file) wins over an earlier one with the same kind, namespace
        and name, as the store would have it; see :attr:`warnings`."""
        return self._deduplicated()[0]

    @property
    def warnings(self) -> list[str]:
        """One line per duplicate object: ``zones/b.yaml: Service shop/web: also in
        zones/a.yaml; the later one is served``."""
        return self._deduplicated()[1]

    def _deduplicated(self) -> tuple[dict[str, list[Record]], list[str]]:
        kinds: dict[str, dict[Key, Record]] = {kind: {} for kind in KINDS}
        where: dict[tuple[str, Key], Path] = {}
        warnings: list[str] = []
        for path, result in self.files.items():
            for record in result.records:
                kind = type(record).__name__
                key = record_key(record)
                first = where.get((kind, key))
                if first is not None:
                    ident = key if isinstance(key, str) else "/".join(key)
                    other = "earlier in the file" if first == path else f"also in {first}"
                    warnings.append(
                        f"{path}: {kind} {ident}: duplicate ({other}); the later one is served"
                    )
                    del kinds[kind][key]  # the later one goes last, as if applied last
                kinds[kind][key] = record
                where[(kind, key)] = path
        return {kind: list(records.values()) for kind, records in kinds.items()}, warnings


def summary(result: LoadResult) -> str:
    """``Namespace 6, Service 8, EndpointSlice 7, Pod 9 from 2 files`` (+ skipped kinds,
    + the error count). Objects are counted once, as served (duplicates are not)."""
    by_kind = result.by_kind()
    # The exposure kinds (Ingress, Gateway, routes) only when there are some.
    text = ", ".join(
        f"{kind} {len(by_kind[kind])}" for kind in KINDS if kind in KINDS[:4] or by_kind[kind]
    )
    text += f" from {len(result.files)} file{'s' if len(result.files) != 1 else ''}"
    if result.skipped:
        text += "; skipped " + ", ".join(f"{k} {n}" for k, n in sorted(result.skipped.items()))
    errors = result.error_count
    if errors:
        text += f"; {errors} error{'s' if errors != 1 else ''}"
    duplicates = len(result.warnings)
    if duplicates:
        text += f"; {duplicates} duplicate{'s' if duplicates != 1 else ''}"
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
        result = self.read()
        self.apply(result, now)
        self.store.mark_synced(SOURCE)
        return result

    def read(self) -> LoadResult:
        """Read every file (safe off the loop thread: the store is not touched); log
        errors and duplicates. Apply the result with :meth:`apply`. Raises
        FileNotFoundError if a path given does not exist."""
        files = manifest_files(self.paths)
        self._stamps = {path: stamp for path in files if (stamp := _stamp(path))}
        result = LoadResult({path: load_file(path) for path in files})
        for line in result.errors:
            log.error("%s", line)
        for line in result.warnings:
            log.warning("%s", line)
        return result

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
        loaded = LoadResult(new)
        for line in loaded.warnings:
            log.warning("%s", line)
        return loaded

    def apply(self, result: LoadResult, now: float) -> None:
        """Make ``result`` (from :meth:`scan`) the source's state. Call on the loop thread."""
        self.result = result
        self._apply(now)
        release_memory()

    def _apply(self, now: float) -> None:
        for kind, records in self.result.by_kind().items():
            self.store.replace(SOURCE, kind, records, now)
