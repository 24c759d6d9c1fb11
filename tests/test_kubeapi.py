"""Tests of the kube-apiserver stand-in (tests/kubeapi.py), read at the protocol level.

Watches are read straight off a socket (``RawWatch``) so the chunked framing itself is checked:
a clean end has the terminating ``0\\r\\n\\r\\n`` chunk, a dropped stream does not. The real
``kubernetes`` client (config, auth, raw GETs with unread bodies) is exercised too.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import kubernetes
import pytest
import urllib3

from tests.kubeapi import AlreadyExists, KubeAPIServer, NotFound

USER = "system:serviceaccount:kube-system:coredns"


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[KubeAPIServer]:
    with KubeAPIServer() as s:
        yield s


def wait_until(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def svc(
    name: str, ns: str = "default", labels: dict[str, str] | None = None, ip: str = "10.0.0.10"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    }


def pod(
    name: str,
    ns: str = "default",
    labels: dict[str, str] | None = None,
    phase: str = "Running",
    node: str = "n1",
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {"nodeName": node, "hostNetwork": False},
        "status": {"phase": phase, "podIP": "10.1.0.1"},
    }


def eps(name: str, ns: str = "default", service: str = "web") -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.1.0.1"], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def get(
    server: KubeAPIServer,
    target: str,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, http.client.HTTPResponse, Any]:
    """GET over a fresh connection; JSON bodies are decoded."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    hdrs = {"Accept": "application/json", **(headers or {})}
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    try:
        conn.request("GET", target, headers=hdrs)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    if resp.getheader("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    if (resp.getheader("Content-Type") or "").startswith("application/json"):
        return resp.status, resp, json.loads(body)
    return resp.status, resp, body


def names(body: dict[str, Any]) -> list[str]:
    return [i["metadata"]["name"] for i in body["items"]]


def status_body(code: int, reason: str, message: str, **extra: Any) -> dict[str, Any]:
    s = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    s.update(extra)
    s["code"] = code
    return s


class RawWatch:
    """A watch request read straight off the socket, de-chunked by hand."""

    def __init__(self, server: KubeAPIServer, target: str, token: str | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Accept: application/json"]
        if token:
            lines.append(f"Authorization: Bearer {token}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.pending = b""
        self.body = b""
        self.chunk_sizes: list[int] = []
        self.line_split_across_chunks = False
        self.terminated = False  # saw the terminating zero-length chunk
        self.eof = False
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
        while not self.terminated:
            i = self.pending.find(b"\r\n")
            if i < 0:
                return
            size = int(self.pending[:i], 16)
            if len(self.pending) < i + 2 + size + 2:
                return
            assert self.pending[i + 2 + size : i + 4 + size] == b"\r\n"
            data = self.pending[i + 2 : i + 2 + size]
            self.pending = self.pending[i + 4 + size :]
            if size == 0:
                self.terminated = True
                return
            self.chunk_sizes.append(size)
            if not data.endswith(b"\n"):
                self.line_split_across_chunks = True
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

    def next_event(self, timeout: float = 5.0) -> dict[str, Any] | None:
        line = self.next_line(timeout)
        return None if line is None else json.loads(line)

    def events(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        out = []
        for _ in range(n):
            ev = self.next_event(timeout)
            assert ev is not None, f"stream ended after {out}"
            out.append(ev)
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

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def watches() -> Iterator[Callable[..., RawWatch]]:
    opened: list[RawWatch] = []

    def open_(server: KubeAPIServer, target: str, token: str | None = None) -> RawWatch:
        w = RawWatch(server, target, token)
        opened.append(w)
        return w

    yield open_
    for w in opened:
        w.close()


def kube_api(server: KubeAPIServer, tmp_path: Path) -> kubernetes.client.ApiClient:
    cfg = kubernetes.client.Configuration()
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    return kubernetes.client.ApiClient(cfg)


def kube_get(
    api: kubernetes.client.ApiClient, path: str, query: list[tuple[str, str]], timeout: Any = (2, 5)
) -> urllib3.HTTPResponse:
    """A raw GET through the real client (kubernetes>=35: param_serialize + call_api), body unread."""
    method, url, headers, body, post = api.param_serialize(
        "GET", path, query_params=query, auth_settings=["BearerToken"]
    )
    return api.call_api(method, url, headers, body, post, _request_timeout=timeout).response


# --- plain endpoints and LIST --------------------------------------------------------------


def test_version_healthz_and_unknown_paths(server: KubeAPIServer) -> None:
    status, resp, body = get(server, "/version")
    assert status == 200 and body["major"] == "1" and body["gitVersion"].startswith("v1.")
    assert resp.getheader("Server") is None  # kube-apiserver sends none
    assert get(server, "/healthz")[::2] == (200, b"ok")
    for path in (
        "/api/v1/foos",
        "/api/v1/namespaces/default/namespaces",
        "/apis/discovery.k8s.io/v1/services",
        "/nope",
    ):
        status, _, body = get(server, path)
        assert (status, body) == (
            404,
            status_body(
                404, "NotFound", "the server could not find the requested resource", details={}
            ),
        ), path


def test_list_shape_order_and_scopes(server: KubeAPIServer) -> None:
    server.load(
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
            for n in ("b", "a", "a-b")
        ]
    )
    for ns in ("b", "a", "a-b"):
        server.create(svc("x", ns))
    server.create(eps("web-abc", "a"))
    status, resp, body = get(server, "/api/v1/services")
    assert status == 200 and resp.getheader("Content-Type") == "application/json"
    assert body["kind"] == "ServiceList" and body["apiVersion"] == "v1"
    assert body["metadata"] == {"resourceVersion": str(server.resource_version)}
    # etcd key order ("a-b/x" < "a/x"), and items carry neither kind nor apiVersion
    assert [i["metadata"]["namespace"] for i in body["items"]] == ["a-b", "a", "b"]
    item = body["items"][0]
    assert "kind" not in item and "apiVersion" not in item
    assert set(item["metadata"]) >= {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    }
    assert names(get(server, "/api/v1/namespaces")[2]) == ["a", "a-b", "b"]
    _, _, body = get(server, "/api/v1/namespaces/a/services")
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in body["items"]] == [
        ("a", "x")
    ]
    _, _, body = get(server, "/apis/discovery.k8s.io/v1/namespaces/a/endpointslices")
    assert (body["kind"], body["apiVersion"], names(body)) == (
        "EndpointSliceList",
        "discovery.k8s.io/v1",
        ["web-abc"],
    )
    assert names(get(server, "/apis/discovery.k8s.io/v1/endpointslices")[2]) == ["web-abc"]
    assert get(server, "/api/v1/namespaces/zzz/pods")[2]["items"] == []
    # single objects carry kind and apiVersion
    status, _, one = get(server, "/api/v1/namespaces/a/services/x")
    assert (status, one["kind"], one["apiVersion"], one["metadata"]["namespace"]) == (
        200,
        "Service",
        "v1",
        "a",
    )
    assert get(server, "/api/v1/namespaces/a-b")[2]["kind"] == "Namespace"
    status, _, missing = get(server, "/api/v1/namespaces/a/services/nope")
    assert (status, missing["reason"], missing["message"]) == (
        404,
        "NotFound",
        'services "nope" not found',
    )


def decode_token(token: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


def test_pagination_is_a_consistent_snapshot(server: KubeAPIServer) -> None:
    server.load(svc(f"s{i:02d}") for i in range(25))
    list_rv = server.resource_version
    _, _, page1 = get(server, "/api/v1/namespaces/default/services?limit=10")
    assert names(page1) == [f"s{i:02d}" for i in range(10)]
    meta = page1["metadata"]
    assert meta["resourceVersion"] == str(list_rv) and meta["remainingItemCount"] == 15
    assert decode_token(meta["continue"]) == {
        "v": "meta.k8s.io/v1",
        "rv": list_rv,
        "start": "s09\x00",
    }
    # changes between pages do not show up in the rest of this list
    server.delete("Service", "default", "s15")
    server.update(svc("s20", ip="10.9.9.9"))
    server.create(svc("s99"))
    _, _, page2 = get(
        server, f"/api/v1/namespaces/default/services?limit=10&continue={meta['continue']}"
    )
    assert names(page2) == [f"s{i:02d}" for i in range(10, 20)]
    assert (
        page2["metadata"]["resourceVersion"] == str(list_rv)
        and page2["metadata"]["remainingItemCount"] == 5
    )
    _, _, page3 = get(
        server,
        f"/api/v1/namespaces/default/services?limit=10&continue={page2['metadata']['continue']}",
    )
    assert names(page3) == [f"s{i:02d}" for i in range(20, 25)]
    assert page3["items"][0]["spec"]["clusterIP"] == "10.0.0.10"
    assert page3["metadata"] == {"resourceVersion": str(list_rv)}
    # a new list sees the present
    _, _, now = get(server, "/api/v1/services")
    assert "s15" not in names(now) and "s99" in names(now)
    assert now["metadata"]["resourceVersion"] == str(server.resource_version)
    # an exact page is exactly full: no continue
    _, _, whole = get(server, "/api/v1/services?limit=25")
    assert len(whole["items"]) == 25 and "continue" not in whole["metadata"]


def test_list_resource_version_semantics(server: KubeAPIServer) -> None:
    server.load(svc(f"s{i}") for i in range(5))
    old = server.resource_version
    server.delete("Service", "default", "s0")
    # "0": any version, from the cache, limit ignored
    _, _, body = get(server, "/api/v1/services?resourceVersion=0&limit=2")
    assert len(body["items"]) == 4 and "continue" not in body["metadata"]
    # Exact, and the legacy resourceVersion=N with limit, are served at N
    for q in (
        f"resourceVersion={old}&resourceVersionMatch=Exact",
        f"resourceVersion={old}&limit=10",
    ):
        _, _, body = get(server, f"/api/v1/services?{q}")
        assert (names(body), body["metadata"]["resourceVersion"]) == (
            [f"s{i}" for i in range(5)],
            str(old),
        ), q
    # NotOlderThan is served at the present
    _, _, body = get(
        server, f"/api/v1/services?resourceVersion={old}&resourceVersionMatch=NotOlderThan"
    )
    assert body["metadata"]["resourceVersion"] == str(
        server.resource_version
    ) and "s0" not in names(body)
    server.too_large_rv_wait = 0.2
    status, resp, body = get(
        server, f"/api/v1/services?resourceVersion={server.resource_version + 100}"
    )
    assert (status, body["reason"]) == (504, "Timeout") and body["message"].startswith(
        "Too large resource version"
    )
    status, _, body = get(server, "/api/v1/services?resourceVersionMatch=Exact")
    assert (status, body["reason"]) == (422, "Invalid")
    status, _, body = get(server, "/api/v1/services?limit=1")
    status, _, body = get(
        server,
        f"/api/v1/services?limit=1&resourceVersion=3&continue={body['metadata']['continue']}",
    )
    assert (status, body["message"]) == (
        400,
        "specifying resource version is not allowed when using continue",
    )
    status, _, body = get(server, "/api/v1/services?continue=garbage!")
    assert (status, body["reason"]) == (400, "BadRequest") and body["message"].startswith(
        "invalid continue token"
    )
    status, _, body = get(server, "/api/v1/services?limit=ten")
    assert status == 400


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", ["a", "b"]),
        ("app==web", ["a", "b"]),
        ("app!=web", ["c", "d"]),
        ("tier", ["a", "c"]),
        ("!tier", ["b", "d"]),
        ("app=web,tier=front", ["a"]),
        ("app=web,!tier", ["b"]),
        ("app in (web,db)", ["a", "b", "c"]),
        ("app notin (web)", ["c", "d"]),
        ("", ["a", "b", "c", "d"]),
    ],
)
def test_label_selectors(server: KubeAPIServer, selector: str, expected: list[str]) -> None:
    server.create(pod("a", labels={"app": "web", "tier": "front"}))
    server.create(pod("b", labels={"app": "web"}))
    server.create(pod("c", labels={"app": "db", "tier": "back"}))
    server.create(pod("d"))
    q = quote(selector, safe="")
    assert names(get(server, f"/api/v1/pods?labelSelector={q}")[2]) == expected


def test_field_selectors(server: KubeAPIServer) -> None:
    server.create(pod("a", "ns1", phase="Running"))
    server.create(pod("b", "ns1", phase="Succeeded", labels={"app": "web"}))
    server.create(pod("c", "ns2", phase="Running", node="n2", labels={"app": "web"}))
    server.create(pod("a", "ns2", phase="Failed"))

    def sel(field: str, label: str = "") -> list[str]:
        q = "fieldSelector=" + quote(field, safe="")
        if label:
            q += "&labelSelector=" + quote(label, safe="")
        return [
            f"{i['metadata']['namespace']}/{i['metadata']['name']}"
            for i in get(server, f"/api/v1/pods?{q}")[2]["items"]
        ]

    assert sel("metadata.name=a") == ["ns1/a", "ns2/a"]
    assert sel("metadata.namespace=ns2") == ["ns2/a", "ns2/c"]
    assert sel("status.phase!=Succeeded") == ["ns1/a", "ns2/a", "ns2/c"]
    assert sel("status.phase!=Succeeded,status.phase!=Failed") == ["ns1/a", "ns2/c"]
    assert sel("spec.nodeName=n2") == ["ns2/c"]
    assert sel("spec.hostNetwork=false,metadata.name==a") == ["ns1/a", "ns2/a"]
    assert sel("status.phase!=Failed", "app=web") == ["ns1/b", "ns2/c"]
    assert sel("spec.nothing=") == ["ns1/a", "ns1/b", "ns2/a", "ns2/c"]
    status, _, body = get(server, "/api/v1/pods?fieldSelector=oops")
    assert (status, body["reason"]) == (400, "BadRequest") and "can't understand 'oops'" in body[
        "message"
    ]
    status, _, body = get(server, "/api/v1/pods?labelSelector=a%3D%3D%3Db")
    assert (status, body["reason"]) == (400, "BadRequest")


def test_selector_pages_fill_with_matches_and_omit_remaining_count(server: KubeAPIServer) -> None:
    server.load(pod(f"p{i:02d}", labels={"even": str(i % 2 == 0).lower()}) for i in range(20))
    _, _, page = get(server, "/api/v1/pods?labelSelector=even%3Dtrue&limit=4")
    assert names(page) == ["p00", "p02", "p04", "p06"]
    assert "remainingItemCount" not in page["metadata"] and page["metadata"]["continue"]
    got = names(page)
    while "continue" in page["metadata"]:
        _, _, page = get(
            server,
            f"/api/v1/pods?labelSelector=even%3Dtrue&limit=4&continue={page['metadata']['continue']}",
        )
        got += names(page)
    assert got == [f"p{i:02d}" for i in range(0, 20, 2)]


# --- WATCH ---------------------------------------------------------------------------------


def test_watch_sees_changes_in_order(
    server: KubeAPIServer, watches: Callable[..., RawWatch]
) -> None:
    server.create(svc("old"))
    rv = server.resource_version
    w = watches(
        server, f"/api/v1/services?watch=true&resourceVersion={rv}&allowWatchBookmarks=true"
    )
    assert w.status == 200 and w.headers["content-type"] == "application/json"
    assert server.wait_for_watches(1, 5)
    server.create(svc("web", labels={"app": "web"}))
    server.update(svc("web", labels={"app": "web", "v": "2"}))
    server.delete("Service", "default", "web")
    server.create(svc("other", "kube-system"))
    events = w.events(4)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "web"),
        ("MODIFIED", "web"),
        ("DELETED", "web"),
        ("ADDED", "other"),
    ]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == list(range(rv + 1, rv + 5))
    assert all(
        e["object"]["kind"] == "Service" and e["object"]["apiVersion"] == "v1" for e in events
    )
    deleted = events[2]["object"]
    assert deleted["metadata"]["labels"] == {"app": "web", "v": "2"}  # last state, new RV
    assert events[0]["object"]["metadata"]["uid"] == deleted["metadata"]["uid"]
    assert w.quiet_for(0.1)


