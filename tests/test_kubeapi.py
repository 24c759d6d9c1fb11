"""Tests of the kube-apiserver stand-in (tests/kubeapi.py): its own contract, read at the
protocol level, for what the reflector sends and nothing more.

Watches are read straight off a socket (``RawWatch``) so the chunked framing itself is checked:
a clean end has the terminating ``0\\r\\n\\r\\n`` chunk, a dropped stream does not. The last
test drives the real :class:`clusterdns.sources.kube.Reflector` (real ``kubernetes`` client)
through one canned list-then-watch step.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.kubeapi import AlreadyExists, KubeAPIServer, NotFound

USER = "system:serviceaccount:kube-system:coredns"
PODS_SELECTOR = "status.phase!=Succeeded,status.phase!=Failed,status.phase!=Unknown"


@pytest.fixture
def server() -> Iterator[KubeAPIServer]:
    with KubeAPIServer() as s:
        yield s


def wait_until(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.01)
    return pred()


def svc(name: str, ns: str = "default", ip: str = "10.0.0.10", **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}


def pod(name: str, ns: str = "default", phase: str = "Running") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"nodeName": "n1"}, "status": {"phase": phase, "podIP": "10.1.0.1"}}


def get(server: KubeAPIServer, target: str, token: str | None = None) -> tuple[int, http.client.HTTPResponse, Any]:
    """GET over a fresh connection; JSON bodies are decoded."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request("GET", target, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    return resp.status, resp, json.loads(body)


def names(body: dict[str, Any]) -> list[str]:
    return [i["metadata"]["name"] for i in body["items"]]


def status_body(code: int, reason: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, **extra, "code": code}


def decode_token(token: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    return data


def watch_target(path: str, rv: int, **extra: str) -> str:
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in extra.items())
    return f"{path}?watch=1&resourceVersion={rv}" + (f"&{query}" if query else "")


