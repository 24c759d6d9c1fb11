"""The store's compact tables (issue 19): pods by namespace, a service's slices kept bare,
one address kept bare in a record.

Pure store tests (no sockets): the compact layouts must behave as the plain dicts and sets
they replaced, through every path that writes them (upsert, delete, relist, a second source).
"""

from __future__ import annotations

from clusterdns.core.records import Endpoint, EndpointSlice, Pod, pack
from clusterdns.core.store import Store, _ByNamespace

NOW = 1_700_000_000.0


def test_pods_by_namespace_keep_same_names_apart() -> None:
    table = _ByNamespace()
    a, b = Pod("a", "web-0", ("10.0.0.1",)), Pod("b", "web-0", ("10.0.0.2",))
    table[("a", "web-0")] = a
    table[("b", "web-0")] = b
    table[("a", "web-0")] = a  # overwrite: still two
    assert len(table) == 2
    assert table[("b", "web-0")] is b and table.get(("a", "web-0")) is a
    assert ("a", "web-0") in table and ("c", "web-0") not in table and "web-0" not in table
    assert table.get(("c", "x"), "absent") == "absent"
    assert sorted(table) == [("a", "web-0"), ("b", "web-0")]
    copy = table.copy()
    del table[("a", "web-0")]
    assert len(table) == 1 and ("a", "web-0") not in table and table._by_ns.keys() == {"b"}
    assert len(copy) == 2 and copy[("a", "web-0")] is a  # the copy is its own
    assert table.snapshot() == [b]
    del table[("b", "web-0")]
    assert len(table) == 0 and table._by_ns == {} and list(table) == []


def test_pod_table_through_the_store_relist_and_second_source() -> None:
    store = Store()
    store.add_source("api", synced=True)
    pods = [Pod(f"ns{i % 3}", f"p{i}", (f"10.1.0.{i}",)) for i in range(9)]
    assert store.replace("api", "Pod", pods, NOW)
    assert store.count("Pod") == 9 and isinstance(store._merged["Pod"], _ByNamespace)
    assert store.pod_names()["10.1.0.4"] == ("ns1", "p4")
    assert store.has_pod_ip("ns1", "10.1.0.4") and not store.has_pod_ip("ns0", "10.1.0.4")
    # a relist without p4 removes it and its IP
    assert store.replace("api", "Pod", [p for p in pods if p.name != "p4"], NOW)
    assert store.count("Pod") == 8 and not store.has_pod_ip("ns1", "10.1.0.4")
    assert not store.replace("api", "Pod", [p for p in pods if p.name != "p4"], NOW)
    # a second source: its pod wins where both hold one; deleting it brings back the first's
    store.add_source("zones", synced=True)
    assert store.upsert("zones", Pod("ns0", "p0", ("10.2.0.1",)), NOW)
    assert store.pod_namespace("10.2.0.1") == "ns0" and store.pod_namespace("10.1.0.0") is None
    assert store.delete("zones", "Pod", ("ns0", "p0"), NOW)
    assert store.pod_namespace("10.1.0.0") == "ns0" and store.count("Pod") == 8
    assert store.delete("api", "Pod", ("ns2", "p8"), NOW)
    assert "10.1.0.8" not in store.pod_names() and store.count("Pod") == 7


def _slice(name: str, ip: str, service: str = "web") -> EndpointSlice:
    return EndpointSlice("ns", name, service, 4, (Endpoint((ip,), True),))


def test_slices_of_a_service_bare_then_many_then_bare() -> None:
    store = Store()
    store.add_source("api", synced=True)
    store.upsert("api", _slice("web-b", "10.0.0.2"), NOW)
    assert store._slices_by_service[("ns", "web")] == ("ns", "web-b")  # bare, no set
    store.upsert("api", _slice("web-a", "10.0.0.1"), NOW)
    store.upsert("api", _slice("web-a", "10.0.0.1"), NOW)  # a re-send adds nothing
    assert [ep.address for ep in store.ready_endpoints("ns", "web")] == ["10.0.0.1", "10.0.0.2"]
    store.upsert("api", _slice("web-a", "10.0.0.1", service="other"), NOW)  # moves service
    assert store._slices_by_service[("ns", "web")] == ("ns", "web-b")
    assert [ep.address for ep in store.ready_endpoints("ns", "other")] == ["10.0.0.1"]
    store.delete("api", "EndpointSlice", ("ns", "web-b"), NOW)
    assert ("ns", "web") not in store._slices_by_service
    assert store.ready_endpoints("ns", "web") == []
    assert store.services_with_endpoint("10.0.0.2") == []
    assert store.services_with_endpoint("10.0.0.1") == [("ns", "other")]


def test_endpoint_index_follows_the_winning_source_without_ready_ips_kept() -> None:
    """A service's ready addresses are unindexed from what they were before each change
    (no copy kept): a slice that two sources hold with different services moves its
    addresses from one service to the other and back, and leaves nothing behind."""
    store = Store()
    store.add_source("zones", synced=True)
    store.add_source("api", synced=True)  # registered last: wins
    store.upsert("zones", _slice("s", "10.0.0.1", service="one"), NOW)
    store.upsert("zones", _slice("t", "10.0.0.2", service="two"), NOW)
    store.upsert("api", _slice("s", "10.0.0.3", service="two"), NOW)
    assert store.services_with_endpoint("10.0.0.1") == []
    assert store.services_with_endpoint("10.0.0.3") == [("ns", "two")]
    assert [ep.address for ep in store.ready_endpoints("ns", "two")] == ["10.0.0.3", "10.0.0.2"]
    store.delete("api", "EndpointSlice", ("ns", "s"), NOW)  # the zones slice is back
    assert store.services_with_endpoint("10.0.0.1") == [("ns", "one")]
    assert store.services_with_endpoint("10.0.0.3") == []
    assert store.services_with_endpoint("10.0.0.2") == [("ns", "two")]
    store.delete("zones", "EndpointSlice", ("ns", "s"), NOW)
    store.delete("zones", "EndpointSlice", ("ns", "t"), NOW)
    assert store._endpoint_ips == {} and store._slices_by_service == {}


def test_one_address_is_kept_bare_and_read_as_a_tuple() -> None:
    one, two = Endpoint(("10.0.0.1",), True), Endpoint(("fd00::1", "fd00::2"), True)
    assert one.packed_addresses == "10.0.0.1" and one.addresses == ("10.0.0.1",)
    assert two.packed_addresses == two.addresses == ("fd00::1", "fd00::2")
    assert one == Endpoint("10.0.0.1", True) and hash(one) == hash(Endpoint("10.0.0.1", True))
    assert Endpoint((), False).addresses == ()
    pod = Pod("ns", "p", ("10.0.0.1",))
    assert pod.packed_ips == "10.0.0.1" and pod.ips == ("10.0.0.1",)
    assert Pod("ns", "p").ips == () and Pod("ns", "p", ("a", "b")).ips == ("a", "b")
    assert pack(("x",)) == "x" and pack(("x", "y")) == ("x", "y") and pack(()) == ()