def test_watch_without_resource_version_starts_with_synthetic_added(
    server: KubeAPIServer, watches: Callable[..., RawWatch]
) -> None:
    server.load([svc("a", "ns1"), svc("b", "ns2"), svc("c", "ns1"), eps("web-1", "ns1")])
    w_all = watches(server, "/api/v1/services?watch=1")
    w_ns = watches(server, "/api/v1/namespaces/ns1/services?watch=true&resourceVersion=0")
    w_eps = watches(server, "/apis/discovery.k8s.io/v1/namespaces/ns1/endpointslices?watch=true")
    assert [e["object"]["metadata"]["name"] for e in w_all.events(3)] == ["a", "c", "b"]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in w_ns.events(2)] == [
        ("ADDED", "a"),
        ("ADDED", "c"),
    ]
    ev = w_eps.next_event()
    assert ev is not None and (ev["object"]["kind"], ev["object"]["apiVersion"]) == (
        "EndpointSlice",
        "discovery.k8s.io/v1",
    )
    assert server.wait_for_watches(3, 5)
    server.create(svc("d", "ns2"))
    server.create(svc("e", "ns1"))
    assert [e["object"]["metadata"]["name"] for e in w_all.events(2)] == ["d", "e"]
    assert [e["object"]["metadata"]["name"] for e in w_ns.events(1)] == ["e"]