class RawWatch:
    """A watch request read straight off the socket, de-chunked by hand."""

    def __init__(self, server: KubeAPIServer, target: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        self.pending = self.body = b""
        self.chunk_sizes: list[int] = []
        self.line_split_across_chunks = False
        self.terminated = self.eof = False  # saw the terminating chunk / the connection's end
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in self.pending:
            if not self._recv(deadline, dechunk=False):
                raise AssertionError(f"no response headers: {self.pending!r}")
        head, self.pending = self.pending.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode().split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
        assert self.headers.get("transfer-encoding") == "chunked", self.headers
        self._dechunk()

    def _recv(self, deadline: float, dechunk: bool = True) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.pending += data
        if dechunk:
            self._dechunk()
        return True

    def _dechunk(self) -> None:
        while not self.terminated and (i := self.pending.find(b"\r\n")) >= 0:
            size = int(self.pending[:i], 16)
            if len(self.pending) < i + 4 + size:
                return
            assert self.pending[i + 2 + size : i + 4 + size] == b"\r\n"
            data, self.pending = self.pending[i + 2 : i + 2 + size], self.pending[i + 4 + size :]
            if size == 0:
                self.terminated = True
                return
            self.chunk_sizes.append(size)
            self.line_split_across_chunks |= not data.endswith(b"\n")
            self.body += data

    def next_line(self, timeout: float = 5.0) -> bytes | None:
        """The next line; None once the stream has ended; TimeoutError if nothing came."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.body:
            if self.terminated or self.eof:
                return None
            if not self._recv(deadline) and not (self.terminated or self.eof):
                raise TimeoutError("no watch line in time")
        line, _, self.body = self.body.partition(b"\n")
        return line

    def events(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for _ in range(n):
            line = self.next_line(timeout)
            assert line is not None, f"stream ended after {out}"
            out.append(json.loads(line))
        return out

    def quiet_for(self, seconds: float) -> bool:
        """True if no line arrives within ``seconds``."""
        try:
            self.next_line(seconds)
        except TimeoutError:
            return True
        return False

    def wait_end(self, timeout: float = 5.0) -> str:
        """Read to the end: "clean" (terminating chunk) or "abrupt" (EOF without it)."""
        deadline = time.monotonic() + timeout
        while not (self.terminated or self.eof):
            if not self._recv(deadline) and not (self.terminated or self.eof):
                raise TimeoutError("stream did not end in time")
        return "clean" if self.terminated else "abrupt"


@pytest.fixture
def watches() -> Iterator[Callable[..., RawWatch]]:
    opened: list[RawWatch] = []

    def open_(server: KubeAPIServer, target: str) -> RawWatch:
        opened.append(RawWatch(server, target))
        return opened[-1]

    yield open_
    for w in opened:
        w.sock.close()


# --- LIST ----------------------------------------------------------------------------------


def test_list_shape_and_etcd_key_order(server: KubeAPIServer) -> None:
    server.load([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in ("b", "a")])
    for ns in ("b", "a", "a-b"):
        server.create(svc("x", ns))
    status, resp, body = get(server, "/api/v1/services")
    assert status == 200 and resp.getheader("Content-Type") == "application/json"
    assert (body["kind"], body["apiVersion"]) == ("ServiceList", "v1")
    assert body["metadata"] == {"resourceVersion": str(server.resource_version)}
    assert [i["metadata"]["namespace"] for i in body["items"]] == ["a-b", "a", "b"]  # "a-b/x" < "a/x"
    item = body["items"][0]
    assert "kind" not in item and "apiVersion" not in item  # list items carry neither
    assert set(item["metadata"]) >= {"name", "namespace", "uid", "resourceVersion", "creationTimestamp"}
    assert names(get(server, "/api/v1/namespaces")[2]) == ["a", "b"]
    _, _, body = get(server, "/apis/gateway.networking.k8s.io/v1alpha2/tlsroutes")
    assert (body["kind"], body["apiVersion"], body["items"]) == (
        "TLSRouteList", "gateway.networking.k8s.io/v1alpha2", [])


@pytest.mark.parametrize(("target", "code", "says"), [
    ("/api/v1/foos", 404, "the server could not find the requested resource"),
    ("/api/v1/namespaces/default/services", 404, "could not find"),  # namespaced: never sent
    ("/apis/gateway.networking.k8s.io/v1/tlsroutes", 404, "could not find"),  # v1alpha2 only
    ("/version", 404, "could not find"),
    ("/api/v1/services?labelSelector=a%3Db", 400, "does not serve ['labelSelector'] on a list"),
    ("/api/v1/services?resourceVersion=0", 400, "does not serve ['resourceVersion'] on a list"),
    ("/api/v1/services?watch=1", 400, "from a resourceVersion > 0 only"),
    ("/api/v1/services?watch=1&resourceVersion=1&sendInitialEvents=true", 400, "sendInitialEvents"),
    ("/api/v1/services?limit=ten", 400, 'parsing "ten": invalid syntax'),
    ("/api/v1/services?continue=garbage!", 400, "invalid continue token"),
    ("/api/v1/pods?fieldSelector=oops", 400, "can't understand 'oops'"),
])
def test_what_the_reflector_never_sends_fails_loudly(
    server: KubeAPIServer, target: str, code: int, says: str
) -> None:
    status, _, body = get(server, target)
    assert (status, body["code"], body["kind"]) == (code, code, "Status") and says in body["message"]


def test_pagination_is_a_consistent_snapshot(server: KubeAPIServer) -> None:
    server.load(svc(f"s{i:02d}") for i in range(25))
    list_rv = server.resource_version
    _, _, page1 = get(server, "/api/v1/services?limit=10")
    assert names(page1) == [f"s{i:02d}" for i in range(10)]
    meta = page1["metadata"]
    assert meta["resourceVersion"] == str(list_rv) and meta["remainingItemCount"] == 15
    assert decode_token(meta["continue"]) == {"v": "meta.k8s.io/v1", "rv": list_rv, "start": "default/s09\x00"}
    # changes between pages do not show up in the rest of this list
    server.delete("Service", "default", "s15")
    server.update(svc("s20", ip="10.9.9.9"))
    server.create(svc("s99"))
    _, _, page2 = get(server, f"/api/v1/services?limit=10&continue={meta['continue']}")
    assert names(page2) == [f"s{i:02d}" for i in range(10, 20)]
    assert (page2["metadata"]["resourceVersion"], page2["metadata"]["remainingItemCount"]) == (str(list_rv), 5)
    _, _, page3 = get(server, f"/api/v1/services?limit=10&continue={page2['metadata']['continue']}")
    assert names(page3) == [f"s{i:02d}" for i in range(20, 25)]
    assert page3["items"][0]["spec"]["clusterIP"] == "10.0.0.10"
    assert page3["metadata"] == {"resourceVersion": str(list_rv)}
    # a new list sees the present; an exactly full page has no continue
    _, _, now = get(server, "/api/v1/services?limit=25")
    assert "s15" not in names(now) and "s99" in names(now) and "continue" not in now["metadata"]
    assert now["metadata"]["resourceVersion"] == str(server.resource_version)


def test_continue_after_compaction_is_410(server: KubeAPIServer) -> None:
    server.load(svc(f"s{i}") for i in range(6))
    _, _, page1 = get(server, "/api/v1/services?limit=2")
    server.compact()
    status, _, body = get(server, f"/api/v1/services?limit=2&continue={page1['metadata']['continue']}")
    assert (status, body["reason"]) == (410, "Expired")
    assert body["message"].startswith("The provided continue parameter is too old")


def test_field_selector_pages_fill_with_matches(server: KubeAPIServer) -> None:
    server.load(pod(f"p{i:02d}", phase=("Running", "Succeeded", "Failed", "Pending")[i % 4]) for i in range(20))
    target = f"/api/v1/pods?limit=3&fieldSelector={quote(PODS_SELECTOR, safe='')}"
    _, _, page = get(server, target)
    assert names(page) == ["p00", "p03", "p04"] and "remainingItemCount" not in page["metadata"]
    got = names(page)
    while "continue" in page["metadata"]:
        _, _, page = get(server, f"{target}&continue={page['metadata']['continue']}")
        got += names(page)
    assert got == [f"p{i:02d}" for i in range(20) if i % 4 in (0, 3)]
    assert names(get(server, "/api/v1/pods?fieldSelector=metadata.name%3D%3Dp01")[2]) == ["p01"]


# --- WATCH ---------------------------------------------------------------------------------


def test_watch_sees_changes_in_order(server: KubeAPIServer, watches: Callable[..., RawWatch]) -> None:
    server.create(svc("old"))
    rv = server.resource_version
    w = watches(server, watch_target("/api/v1/services", rv, allowWatchBookmarks="true", timeoutSeconds="300"))
    assert w.status == 200 and w.headers["content-type"] == "application/json"
    assert server.wait_for_watches(1, 5)
    server.create(svc("web", app="web"))
    server.update(svc("web", app="web", v="2"))
    server.delete("Service", "default", "web")
    server.create(svc("other", "kube-system"))
    events = w.events(4)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "web"), ("MODIFIED", "web"), ("DELETED", "web"), ("ADDED", "other")]
    assert [int(e["object"]["metadata"]["resourceVersion"]) for e in events] == list(range(rv + 1, rv + 5))
    assert all((e["object"]["kind"], e["object"]["apiVersion"]) == ("Service", "v1") for e in events)
    deleted = events[2]["object"]
    assert deleted["metadata"]["labels"] == {"app": "web", "v": "2"}  # last state, new RV
    assert events[0]["object"]["metadata"]["uid"] == deleted["metadata"]["uid"]
    assert w.quiet_for(0.1)


def test_watch_replays_history_in_net_http_chunks(server: KubeAPIServer, watches: Callable[..., RawWatch]) -> None:
    start = server.resource_version
    server.load(svc(f"s{i:03d}", n=str(i)) for i in range(200))
    w = watches(server, watch_target("/api/v1/services", start + 100))
    events = w.events(100)
    assert [e["object"]["metadata"]["name"] for e in events] == [f"s{i:03d}" for i in range(100, 200)]
    assert max(w.chunk_sizes) == 4096 and w.line_split_across_chunks  # a client must re-assemble lines


def test_watch_field_selector_transitions_like_the_watch_cache(
    server: KubeAPIServer, watches: Callable[..., RawWatch]
) -> None:
    server.create(pod("job"))
    rv = server.resource_version
    w = watches(server, watch_target("/api/v1/pods", rv, fieldSelector=PODS_SELECTOR))
    assert server.wait_for_watches(1, 5)
    server.update({**pod("job"), "spec": {"nodeName": "n2"}})  # still matches: MODIFIED
    server.update(pod("job", phase="Succeeded"))  # stops matching: DELETED
    server.update(pod("job", phase="Failed"))  # still not matching: nothing
    server.update(pod("job"))  # matches again: ADDED
    server.delete("Pod", "default", "job")
    events = w.events(4)
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED", "ADDED", "DELETED"]
    gone = events[1]["object"]  # "stopped matching": the previous state with the event's RV
    assert (gone["status"]["phase"], gone["metadata"]["resourceVersion"]) == ("Running", str(rv + 2))
    assert [int(e["object"]["metadata"]["resourceVersion"]) for e in events] == [rv + 1, rv + 2, rv + 4, rv + 5]


def test_bookmarks_only_when_asked(server: KubeAPIServer, watches: Callable[..., RawWatch]) -> None:
    rv = server.resource_version
    with_bm = watches(server, watch_target("/api/v1/services", rv, allowWatchBookmarks="true"))
    without = watches(server, watch_target("/api/v1/services", rv))
    assert server.wait_for_watches(2, 5)
    server.create(pod("p"))  # bumps the global RV without any service event
    server.bookmark()
    server.create(svc("b"))
    assert with_bm.events(1) == [{"type": "BOOKMARK", "object": {
        "kind": "Service", "apiVersion": "v1", "metadata": {"resourceVersion": str(rv + 1)}}}]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in with_bm.events(1) + without.events(1)] == [
        ("ADDED", "b"), ("ADDED", "b")]


def test_watch_from_compacted_resource_version_gets_one_error_event(
    server: KubeAPIServer, watches: Callable[..., RawWatch]
) -> None:
    server.create(svc("a"))
    old = server.resource_version
    server.create(svc("b"))
    server.compact()
    w = watches(server, watch_target("/api/v1/services", old))
    assert w.status == 200
    assert w.events(1) == [{"type": "ERROR", "object": status_body(
        410, "Expired", f"too old resource version: {old} ({server.resource_version})")}]
    assert w.next_line() is None and w.wait_end() == "clean" and server.open_watches() == 0
    w2 = watches(server, watch_target("/api/v1/services", server.resource_version))
    assert server.wait_for_watches(1, 5)
    server.create(svc("c"))  # from the compaction point on, watching works
    assert w2.events(1)[0]["object"]["metadata"]["name"] == "c"


def test_timeout_seconds_ends_the_stream_cleanly(server: KubeAPIServer, watches: Callable[..., RawWatch]) -> None:
    t0 = time.monotonic()
    w = watches(server, watch_target("/api/v1/services", 1, timeoutSeconds="1"))
    assert w.wait_end(timeout=5) == "clean"
    assert 0.9 <= time.monotonic() - t0 < 3
    assert wait_until(lambda: server.open_watches() == 0)


# --- faults --------------------------------------------------------------------------------


def test_fail_next_statuses_filters_and_counts(server: KubeAPIServer, watches: Callable[..., RawWatch]) -> None:
    server.fail_next(403, count=2, path_contains="endpointslices")
    status, _, body = get(server, "/apis/discovery.k8s.io/v1/endpointslices?limit=500")
    assert (status, body) == (403, status_body(403, "Forbidden", (
        f'endpointslices.discovery.k8s.io is forbidden: User "{USER}" cannot list resource '
        '"endpointslices" in API group "discovery.k8s.io" at the cluster scope'),
        details={"group": "discovery.k8s.io", "kind": "endpointslices"}))
    assert get(server, "/api/v1/services")[0] == 200  # not "endpointslices"
    _, _, body = get(server, watch_target("/apis/discovery.k8s.io/v1/endpointslices", 1))
    assert 'cannot watch resource "endpointslices"' in body["message"]
    assert get(server, "/apis/discovery.k8s.io/v1/endpointslices")[0] == 200  # both used up
    server.fail_next(500, count=2, path_contains="/services", watch=True)
    assert get(server, "/api/v1/services")[0] == 200  # not a watch
    for _ in range(2):
        status, _, body = get(server, watch_target("/api/v1/services", 1))
        assert (status, body["reason"]) == (500, "InternalError")
    assert watches(server, watch_target("/api/v1/services", 1)).status == 200
    with pytest.raises(ValueError, match="429"):
        server.fail_next(429)


def test_missing_groups_and_token_auth() -> None:
    with KubeAPIServer(token="s3cret") as server:
        for token in (None, "wrong"):
            assert get(server, "/api/v1/services", token)[::2] == (
                401, status_body(401, "Unauthorized", "Unauthorized"))
        assert get(server, "/apis/gateway.networking.k8s.io/v1/gateways", "s3cret")[0] == 200
        server.missing_groups.add("gateway.networking.k8s.io")
        assert get(server, "/apis/gateway.networking.k8s.io/v1/gateways", "s3cret")[0] == 404
        assert get(server, "/apis/networking.k8s.io/v1/ingresses", "s3cret")[0] == 200


def test_drop_watches_ends_streams_without_the_last_chunk(
    server: KubeAPIServer, watches: Callable[..., RawWatch]
) -> None:
    w1 = watches(server, watch_target("/api/v1/services", 1))
    w2 = watches(server, watch_target("/api/v1/pods", 1))
    assert server.wait_for_watches(2, 5)
    server.create(svc("a"))
    assert w1.events(1)[0]["type"] == "ADDED"
    server.drop_watches()
    assert server.open_watches() == 0
    assert (w1.wait_end(), w2.wait_end()) == ("abrupt", "abrupt")
    assert get(server, "/api/v1/services")[0] == 200  # the server itself is fine


def test_client_going_away_closes_its_watch(server: KubeAPIServer) -> None:
    w = RawWatch(server, watch_target("/api/v1/services", 1))
    assert server.wait_for_watches(1, 5)
    w.sock.close()
    assert wait_until(lambda: server.open_watches() == 0, 2)


def test_stop_and_start_on_the_same_port(watches: Callable[..., RawWatch]) -> None:
    server = KubeAPIServer()
    server.start()
    try:
        port = server.port
        w = watches(server, watch_target("/api/v1/services", 1))
        assert server.wait_for_watches(1, 5)
        rv = server.resource_version
        server.stop()
        assert w.wait_end() == "abrupt" and server.open_watches() == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        server.create(svc("b"))  # the API's state lives on while it is down
        server.start()
        assert server.port == port
        w2 = watches(server, watch_target("/api/v1/services", rv))
        assert w2.events(1)[0]["object"]["metadata"]["name"] == "b"
    finally:
        server.stop()


def test_hang_and_unhang(server: KubeAPIServer, watches: Callable[..., RawWatch]) -> None:
    w = watches(server, watch_target("/api/v1/services", 1))
    timed = watches(server, watch_target("/api/v1/pods", 1, timeoutSeconds="1"))
    assert server.wait_for_watches(2, 5)
    server.hang_watches()
    t0 = time.monotonic()
    for i in range(3):
        server.create(svc(f"s{i}"))
    assert time.monotonic() - t0 < 0.5  # a hung stream never blocks writers
    assert timed.quiet_for(1.3)  # nothing, not even the timeoutSeconds end
    assert w.quiet_for(0.05)
    fresh = watches(server, watch_target("/api/v1/services", 1))
    assert len(fresh.events(3)) == 3  # watches opened later are not hung
    server.unhang_watches()
    assert [e["object"]["metadata"]["name"] for e in w.events(3)] == ["s0", "s1", "s2"]
    assert timed.wait_end() == "clean"


def test_send_raw_line(server: KubeAPIServer, watches: Callable[..., RawWatch]) -> None:
    w = watches(server, watch_target("/api/v1/services", 1))
    assert server.wait_for_watches(1, 5)
    server.create(svc("a"))
    server.send_raw_line(b'{"type":"ADDED","object":')
    server.create(svc("b"))
    assert json.loads(w.next_line() or b"")["object"]["metadata"]["name"] == "a"
    assert w.next_line() == b'{"type":"ADDED","object":'
    assert json.loads(w.next_line() or b"")["object"]["metadata"]["name"] == "b"


# --- the Python API ------------------------------------------------------------------------


def test_python_api(server: KubeAPIServer) -> None:
    rv0 = server.resource_version
    created = server.create({"kind": "Service", "metadata": {"name": "a"}, "spec": {"clusterIP": "None"}})
    meta = created["metadata"]
    assert (created["kind"], created["apiVersion"], meta["namespace"]) == ("Service", "v1", "default")
    assert meta["resourceVersion"] == str(rv0 + 1) and meta["uid"] and meta["creationTimestamp"].endswith("Z")
    updated = server.update(svc("a", ip="10.0.0.99"))
    assert updated["metadata"]["uid"] == meta["uid"] and updated["metadata"]["resourceVersion"] == str(rv0 + 2)
    calls: list[tuple[Callable[[], object], type[Exception]]] = [(lambda: server.create(svc("a")), AlreadyExists),
                        (lambda: server.update(svc("zzz")), NotFound),
                        (lambda: server.delete("Service", "default", "zzz"), NotFound),
                        (lambda: server.create({"kind": "Deployment", "metadata": {"name": "x"}}), ValueError),
                        (lambda: server.create({**svc("b"), "apiVersion": "v2"}), ValueError),
                        (lambda: server.load([svc("c"), svc("a")]), AlreadyExists)]
    for call, error in calls:
        with pytest.raises(error):
            call()
    assert server.resource_version == rv0 + 2 and names(get(server, "/api/v1/services")[2]) == ["a"]  # load is atomic
    server.delete("Service", "default", "a")
    assert server.resource_version == rv0 + 3


def test_requests_are_recorded(server: KubeAPIServer) -> None:
    get(server, "/api/v1/services?limit=5&limit=6")
    get(server, "/nope")
    assert server.requests[-2:] == [("GET", "/api/v1/services", {"limit": "5"}), ("GET", "/nope", {})]


# --- the real reflector through one canned list-then-watch step ---------------------------

CANNED_LIST = json.dumps({
    "kind": "ServiceList", "apiVersion": "v1", "metadata": {"resourceVersion": "100"},
    "items": [
        {"metadata": {"name": "a", "namespace": "shop", "resourceVersion": "90"},
         "spec": {"clusterIP": "10.96.0.1", "ports": [{"port": 80, "protocol": "TCP"}]}},
        {"metadata": {"name": "b", "namespace": "shop", "resourceVersion": "95"},
         "spec": {"clusterIP": "10.96.0.2", "ports": [{"port": 80, "protocol": "TCP"}]}},
    ],
}).encode()
CANNED_WATCH = b"".join(json.dumps(event).encode() + b"\n" for event in [
    {"type": "ADDED", "object": {
        "kind": "Service", "apiVersion": "v1",
        "metadata": {"name": "c", "namespace": "shop", "resourceVersion": "101"},
        "spec": {"clusterIP": "10.96.0.3", "ports": [{"port": 80, "protocol": "TCP"}]}}},
    {"type": "MODIFIED", "object": {
        "kind": "Service", "apiVersion": "v1",
        "metadata": {"name": "a", "namespace": "shop", "resourceVersion": "102"},
        "spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 80, "protocol": "TCP"}]}}},
    {"type": "BOOKMARK", "object": {
        "kind": "Service", "apiVersion": "v1", "metadata": {"resourceVersion": "150"}}},
    {"type": "DELETED", "object": {
        "kind": "Service", "apiVersion": "v1",
        "metadata": {"name": "B", "namespace": "Shop", "resourceVersion": "151"},
        "spec": {"clusterIP": "10.96.0.2", "ports": [{"port": 80, "protocol": "TCP"}]}}},
    {"type": "BOOKMARK", "object": {  # nothing changed, but the resume point moves
        "kind": "Service", "apiVersion": "v1", "metadata": {"resourceVersion": "160"}}},
])


class RecordingSink:
    """The reflector's Sink, recording every call with the data a test can compare."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def replace(self, kind: str, records: list[Any]) -> None:
        self.calls.append(("replace", kind, [(r.namespace, r.name, r.cluster_ips) for r in records]))

    def upsert(self, record: Any) -> None:
        self.calls.append(("upsert", type(record).__name__, (record.namespace, record.name, record.cluster_ips)))

    def delete(self, kind: str, key: Any) -> None:
        self.calls.append(("delete", kind, key))


def test_reflector_through_a_canned_list_then_watch(server: KubeAPIServer, tmp_path: Path) -> None:
    from clusterdns.sources.kube import PAGE_SIZE, SERVICES, Reflector, api_client

    server.serve_canned("/api/v1/services", CANNED_LIST)
    server.serve_canned("/api/v1/services", CANNED_WATCH, watch=True)
    sink = RecordingSink()
    reflector = Reflector(api_client(str(server.write_kubeconfig(tmp_path / "kubeconfig"))), SERVICES, sink)
    thread = threading.Thread(target=reflector.run, daemon=True)
    thread.start()
    try:  # the canned stream ends cleanly: the reflector watches again from where it got to
        assert wait_until(lambda: len([q for _, _, q in list(server.requests) if "watch" in q]) >= 2, 10)
    finally:
        reflector.stop()
        thread.join(5)
    assert not thread.is_alive()
    assert sink.calls == [
        ("replace", "Service", [("shop", "a", ("10.96.0.1",)), ("shop", "b", ("10.96.0.2",))]),
        ("upsert", "Service", ("shop", "c", ("10.96.0.3",))),
        ("upsert", "Service", ("shop", "a", ("10.96.0.9",))),
        ("delete", "Service", ("shop", "b")),  # keys are lower-cased
    ]
    listed, first, second = server.requests[:3]
    assert listed == ("GET", "/api/v1/services", {"limit": str(PAGE_SIZE)})
    watch = {"watch": "1", "allowWatchBookmarks": "true"}
    assert first[1:] == ("/api/v1/services", {**watch, "resourceVersion": "100", "timeoutSeconds": first[2]["timeoutSeconds"]})
    assert second[1:] == ("/api/v1/services", {**watch, "resourceVersion": "160", "timeoutSeconds": second[2]["timeoutSeconds"]})
    assert 300 <= int(first[2]["timeoutSeconds"]) <= 600
