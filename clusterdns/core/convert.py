"""Kubernetes object dicts -> slim records. The only module that knows API field names.

Both sources (``zones/`` manifests and the live API watch) hand the same dicts, as the API
server serialises them, to :func:`convert`. Absent fields become ``()``/``""``, never None.
Invalid objects raise :class:`ConvertError` with the field path, e.g.
``spec.ports[1].port: not an integer``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .errors import ClusterDNSError, ConvertError
from .names import absolute, canonical_ip
from .records import (
    Endpoint,
    EndpointSlice,
    Gateway,
    GRPCRoute,
    HTTPRoute,
    ImportKind,
    Ingress,
    Namespace,
    Pod,
    Port,
    Record,
    Service,
    ServiceImport,
    ServiceKind,
    TLSRoute,
)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MC_SERVICE_NAME_LABEL = "multicluster.kubernetes.io/service-name"  # KEP-1645, mcs-api
MC_SOURCE_CLUSTER_LABEL = "multicluster.kubernetes.io/source-cluster"
MAX_LABEL = 63  # RFC 1035 2.3.4; the API server's DNS label limit
# Namespaces, hostnames and Service names. Service names were DNS-1035 labels (a letter
# first) until Kubernetes' RelaxedServiceNameValidation (KEP-5311) let them be DNS-1123
# labels (`1kubernetes`); the e2e test for it asks `1kubernetes.<ns>.svc.<zone>`.
DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")

Obj = Mapping[str, Any]


def _map(obj: Any, path: str) -> Obj:
    if obj is None:
        return {}
    if not isinstance(obj, Mapping):
        raise ConvertError(f"{path}: not a mapping")
    return obj


def _list(obj: Any, path: str) -> list[Any]:
    if obj is None:
        return []
    if not isinstance(obj, list):
        raise ConvertError(f"{path}: not a list")
    return obj


def _str(obj: Any, path: str) -> str:
    if obj is None:
        return ""
    if not isinstance(obj, str):
        raise ConvertError(f"{path}: not a string")
    return obj


def _int(obj: Any, path: str) -> int:
    if isinstance(obj, bool) or not isinstance(obj, int):
        raise ConvertError(f"{path}: not an integer")
    return obj


def _ip(obj: Any, path: str) -> tuple[str, int]:
    text = _str(obj, path)
    parsed = canonical_ip(text) if "%" not in text else None
    if parsed is None:
        raise ConvertError(f"{path}: not an IP address: {text!r}")
    # Interned: a pod's IP is also its endpoint's address, and both are kept.
    return sys.intern(parsed[0]), parsed[1]


def object_key(obj: Obj) -> tuple[str, str, str]:
    """Return ``(kind, namespace, name)`` of an object for messages; never raises.

    ``namespace`` is ``""`` for Namespaces, ``"default"`` when a namespaced object has none
    (as the converter and ``kubectl apply`` take it).
    """
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    kind = obj.get("kind")
    name = meta.get("name")
    namespace = meta.get("namespace")
    kind = kind if isinstance(kind, str) else "?"
    if kind == "Namespace":
        namespace = ""
    elif not isinstance(namespace, str) or not namespace:
        namespace = "default"
    return kind, namespace, name if isinstance(name, str) else "?"


def _label(text: str, path: str, grammar: re.Pattern[str] = DNS1123_LABEL) -> str:
    """``text`` if it is a DNS label as the API server validates it (apimachinery
    IsDNS1123Label: at most 63 characters, lower-case letters, digits and '-' inside); else
    ConvertError naming ``path``. Such names become labels of answers: a longer one would
    make a packet no client reads.
    """
    if len(text) > MAX_LABEL or not grammar.match(text):
        raise ConvertError(
            f"{path}: not a DNS-1123 label (at most {MAX_LABEL} of a-z, 0-9 and '-'): "
            f"{text[:80]!r}"
        )
    return text


def _meta(
    obj: Obj, namespaced: bool, grammar: re.Pattern[str] | None = None
) -> tuple[str, str, Obj]:
    """``(namespace, name, metadata)``; the namespace checked as a DNS-1123 label and the
    name by ``grammar`` when given (the names that become answer labels)."""
    meta = _map(obj.get("metadata"), "metadata")
    name = _str(meta.get("name"), "metadata.name").lower()
    if not name:
        raise ConvertError("metadata.name: missing")
    if grammar is not None:
        _label(name, "metadata.name", grammar)
    namespace = _str(meta.get("namespace"), "metadata.namespace").lower() if namespaced else ""
    if namespaced and not namespace:
        namespace = "default"  # as kubectl apply does for a manifest without one
    if namespaced:
        _label(namespace, "metadata.namespace")
    # A cluster has few namespaces and every record names one: one string each.
    return sys.intern(namespace), name, meta


SHARED_LIMIT = 4096
"""At most this many distinct ports, and as many distinct port lists, are shared per kind."""
# One pair of tables (ports, port lists) per kind: the API source converts each kind on its
# own reflector thread, so each table has one writer (docs/design.md 4). The manifests
# source converts on the loop's thread; with both sources in one server a table may see
# two writers: each write is one atomic dict store of an immutable value equal either way.
_SHARED: dict[str, tuple[dict[Port, Port], dict[tuple[Port, ...], tuple[Port, ...]]]] = {
    kind: ({}, {}) for kind in ("Service", "EndpointSlice", "ServiceImport")
}


def _shared(table: dict[Any, Any], value: Any) -> Any:
    """``value``, or an equal object made earlier: 10,000 services name a handful of ports
    (``http``/80/tcp), and each Port would otherwise cost ~170 bytes with its strings.
    Values are immutable and equal either way, so what a converter returns does not
    depend on what came before. Bounded: past :data:`SHARED_LIMIT` distinct values,
    a new one is returned as it is (an adversary's random ports cost only themselves)."""
    found = table.get(value)
    if found is not None:
        return found
    if len(table) < SHARED_LIMIT:
        table[value] = value
    return value


def _ports(kind: str, items: Iterable[Port]) -> tuple[Port, ...]:
    """A tuple of shared ports, itself shared with other records of ``kind`` that have the
    same."""
    ports, lists = _SHARED[kind]
    return _shared(lists, tuple(_shared(ports, p) for p in items))  # type: ignore[no-any-return]


def _port(obj: Any, path: str, *, allow_unset: bool) -> Port:
    port = _map(obj, path)
    number = port.get("port")
    if number is None and allow_unset:
        value = -1
    else:
        value = _int(number, f"{path}.port")
        if not 0 <= value <= 65535:
            raise ConvertError(f"{path}.port: out of range: {value}")
    protocol = _str(port.get("protocol"), f"{path}.protocol") or "TCP"
    return Port(_str(port.get("name"), f"{path}.name").lower(), protocol.lower(), value)


def to_namespace(obj: Obj) -> Namespace:
    """Convert a v1 Namespace (its name a DNS-1123 label, as the API server checks)."""
    _, name, _ = _meta(obj, namespaced=False, grammar=DNS1123_LABEL)
    return Namespace(name)


def to_service(obj: Obj) -> Service:
    """Convert a v1 Service (specification 2.3-2.5); its name a DNS-1123 label
    (KEP-5311 RelaxedServiceNameValidation: ``1kubernetes`` is a valid Service name).

    ``clusterIP: None`` -> headless; ``type: ExternalName`` -> CNAME target; otherwise the
    addresses of ``spec.clusterIPs`` (falling back to ``spec.clusterIP``). A non-headless
    service without any ClusterIP is served as headless, like CoreDNS does.
    """
    # DNS-1123, not DNS-1035 (KEP-5311): whatever name the API server accepted is served.
    namespace, name, _ = _meta(obj, namespaced=True, grammar=DNS1123_LABEL)
    spec = _map(obj.get("spec"), "spec")
    ports = _ports(
        "Service",
        (
            _port(p, f"spec.ports[{i}]", allow_unset=False)
            for i, p in enumerate(_list(spec.get("ports"), "spec.ports"))
        ),
    )
    svc_type = _str(spec.get("type"), "spec.type") or "ClusterIP"
    if svc_type == "ExternalName":
        target = _str(spec.get("externalName"), "spec.externalName").strip()
        if not target:
            raise ConvertError("spec.externalName: missing for type ExternalName")
        if len(target.rstrip(".")) > 253 or any(
            not label or len(label) > 63 for label in target.rstrip(".").split(".")
        ):
            raise ConvertError(f"spec.externalName: not a DNS name: {target!r}")
        return Service(namespace, name, ServiceKind.EXTERNAL_NAME, (), ports, absolute(target))
    if svc_type not in ("ClusterIP", "NodePort", "LoadBalancer"):
        raise ConvertError(f"spec.type: unknown service type {svc_type!r}")
    cluster_ip = _str(spec.get("clusterIP"), "spec.clusterIP")
    listed = _list(spec.get("clusterIPs"), "spec.clusterIPs")
    raw_ips = listed or ([cluster_ip] if cluster_ip else [])
    exposed = _service_exposure(obj, spec, svc_type)
    if cluster_ip == "None" or raw_ips == ["None"]:
        return Service(namespace, name, ServiceKind.HEADLESS, (), ports, "", *exposed)
    # An error names the field the object wrote: spec.clusterIP when it has no clusterIPs.
    paths = [f"spec.clusterIPs[{i}]" for i in range(len(listed))] if listed else ["spec.clusterIP"]
    ips = tuple(_ip(ip, path)[0] for ip, path in zip(raw_ips, paths, strict=True))
    kind = ServiceKind.CLUSTER_IP if ips else ServiceKind.HEADLESS
    return Service(namespace, name, kind, ips, ports, "", *exposed)


def _endpoint(obj: Any, path: str, family: int) -> Endpoint:
    ep = _map(obj, path)
    addresses = []
    for i, raw in enumerate(_list(ep.get("addresses"), f"{path}.addresses")):
        ip, ip_family = _ip(raw, f"{path}.addresses[{i}]")
        if ip_family != family:
            raise ConvertError(f"{path}.addresses[{i}]: {ip} is not IPv{family}")
        addresses.append(ip)
    conditions = _map(ep.get("conditions"), f"{path}.conditions")
    ready = conditions.get("ready")
    serving = conditions.get("serving")
    if ready is not None and not isinstance(ready, bool):
        raise ConvertError(f"{path}.conditions.ready: not a boolean")
    # ready absent = unknown = ready (CoreDNS endpointsliceReady). ready: true with
    # serving: false only happens with publishNotReadyAddresses: still served (behaviour.md 3.1).
    del serving
    target = _map(ep.get("targetRef"), f"{path}.targetRef")
    pod_name = ""
    if _str(target.get("kind"), f"{path}.targetRef.kind") in ("Pod", ""):
        pod_name = sys.intern(_str(target.get("name"), f"{path}.targetRef.name").lower())
        if len(pod_name) > 63:  # not a usable DNS label (CoreDNS object/endpoint.go)
            pod_name = ""
    hostname = _str(ep.get("hostname"), f"{path}.hostname").lower()
    if hostname:
        _label(hostname, f"{path}.hostname")
    packed = addresses[0] if len(addresses) == 1 else tuple(addresses)  # records.pack
    return Endpoint(packed, ready is not False, sys.intern(hostname), pod_name)


def to_endpointslice(obj: Obj) -> EndpointSlice | None:
    """Convert a discovery.k8s.io/v1 EndpointSlice; None for an FQDN slice (not served)."""
    namespace, name, meta = _meta(obj, namespaced=True)
    address_type = _str(obj.get("addressType"), "addressType")
    if address_type == "FQDN":
        return None
    family = {"IPv4": 4, "IPv6": 6}.get(address_type)
    if family is None:
        raise ConvertError(f"addressType: unknown address type {address_type!r}")
    labels = _map(meta.get("labels"), "metadata.labels")
    service = _str(labels.get(SERVICE_NAME_LABEL), f"metadata.labels[{SERVICE_NAME_LABEL}]")
    endpoints = tuple(
        _endpoint(ep, f"endpoints[{i}]", family)
        for i, ep in enumerate(_list(obj.get("endpoints"), "endpoints"))
    )
    ports = _ports(
        "EndpointSlice",
        (
            _port(p, f"ports[{i}]", allow_unset=True)
            for i, p in enumerate(_list(obj.get("ports"), "ports"))
        ),
    )
    mc_service = _str(
        labels.get(MC_SERVICE_NAME_LABEL), f"metadata.labels[{MC_SERVICE_NAME_LABEL}]"
    ).lower()
    cluster_id = ""
    if mc_service:
        cluster_id = _str(
            labels.get(MC_SOURCE_CLUSTER_LABEL), f"metadata.labels[{MC_SOURCE_CLUSTER_LABEL}]"
        ).lower()
        if cluster_id:  # a label of <hostname>.<clusterid>.<svc>... names (KEP-2149: DNS label)
            _label(cluster_id, f"metadata.labels[{MC_SOURCE_CLUSTER_LABEL}]")
    return EndpointSlice(
        namespace, name, service.lower(), family, endpoints, ports,
        sys.intern(mc_service), sys.intern(cluster_id),
    )


def to_serviceimport(obj: Obj) -> ServiceImport:
    """Convert a multicluster.x-k8s.io/v1alpha1 ServiceImport (KEP-1645; CoreDNS's
    multicluster plugin ``object.ToServiceImport``): ``spec.type`` ClusterSetIP (the
    default) or Headless, ``spec.ips`` and ``spec.ports``. Its name is a DNS-1123 label
    (it names a Service)."""
    namespace, name, _ = _meta(obj, namespaced=True, grammar=DNS1123_LABEL)
    spec = _map(obj.get("spec"), "spec")
    kind_text = _str(spec.get("type"), "spec.type") or "ClusterSetIP"
    try:
        kind = ImportKind(kind_text)
    except ValueError:
        raise ConvertError(
            f"spec.type: want ClusterSetIP or Headless, got {kind_text!r}"
        ) from None
    ips = tuple(
        dict.fromkeys(
            _ip(ip, f"spec.ips[{i}]")[0] for i, ip in enumerate(_list(spec.get("ips"), "spec.ips"))
        )
    )
    ports = _ports(
        "ServiceImport",
        (
            _port(p, f"spec.ports[{i}]", allow_unset=False)
            for i, p in enumerate(_list(spec.get("ports"), "spec.ports"))
        ),
    )
    return ServiceImport(namespace, name, kind, ips if kind is ImportKind.CLUSTERSET_IP else (),
                         ports)


def to_pod(obj: Obj) -> Pod:
    """Convert a v1 Pod: its IPs (``status.podIPs``, primary first). ``spec.hostname`` and
    ``spec.subdomain`` are checked as DNS-1123 labels (the API server's validation; a bad
    one is reported) but not kept: no answer reads them (see :class:`Pod`)."""
    namespace, name, meta = _meta(obj, namespaced=True)
    spec = _map(obj.get("spec"), "spec")
    status = _map(obj.get("status"), "status")
    ips: list[str] = []
    primary = status.get("podIP")
    if primary:
        ips.append(_ip(primary, "status.podIP")[0])
    for i, entry in enumerate(_list(status.get("podIPs"), "status.podIPs")):
        ip = _ip(_map(entry, f"status.podIPs[{i}]").get("ip"), f"status.podIPs[{i}].ip")[0]
        if ip not in ips:
            ips.append(ip)
    for path in ("hostname", "subdomain"):
        value = _str(spec.get(path), f"spec.{path}").lower()
        if value:
            _label(value, f"spec.{path}")
    _str(status.get("phase"), "status.phase")
    # The name is interned: it is also the targetRef name of the pod's endpoint.
    packed = ips[0] if len(ips) == 1 else tuple(ips)  # records.pack
    return Pod(namespace, sys.intern(name), packed, meta.get("deletionTimestamp") is not None)


# ---- what the cluster exposes: Service addresses, Ingress, Gateway API -------------------
# (docs/exposed-names.md; read by the k8s_external and k8s_gateway resolvers)


def _hostname(obj: Any, path: str, *, wildcard: bool) -> str:
    """A DNS name from a host field -> absolute, lower-case; ``*.`` kept with ``wildcard``."""
    text = _str(obj, path).strip().lower().rstrip(".")
    labels = text.split(".")
    if wildcard and labels[0] == "*" and len(labels) > 1:
        labels = labels[1:]
    if (
        not text
        or len(text) > 253
        or any(not label or len(label) > 63 or "*" in label for label in labels)
    ):
        raise ConvertError(f"{path}: not a DNS name: {text!r}")
    return sys.intern(text + ".")


def _lb_ingress(obj: Any, path: str) -> tuple[str, ...]:
    """``status.loadBalancer.ingress`` -> IP text or absolute host names, in order
    (an entry with both prefers the IP, as CoreDNS ``object.ToService`` does)."""
    out: list[str] = []
    for i, entry in enumerate(_list(obj, path)):
        entry = _map(entry, f"{path}[{i}]")
        if entry.get("ip"):
            out.append(_ip(entry.get("ip"), f"{path}[{i}].ip")[0])
        elif entry.get("hostname"):
            out.append(_hostname(entry.get("hostname"), f"{path}[{i}].hostname", wildcard=False))
    return tuple(dict.fromkeys(out))


def _service_exposure(
    obj: Obj, spec: Obj, svc_type: str
) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
    """``(spec.externalIPs, status.loadBalancer.ingress, type is LoadBalancer)``."""
    external = tuple(
        _ip(ip, f"spec.externalIPs[{i}]")[0]
        for i, ip in enumerate(_list(spec.get("externalIPs"), "spec.externalIPs"))
    )
    status = _map(obj.get("status"), "status")
    balancer = _map(status.get("loadBalancer"), "status.loadBalancer")
    ingress = _lb_ingress(balancer.get("ingress"), "status.loadBalancer.ingress")
    return tuple(dict.fromkeys(external)), ingress, svc_type == "LoadBalancer"


def to_ingress(obj: Obj) -> Ingress:
    """Convert a networking.k8s.io/v1 Ingress: ``spec.rules[].host`` and
    ``spec.tls[].hosts`` (rules without a host serve no name), and
    ``status.loadBalancer.ingress``."""
    namespace, name, _ = _meta(obj, namespaced=True)
    spec = _map(obj.get("spec"), "spec")
    hosts: list[str] = []
    for i, rule in enumerate(_list(spec.get("rules"), "spec.rules")):
        host = _map(rule, f"spec.rules[{i}]").get("host")
        if host:
            hosts.append(_hostname(host, f"spec.rules[{i}].host", wildcard=True))
    for i, tls in enumerate(_list(spec.get("tls"), "spec.tls")):
        tls_hosts = _list(_map(tls, f"spec.tls[{i}]").get("hosts"), f"spec.tls[{i}].hosts")
        for j, host in enumerate(tls_hosts):
            hosts.append(_hostname(host, f"spec.tls[{i}].hosts[{j}]", wildcard=True))
    status = _map(obj.get("status"), "status")
    balancer = _map(status.get("loadBalancer"), "status.loadBalancer")
    addresses = _lb_ingress(balancer.get("ingress"), "status.loadBalancer.ingress")
    return Ingress(namespace, name, tuple(dict.fromkeys(hosts)), addresses)


def to_gateway(obj: Obj) -> Gateway:
    """Convert a gateway.networking.k8s.io/v1 Gateway: ``status.addresses`` of type
    IPAddress (the default) and Hostname; other address types are dropped."""
    namespace, name, _ = _meta(obj, namespaced=True)
    status = _map(obj.get("status"), "status")
    out: list[str] = []
    for i, entry in enumerate(_list(status.get("addresses"), "status.addresses")):
        entry = _map(entry, f"status.addresses[{i}]")
        kind = _str(entry.get("type"), f"status.addresses[{i}].type") or "IPAddress"
        path = f"status.addresses[{i}].value"
        if kind == "IPAddress":
            out.append(_ip(entry.get("value"), path)[0])
        elif kind == "Hostname":
            out.append(_hostname(entry.get("value"), path, wildcard=False))
    return Gateway(namespace, name, tuple(dict.fromkeys(out)))


def _route(
    cls: type[HTTPRoute] | type[TLSRoute] | type[GRPCRoute],
) -> Callable[[Obj], Record | None]:
    def convert_route(obj: Obj) -> Record:
        namespace, name, _ = _meta(obj, namespaced=True)
        spec = _map(obj.get("spec"), "spec")
        hostnames = tuple(
            dict.fromkeys(
                _hostname(h, f"spec.hostnames[{i}]", wildcard=True)
                for i, h in enumerate(_list(spec.get("hostnames"), "spec.hostnames"))
            )
        )
        parents: list[tuple[str, str]] = []
        for i, ref in enumerate(_list(spec.get("parentRefs"), "spec.parentRefs")):
            ref = _map(ref, f"spec.parentRefs[{i}]")
            kind = _str(ref.get("kind"), f"spec.parentRefs[{i}].kind") or "Gateway"
            if kind != "Gateway":
                continue
            parent = _str(ref.get("name"), f"spec.parentRefs[{i}].name").lower()
            if not parent:
                raise ConvertError(f"spec.parentRefs[{i}].name: missing")
            ref_ns = _str(ref.get("namespace"), f"spec.parentRefs[{i}].namespace").lower()
            parents.append((ref_ns or namespace, parent))
        return cls(namespace, name, hostnames, tuple(dict.fromkeys(parents)))

    convert_route.__doc__ = (
        f"Convert a Gateway API {cls.__name__}: ``spec.hostnames`` and the Gateways of "
        "``spec.parentRefs``."
    )
    return convert_route


EXPOSURE_CONVERTERS: dict[str, Callable[[Obj], Record | None]] = {
    "Ingress": to_ingress,
    "Gateway": to_gateway,
    "HTTPRoute": _route(HTTPRoute),
    "TLSRoute": _route(TLSRoute),
    "GRPCRoute": _route(GRPCRoute),
}
"""The exposure kinds, by API ``kind`` (only k8s_gateway and k8s_external read them)."""


CONVERTERS: dict[str, Callable[[Obj], Record | None]] = {
    "Namespace": to_namespace,
    "Service": to_service,
    "EndpointSlice": to_endpointslice,
    "Pod": to_pod,
    **EXPOSURE_CONVERTERS,
    "ServiceImport": to_serviceimport,
}
"""The kinds the store holds, by API ``kind``."""


def convert_or_error(obj: Obj) -> tuple[Record | None, str]:
    """:func:`convert`, with a failure as one line naming the object instead of an
    exception: ``(record or None, "")`` or ``(None, "Service shop/web: spec.ports[1].port:
    not an integer")``."""
    try:
        return convert(obj), ""
    except ClusterDNSError as exc:
        kind, namespace, name = object_key(obj)
        ident = f"{namespace}/{name}" if namespace else name
        return None, f"{kind} {ident}: {exc}"


def convert(obj: Obj) -> Record | None:
    """Convert one API object by its ``kind``.

    Returns None for objects that are valid but serve nothing (FQDN EndpointSlices).
    Raises ConvertError for an unknown kind or an invalid object.
    """
    kind = obj.get("kind")
    converter = CONVERTERS.get(kind) if isinstance(kind, str) else None
    if converter is None:
        raise ConvertError(f"kind: not one of {', '.join(CONVERTERS)}: {kind!r}")
    return converter(obj)


def unwrap_lists(
    objects: Iterable[Any], on_list: Callable[[Obj], None] | None = None
) -> Iterator[Any]:
    """``objects`` in order, each ``kind: List`` / ``ServiceList`` ... wrapper (a mapping
    whose kind ends in ``List`` and whose ``items`` is a list) replaced by its items,
    recursively, as ``kubectl get -o yaml|json`` and the API's list calls write them.

    An item without a kind takes it from its list (``ServiceList`` -> ``Service``: the raw
    API omits it on items; kubectl's ``List`` items carry their own). Anything that is no
    wrapper (None, a non-mapping, an unknown kind) is yielded as it is: the caller judges
    it. ``on_list`` is called with each wrapper before its items (the manifest loader
    counts them against its object limit); what it raises ends the iteration.
    """
    for obj in objects:
        if isinstance(obj, Mapping):
            kind, items = obj.get("kind"), obj.get("items")
            if isinstance(kind, str) and kind.endswith("List") and isinstance(items, list):
                if on_list is not None:
                    on_list(obj)
                item_kind = kind[: -len("List")]
                yield from unwrap_lists(
                    (
                        {**item, "kind": item_kind}
                        if item_kind and isinstance(item, Mapping) and "kind" not in item
                        else item
                        for item in items
                    ),
                    on_list,
                )
                continue
        yield obj