def test_watch_selector_transitions_like_the_watch_cache(
    server: KubeAPIServer, watches: Callable[..., RawWatch]
) -> None:
    server.create(svc("web", labels={"app": "web"}))
    server.create(pod("job", labels={}))
    rv = server.resource_version
    w = watches(server, f"/api/v1/services?watch=true&resourceVersion={rv}&labelSelector=app%3Dweb")
    wp = watches(
        server,
        f"/api/v1/pods?watch=true&resourceVersion={rv}&fieldSelector=status.phase%21%3DSucceeded",
    )
    assert server.wait_for_watches(2, 5)
    server.update(svc("web", labels={"app": "web", "x": "1"}))  # still matches: MODIFIED
    server.update(svc("web", labels={"app": "api"}))  # stops matching: DELETED
    server.update(svc("web", labels={"app": "api", "y": "1"}))  # still not matching: nothing
    server.update(svc("web", labels={"app": "web"}))  # matches again: ADDED
    server.delete("Service", "default", "web")
    events = w.events(4)
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED", "ADDED", "DELETED"]
    gone = events[1]["object"]
    # the DELETED for "stopped matching" carries the previous state with the event's RV
    assert gone["metadata"]["labels"] == {"app": "web", "x": "1"}
    assert gone["metadata"]["resourceVersion"] == str(rv + 2)
    assert [int(e["object"]["metadata"]["resourceVersion"]) for e in events] == [
        rv + 1,
        rv + 2,
        rv + 4,
        rv + 5,
    ]
    server.update(pod("job", phase="Succeeded"))
    ev = wp.next_event()
    assert ev is not None and (ev["type"], ev["object"]["status"]["phase"]) == (
        "DELETED",
        "Running",
    )


