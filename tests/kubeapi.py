"""A protocol-faithful stand-in for kube-apiserver, for testing list/watch clients.

It serves, over plain HTTP on 127.0.0.1, exactly the read side a cluster DNS server needs:
LIST and WATCH of namespaces, services, pods (``/api/v1``), endpointslices
(``/apis/discovery.k8s.io/v1``), ingresses (``/apis/networking.k8s.io/v1``) and the Gateway API
kinds (gateways, httproutes, grpcroutes at ``v1``, tlsroutes at ``v1alpha2``), cluster-wide and per namespace, plus ``/version`` and
``/healthz``. The wire behaviour follows kube-apiserver (backed by etcd and the watch cache):

* one global resourceVersion shared by every kind; each write bumps it;
* LIST pages are consistent snapshots: ``limit``/``continue`` with etcd's continue token
  (base64url JSON ``{"v":"meta.k8s.io/v1","rv":N,"start":"<next key>"}``), keys ordered like
  etcd keys (``namespace/name``), ``remainingItemCount`` when no selector is set;
  ``resourceVersion=0`` is served "from the cache" and ignores ``limit``; an exact (or legacy
  ``resourceVersion=N&limit=``) list is rebuilt from the event history; continuing a list whose
  resourceVersion has been compacted answers 410 Expired with an "inconsistent" continue token;
* WATCH streams are ``Transfer-Encoding: chunked`` JSON lines, written in up to 4 KiB chunks and
  flushed when no more events are queued (so, like the real server, one chunk can carry several
  events or part of one); selectors turn MODIFIED into ADDED/DELETED like the watch cache; a
  watch from a compacted resourceVersion gets 200 and a single ERROR event (410 Expired);
* errors are ``Status`` objects with kube-apiserver's messages and reasons.

Fault injection (refused connections, dropped or hung streams, raw lines, injected error
statuses) lets tests drive a client through every failure a real control plane produces.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import gc
import gzip
import heapq
import itertools
import json
import marshal
import queue
import random
import re
import select
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml

__all__ = ["AlreadyExists", "KubeAPIServer", "NotFound"]

Obj = dict[str, Any]
# A stored change: (resourceVersion, type, key, object after (or last state for DELETED, with
# the deletion's resourceVersion), object before (None for ADDED)).
Event = tuple[int, str, str, Obj, Obj | None]
Predicate = Callable[[Obj], bool]

DEFAULT_USER = "system:serviceaccount:kube-system:coredns"
VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0",
    "gitCommit": "9edcffcde5595e8a5b1a35f88c421764e575afce",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T07:28:49Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}

_POLL = 0.05  # how often an idle watch checks for its client going away
_CHUNK = 4096  # net/http's response buffer: watch data goes out in chunks of at most this
_SMALL_BODY = 2048  # net/http sets Content-Length only for bodies up to this; larger are chunked
_GZIP_MIN = 128 * 1024  # kube-apiserver gzips responses above this when the client accepts it
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}
_META_ORDER = (
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
)
_GENERIC_REASONS = {
    400: ("BadRequest", "the server rejected our request for an unknown reason"),
    405: ("MethodNotAllowed", "the server does not allow this method on the requested resource"),
    409: ("Conflict", "the server reported a conflict"),
    422: ("Invalid", "the server rejected our request due to an error in our request"),
}
_EXPIRED_LIST = "The resourceVersion for the provided list is too old."
_INCONSISTENT_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue value from the "
    "response to get an inconsistent list."
)


class AlreadyExists(ValueError):
    """``create()`` of an object that already exists."""


class NotFound(LookupError):
    """``update()``/``delete()`` of an object that does not exist."""


@dataclass(frozen=True)
class _Kind:
    kind: str
    api_version: str
    group: str
    resource: str
    namespaced: bool

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def group_resource(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


_GATEWAY_API = "gateway.networking.k8s.io"
_KINDS = {
    k.kind: k
    for k in (
        _Kind("Namespace", "v1", "", "namespaces", False),
        _Kind("Service", "v1", "", "services", True),
        _Kind("Pod", "v1", "", "pods", True),
        _Kind("EndpointSlice", "discovery.k8s.io/v1", "discovery.k8s.io", "endpointslices", True),
        # What the cluster exposes (k8s_gateway); the Gateway API kinds are CRDs, which
        # ``missing_groups`` can take away.
        _Kind("Ingress", "networking.k8s.io/v1", "networking.k8s.io", "ingresses", True),
        _Kind("Gateway", f"{_GATEWAY_API}/v1", _GATEWAY_API, "gateways", True),
        _Kind("HTTPRoute", f"{_GATEWAY_API}/v1", _GATEWAY_API, "httproutes", True),
        _Kind("GRPCRoute", f"{_GATEWAY_API}/v1", _GATEWAY_API, "grpcroutes", True),
        _Kind("TLSRoute", f"{_GATEWAY_API}/v1alpha2", _GATEWAY_API, "tlsroutes", True),
    )
}
# Keyed by API version: a TLSRoute is served at v1alpha2 only, like the CRD does.
_BY_RESOURCE = {(k.api_version, k.resource): k for k in _KINDS.values()}
_ALIASES = {
    alias: k for k in _KINDS.values() for alias in (k.kind.lower(), k.resource, k.group_resource)
}
_GROUP_PREFIXES = {
    f"/api{'' if k.api_version == 'v1' else 's'}/{k.api_version}/": k.api_version
    for k in _KINDS.values()
}


def _kind(name: str) -> _Kind:
    k = _KINDS.get(name) or _ALIASES.get(name.lower())
    if k is None:
        raise ValueError(f"unsupported kind {name!r}; expected one of {sorted(_KINDS)}")
    return k


def _clone_slow(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _clone_slow(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clone_slow(x) for x in v]
    return v


def _clone(v: Any) -> Any:
    """Deep copy of a JSON value (marshal is C and ~10x faster than copy.deepcopy; it keeps
    dict order; anything it refuses, e.g. dict subclasses, takes the slow path)."""
    try:
        return marshal.loads(marshal.dumps(v))
    except ValueError:
        return _clone_slow(v)


def _dumps(v: Any) -> bytes:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _with_rv(obj: Obj, rv: int) -> Obj:
    """A shallow copy of ``obj`` whose metadata.resourceVersion is ``rv``."""
    out = dict(obj)
    out["metadata"] = {**obj["metadata"], "resourceVersion": str(rv)}
    return out


def _status(
    code: int,
    reason: str,
    message: str,
    details: Obj | None = None,
    metadata: Obj | None = None,
) -> Obj:
    s: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": metadata or {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        s["details"] = details
    s["code"] = code
    return s


class _HTTPError(Exception):
    def __init__(self, status: Obj, headers: dict[str, str] | None = None) -> None:
        super().__init__(status["message"])
        self.status = status
        self.headers = headers or {}


def _bad_request(message: str) -> _HTTPError:
    return _HTTPError(_status(400, "BadRequest", message))


def _invalid_list_options(field_name: str, kind: str, detail: str) -> _HTTPError:
    cause_reason = {
        "Forbidden": "FieldValueForbidden",
        "Unsupported value": "FieldValueNotSupported",
    }
    msg = f"{kind}: {detail}"
    return _HTTPError(
        _status(
            422,
            "Invalid",
            f'ListOptions.meta.k8s.io "" is invalid: {field_name}: {msg}',
            {
                "group": "meta.k8s.io",
                "kind": "ListOptions",
                "causes": [
                    {
                        "reason": cause_reason.get(kind, "FieldValueInvalid"),
                        "message": msg,
                        "field": field_name,
                    }
                ],
            },
        )
    )


# --- selectors ------------------------------------------------------------------------------

_LABEL_KEY = re.compile(
    r"([A-Za-z0-9][-A-Za-z0-9_.]*\.?)*/?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_SET_REQ = re.compile(r"\s*(\S+?)\s+(in|notin)\s*\((.*)\)\s*")
_EQ_REQ = re.compile(r"\s*([^=!\s]+)\s*(==|=|!=)\s*(\S*)\s*")
_EXISTS_REQ = re.compile(r"\s*(!?)\s*([^=!\s(),]+)\s*")


def _split_top_level(s: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _check_label(key: str, values: Iterable[str]) -> None:
    if not _LABEL_KEY.fullmatch(key) or len(key.rsplit("/", 1)[-1]) > 63:
        raise _bad_request(f"unable to parse requirement: invalid label key {key!r}")
    for v in values:
        if len(v) > 63 or not _LABEL_VALUE.fullmatch(v):
            raise _bad_request(
                f'unable to parse requirement: values[0][{key}]: Invalid value: "{v}": a valid '
                "label must be an empty string or consist of alphanumeric characters, '-', '_' "
                "or '.', and must start and end with an alphanumeric character"
            )


def _label_predicate(selector: str) -> Predicate | None:
    """Equality-based (``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``) and set-based
    (``a in (x,y)``, ``a notin (x)``) label selectors, comma = AND."""
    if not selector.strip():
        return None
    tests: list[Callable[[dict[str, str]], bool]] = []
    for term in _split_top_level(selector):
        if m := _SET_REQ.fullmatch(term):
            key, op = m.group(1), m.group(2)
            values = frozenset(v.strip() for v in m.group(3).split(",") if v.strip())
            _check_label(key, values)
            if op == "in":
                tests.append(lambda lb, k=key, vs=values: lb.get(k) in vs)
            else:
                tests.append(lambda lb, k=key, vs=values: lb.get(k) not in vs)
        elif m := _EQ_REQ.fullmatch(term):
            key, op, value = m.groups()
            _check_label(key, [value])
            if op == "!=":
                tests.append(lambda lb, k=key, v=value: lb.get(k) != v)
            else:
                tests.append(lambda lb, k=key, v=value: lb.get(k) == v)
        elif m := _EXISTS_REQ.fullmatch(term):
            neg, key = m.groups()
            _check_label(key, [])
            if neg:
                tests.append(lambda lb, k=key: k not in lb)
            else:
                tests.append(lambda lb, k=key: k in lb)
        else:
            raise _bad_request(
                f"unable to parse requirement: found '{term.strip()}', expected: identifier"
            )

    def match(obj: Obj) -> bool:
        labels = obj["metadata"].get("labels") or {}
        return all(t(labels) for t in tests)

    return match


def _field_value(obj: Obj, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return ""
        cur = cur[part]
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def _split_unescaped(s: str, sep: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            cur.append(s[i : i + 2])
            i += 2
            continue
        if s[i] == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(s[i])
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape_field_value(v: str) -> str:
    return re.sub(r"\\(.)", r"\1", v)


def _field_predicate(selector: str) -> Predicate | None:
    """``field=value``, ``field==value``, ``field!=value`` on dotted paths, comma = AND."""
    if not selector.strip():
        return None
    tests: list[tuple[str, bool, str]] = []
    for term in _split_unescaped(selector, ","):
        m = re.fullmatch(r"([^=!]+)(!=|==|=)(.*)", term, re.S)
        if not m:
            raise _bad_request(f"invalid selector: '{selector}'; can't understand '{term}'")
        path, op, value = m.group(1).strip(), m.group(2), _unescape_field_value(m.group(3))
        tests.append((path, op == "!=", value))

    def match(obj: Obj) -> bool:
        return all(
            (_field_value(obj, p) != v) if neg else (_field_value(obj, p) == v)
            for p, neg, v in tests
        )

    return match


def _combine(*preds: Predicate | None) -> Predicate | None:
    real = [p for p in preds if p is not None]
    if not real:
        return None
    if len(real) == 1:
        return real[0]
    return lambda obj: all(p(obj) for p in real)


# --- continue tokens ------------------------------------------------------------------------


def _encode_continue(start: str, rv: int) -> str:
    raw = _dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode_continue(token: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError) as e:
        raise _bad_request(f"invalid continue token: continue key is not valid: {e}") from None
    if not isinstance(data, dict) or data.get("v") != "meta.k8s.io/v1":
        version = data.get("v") if isinstance(data, dict) else None
        raise _bad_request(
            "invalid continue token: continue key is not valid: server does not recognize this "
            f'encoded version "{version}"'
        )
    rv, start = data.get("rv"), data.get("start")
    if not isinstance(rv, int) or rv == 0:
        raise _bad_request(
            "invalid continue token: continue key is not valid: incorrect encoded start "
            "resourceVersion (version meta.k8s.io/v1)"
        )
    if not isinstance(start, str) or not start or ".." in start.split("/") or start.startswith("/"):
        raise _bad_request(f"invalid continue token: continue key is not valid: {start}")
    return start, rv


# --- watches --------------------------------------------------------------------------------

_STOP = ("stop",)


@dataclass(eq=False)
class _Watch:
    kind: _Kind
    prefix: str  # "" or "<namespace>/"
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
        rv, type_, key, obj, prev = ev
        if self.prefix and not key.startswith(self.prefix):
            return None
        if self.pred is None:
            return type_, obj
        old = prev is not None and self.pred(prev)
        if type_ == "DELETED":
            return (type_, obj) if old else None
        cur = self.pred(obj)
        if cur:
            return ("MODIFIED" if old else "ADDED"), obj
        if old and prev is not None:
            return "DELETED", _with_rv(prev, rv)
        return None

    def line(self, type_: str, obj: Obj) -> bytes:
        full = {"kind": self.kind.kind, "apiVersion": self.kind.api_version, **obj}
        return _dumps({"type": type_, "object": full}) + b"\n"

    def bookmark_line(self, rv: int, initial_end: bool = False) -> bytes:
        meta: Obj = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj = {"kind": self.kind.kind, "apiVersion": self.kind.api_version, "metadata": meta}
        return _dumps({"type": "BOOKMARK", "object": obj}) + b"\n"

    def render(self, item: Any, out: bytearray) -> bool:
        """Append the bytes for one queued item to ``out``; True if the stream ends after it."""
        tag = item[0]
        if isinstance(tag, int):
            seen = self.convert(item)
            if seen is not None:
                out += self.line(*seen)
        elif tag == "initial":
            for obj in item[1]:
                if self.pred is None or self.pred(obj):
                    out += self.line("ADDED", obj)
            if item[2] is not None and self.bookmarks:
                out += self.bookmark_line(item[2], initial_end=True)
        elif tag == "bookmark":
            out += self.bookmark_line(item[1])
        elif tag == "raw":
            out += item[1]
        elif tag == "error":
            out += _dumps({"type": "ERROR", "object": item[1]}) + b"\n"
            return True
        return False


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
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return not self.api._refusing

    def process_request(self, request: Any, client_address: Any) -> None:
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
        # kube-apiserver sends no Server header.
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def do_GET(self) -> None:
        self.server.api._serve(self)

    def _with_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.api._serve(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = _with_body

    def common_headers(self, content_type: str) -> None:
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Content-Type", content_type)

    def send_body(
        self,
        code: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Send a whole response the way Go's net/http does: Content-Length for small bodies,
        one chunk otherwise; gzip above 128 KiB when the client accepts it."""
        self.send_response(code)
        self.common_headers(content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if len(body) > _GZIP_MIN and "gzip" in (self.headers.get("Accept-Encoding") or ""):
            body = gzip.compress(body, compresslevel=1)
            self.send_header("Content-Encoding", "gzip")
        if len(body) <= _SMALL_BODY:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))

    def send_status(self, err: _HTTPError) -> None:
        self.send_body(err.status["code"], _dumps(err.status), headers=err.headers)

    def write_chunks(self, data: bytes | bytearray) -> None:
        view = memoryview(data)
        for i in range(0, len(view), _CHUNK):
            piece = view[i : i + _CHUNK]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))

    def peer_closed(self) -> bool:
        """True if the client has closed its end (it never sends anything on a watch)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def wait_unhung(self, w: _Watch) -> bool:
        """Block while ``w`` is hung; False if it was told to end or its client went away."""
        while not w.unhung.wait(_POLL):
            if w.state is not None or self.peer_closed():
                return False
        return w.state is None

    def serve_watch(self, w: _Watch, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        clean = False
        try:
            self.send_response(200)
            self.common_headers("application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            buf = bytearray()
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
                end = False
                while item is not _STOP and w.state is None:
                    end = w.render(item, buf)
                    if len(buf) >= _CHUNK:
                        whole = len(buf) - len(buf) % _CHUNK
                        if not self.wait_unhung(w):
                            break
                        self.write_chunks(buf[:whole])
                        del buf[:whole]
                    if end:
                        break
                    try:
                        item = w.queue.get_nowait()
                    except queue.Empty:
                        break
                if item is _STOP or w.state is not None:
                    break
                if buf:
                    if not self.wait_unhung(w):
                        break
                    self.write_chunks(buf)
                    buf.clear()
                if end:
                    clean = True
                    break
            if clean and self.wait_unhung(w):
                self.wfile.write(b"0\r\n\r\n")
            else:
                clean = False
        except OSError:
            clean = False
        finally:
            self.server.api._unregister(w)
        if not clean:
            self.close_connection = True


# --- the server -----------------------------------------------------------------------------


class KubeAPIServer:
    """An in-process kube-apiserver stand-in for namespaces, services, pods and endpointslices.

    State (objects, the global resourceVersion, the event history) lives in this object and
    survives ``stop()``/``start()``, so a test can make the API "go away" and come back on the
    same port. All methods are thread-safe. Usable as a context manager (start/stop).

    ``requests`` lists ``(method, path, query params)`` for every request received, in order
    (appended under the lock; the first value wins for a repeated parameter, as in Go).
    Each watch stream is served by its own connection thread from its own unbounded queue, so
    writers (``create()`` etc.) never wait for a slow, hung or dead client.
    """

    #: The user named in 403 messages.
    user = DEFAULT_USER
    #: How long a LIST with a resourceVersion newer than the current one waits before 504.
    too_large_rv_wait = 3.0

    def __init__(self, *, token: str | None = None, port: int = 0) -> None:
        """Create a stopped server; with ``token``, every request must carry
        ``Authorization: Bearer <token>`` or gets 401."""
        self.token = token
        self.port = port
        #: API groups served as if their CRDs were not installed (404 for their paths).
        self.missing_groups: set[str] = set()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._rv = 1
        u = uuid.uuid4().hex
        self._uid_base = f"{u[:8]}-{u[8:12]}-4{u[13:16]}-a{u[17:20]}-"
        self._uid_seq = itertools.count(int(u[20:], 16))  # next() is atomic under the GIL
        self._compacted = 1
        self._objs: dict[str, dict[str, Obj]] = {k: {} for k in _KINDS}
        self._keys: dict[str, list[str]] = {k: [] for k in _KINDS}
        self._hist: dict[str, list[Event]] = {k: [] for k in _KINDS}
        self._watches: dict[str, list[_Watch]] = {k: [] for k in _KINDS}
        self._failures: list[dict[str, Any]] = []
        self._refusing = False
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

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
            httpd = _HTTPServer(("127.0.0.1", self.port), self)
            self.port = httpd.server_address[1]
            self._httpd = httpd
            self._thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.01},  # stop() waits up to this long
                name=f"kubeapi:{self.port}",
                daemon=True,
            )
            self._thread.start()

    def stop(self) -> None:
        """Close the listener and every open connection and watch stream (no final chunk),
        like an apiserver going away. Returns once the watch streams are gone."""
        with self._lock:
            httpd, self._httpd = self._httpd, None
            watches = [w for ws in self._watches.values() for w in ws]
            for w in watches:
                w.state = "stopped"
                w.queue.put(_STOP)
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with httpd.connections_lock:
            connections = list(httpd.connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._wait_gone(watches, 5.0)

    def __enter__(self) -> KubeAPIServer:
        """Start the server."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the server."""
        self.stop()

    def write_kubeconfig(self, path: str | Path) -> Path:
        """Write a kubeconfig pointing at this server (with the bearer token, if any) that
        ``kubernetes.config.load_kube_config`` accepts; returns its path."""
        path = Path(path)
        user: Obj = {"token": self.token} if self.token else {}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kubeapi-test", "cluster": {"server": self.url}}],
            "users": [{"name": "kubeapi-test", "user": user}],
            "contexts": [
                {
                    "name": "kubeapi-test",
                    "context": {
                        "cluster": "kubeapi-test",
                        "user": "kubeapi-test",
                        "namespace": "default",
                    },
                }
            ],
            "current-context": "kubeapi-test",
            "preferences": {},
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # -- objects -------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        """The current global resourceVersion."""
        with self._lock:
            return self._rv

    def _prepare(self, obj: Obj, now: str, existing: Obj | None = None) -> tuple[_Kind, str, Obj]:
        if not isinstance(obj, dict) or not isinstance(obj.get("kind"), str):
            raise ValueError("object needs a string 'kind'")
        kind = _kind(obj["kind"])
        if obj["kind"] != kind.kind:
            raise ValueError(f"kind must be spelled {kind.kind!r}, not {obj['kind']!r}")
        api_version = obj.get("apiVersion", kind.api_version)
        if api_version != kind.api_version:
            raise ValueError(
                f"{kind.kind} must have apiVersion {kind.api_version!r}, not {api_version!r}"
            )
        out: Obj = _clone(obj)
        out.pop("kind", None)
        out.pop("apiVersion", None)
        meta = out.get("metadata") or {}
        name = meta.get("name") if isinstance(meta, dict) else None
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"{kind.kind} needs metadata.name (without '/')")
        if kind.namespaced:
            ns = meta.get("namespace") or "default"
            meta["namespace"] = ns
            key = f"{ns}/{name}"
        else:
            meta.pop("namespace", None)
            key = name
        if existing is not None:
            meta["uid"] = existing["metadata"]["uid"]
            meta["creationTimestamp"] = existing["metadata"]["creationTimestamp"]
        else:
            meta.setdefault("uid", self._new_uid())
            meta.setdefault("creationTimestamp", now)
        meta["resourceVersion"] = ""  # set on commit
        ordered = {k: meta[k] for k in _META_ORDER if k in meta}
        ordered.update(meta)
        out.pop("metadata", None)
        return kind, key, {"metadata": ordered, **out}

    def _new_uid(self) -> str:
        """A random-looking, unique, UUID-shaped uid (cheaper than uuid4 for bulk loads)."""
        return f"{self._uid_base}{next(self._uid_seq) % (1 << 48):012x}"

    def _commit(self, kind: _Kind, key: str, type_: str, obj: Obj, prev: Obj | None) -> Obj:
        """Apply one change under the lock: new RV, store, history, watch fan-out."""
        self._rv += 1
        rv = self._rv
        if type_ == "DELETED":
            obj = _with_rv(obj, rv)
        else:
            obj["metadata"]["resourceVersion"] = str(rv)
        objs, keys = self._objs[kind.kind], self._keys[kind.kind]
        if type_ == "DELETED":
            del objs[key]
            del keys[bisect.bisect_left(keys, key)]
        else:
            if type_ == "ADDED":
                bisect.insort(keys, key)
            objs[key] = obj
        ev: Event = (rv, type_, key, obj, prev)
        self._hist[kind.kind].append(ev)
        for w in self._watches[kind.kind]:
            w.queue.put(ev)
        self._cond.notify_all()
        return obj

    def _external(self, kind: _Kind, obj: Obj) -> Obj:
        return {"kind": kind.kind, "apiVersion": kind.api_version, **_clone(obj)}

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create an object (as kubectl would write it): sets metadata.resourceVersion, uid,
        creationTimestamp (and namespace "default" if unset) and emits ADDED. Returns the stored
        object; raises ``AlreadyExists`` if it exists."""
        kind, key, stored = self._prepare(obj, _now())
        with self._lock:
            if key in self._objs[kind.kind]:
                raise AlreadyExists(f'{kind.group_resource} "{key}" already exists')
            return self._external(kind, self._commit(kind, key, "ADDED", stored, None))

    def update(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace an existing object (keeping its uid and creationTimestamp) and emit MODIFIED;
        raises ``NotFound`` if it does not exist."""
        kind = _kind(obj.get("kind", "") if isinstance(obj, dict) else "")
        with self._lock:
            _, key, _ = self._prepare(obj, "")
            prev = self._objs[kind.kind].get(key)
            if prev is None:
                raise NotFound(f'{kind.group_resource} "{key}" not found')
            _, _, stored = self._prepare(obj, "", prev)
            return self._external(kind, self._commit(kind, key, "MODIFIED", stored, prev))

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create the object, or update it if it exists."""
        with self._lock:
            try:
                return self.create(obj)
            except AlreadyExists:
                return self.update(obj)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete an object, emitting DELETED with its last state and a new resourceVersion
        (``namespace`` is ignored for Namespace). Raises ``NotFound``."""
        k = _kind(kind)
        key = f"{namespace or 'default'}/{name}" if k.namespaced else name
        with self._lock:
            prev = self._objs[k.kind].get(key)
            if prev is None:
                raise NotFound(f'{k.group_resource} "{key}" not found')
            self._commit(k, key, "DELETED", prev, prev)

    def load(self, objs: Iterable[dict[str, Any]]) -> None:
        """Bulk-create objects (each gets its own resourceVersion, as in etcd). O(n) plus one
        sort per kind; watch fan-out only costs anything when a watch of that kind is open.
        Atomic: if any object is invalid or exists, nothing is created."""
        now = _now()
        gc_was_enabled = gc.isenabled()
        gc.disable()  # 100,000 new dicts would otherwise trigger many full collections
        try:
            prepared = [self._prepare(o, now) for o in objs]
        finally:
            if gc_was_enabled:
                gc.enable()
        with self._lock:
            seen: set[tuple[str, str]] = set()
            for kind, key, _ in prepared:
                if key in self._objs[kind.kind] or (kind.kind, key) in seen:
                    raise AlreadyExists(f'{kind.group_resource} "{key}" already exists')
                seen.add((kind.kind, key))
            touched: set[str] = set()
            rv = self._rv
            for kind, key, stored in prepared:
                rv += 1
                stored["metadata"]["resourceVersion"] = str(rv)
                self._objs[kind.kind][key] = stored
                ev: Event = (rv, "ADDED", key, stored, None)
                self._hist[kind.kind].append(ev)
                for w in self._watches[kind.kind]:
                    w.queue.put(ev)
                touched.add(kind.kind)
            self._rv = rv
            for name in touched:
                self._keys[name] = sorted(self._objs[name])
            self._cond.notify_all()

    def objects(self, kind: str) -> list[dict[str, Any]]:
        """Copies of the current objects of ``kind`` (with kind and apiVersion), in key order."""
        k = _kind(kind)
        with self._lock:
            objs = self._objs[k.kind]
            return [self._external(k, objs[key]) for key in self._keys[k.kind]]

    def compact(self) -> None:
        """Forget the event history: a watch or continue token from any resourceVersion older
        than the current one now gets 410 Expired."""
        with self._lock:
            self._compacted = self._rv
            for h in self._hist.values():
                h.clear()

    def bookmark(self) -> None:
        """Send a BOOKMARK with the current resourceVersion to every open watch that set
        allowWatchBookmarks=true."""
        with self._lock:
            for ws in self._watches.values():
                for w in ws:
                    if w.bookmarks:
                        w.queue.put(("bookmark", self._rv))

    # -- fault injection -----------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        *,
        count: int = 1,
        path_contains: str = "",
        watch: bool | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` and a Status body (403
        uses kube-apiserver's forbidden message; 429 adds Retry-After). A request matches if
        ``path_contains`` occurs in its path-and-query and, unless ``watch`` is None, it is (or is
        not) a watch. Rules are tried in the order they were added."""
        with self._lock:
            self._failures.append(
                {"status": status, "count": count, "path": path_contains, "watch": watch}
            )

    def drop_watches(self) -> None:
        """Abruptly close every open watch stream (the connection is shut down with no
        terminating chunk). Returns once they are gone."""
        with self._lock:
            watches = [w for ws in self._watches.values() for w in ws]
            for w in watches:
                w.state = "dropped"
                w.queue.put(_STOP)
        for w in watches:
            with contextlib.suppress(OSError):
                w.sock.shutdown(socket.SHUT_RDWR)
        self._wait_gone(watches, 5.0)

    def hang_watches(self) -> None:
        """The watch streams open now stop writing anything (events queue up, not even the
        timeoutSeconds end is sent) until ``unhang_watches()``, like a stalled connection.
        Watches opened later are not hung; ``create()`` and friends never block."""
        with self._lock:
            for ws in self._watches.values():
                for w in ws:
                    w.unhung.clear()

    def unhang_watches(self) -> None:
        """Let hung watch streams write again (queued events first, in order)."""
        with self._lock:
            for ws in self._watches.values():
                for w in ws:
                    w.unhung.set()

    def send_raw_line(self, line: bytes) -> None:
        """Write ``line`` (a newline is added if missing) into every open watch stream, in
        order with the events."""
        if not line.endswith(b"\n"):
            line += b"\n"
        with self._lock:
            for ws in self._watches.values():
                for w in ws:
                    w.queue.put(("raw", line))

    def refuse(self, on: bool) -> None:
        """While on, new connections are accepted and immediately closed."""
        self._refusing = on

    def open_watches(self) -> int:
        """How many watch streams are open now."""
        with self._lock:
            return sum(len(ws) for ws in self._watches.values())

    def wait_for_watches(self, n: int, timeout: float) -> bool:
        """Wait until at least ``n`` watch streams are open; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.open_watches() >= n, timeout)

    # -- internals: watches --------------------------------------------------------------------

    def _unregister(self, w: _Watch) -> None:
        with self._lock:
            ws = self._watches[w.kind.kind]
            if w in ws:
                ws.remove(w)
            self._cond.notify_all()

    def _wait_gone(self, watches: list[_Watch], timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(
                lambda: not any(w in self._watches[w.kind.kind] for w in watches), timeout
            )

    # -- internals: HTTP -----------------------------------------------------------------------

    def _serve(self, h: _Handler) -> None:
        split = urlsplit(h.path)
        path = split.path
        params: dict[str, str] = {}
        for k, v in parse_qsl(split.query, keep_blank_values=True):
            params.setdefault(k, v)  # Go's url.Values.Get takes the first
        with self._lock:
            self.requests.append((h.command, path, params))
        try:
            self._dispatch(h, path, split.query, params)
        except _HTTPError as e:
            h.send_status(e)

    def _dispatch(self, h: _Handler, path: str, query: str, params: dict[str, str]) -> None:
        if self.token is not None and h.headers.get("Authorization") != f"Bearer {self.token}":
            raise _HTTPError(_status(401, "Unauthorized", "Unauthorized"))
        route = self._route(path)
        if route is not None and route[0].group in self.missing_groups:
            route = None  # the CRD is not installed: 404 like any unknown path
        is_watch = route is not None and self._bool(params, "watch")
        verb = "watch" if is_watch else ("get" if route and route[2] else "list")
        self._maybe_fail(path + ("?" + query if query else ""), is_watch, route, verb)
        if h.command != "GET":
            raise _HTTPError(
                _status(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                    {},
                )
            )
        if route is None:
            if path in ("/healthz", "/livez", "/readyz"):
                h.send_body(200, b"ok", "text/plain; charset=utf-8")
                return
            if path == "/version":
                h.send_body(200, json.dumps(VERSION, indent=2).encode())
                return
            raise _HTTPError(
                _status(404, "NotFound", "the server could not find the requested resource", {})
            )
        kind, ns, name = route
        if is_watch:
            self._watch(h, kind, ns, name, params)
        elif name is not None:
            self._get(h, kind, ns, name)
        else:
            self._list(h, kind, ns, params)

    @staticmethod
    def _route(path: str) -> tuple[_Kind, str | None, str | None] | None:
        """(kind, namespace, name) for a resource path, or None."""
        prefix = next((p for p in _GROUP_PREFIXES if path.startswith(p)), None)
        if prefix is None:
            return None
        group = _GROUP_PREFIXES[prefix]
        segs = [unquote(s) for s in path[len(prefix) :].split("/")]
        if any(not s for s in segs):
            return None
        if len(segs) in (1, 2):
            k = _BY_RESOURCE.get((group, segs[0]))
            if k is None or (len(segs) == 2 and k.namespaced):
                return None
            return k, None, segs[1] if len(segs) == 2 else None
        if segs[0] == "namespaces" and len(segs) in (3, 4):
            k = _BY_RESOURCE.get((group, segs[2]))
            if k is None or not k.namespaced:
                return None
            return k, segs[1], segs[3] if len(segs) == 4 else None
        return None

    @staticmethod
    def _bool(params: dict[str, str], name: str) -> bool:
        v = params.get(name, "")
        if v in _TRUE:
            return True
        if v in _FALSE or v == "":
            return False
        raise _bad_request(f'strconv.ParseBool: parsing "{v}": invalid syntax')

    def _forbidden(
        self, verb: str, route: tuple[_Kind, str | None, str | None] | None, path: str
    ) -> Obj:
        if route is None:
            return _status(
                403, "Forbidden", f'forbidden: User "{self.user}" cannot get path "{path}"', {}
            )
        kind, ns, name = route
        if not kind.namespaced and name is not None:  # GET /api/v1/namespaces/{name}
            ns = None
        scope = f'in the namespace "{ns}"' if ns else "at the cluster scope"
        what = f'{kind.group_resource} "{name}"' if name else kind.group_resource
        details: Obj = {}
        if name:
            details["name"] = name
        if kind.group:
            details["group"] = kind.group
        details["kind"] = kind.resource
        return _status(
            403,
            "Forbidden",
            f'{what} is forbidden: User "{self.user}" cannot {verb} resource "{kind.resource}" '
            f'in API group "{kind.group}" {scope}',
            details,
        )

    def _maybe_fail(
        self,
        target: str,
        is_watch: bool,
        route: tuple[_Kind, str | None, str | None] | None,
        verb: str,
    ) -> None:
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
        headers: dict[str, str] = {}
        if code == 403:
            status = self._forbidden(verb, route, target.split("?", 1)[0])
        elif code == 401:
            status = _status(401, "Unauthorized", "Unauthorized")
        elif code == 404:
            status = _status(
                404, "NotFound", "the server could not find the requested resource", {}
            )
        elif code == 410:
            status = _status(410, "Expired", _EXPIRED_LIST)
        elif code == 429:
            status = _status(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
                {"retryAfterSeconds": 1},
            )
            headers["Retry-After"] = "1"
        elif code == 500:
            status = _status(
                500,
                "InternalError",
                "Internal error occurred: injected failure",
                {"causes": [{"message": "injected failure"}]},
            )
        elif code == 503:
            status = _status(
                503,
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
                {},
            )
        elif code == 504:
            status = _status(
                504,
                "Timeout",
                "the server was unable to return a response in the time allotted, but may still be "
                "processing the request",
                {},
            )
        elif code in _GENERIC_REASONS:
            status = _status(code, *_GENERIC_REASONS[code], {})
        else:  # apimachinery's NewGenericServerResponse: reason Unknown (empty, so omitted)
            status = _status(
                code,
                "",
                f"the server responded with the status code {code} but did not return more "
                "information",
                {},
            )
            del status["reason"]
        raise _HTTPError(status, headers)

    def _get(self, h: _Handler, kind: _Kind, ns: str | None, name: str) -> None:
        key = f"{ns}/{name}" if kind.namespaced else name
        with self._lock:
            obj = self._objs[kind.kind].get(key)
        if obj is None:
            details: Obj = {"name": name}
            if kind.group:
                details["group"] = kind.group
            details["kind"] = kind.resource
            raise _HTTPError(
                _status(404, "NotFound", f'{kind.group_resource} "{name}" not found', details)
            )
        h.send_body(200, _dumps({"kind": kind.kind, "apiVersion": kind.api_version, **obj}))

    @staticmethod
    def _predicate(params: dict[str, str], name: str | None = None) -> Predicate | None:
        fields = params.get("fieldSelector", "")
        if name is not None:
            fields = f"metadata.name={name}" + ("," + fields if fields else "")
        return _combine(_label_predicate(params.get("labelSelector", "")), _field_predicate(fields))

    @staticmethod
    def _int_param(params: dict[str, str], name: str, default: int) -> int:
        v = params.get(name, "")
        if v == "":
            return default
        try:
            return int(v)
        except ValueError:
            raise _bad_request(f'{name}: strconv.ParseInt: parsing "{v}": invalid syntax') from None

    @staticmethod
    def _parse_rv(rv: str) -> int:
        try:
            n = int(rv)
            if n < 0:
                raise ValueError
            return n
        except ValueError:
            raise _bad_request(
                f'invalid resource version: strconv.ParseUint: parsing "{rv}": invalid syntax'
            ) from None

    def _list(self, h: _Handler, kind: _Kind, ns: str | None, params: dict[str, str]) -> None:
        pred = self._predicate(params)
        limit = max(0, self._int_param(params, "limit", 0))
        rv_param = params.get("resourceVersion", "")
        match = params.get("resourceVersionMatch", "")
        token = params.get("continue", "")
        if match:
            if not rv_param:
                raise _invalid_list_options(
                    "resourceVersionMatch",
                    "Forbidden",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                )
            if token:
                raise _invalid_list_options(
                    "resourceVersionMatch",
                    "Forbidden",
                    "resourceVersionMatch is forbidden when continue is provided",
                )
            if match not in ("Exact", "NotOlderThan"):
                raise _invalid_list_options(
                    "resourceVersionMatch",
                    "Unsupported value",
                    f'"{match}": supported values: "Exact", "NotOlderThan", ""',
                )
            if match == "Exact" and rv_param == "0":
                raise _invalid_list_options(
                    "resourceVersionMatch",
                    "Forbidden",
                    'resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
                )
        prefix = f"{ns}/" if ns is not None else ""
        start = ""
        with self._lock:
            if token:
                rel, token_rv = _decode_continue(token)
                if rv_param not in ("", "0"):
                    raise _bad_request(
                        "specifying resource version is not allowed when using continue"
                    )
                start = prefix + rel
                if token_rv == -1:
                    at = self._rv
                elif token_rv < self._compacted:
                    raise _HTTPError(
                        _status(
                            410,
                            "Expired",
                            _INCONSISTENT_CONTINUE,
                            metadata={"continue": _encode_continue(rel, -1)},
                        )
                    )
                elif token_rv > self._rv:
                    raise _bad_request(
                        "invalid continue token: continue key is not valid: future resourceVersion"
                    )
                else:
                    at = token_rv
            elif rv_param == "":
                at = self._rv
            elif rv_param == "0":
                at, limit = self._rv, 0  # served from the watch cache, which ignores limit
            else:
                n = self._parse_rv(rv_param)
                if n > self._rv and not self._cond.wait_for(
                    lambda: self._rv >= n, self.too_large_rv_wait
                ):
                    raise _HTTPError(
                        _status(
                            504,
                            "Timeout",
                            f"Too large resource version: {n}, current: {self._rv}",
                            {
                                "causes": [
                                    {
                                        "reason": "ResourceVersionTooLarge",
                                        "message": "Too large resource version",
                                    }
                                ],
                                "retryAfterSeconds": 1,
                            },
                        )
                    )
                exact = match == "Exact" or (match == "" and limit > 0)
                if exact and n < self._compacted:
                    raise _HTTPError(_status(410, "Expired", _EXPIRED_LIST))
                at = n if exact else self._rv
            items, last, more, remaining = self._page(kind, prefix, at, start, limit, pred)
        meta: Obj = {"resourceVersion": str(at)}
        if more and last is not None:
            meta["continue"] = _encode_continue((last + "\x00")[len(prefix) :], at)
            if remaining is not None:
                meta["remainingItemCount"] = remaining
        body = {
            "kind": kind.list_kind,
            "apiVersion": kind.api_version,
            "metadata": meta,
            "items": items,
        }
        h.send_body(200, _dumps(body))

    def _overlay(self, kind: _Kind, at: int) -> dict[str, Obj | None]:
        """For each key changed after ``at``: its state at ``at`` (None = did not exist)."""
        hist = self._hist[kind.kind]
        i = bisect.bisect_right(hist, at, key=lambda e: e[0])
        overlay: dict[str, Obj | None] = {}
        for j in range(len(hist) - 1, i - 1, -1):
            ev = hist[j]
            overlay[ev[2]] = ev[4]
        return overlay

    def _page(
        self,
        kind: _Kind,
        prefix: str,
        at: int,
        start: str,
        limit: int,
        pred: Predicate | None,
    ) -> tuple[list[Obj], str | None, bool, int | None]:
        """One page of the list at resourceVersion ``at`` (called under the lock):
        (items, last examined key, more keys follow, remaining key count if no selector)."""
        keys, objs = self._keys[kind.kind], self._objs[kind.kind]
        lo = max(prefix, start)
        i = bisect.bisect_left(keys, lo)
        j = bisect.bisect_left(keys, prefix + "\U0010ffff") if prefix else len(keys)
        items: list[Obj] = []
        last: str | None = None
        overlay = self._overlay(kind, at) if at < self._rv else {}
        if not overlay:
            for idx in range(i, j):
                if limit and len(items) >= limit:
                    return items, last, True, (j - idx) if pred is None else None
                last = keys[idx]
                obj = objs[last]
                if pred is None or pred(obj):
                    items.append(obj)
            return items, last, False, None
        extra = sorted(
            k for k, v in overlay.items() if v is not None and k >= lo and k.startswith(prefix)
        )
        current = (keys[idx] for idx in range(i, j) if keys[idx] not in overlay)
        merged: Iterator[str] = heapq.merge(current, extra)
        for key in merged:
            if limit and len(items) >= limit:
                remaining = 1 + sum(1 for _ in merged) if pred is None else None
                return items, last, True, remaining
            last = key
            obj_at = overlay[key] if key in overlay else objs[key]
            assert obj_at is not None
            if pred is None or pred(obj_at):
                items.append(obj_at)
        return items, last, False, None

    def _watch(
        self, h: _Handler, kind: _Kind, ns: str | None, name: str | None, params: dict[str, str]
    ) -> None:
        pred = self._predicate(params, name)
        bookmarks = self._bool(params, "allowWatchBookmarks")
        timeout = self._int_param(params, "timeoutSeconds", 0)
        if timeout <= 0:
            timeout = int(1800 * (1 + random.random()))  # kube-apiserver's default
        rv_param = params.get("resourceVersion", "")
        match = params.get("resourceVersionMatch", "")
        send_initial: bool | None = None
        if "sendInitialEvents" in params:
            send_initial = self._bool(params, "sendInitialEvents")
            if match != "NotOlderThan":
                raise _invalid_list_options(
                    "resourceVersionMatch",
                    "Unsupported value",
                    f'"{match}": supported values: "NotOlderThan"',
                )
            if send_initial and not bookmarks:
                raise _invalid_list_options(
                    "allowWatchBookmarks",
                    "Forbidden",
                    "allowWatchBookmarks must be set to true when sendInitialEvents is set",
                )
        elif match:
            raise _invalid_list_options(
                "resourceVersionMatch",
                "Forbidden",
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            )
        n = self._parse_rv(rv_param) if rv_param not in ("", "0") else None
        prefix = f"{ns}/" if ns is not None else ""
        w = _Watch(kind, prefix, pred, bookmarks, h.connection)
        expired = False
        with self._lock:
            if send_initial or (send_initial is None and n is None):
                keys, objs = self._keys[kind.kind], self._objs[kind.kind]
                if prefix:
                    i = bisect.bisect_left(keys, prefix)
                    j = bisect.bisect_left(keys, prefix + "\U0010ffff")
                    snapshot = [objs[k] for k in keys[i:j]]
                else:
                    snapshot = [objs[k] for k in keys]
                w.queue.put(("initial", snapshot, self._rv if send_initial else None))
            elif n is not None and n < self._compacted:
                # Like the watch cache: 200, then a single ERROR event, then the end.
                error = _status(
                    410, "Expired", f"too old resource version: {n} ({self._compacted})"
                )
                w.queue.put(("error", error))
                expired = True
            elif n is not None:
                hist = self._hist[kind.kind]
                for ev in hist[bisect.bisect_right(hist, n, key=lambda e: e[0]) :]:
                    w.queue.put(ev)
            if self._httpd is None:
                return
            if not expired:
                self._watches[kind.kind].append(w)
                self._cond.notify_all()
        h.serve_watch(w, float(timeout))
