"""A kube-apiserver stand-in sized to what the reflector (clusterdns/sources/kube.py) sends.

Real HTTP/1.1 on 127.0.0.1, answered the way kube-apiserver answers, for the cluster-wide
collections of the kinds in :data:`_KINDS` (Namespace, Service, Pod, EndpointSlice, and the
exposure kinds Ingress, Gateway, HTTPRoute, GRPCRoute, TLSRoute, and ServiceImport):

* ``GET <collection>?limit=N[&continue=T][&fieldSelector=S]``: one page of a LIST. Pages of
  one list are a consistent snapshot at its resourceVersion; the continue token is etcd's
  (base64url JSON ``{"v":"meta.k8s.io/v1","rv":N,"start":"<next key>"}``); keys are ordered
  like etcd keys (``namespace/name``); ``remainingItemCount`` is set when no selector is;
  items carry neither ``kind`` nor ``apiVersion``. A continue token whose snapshot is gone
  (after :meth:`KubeAPIServer.compact`) answers 410 Expired.
* ``GET <collection>?watch=1&resourceVersion=N&allowWatchBookmarks=true&timeoutSeconds=T
  [&fieldSelector=S]``: a ``Transfer-Encoding: chunked`` stream of JSON lines, the stored
  changes after N first, then live ones, written in chunks of at most 4 KiB (one chunk may
  hold several events or part of one); a selector turns MODIFIED into ADDED/DELETED like the
  watch cache; BOOKMARKs on :meth:`~KubeAPIServer.bookmark`; a clean end (the terminating
  chunk) after ``timeoutSeconds``; from a compacted N: 200, one ERROR event (410 Expired), end.
* One global resourceVersion shared by every kind; errors are ``Status`` objects.

Anything else (another path, a namespaced path, a single object, a query parameter the
reflector does not send such as ``labelSelector`` or ``resourceVersionMatch``) answers 404 or
400: a reflector that starts sending something new fails a test loudly instead of being
served a guess. Faults for the tests: :meth:`~KubeAPIServer.fail_next`, ``stop()``/``start()``
on the same port, :meth:`~KubeAPIServer.drop_watches`, :meth:`~KubeAPIServer.hang_watches`,
:meth:`~KubeAPIServer.send_raw_line`, ``missing_groups`` (CRDs not installed),
:meth:`~KubeAPIServer.serve_canned` (exact bytes for the next LIST or WATCH).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import gc
import json
import marshal
import queue
import select
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

__all__ = ["AlreadyExists", "KubeAPIServer", "NotFound"]

Obj = dict[str, Any]
# A stored change: (resourceVersion, type, object after (for DELETED: its last state with the
# deletion's resourceVersion), object before (None for ADDED)).
Event = tuple[int, str, Obj, Obj | None]
Predicate = Callable[[Obj], bool]

DEFAULT_USER = "system:serviceaccount:kube-system:coredns"
_POLL = 0.05  # seconds: how often an idle watch checks for its client going away
_CHUNK = 4096  # net/http's response buffer: watch data goes out in chunks of at most this
_SMALL_BODY = 2048  # net/http sets Content-Length only for bodies up to this; larger are chunked
_SNAPSHOTS = 16  # LIST snapshots kept for continue tokens (oldest dropped first)
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"", "0", "f", "F", "false", "FALSE", "False"}
_LIST_PARAMS = {"limit", "continue", "fieldSelector"}
_WATCH_PARAMS = {"watch", "resourceVersion", "allowWatchBookmarks", "timeoutSeconds", "fieldSelector"}
_EXPIRED_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue value from the "
    "response to get an inconsistent list."
)


class AlreadyExists(ValueError):
    """``create()``/``load()`` of an object that already exists."""


class NotFound(LookupError):
    """``update()``/``delete()`` of an object that does not exist."""


@dataclass(frozen=True)
class _Kind:
    kind: str
    api_version: str
    resource: str
    namespaced: bool = True

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def path(self) -> str:
        return f"/api{'' if self.api_version == 'v1' else 's'}/{self.api_version}/{self.resource}"

    @property
    def group_resource(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


_GW = "gateway.networking.k8s.io"
_KINDS = {
    k.kind: k
    for k in (
        _Kind("Namespace", "v1", "namespaces", namespaced=False),
        _Kind("Service", "v1", "services"),
        _Kind("Pod", "v1", "pods"),
        _Kind("EndpointSlice", "discovery.k8s.io/v1", "endpointslices"),
        _Kind("Ingress", "networking.k8s.io/v1", "ingresses"),
        _Kind("Gateway", f"{_GW}/v1", "gateways"),
        _Kind("HTTPRoute", f"{_GW}/v1", "httproutes"),
        _Kind("GRPCRoute", f"{_GW}/v1", "grpcroutes"),
        _Kind("TLSRoute", f"{_GW}/v1alpha2", "tlsroutes"),  # served at v1alpha2 only, like the CRD
        _Kind("ServiceImport", "multicluster.x-k8s.io/v1alpha1", "serviceimports"),
    )
}
_BY_PATH = {k.path: k for k in _KINDS.values()}


def _kind(name: str) -> _Kind:
    k = _KINDS.get(name)
    if k is None:
        raise ValueError(f"unsupported kind {name!r}; expected one of {sorted(_KINDS)}")
    return k


def _clone(v: Any) -> Any:
    """Deep copy of a JSON value (marshal is C, ~10x faster than copy.deepcopy, keeps order)."""
    return marshal.loads(marshal.dumps(v))


def _dumps(v: Any) -> bytes:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode()


def _with_rv(obj: Obj, rv: int) -> Obj:
    """A shallow copy of ``obj`` whose metadata.resourceVersion is ``rv``."""
    return {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(rv)}}


def _status(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    s: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "message": message, "reason": reason}
    if details is not None:
        s["details"] = details
    s["code"] = code
    return s


class _HTTPError(Exception):
    def __init__(self, status: Obj) -> None:
        super().__init__(status["message"])
        self.status = status


def _bad_request(message: str) -> _HTTPError:
    return _HTTPError(_status(400, "BadRequest", message))


def _not_found() -> _HTTPError:
    return _HTTPError(_status(404, "NotFound", "the server could not find the requested resource", {}))


def _field_value(obj: Obj, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return ""
        cur = cur[part]
    return "" if cur is None else str(cur).lower() if isinstance(cur, bool) else str(cur)


def _field_predicate(selector: str) -> Predicate | None:
    """``path=value``, ``path==value``, ``path!=value`` on dotted paths, comma = AND."""
    if not selector:
        return None
    tests: list[tuple[str, bool, str]] = []
    for term in selector.split(","):
        path, op, value = term.partition("!=")
        if not op:
            path, op, value = term.partition("==") if "==" in term else term.partition("=")
        if not op or not path.strip():
            raise _bad_request(f"invalid selector: '{selector}'; can't understand '{term}'")
        tests.append((path.strip(), op == "!=", value))
    return lambda obj: all((_field_value(obj, p) == v) != neg for p, neg, v in tests)


def _encode_continue(start: str, rv: int) -> str:
    raw = _dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode_continue(token: str) -> tuple[str, int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        start, rv = data["start"], data["rv"]
        if data["v"] != "meta.k8s.io/v1" or not isinstance(start, str) or not isinstance(rv, int):
            raise ValueError(data)
    except (binascii.Error, ValueError, TypeError, KeyError) as e:
        raise _bad_request(f"invalid continue token: continue key is not valid: {e}") from None
    return start, rv


# --- watches --------------------------------------------------------------------------------

_STOP = ("stop",)


@dataclass(eq=False)
class _Watch:
    kind: _Kind
    pred: Predicate | None
    bookmarks: bool
    sock: socket.socket
    queue: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    state: str | None = None  # None while open; "stopped" or "dropped" when told to end
    unhung: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.unhung.set()

    def convert(self, ev: Event) -> tuple[str, Obj] | None:
        """The event this watch sees for a stored change (the watch cache's rules)."""
        rv, type_, obj, prev = ev
        if self.pred is None:
            return type_, obj
        old = prev is not None and self.pred(prev)
        if type_ == "DELETED":
            return (type_, obj) if old else None
        if self.pred(obj):
            return ("MODIFIED" if old else "ADDED"), obj
        return ("DELETED", _with_rv(prev, rv)) if old and prev is not None else None

    def line(self, type_: str, obj: Obj) -> bytes:
        full = {"kind": self.kind.kind, "apiVersion": self.kind.api_version, **obj}
        return _dumps({"type": type_, "object": full}) + b"\n"

    def render(self, item: Any, out: bytearray) -> bool:
        """Append the bytes for one queued item to ``out``; True if the stream ends after it."""
        tag = item[0]
        if isinstance(tag, int):
            seen = self.convert(item)
            if seen is not None:
                out += self.line(*seen)
        elif tag == "bookmark":
            meta = {"resourceVersion": str(item[1])}
            out += _dumps({"type": "BOOKMARK", "object": {
                "kind": self.kind.kind, "apiVersion": self.kind.api_version, "metadata": meta}})
            out += b"\n"
        elif tag == "raw":
            out += item[1]
        elif tag == "error":
            out += _dumps({"type": "ERROR", "object": item[1]}) + b"\n"
        return tag in ("error", "end")


# --- HTTP plumbing --------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: KubeAPIServer) -> None:
        self.api = api
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # not HTTPServer's: no reverse DNS lookup
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        # As Go's net/http (TCP_NODELAY on every connection): with Nagle, a body written after
        # its headers waits for the client's delayed ACK, 40 ms per LIST page.
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_response(self, code: int, message: str | None = None) -> None:
        self.send_response_only(code, message)  # kube-apiserver sends no Server header
        self.send_header("Date", self.date_time_string())

    def do_GET(self) -> None:  # the reflector only reads: other methods get 501
        self.server.api._serve(self)

    def send_body(self, code: int, body: bytes) -> None:
        """A whole JSON response as Go's net/http sends it: Content-Length for small bodies,
        one chunk otherwise."""
        self.send_response(code)
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Content-Type", "application/json")
        if len(body) <= _SMALL_BODY:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))

    def write_chunks(self, data: bytes | bytearray) -> None:
        view = memoryview(data)
        for i in range(0, len(view), _CHUNK):
            piece = view[i : i + _CHUNK]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))

    def peer_closed(self) -> bool:
        """True if the client has closed its end (it never sends anything on a watch)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def wait_unhung(self, w: _Watch) -> bool:
        """Block while ``w`` is hung; False if it was told to end or its client went away."""
        while not w.unhung.wait(_POLL):
            if w.state is not None or self.peer_closed():
                return False
        return w.state is None

    def serve_watch(self, w: _Watch, timeout: float) -> None:
        """Stream ``w`` until ``timeout`` s (then the terminating chunk), an ERROR event, or
        until it is stopped/dropped or its client goes away (then no terminating chunk)."""
        deadline = time.monotonic() + timeout
        clean = False
        try:
            self.send_response(200)
            self.send_header("Cache-Control", "no-cache, private")
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while w.state is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    clean = True
                    break
                try:
                    item = w.queue.get(timeout=min(remaining, _POLL))
                except queue.Empty:
                    if self.peer_closed():
                        break
                    continue
                buf, end = bytearray(), False
                while item is not _STOP and not (end := w.render(item, buf)):
                    try:  # batch what is queued now, like net/http's buffered writer
                        item = w.queue.get_nowait()
                    except queue.Empty:
                        break
                if item is _STOP or not self.wait_unhung(w):
                    break
                self.write_chunks(buf)
                if end:
                    clean = True
                    break
            clean = clean and self.wait_unhung(w)  # hung: not even the end is written
            if clean:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            clean = False
        finally:
            self.server.api._unregister(w)
        self.close_connection = self.close_connection or not clean


# --- the server -----------------------------------------------------------------------------


class KubeAPIServer:
    """An in-process kube-apiserver stand-in (see the module docstring for what it serves).

    State (objects, the global resourceVersion, the event history) survives ``stop()`` and
    ``start()``, so a test can make the API go away and come back on the same port. Thread-safe.
    A context manager (start/stop). ``requests`` lists ``(method, path, query params)`` of every
    request received, in order (the first value wins for a repeated parameter, as in Go).
    Each watch is served by its own connection thread from its own queue, so writers
    (``create()`` etc.) never wait for a slow, hung or dead client.
    """

    #: The user named in 403 messages.
    user = DEFAULT_USER

    def __init__(self, *, token: str | None = None, port: int = 0) -> None:
        """A stopped server; with ``token``, every request must carry
        ``Authorization: Bearer <token>`` or gets 401."""
        self.token = token
        self.port = port
        #: API groups served as if their CRDs were not installed (404 for their paths).
        self.missing_groups: set[str] = set()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._rv = 1
        self._compacted = 1
        self._objs: dict[str, dict[str, Obj]] = {k: {} for k in _KINDS}
        self._hist: dict[str, list[Event]] = {k: [] for k in _KINDS}
        self._watches: dict[str, list[_Watch]] = {k: [] for k in _KINDS}
        self._snapshots: dict[tuple[str, int], tuple[list[str], list[Obj]]] = {}
        self._failures: list[dict[str, Any]] = []
        self._canned: list[tuple[str, bool, bytes]] = []
        self._httpd: _HTTPServer | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (valid after ``start()``; kept across ``stop()``)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listen on 127.0.0.1:``port`` (0 = ephemeral; the port is remembered, so a later
        ``start()`` after ``stop()`` reuses it) and serve in a daemon thread."""
        with self._lock:
            if self._httpd is not None:
                raise RuntimeError("already started")
            self._httpd = _HTTPServer(("127.0.0.1", self.port), self)
            self.port = self._httpd.server_address[1]
            threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01},
                             name=f"kubeapi:{self.port}", daemon=True).start()

    def stop(self) -> None:
        """Close the listener and every open connection and watch stream (no terminating
        chunk), like an apiserver going away; returns once the watch streams are gone."""
        with self._lock:
            httpd, self._httpd = self._httpd, None
            watches = self._end_watches("stopped")
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with httpd.connections_lock:
            connections = list(httpd.connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._wait_gone(watches)

    def __enter__(self) -> KubeAPIServer:
        """Start the server."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the server."""
        self.stop()

    def write_kubeconfig(self, path: str | Path) -> Path:
        """Write a kubeconfig for this server (with the bearer token, if any) that
        ``kubernetes.config.load_kube_config`` accepts; returns its path."""
        path = Path(path)
        user: Obj = {"token": self.token} if self.token else {}
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "kubeapi-test", "cluster": {"server": self.url}}],
            "users": [{"name": "kubeapi-test", "user": user}],
            "contexts": [{"name": "kubeapi-test",
                          "context": {"cluster": "kubeapi-test", "user": "kubeapi-test"}}],
            "current-context": "kubeapi-test",
        }, sort_keys=False))
        return path

    # -- objects -------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        """The current global resourceVersion."""
        with self._lock:
            return self._rv

    def _prepare(self, obj: Obj, existing: Obj | None = None) -> tuple[_Kind, str, Obj]:
        """(kind, etcd key, the object as stored: without kind and apiVersion). ValueError if
        ``obj`` is not an object of a served kind with a name."""
        kind = _kind(obj.get("kind", "") if isinstance(obj, dict) else "")
        if obj.get("apiVersion", kind.api_version) != kind.api_version:
            raise ValueError(f"{kind.kind} must have apiVersion {kind.api_version!r}")
        out: Obj = _clone(obj)
        out.pop("kind", None)
        out.pop("apiVersion", None)
        meta = out.setdefault("metadata", {})
        name = meta.get("name")
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"{kind.kind} needs metadata.name (without '/')")
        if kind.namespaced:
            meta["namespace"] = meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        key = f"{meta['namespace']}/{name}" if kind.namespaced else name
        if existing is not None:
            meta["uid"] = existing["metadata"]["uid"]
            meta["creationTimestamp"] = existing["metadata"]["creationTimestamp"]
        else:
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        return kind, key, out

    def _commit(self, kind: _Kind, key: str, type_: str, obj: Obj, prev: Obj | None) -> Obj:
        """Apply one change under the lock: new resourceVersion, store, history, watches.
        A stored object is never changed afterwards (snapshots and watch queues share it)."""
        self._rv += 1
        obj = _with_rv(obj, self._rv)
        if type_ == "DELETED":
            del self._objs[kind.kind][key]
        else:
            self._objs[kind.kind][key] = obj
        ev: Event = (self._rv, type_, obj, prev)
        self._hist[kind.kind].append(ev)
        for w in self._watches[kind.kind]:
            w.queue.put(ev)
        self._cond.notify_all()
        return {"kind": kind.kind, "apiVersion": kind.api_version, **_clone(obj)}

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create an object as kubectl would write it: sets metadata.resourceVersion, uid,
        creationTimestamp (namespace "default" if unset) and emits ADDED. Returns a copy of
        what is stored; AlreadyExists if it exists, ValueError if it is not a served kind."""
        kind, key, stored = self._prepare(obj)
        with self._lock:
            if key in self._objs[kind.kind]:
                raise AlreadyExists(f'{kind.group_resource} "{key}" already exists')
            return self._commit(kind, key, "ADDED", stored, None)

    def update(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace an existing object (keeping uid and creationTimestamp) and emit MODIFIED;
        NotFound if it does not exist."""
        kind, key, _ = self._prepare(obj)
        with self._lock:
            prev = self._objs[kind.kind].get(key)
            if prev is None:
                raise NotFound(f'{kind.group_resource} "{key}" not found')
            return self._commit(kind, key, "MODIFIED", self._prepare(obj, prev)[2], prev)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete an object, emitting DELETED with its last state and a new resourceVersion
        (``namespace`` is ignored for Namespace); NotFound if it does not exist."""
        k = _kind(kind)
        key = f"{namespace or 'default'}/{name}" if k.namespaced else name
        with self._lock:
            prev = self._objs[k.kind].get(key)
            if prev is None:
                raise NotFound(f'{k.group_resource} "{key}" not found')
            self._commit(k, key, "DELETED", prev, prev)

    def load(self, objs: Iterable[dict[str, Any]]) -> None:
        """Create many objects, each with its own resourceVersion (as in etcd). Atomic: if any
        is invalid or exists, nothing is created. Fast enough for 100,000 objects."""
        gc_was_enabled = gc.isenabled()
        gc.disable()  # 100,000 new dicts would otherwise trigger many full collections
        try:
            prepared = [self._prepare(o) for o in objs]
        finally:
            if gc_was_enabled:
                gc.enable()
        with self._lock:
            seen: set[tuple[str, str]] = set()
            for kind, key, _ in prepared:
                if key in self._objs[kind.kind] or (kind.kind, key) in seen:
                    raise AlreadyExists(f'{kind.group_resource} "{key}" already exists')
                seen.add((kind.kind, key))
            for kind, key, stored in prepared:
                self._rv += 1
                stored["metadata"]["resourceVersion"] = str(self._rv)
                self._objs[kind.kind][key] = stored
                ev: Event = (self._rv, "ADDED", stored, None)
                self._hist[kind.kind].append(ev)
                for w in self._watches[kind.kind]:
                    w.queue.put(ev)
            self._cond.notify_all()

    def compact(self) -> None:
        """Forget the event history (and LIST snapshots): a watch from, or a continue token
        of, any resourceVersion older than the current one now gets 410 Expired."""
        with self._lock:
            self._compacted = self._rv
            for h in self._hist.values():
                h.clear()
            self._snapshots.clear()

    def bookmark(self) -> None:
        """Send a BOOKMARK with the current resourceVersion to every open watch that asked
        for them (allowWatchBookmarks=true)."""
        with self._lock:
            for w in self._all_watches():
                if w.bookmarks:
                    w.queue.put(("bookmark", self._rv))

    # -- faults --------------------------------------------------------------------------------

    def fail_next(
        self, status: int, *, count: int = 1, path_contains: str = "", watch: bool | None = None
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` (401, 403, 404, 410,
        500 or 503) and kube-apiserver's Status body for it. A request matches if
        ``path_contains`` occurs in its path-and-query and, unless ``watch`` is None, it is (or
        is not) a watch. Rules are tried in the order they were added."""
        if status not in (401, 403, 404, 410, 500, 503):
            raise ValueError(f"fail_next does not know status {status}")
        with self._lock:
            self._failures.append(
                {"status": status, "count": count, "path": path_contains, "watch": watch}
            )

    def serve_canned(self, path: str, body: bytes, *, watch: bool = False) -> None:
        """Answer the next LIST (with ``watch``: WATCH) of collection ``path`` with ``body``
        exactly: a LIST gets it as its JSON body; a WATCH gets 200, ``body`` as one chunked
        write (JSON lines) and a clean end. For tests that pin the bytes a client reads."""
        with self._lock:
            self._canned.append((path, watch, body))

    def drop_watches(self) -> None:
        """Abruptly close every open watch stream (no terminating chunk); returns once they
        are gone."""
        with self._lock:
            watches = self._end_watches("dropped")
        for w in watches:
            with contextlib.suppress(OSError):
                w.sock.shutdown(socket.SHUT_RDWR)
        self._wait_gone(watches)

    def hang_watches(self) -> None:
        """The watch streams open now stop writing (events queue up; not even the
        timeoutSeconds end is sent) until ``unhang_watches()``, like a stalled connection.
        Watches opened later are not hung; ``create()`` and friends never block."""
        with self._lock:
            for w in self._all_watches():
                w.unhung.clear()

    def unhang_watches(self) -> None:
        """Let hung watch streams write again (queued events first, in order)."""
        with self._lock:
            for w in self._all_watches():
                w.unhung.set()

    def send_raw_line(self, line: bytes) -> None:
        """Write ``line`` (a newline added if missing) into every open watch stream, in order
        with the events."""
        line = line if line.endswith(b"\n") else line + b"\n"
        with self._lock:
            for w in self._all_watches():
                w.queue.put(("raw", line))

    def open_watches(self) -> int:
        """How many watch streams are open now."""
        with self._lock:
            return len(self._all_watches())

    def wait_for_watches(self, n: int, timeout: float) -> bool:
        """Wait until at least ``n`` watch streams are open; False after ``timeout`` s."""
        with self._cond:
            return self._cond.wait_for(lambda: self.open_watches() >= n, timeout)

    # -- internals -----------------------------------------------------------------------------

    def _all_watches(self) -> list[_Watch]:
        return [w for ws in self._watches.values() for w in ws]

    def _end_watches(self, state: str) -> list[_Watch]:
        watches = self._all_watches()
        for w in watches:
            w.state = state
            w.queue.put(_STOP)
        return watches

    def _unregister(self, w: _Watch) -> None:
        with self._lock:
            if w in self._watches[w.kind.kind]:
                self._watches[w.kind.kind].remove(w)
            self._cond.notify_all()

    def _wait_gone(self, watches: list[_Watch]) -> None:
        with self._cond:
            self._cond.wait_for(
                lambda: not any(w in self._watches[w.kind.kind] for w in watches), 5.0
            )

    def _serve(self, h: _Handler) -> None:
        split = urlsplit(h.path)
        params: dict[str, str] = {}
        for k, v in parse_qsl(split.query, keep_blank_values=True):
            params.setdefault(k, v)  # Go's url.Values.Get takes the first
        with self._lock:
            self.requests.append((h.command, split.path, params))
        try:
            self._dispatch(h, split.path, h.path, params)
        except _HTTPError as e:
            h.send_body(e.status["code"], _dumps(e.status))

    def _dispatch(self, h: _Handler, path: str, target: str, params: dict[str, str]) -> None:
        if self.token is not None and h.headers.get("Authorization") != f"Bearer {self.token}":
            raise _HTTPError(_status(401, "Unauthorized", "Unauthorized"))
        kind = _BY_PATH.get(path)
        if kind is not None and kind.group in self.missing_groups:
            kind = None  # the CRD is not installed: 404 like any unknown path
        is_watch = kind is not None and self._bool(params, "watch")
        self._maybe_fail(target, is_watch, kind)
        if kind is None:
            raise _not_found()
        unknown = set(params) - (_WATCH_PARAMS if is_watch else _LIST_PARAMS)
        if unknown:
            raise _bad_request(f"tests/kubeapi.py does not serve {sorted(unknown)} on a "
                               f"{'watch' if is_watch else 'list'} (clusterdns never sent it)")
        with self._lock:
            canned = next((c for c in self._canned if c[:2] == (path, is_watch)), None)
            if canned is not None:
                self._canned.remove(canned)
        if canned is not None and is_watch:
            w = _Watch(kind, None, False, h.connection)
            w.queue.put(("raw", canned[2]))
            w.queue.put(("end",))
            h.serve_watch(w, 60.0)
        elif canned is not None:
            h.send_body(200, canned[2])
        elif is_watch:
            self._watch(h, kind, params)
        else:
            self._list(h, kind, params)

    def _maybe_fail(self, target: str, is_watch: bool, kind: _Kind | None) -> None:
        with self._lock:
            for rule in self._failures:
                if rule["path"] in target and rule["watch"] in (None, is_watch):
                    rule["count"] -= 1
                    if rule["count"] <= 0:
                        self._failures.remove(rule)
                    code = rule["status"]
                    break
            else:
                return
        if code == 403 and kind is not None:
            verb = "watch" if is_watch else "list"
            details: Obj = {"group": kind.group} if kind.group else {}
            raise _HTTPError(_status(403, "Forbidden", (
                f'{kind.group_resource} is forbidden: User "{self.user}" cannot {verb} resource '
                f'"{kind.resource}" in API group "{kind.group}" at the cluster scope'),
                {**details, "kind": kind.resource}))
        if code == 404:
            raise _not_found()
        reason, message = {
            401: ("Unauthorized", "Unauthorized"),
            403: ("Forbidden", f'forbidden: User "{self.user}" cannot get path "{target}"'),
            410: ("Expired", "The resourceVersion for the provided list is too old."),
            500: ("InternalError", "Internal error occurred: injected failure"),
            503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
        }[code]
        raise _HTTPError(_status(code, reason, message))

    @staticmethod
    def _bool(params: dict[str, str], name: str) -> bool:
        v = params.get(name, "")
        if v in _TRUE or v in _FALSE:
            return v in _TRUE
        raise _bad_request(f'strconv.ParseBool: parsing "{v}": invalid syntax')

    @staticmethod
    def _int(params: dict[str, str], name: str) -> int:
        v = params.get(name, "")
        try:
            return int(v) if v else 0
        except ValueError:
            raise _bad_request(f'{name}: strconv.ParseInt: parsing "{v}": invalid syntax') from None

    def _list(self, h: _Handler, kind: _Kind, params: dict[str, str]) -> None:
        pred = _field_predicate(params.get("fieldSelector", ""))
        limit = max(0, self._int(params, "limit"))
        token = params.get("continue", "")
        with self._lock:
            if token:
                start, rv = _decode_continue(token)
                snapshot = self._snapshots.get((kind.kind, rv))
                if snapshot is None:  # compacted since the first page
                    raise _HTTPError(_status(410, "Expired", _EXPIRED_CONTINUE))
            else:
                start, rv, objs = "", self._rv, self._objs[kind.kind]
                keys = sorted(objs)
                snapshot = keys, [objs[k] for k in keys]
        keys, values = snapshot
        i = bisect.bisect_left(keys, start)
        items: list[Obj] = []
        while i < len(keys) and not (limit and len(items) >= limit):
            if pred is None or pred(values[i]):
                items.append(values[i])
            i += 1
        meta: Obj = {"resourceVersion": str(rv)}
        if i < len(keys):
            meta["continue"] = _encode_continue(keys[i - 1] + "\x00", rv)
            if pred is None:
                meta["remainingItemCount"] = len(keys) - i
            with self._lock:
                self._snapshots[(kind.kind, rv)] = snapshot
                while len(self._snapshots) > _SNAPSHOTS:
                    del self._snapshots[next(iter(self._snapshots))]
        h.send_body(200, _dumps({"kind": kind.kind + "List", "apiVersion": kind.api_version,
                                 "metadata": meta, "items": items}))

    def _watch(self, h: _Handler, kind: _Kind, params: dict[str, str]) -> None:
        pred = _field_predicate(params.get("fieldSelector", ""))
        timeout = self._int(params, "timeoutSeconds") or 1800  # kube-apiserver's default
        rv = params.get("resourceVersion", "")
        if not rv.isdigit() or rv == "0":
            raise _bad_request(f"tests/kubeapi.py serves a watch from a resourceVersion > 0 "
                               f"only (clusterdns watches from its LIST's), not {rv!r}")
        n = int(rv)
        w = _Watch(kind, pred, self._bool(params, "allowWatchBookmarks"), h.connection)
        with self._lock:
            if self._httpd is None:
                return
            if n < self._compacted:  # like the watch cache: 200, one ERROR event, the end
                w.queue.put(("error", _status(
                    410, "Expired", f"too old resource version: {n} ({self._compacted})")))
            else:
                hist = self._hist[kind.kind]
                for ev in hist[bisect.bisect_right(hist, n, key=lambda e: e[0]) :]:
                    w.queue.put(ev)
                self._watches[kind.kind].append(w)
                self._cond.notify_all()
        h.serve_watch(w, float(timeout))