def test_watch_replays_history_and_batches_chunks_like_net_http(
    server: KubeAPIServer, watches: Callable[..., RawWatch]
) -> None:
    start = server.resource_version
    server.load(svc(f"s{i:03d}", labels={"n": str(i)}) for i in range(200))
    w = watches(server, f"/api/v1/services?watch=true&resourceVersion={start + 100}")
    events = w.events(100)
    assert [e["object"]["metadata"]["name"] for e in events] == [
        f"s{i:03d}" for i in range(100, 200)
    ]
    assert (
        max(w.chunk_sizes) == 4096 and w.line_split_across_chunks
    )  # a client must re-assemble lines


def test_bookmarks(server: KubeAPIServer, watches: Callable[..., RawWatch]) -> None:
    server.create(svc("a"))
    with_bm = watches(
        server,
        f"/api/v1/services?watch=true&resourceVersion={server.resource_version}&allowWatchBookmarks=true",
    )
    without = watches(
        server, f"/api/v1/services?watch=true&resourceVersion={server.resource_version}"
    )
    assert server.wait_for_watches(2, 5)
    server.create(pod("p"))  # bumps the global RV without any service event
    server.bookmark()
    server.create(svc("b"))
    assert with_bm.next_event() == {
        "type": "BOOKMARK",
        "object": {
            "kind": "Service",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(server.resource_version - 1)},
        },
    }
    assert with_bm.next_event()["type"] == "ADDED"  # type: ignore[index]
    ev = without.next_event()
    assert ev is not None and (ev["type"], ev["object"]["metadata"]["name"]) == ("ADDED", "b")


