"""The live source end to end: the real ``kubernetes`` client inside a real
``clusterdns serve --kubeconfig`` process, against the test API server of kubeapi.py, queried
over UDP on loopback. Every wait polls with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest

from .conftest import RunningServer, start_server, stop_server
from .kubeapi import KubeAPIServer

Answer = tuple[str, list[str]]


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def service(name: str, ip: str | None = "10.96.0.20", ns: str = "shop", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}], **spec}
    if ip is not None:
        body.setdefault("clusterIP", ip)
        body.setdefault("clusterIPs", [ip] if ip != "None" else ["None"])
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": body}


def endpointslice(service_name: str, *endpoints: tuple[str, bool], ns: str = "shop",
                  name: str = "") -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name or f"{service_name}-x7k2p", "namespace": ns,
                     "labels": {"kubernetes.io/service-name": service_name}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip, ready in endpoints],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def pod(name: str, ip: str, ns: str = "shop", phase: str = "Running") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}]}}


def ask(server: RunningServer, name: str, qtype: str = "A") -> Answer:
    msg = dns.query.udp(dns.message.make_query(name, qtype), "127.0.0.1", port=server.port,
                        timeout=5)
    return dns.rcode.to_text(msg.rcode()), sorted(rr.to_text() for s in msg.answer for rr in s)


def eventually(server: RunningServer, name: str, want: Answer, qtype: str = "A",
               deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    got = ask(server, name, qtype)
    while got != want and time.monotonic() < end:
        time.sleep(0.02)
        got = ask(server, name, qtype)
    assert got == want, f"{name} {qtype}: {got} != {want}"


WEB = "web.shop.svc.cluster.local."


@pytest.fixture
def api() -> Iterator[KubeAPIServer]:
    server = KubeAPIServer(token="s3cret")
    server.start()
    server.load([namespace("default"), namespace("shop"), service("web"),
                 endpointslice("web", ("10.244.1.10", True))])
    yield server
    server.stop()


@pytest.fixture
def serve(api: KubeAPIServer, tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    started: list[RunningServer] = []
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")

    def run(*args: str) -> RunningServer:
        server = start_server("--kubeconfig", str(kubeconfig), *args)
        started.append(server)
        return server

    yield run
    for server in started:
        assert stop_server(server) == 0


def lists(api: KubeAPIServer, path: str) -> int:
    """How many LIST (not WATCH) requests were made for ``path``."""
    return sum(1 for _, p, q in list(api.requests) if p == path and "watch" not in q)


def test_initial_sync_and_changes_of_every_kind(api: KubeAPIServer, serve: Callable[..., RunningServer]) -> None:
    server = serve("--pods", "verified")
    server.wait_for_log("synced with the API:")
    assert ask(server, WEB) == ("NOERROR", ["10.96.0.20"])
    # the reflectors sent the token and paginated LISTs, then watched with bookmarks
    watch = [q for _, p, q in api.requests if p == "/api/v1/services" and q.get("watch")]
    assert watch and watch[0]["allowWatchBookmarks"] == "true" and watch[0]["resourceVersion"]
    assert int(watch[0]["timeoutSeconds"]) >= 300
    pods = [q for _, p, q in api.requests if p == "/api/v1/pods"]
    assert pods[0]["fieldSelector"] == (
        "status.phase!=Succeeded,status.phase!=Failed,status.phase!=Unknown")
    # Service: modify, add, delete
    api.update(service("web", "10.96.0.21"))
    eventually(server, WEB, ("NOERROR", ["10.96.0.21"]))
    api.create(service("api", "10.96.0.30"))
    eventually(server, "api.shop.svc.cluster.local.", ("NOERROR", ["10.96.0.30"]))
    api.delete("Service", "shop", "api")
    eventually(server, "api.shop.svc.cluster.local.", ("NXDOMAIN", []))
    # EndpointSlice: endpoint names appear, go not-ready, the slice goes away
    ep = "10-244-1-10." + WEB
    eventually(server, ep, ("NOERROR", ["10.244.1.10"]))
    api.update(endpointslice("web", ("10.244.1.10", False), ("10.244.1.11", True)))
    eventually(server, ep, ("NXDOMAIN", []))
    eventually(server, "10-244-1-11." + WEB, ("NOERROR", ["10.244.1.11"]))
    api.delete("EndpointSlice", "shop", "web-x7k2p")
    eventually(server, "10-244-1-11." + WEB, ("NXDOMAIN", []))
    # Pod (verified mode): the record exists while the pod runs
    name = "10-244-1-50.shop.pod.cluster.local."
    assert ask(server, name) == ("NXDOMAIN", [])
    api.create(pod("p", "10.244.1.50"))
    eventually(server, name, ("NOERROR", ["10.244.1.50"]))
    api.update(pod("p", "10.244.1.50", phase="Succeeded"))  # leaves the field selector
    eventually(server, name, ("NXDOMAIN", []))
    # Namespace: deleting it takes every name under it
    api.delete("Namespace", "", "shop")
    eventually(server, WEB, ("NXDOMAIN", []))
    eventually(server, "shop.svc.cluster.local.", ("NXDOMAIN", []))
    api.create(namespace("shop"))
    eventually(server, WEB, ("NOERROR", ["10.96.0.21"]))


def test_service_becomes_headless_then_externalname(api: KubeAPIServer, serve: Callable[..., RunningServer]) -> None:
    server = serve()
    server.wait_for_log("synced with the API:")
    api.update(service("web", "None"))
    eventually(server, WEB, ("NOERROR", ["10.244.1.10"]))
    api.update(service("web", None, type="ExternalName", externalName="web.example.com"))
    eventually(server, WEB, ("NOERROR", ["web.example.com."]))
    api.update(service("web", "10.96.0.22"))
    eventually(server, WEB, ("NOERROR", ["10.96.0.22"]))


def test_service_name_starting_with_a_digit(api: KubeAPIServer, serve: Callable[..., RunningServer]) -> None:
    """KEP-5311 RelaxedServiceNameValidation: what the API server accepted is served (the
    e2e test asks ``1kubernetes.<ns>.svc.cluster.local``); added, changed, deleted."""
    api.create(service("1kubernetes", "10.96.0.51"))
    server = serve()
    server.wait_for_log("synced with the API:")
    name = "1kubernetes.shop.svc.cluster.local."
    assert ask(server, name) == ("NOERROR", ["10.96.0.51"])
    api.update(service("1kubernetes", "10.96.0.52"))
    eventually(server, name, ("NOERROR", ["10.96.0.52"]))
    api.create(service("2fa", "10.96.0.53"))
    eventually(server, "2fa.shop.svc.cluster.local.", ("NOERROR", ["10.96.0.53"]))
    api.delete("Service", "shop", "1kubernetes")
    eventually(server, name, ("NXDOMAIN", []))


def test_bookmark_moves_the_resume_point(api: KubeAPIServer, serve: Callable[..., RunningServer]) -> None:
    server = serve()
    server.wait_for_log("synced with the API:")
    assert api.wait_for_watches(3, 10)
    api.create(namespace("other"))  # moves the global resourceVersion past every kind
    api.bookmark()
    bookmarked = str(api.resource_version)
    eventually(server, "other.svc.cluster.local.", ("NOERROR", []))
    before = lists(api, "/api/v1/services")
    api.drop_watches()
    end = time.monotonic() + 10
    resumed: list[dict[str, str]] = []
    while not resumed and time.monotonic() < end:
        resumed = [q for _, p, q in list(api.requests)
                   if p == "/api/v1/services" and q.get("watch") and q["resourceVersion"] == bookmarked]
        time.sleep(0.02)
    assert resumed, "services re-watched from the bookmark's resourceVersion"
    assert lists(api, "/api/v1/services") == before  # a dropped stream is not a relist
    api.update(service("web", "10.96.0.23"))
    eventually(server, WEB, ("NOERROR", ["10.96.0.23"]))


def test_410_relists_to_the_right_state(api: KubeAPIServer, serve: Callable[..., RunningServer]) -> None:
    server = serve()
    server.wait_for_log("synced with the API:")
    assert api.wait_for_watches(3, 10)
    api.hang_watches()  # the reflectors see nothing of what follows ...
    api.update(service("web", "10.96.0.24"))
    api.create(service("api", "10.96.0.31"))
    api.delete("EndpointSlice", "shop", "web-x7k2p")
    api.compact()  # ... and cannot catch up: the history is gone
    before = lists(api, "/api/v1/services")
    api.drop_watches()
    api.unhang_watches()
    eventually(server, WEB, ("NOERROR", ["10.96.0.24"]))
    eventually(server, "api.shop.svc.cluster.local.", ("NOERROR", ["10.96.0.31"]))
    eventually(server, "10-244-1-10." + WEB, ("NXDOMAIN", []))
    assert lists(api, "/api/v1/services") > before
    server.wait_for_log("relisting")


def test_api_down_at_start_then_up(api: KubeAPIServer, serve: Callable[..., RunningServer]) -> None:
    api.stop()
    server = serve("--startup-timeout", "0.5")
    server.wait_for_log("not synced with the API")
    line = server.wait_for_log("cannot reach the Kubernetes API")
    assert "not synced yet: names not found answer SERVFAIL" in line, line  # no last state
    # not synced: a name we cannot find is SERVFAIL, never NXDOMAIN (clients cache that)
    assert ask(server, WEB) == ("SERVFAIL", [])
    assert ask(server, "nosuch.shop.svc.cluster.local.") == ("SERVFAIL", [])
    api.start()
    eventually(server, WEB, ("NOERROR", ["10.96.0.20"]), deadline=30)
    # NXDOMAIN only once every kind has listed (the services may come before the slices)
    server.wait_for_log("synced with the API:", deadline=30)
    assert ask(server, "nosuch.shop.svc.cluster.local.") == ("NXDOMAIN", [])


def test_api_dies_while_serving_keeps_the_last_state(api: KubeAPIServer, serve: Callable[..., RunningServer]) -> None:
    server = serve()
    server.wait_for_log("synced with the API:")
    api.stop()
    line = server.wait_for_log("cannot reach the Kubernetes API")
    assert "serving the last good state" in line, line  # synced once: there is one
    for _ in range(20):
        assert ask(server, WEB) == ("NOERROR", ["10.96.0.20"])
        assert ask(server, "nosuch.shop.svc.cluster.local.") == ("NXDOMAIN", [])
    api.update(service("web", "10.96.0.25"))  # changed while we could not see it
    api.start()
    eventually(server, WEB, ("NOERROR", ["10.96.0.25"]), deadline=40)
    server.wait_for_log("answers again")


def test_forbidden_names_the_permission(api: KubeAPIServer, serve: Callable[..., RunningServer]) -> None:
    api.fail_next(403, count=2, path_contains="endpointslices")
    server = serve("--startup-timeout", "0.2")
    line = server.wait_for_log("permission denied")
    assert "cannot list endpointslices in API group discovery.k8s.io" in line
    assert "list and watch" in line
    eventually(server, "10-244-1-10." + WEB, ("NOERROR", ["10.244.1.10"]), deadline=20)


def test_malformed_watch_line_relists(api: KubeAPIServer, serve: Callable[..., RunningServer]) -> None:
    server = serve()
    server.wait_for_log("synced with the API:")
    assert api.wait_for_watches(3, 10)
    before = lists(api, "/api/v1/services")
    api.send_raw_line(b'{"type": "ADDED", "object": {"kind": "Serv')
    server.wait_for_log("malformed watch event")
    end = time.monotonic() + 10
    while lists(api, "/api/v1/services") == before and time.monotonic() < end:
        time.sleep(0.02)
    assert lists(api, "/api/v1/services") > before
    api.update(service("web", "10.96.0.26"))
    eventually(server, WEB, ("NOERROR", ["10.96.0.26"]))


def test_bad_objects_are_logged_and_skipped(api: KubeAPIServer, serve: Callable[..., RunningServer]) -> None:
    api.create(service("bad", "10.96.0.300"))
    bad_slice = endpointslice("web", ("10.244.1.99", True), name="web-weird")
    bad_slice["addressType"] = "IPv5"
    api.create(bad_slice)
    server = serve()
    server.wait_for_log("synced with the API:")
    assert "Service shop/bad: spec.clusterIPs[0]: not an IP address" in server.wait_for_log("shop/bad")
    assert "unknown address type" in server.wait_for_log("shop/web-weird")
    assert ask(server, WEB) == ("NOERROR", ["10.96.0.20"])
    assert ask(server, "bad.shop.svc.cluster.local.") == ("NXDOMAIN", [])
    api.create(service("worse", "not-an-ip"))  # bad in a watch event too
    server.wait_for_log("shop/worse")
    api.create(service("fine", "10.96.0.40"))
    eventually(server, "fine.shop.svc.cluster.local.", ("NOERROR", ["10.96.0.40"]))


def test_zones_and_api_together(api: KubeAPIServer, serve: Callable[..., RunningServer], tmp_path: Path) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "x.yaml").write_text(
        "kind: Namespace\nmetadata: {name: local}\n---\nkind: Service\n"
        "metadata: {name: db, namespace: local}\nspec: {clusterIP: 10.96.9.9}\n")
    server = serve("--zones", str(zones))
    server.wait_for_log("synced with the API:")
    assert ask(server, WEB) == ("NOERROR", ["10.96.0.20"])
    assert ask(server, "db.local.svc.cluster.local.") == ("NOERROR", ["10.96.9.9"])


def test_server_errors_back_off_and_recover(api: KubeAPIServer, serve: Callable[..., RunningServer]) -> None:
    api.fail_next(500, count=3, path_contains="/api/v1/services")
    server = serve("--startup-timeout", "0.2")
    assert "500" in server.wait_for_log("Service: list failed")
    server.wait_for_log("synced with the API:", deadline=30)
    assert ask(server, WEB) == ("NOERROR", ["10.96.0.20"])
    attempts = [q for _, p, q in list(api.requests) if p == "/api/v1/services" and "watch" not in q]
    assert len(attempts) >= 4  # three refused LISTs, then the one that worked


def test_hung_watch_is_given_up_and_resumed(api: KubeAPIServer, serve: Callable[..., RunningServer]) -> None:
    # watches time out after 1-2 s server-side; a silent one is abandoned after twice that
    server = serve("--kube-watch-timeout", "1")
    server.wait_for_log("synced with the API:")
    assert api.wait_for_watches(3, 10)
    before = lists(api, "/api/v1/services")
    api.hang_watches()  # streams open now go silent, their events queue up unsent
    api.update(service("web", "10.96.0.27"))
    eventually(server, WEB, ("NOERROR", ["10.96.0.27"]), deadline=20)
    assert lists(api, "/api/v1/services") == before  # resumed from its resourceVersion
    api.unhang_watches()