def test_send_initial_events_ends_with_annotated_bookmark(
    server: KubeAPIServer, watches: Callable[..., RawWatch]
) -> None:
    server.load([svc("a"), svc("b")])
    w = watches(
        server,
        "/api/v1/services?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
    )
    events = w.events(3)
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "BOOKMARK"]
    assert events[2]["object"]["metadata"] == {
        "resourceVersion": str(server.resource_version),
        "annotations": {"k8s.io/initial-events-end": "true"},
    }


def test_watch_from_compacted_resource_version_gets_one_error_event(
    server: KubeAPIServer, watches: Callable[..., RawWatch]
) -> None:
    server.create(svc("a"))
    old = server.resource_version
    server.create(svc("b"))
    server.compact()
    w = watches(server, f"/api/v1/services?watch=true&resourceVersion={old}")
    assert w.status == 200
    assert w.next_event() == {
        "type": "ERROR",
        "object": status_body(
            410, "Expired", f"too old resource version: {old} ({server.resource_version})"
        ),
    }
    assert w.next_event() is None and w.wait_end() == "clean"
    assert server.open_watches() == 0
    # from the compaction point on, watching works
    w2 = watches(server, f"/api/v1/services?watch=true&resourceVersion={server.resource_version}")
    assert server.wait_for_watches(1, 5)
    server.create(svc("c"))
    assert w2.next_event()["object"]["metadata"]["name"] == "c"  # type: ignore[index]


def test_continue_token_of_a_compacted_list_gets_410(server: KubeAPIServer) -> None:
    server.load(svc(f"s{i}") for i in range(6))
    _, _, page1 = get(server, "/api/v1/services?limit=2")
    server.create(svc("s9"))
    server.compact()
    status, _, body = get(
        server, f"/api/v1/services?limit=2&continue={page1['metadata']['continue']}"
    )
    assert status == 410 and (body["reason"], body["code"], body["status"]) == (
        "Expired",
        410,
        "Failure",
    )
    assert body["message"].startswith("The provided continue parameter is too old")
    # the Status carries an "inconsistent" continue token that resumes at the present
    inconsistent = body["metadata"]["continue"]
    assert decode_token(inconsistent)["rv"] == -1
    status, _, page2 = get(server, f"/api/v1/services?limit=10&continue={inconsistent}")
    assert status == 200 and names(page2) == ["s2", "s3", "s4", "s5", "s9"]
    status, _, body = get(
        server,
        f"/api/v1/services?resourceVersion={server.resource_version - 1}&resourceVersionMatch=Exact",
    )
    assert (status, body["message"]) == (
        410,
        "The resourceVersion for the provided list is too old.",
    )


# --- errors, auth, fault injection ---------------------------------------------------------


def test_forbidden_messages(server: KubeAPIServer, watches: Callable[..., RawWatch]) -> None:
    server.fail_next(403, count=3)
    status, _, body = get(server, "/api/v1/services?limit=500")
    assert (status, body) == (
        403,
        status_body(
            403,
            "Forbidden",
            f'services is forbidden: User "{USER}" cannot list resource "services" in API group "" at the cluster scope',
            details={"kind": "services"},
        ),
    )
    status, _, body = get(server, "/api/v1/namespaces/default/pods?watch=true")
    assert (
        body["message"]
        == f'pods is forbidden: User "{USER}" cannot watch resource "pods" in API group "" in the namespace "default"'
    )
    status, _, body = get(server, "/apis/discovery.k8s.io/v1/endpointslices")
    assert body["message"] == (
        f'endpointslices.discovery.k8s.io is forbidden: User "{USER}" cannot list resource "endpointslices" in API group "discovery.k8s.io" at the cluster scope'
    )
    assert body["details"] == {"group": "discovery.k8s.io", "kind": "endpointslices"}
    assert get(server, "/api/v1/services")[0] == 200  # all three used up


def test_fail_next_filters_and_counts(
    server: KubeAPIServer, watches: Callable[..., RawWatch]
) -> None:
    server.fail_next(500, count=2, path_contains="/services", watch=True)
    assert get(server, "/api/v1/services")[0] == 200
    assert watches(server, "/api/v1/pods?watch=true").status == 200  # not "/services"
    for _ in range(2):
        status, _, body = get(server, "/api/v1/services?watch=true")
        assert (status, body["reason"], body["message"]) == (
            500,
            "InternalError",
            "Internal error occurred: injected failure",
        )
    w = watches(server, "/api/v1/services?watch=true")
    assert w.status == 200
    server.fail_next(429, path_contains="watch=false")
    status, resp, body = get(server, "/api/v1/services?watch=false")
    assert (status, body["reason"], resp.getheader("Retry-After")) == (429, "TooManyRequests", "1")
    server.fail_next(401)
    assert get(server, "/healthz")[2]["reason"] == "Unauthorized"


def test_token_auth(tmp_path: Path) -> None:
    with KubeAPIServer(token="s3cret") as server:
        for token in (None, "wrong"):
            status, _, body = get(server, "/api/v1/services", token=token)
            assert (status, body) == (401, status_body(401, "Unauthorized", "Unauthorized"))
        assert get(server, "/api/v1/services", token="s3cret")[0] == 200
        api = kube_api(server, tmp_path)
        resp = kube_get(api, "/api/v1/services", [])
        assert resp.status == 200 and json.loads(resp.data)["kind"] == "ServiceList"


def test_real_client_list_watch_and_errors(tmp_path: Path) -> None:
    with KubeAPIServer(token="t0k") as server:
        server.load(svc(f"s{i}") for i in range(3))
        api = kube_api(server, tmp_path)
        resp = kube_get(api, "/api/v1/services", [("limit", "2")])
        page = json.loads(resp.read())
        assert names(page) == ["s0", "s1"] and page["metadata"]["remainingItemCount"] == 1
        resp = kube_get(
            api, "/api/v1/services", [("limit", "2"), ("continue", page["metadata"]["continue"])]
        )
        assert names(json.loads(resp.read())) == ["s2"]
        rv = page["metadata"]["resourceVersion"]
        stream = kube_get(
            api,
            "/api/v1/services",
            [
                ("watch", "true"),
                ("resourceVersion", rv),
                ("allowWatchBookmarks", "true"),
                ("timeoutSeconds", "30"),
            ],
        )
        assert stream.status == 200
        assert server.wait_for_watches(1, 5)
        server.create(svc("new"))
        lines = iter(stream)  # one iterator: urllib3 re-assembles lines across chunks
        line = next(lines)
        assert json.loads(line)["object"]["metadata"]["name"] == "new"
        server.drop_watches()
        with pytest.raises(urllib3.exceptions.HTTPError):
            for _ in lines:
                pass
        server.fail_next(403)
        resp = kube_get(
            api,
            "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices",
            [("watch", "true")],
        )
        body = json.loads(resp.read())
        assert resp.status == 403 and body["message"].endswith(
            'in API group "discovery.k8s.io" in the namespace "kube-system"'
        )
    with KubeAPIServer() as server:  # no token: a kubeconfig without credentials still loads
        assert kube_get(kube_api(server, tmp_path), "/version", []).status == 200


def test_drop_watches_ends_streams_without_the_last_chunk(
    server: KubeAPIServer, watches: Callable[..., RawWatch]
) -> None:
    w1 = watches(server, "/api/v1/services?watch=true")
    w2 = watches(server, "/api/v1/pods?watch=true")
    assert server.wait_for_watches(2, 5)
    server.create(svc("a"))
    assert w1.next_event()["type"] == "ADDED"  # type: ignore[index]
    server.drop_watches()
    assert server.open_watches() == 0
    assert (w1.wait_end(), w2.wait_end()) == ("abrupt", "abrupt")
    assert get(server, "/api/v1/services")[0] == 200  # the server itself is fine


def test_timeout_seconds_ends_the_stream_cleanly(
    server: KubeAPIServer, watches: Callable[..., RawWatch]
) -> None:
    t0 = time.monotonic()
    w = watches(server, "/api/v1/services?watch=true&timeoutSeconds=1")
    assert w.wait_end(timeout=5) == "clean"
    assert 0.9 <= time.monotonic() - t0 < 3
    assert wait_until(lambda: server.open_watches() == 0)


def test_client_going_away_closes_its_watch(server: KubeAPIServer) -> None:
    w = RawWatch(server, "/api/v1/services?watch=true")
    assert server.wait_for_watches(1, 5)
    w.close()
    assert wait_until(lambda: server.open_watches() == 0, 2)


def test_stop_and_start_on_the_same_port(watches: Callable[..., RawWatch]) -> None:
    server = KubeAPIServer()
    server.start()
    try:
        port, url = server.port, server.url
        server.create(svc("a"))
        w = watches(server, "/api/v1/services?watch=true&resourceVersion=0")
        assert w.next_event()["type"] == "ADDED"  # type: ignore[index]
        keepalive = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        keepalive.request("GET", "/healthz")
        assert keepalive.getresponse().read() == b"ok"
        rv = server.resource_version
        server.stop()
        assert w.wait_end() == "abrupt" and server.open_watches() == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        server.create(svc("b"))  # the API's state lives on while it is down
        server.start()
        assert (server.port, server.url) == (port, url)
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            keepalive.request("GET", "/healthz")  # the old connection was closed
            keepalive.getresponse()
        w2 = watches(server, f"/api/v1/services?watch=true&resourceVersion={rv}")
        assert w2.next_event()["object"]["metadata"]["name"] == "b"  # type: ignore[index]
    finally:
        server.stop()


def test_hang_and_unhang(server: KubeAPIServer, watches: Callable[..., RawWatch]) -> None:
    w = watches(server, "/api/v1/services?watch=true")
    timed = watches(server, "/api/v1/pods?watch=true&timeoutSeconds=1")
    assert server.wait_for_watches(2, 5)
    server.hang_watches()
    t0 = time.monotonic()
    for i in range(3):
        server.create(svc(f"s{i}"))
    assert time.monotonic() - t0 < 0.5  # a hung stream never blocks writers
    assert timed.quiet_for(1.3)  # nothing, not even the timeoutSeconds end
    assert w.quiet_for(0.05)
    fresh = watches(server, "/api/v1/services?watch=true&resourceVersion=0")
    assert len(fresh.events(3)) == 3  # watches opened later are not hung
    server.unhang_watches()
    assert [e["object"]["metadata"]["name"] for e in w.events(3)] == ["s0", "s1", "s2"]
    assert timed.wait_end() == "clean"


def test_send_raw_line(server: KubeAPIServer, watches: Callable[..., RawWatch]) -> None:
    w = watches(server, "/api/v1/services?watch=true")
    assert server.wait_for_watches(1, 5)
    server.create(svc("a"))
    server.send_raw_line(b'{"type":"ADDED","object":')
    server.create(svc("b"))
    assert json.loads(w.next_line() or b"")["object"]["metadata"]["name"] == "a"
    assert w.next_line() == b'{"type":"ADDED","object":'
    assert json.loads(w.next_line() or b"")["object"]["metadata"]["name"] == "b"


def test_refuse_connections(server: KubeAPIServer) -> None:
    server.refuse(True)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        get(server, "/healthz")
    server.refuse(False)
    assert get(server, "/healthz")[0] == 200


# --- the Python API ------------------------------------------------------------------------


def test_python_api(server: KubeAPIServer) -> None:
    rv0 = server.resource_version
    created = server.create(
        {"kind": "Service", "metadata": {"name": "a"}, "spec": {"clusterIP": "None"}}
    )
    assert created["kind"] == "Service" and created["apiVersion"] == "v1"
    meta = created["metadata"]
    assert (
        meta["namespace"] == "default"
        and meta["resourceVersion"] == str(rv0 + 1)
        and meta["uid"]
        and meta["creationTimestamp"].endswith("Z")
    )
    with pytest.raises(AlreadyExists):
        server.create(svc("a"))
    with pytest.raises(NotFound):
        server.update(svc("zzz"))
    with pytest.raises(NotFound):
        server.delete("Service", "default", "zzz")
    with pytest.raises(ValueError):
        server.create({"kind": "Deployment", "metadata": {"name": "x"}})
    updated = server.apply(svc("a", ip="10.0.0.99"))
    assert updated["metadata"]["uid"] == meta["uid"] and updated["metadata"][
        "resourceVersion"
    ] == str(rv0 + 2)
    server.apply(svc("b"))
    server.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}})
    assert [o["metadata"]["name"] for o in server.objects("Service")] == ["a", "b"]
    assert server.objects("Service")[0]["spec"]["clusterIP"] == "10.0.0.99"
    mine = server.objects("Service")[0]
    mine["spec"]["clusterIP"] = "mutated"  # copies: the store is unaffected
    assert server.objects("Service")[0]["spec"]["clusterIP"] == "10.0.0.99"
    server.delete("Namespace", "", "kube-system")
    assert server.objects("Namespace") == [] and server.resource_version == rv0 + 5


def test_requests_are_recorded(server: KubeAPIServer) -> None:
    get(server, "/api/v1/namespaces/default/services?limit=5&labelSelector=a%3Db")
    get(server, "/version")
    assert server.requests[-2:] == [
        ("GET", "/api/v1/namespaces/default/services", {"limit": "5", "labelSelector": "a=b"}),
        ("GET", "/version", {}),
    ]


def test_load_and_page_through_100k_pods(server: KubeAPIServer) -> None:
    t0 = time.monotonic()
    server.load(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"p{i}",
                "namespace": f"ns{i % 100}",
                "labels": {"app": f"a{i % 10}"},
            },
            "spec": {"nodeName": f"n{i % 7}"},
            "status": {"phase": "Running", "podIP": f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"},
        }
        for i in range(100_000)
    )
    loaded = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    seen, pages, token = 0, 0, ""
    while True:
        conn.request("GET", "/api/v1/pods?limit=500" + (f"&continue={token}" if token else ""))
        resp = conn.getresponse()
        body = json.loads(resp.read())
        seen += len(body["items"])
        pages += 1
        token = body["metadata"].get("continue", "")
        if not token:
            break
    listed = time.monotonic()
    assert (seen, pages) == (100_000, 200)
    assert loaded - t0 < 5 and listed - loaded < 5, (loaded - t0, listed - loaded)
    # big responses are chunked, and gzipped when the client asks (as kube-apiserver does)
    conn.request("GET", "/api/v1/namespaces/ns1/pods", headers={"Accept-Encoding": "gzip"})
    resp = conn.getresponse()
    assert (
        resp.getheader("Content-Encoding") == "gzip"
        and resp.getheader("Transfer-Encoding") == "chunked"
    )
    assert len(json.loads(gzip.decompress(resp.read()))["items"]) == 1000
    conn.close()
