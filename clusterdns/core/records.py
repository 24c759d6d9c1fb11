"""Slim, immutable records of the cluster state that DNS answers need.

Only the fields an answer reads are kept: never the API's dicts or the client's model
objects. Names (namespace, service, endpoint hostname) are stored lower-case, since every
DNS comparison is case-insensitive (Kubernetes DNS specification 2.1) and API names are
DNS-1123 labels anyway. IP addresses are stored in their canonical text form
(``ipaddress`` ``str()``), so ``"fd00:0::1"`` and ``"fd00::1"`` are one address.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


def pack(values: str | tuple[str, ...]) -> str | tuple[str, ...]:
    """``values`` as records keep a list of addresses: a tuple of one as its bare string,
    anything else as it is. 100,000 endpoints and as many pods, each with one address,
    would hold 200,000 tuples of one: 9.6 MB (issue 19)."""
    if type(values) is tuple and len(values) == 1:
        return values[0]
    return values


class ServiceKind(enum.Enum):
    """How a Service answers (specification 2.3, 2.4, 2.5)."""

    CLUSTER_IP = "ClusterIP"  # also NodePort and LoadBalancer: they answer the ClusterIP
    HEADLESS = "Headless"  # spec.clusterIP == "None"
    EXTERNAL_NAME = "ExternalName"


@dataclass(frozen=True, slots=True)
class Port:
    """A service or EndpointSlice port. ``name`` is ``""`` for an unnamed port.

    ``protocol`` is lower-case (``"tcp"``, ``"udp"``, ``"sctp"``) as SRV labels use it;
    ``port`` is ``-1`` where an EndpointSlice port leaves it unset (CoreDNS's sentinel:
    such a port gives no SRV record).
    """

    name: str
    protocol: str
    port: int


@dataclass(frozen=True, slots=True)
class Namespace:
    """A Namespace: only its existence matters (docs/behaviour.md section 9)."""

    name: str


@dataclass(frozen=True, slots=True)
class Service:
    """A Service as DNS sees it.

    ``cluster_ips``: canonical IPv4/IPv6 text from ``spec.clusterIPs`` (empty for headless
    and ExternalName); ``external_name``: absolute, lower-case, with a trailing dot, or
    ``""``; ``ports``: from ``spec.ports`` in order.

    What the cluster exposes (k8s_external, k8s_gateway; docs/exposed-names.md):
    ``external_ips``: canonical text of ``spec.externalIPs``; ``lb_ingress``:
    ``status.loadBalancer.ingress`` in order, each an IP (canonical text) or, for a
    ``hostname`` entry, an absolute lower-case name (ends with a dot, an IP never does);
    ``load_balancer``: ``spec.type`` is LoadBalancer.
    """

    namespace: str
    name: str
    kind: ServiceKind
    cluster_ips: tuple[str, ...] = ()
    ports: tuple[Port, ...] = ()
    external_name: str = ""
    external_ips: tuple[str, ...] = ()
    lb_ingress: tuple[str, ...] = ()
    load_balancer: bool = False

    @property
    def exposed(self) -> tuple[str, ...]:
        """Every external address in CoreDNS's order: ``spec.externalIPs`` then the load
        balancer's ingress (CoreDNS ``object.ToService`` ExternalIPs)."""
        return self.external_ips + self.lb_ingress


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One endpoint of an EndpointSlice.

    ``ready`` is True when ``conditions.ready`` is true or absent (CoreDNS
    ``endpointsliceReady``), or when ``ready`` is true while ``serving`` is false (a
    publishNotReadyAddresses slice written by hand; docs/behaviour.md section 3.1).
    ``hostname`` is ``""`` when unset; ``pod_name`` is the ``targetRef`` pod name, or ``""``.

    ``packed_addresses``: the addresses (canonical text), one address kept as the bare
    string (see :func:`pack`); read them as :attr:`addresses`. Given a tuple of one, the
    constructor keeps its string.
    """

    packed_addresses: str | tuple[str, ...]
    ready: bool
    hostname: str = ""
    pod_name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "packed_addresses", pack(self.packed_addresses))

    @property
    def addresses(self) -> tuple[str, ...]:
        """The addresses, in order: a tuple, usually of one."""
        packed = self.packed_addresses
        return (packed,) if isinstance(packed, str) else packed


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    """An EndpointSlice (discovery.k8s.io/v1). ``service`` is the value of the
    ``kubernetes.io/service-name`` label (``""`` if missing: such a slice serves nothing).
    ``family`` is 4 or 6 (FQDN slices are skipped by the converter).

    Multi-cluster services (KEP-1645): ``mc_service`` is the value of the
    ``multicluster.kubernetes.io/service-name`` label (the ServiceImport it backs) and
    ``cluster_id`` that of ``multicluster.kubernetes.io/source-cluster``; both ``""`` on
    an ordinary slice.
    """

    namespace: str
    name: str
    service: str
    family: int
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[Port, ...] = ()
    mc_service: str = ""
    cluster_id: str = ""


@dataclass(frozen=True, slots=True)
class Pod:
    """A Pod, reduced to what verified pod records, autopath and the traffic view need.

    ``ips``: canonical text of ``status.podIPs`` (``status.podIP`` first), kept packed
    (one IP as the bare string, :func:`pack`) in ``packed_ips``; given a tuple of one, the
    constructor keeps its string. ``deleting``: ``metadata.deletionTimestamp`` is set (such
    pods are ignored).

    Not kept: ``spec.hostname``/``spec.subdomain`` (a headless service's endpoint names
    come from its EndpointSlices' ``endpoints[].hostname``, which the EndpointSlice
    controller derives from them: Kubernetes DNS specification 2.4.1) and ``status.phase``
    (the API source lists pods with CoreDNS's field selector; manifests count any phase).
    No answer reads them; 100,000 pods held them at 2.4 MB (issue 19). CoreDNS's
    ``object.Pod`` keeps the same: name, namespace, IP, deleting.
    """

    namespace: str
    name: str
    packed_ips: str | tuple[str, ...] = ()
    deleting: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "packed_ips", pack(self.packed_ips))

    @property
    def ips(self) -> tuple[str, ...]:
        """The IPs, primary first: a tuple, usually of one (empty while unscheduled)."""
        packed = self.packed_ips
        return (packed,) if isinstance(packed, str) else packed


@dataclass(frozen=True, slots=True)
class ReadyEndpoint:
    """A ready address of a service, merged over all of its EndpointSlices.

    Built by the store: one per distinct address (duplicates across slices collapse, the
    first slice by name wins). ``ports`` are the ports of the slice it came from.
    """

    address: str
    family: int
    hostname: str
    pod_name: str
    ports: tuple[Port, ...]


class ImportKind(enum.Enum):
    """A ServiceImport's ``spec.type`` (KEP-1645, multicluster.x-k8s.io/v1alpha1)."""

    CLUSTERSET_IP = "ClusterSetIP"
    HEADLESS = "Headless"


@dataclass(frozen=True, slots=True)
class ServiceImport:
    """A ServiceImport (multicluster.x-k8s.io/v1alpha1): a service exported by the
    clusters of a clusterset, answered under ``clusterset.local`` (KEP-1645 DNS
    specification). ``ips``: canonical text of ``spec.ips`` (the ClusterSetIPs; empty for
    Headless); ``ports``: ``spec.ports`` in order.
    """

    namespace: str
    name: str
    kind: ImportKind
    ips: tuple[str, ...] = ()
    ports: tuple[Port, ...] = ()


@dataclass(frozen=True, slots=True)
class ClustersetEndpoint:
    """A ready address behind a ServiceImport, from the EndpointSlices labelled with its
    name; built by the store on demand, one per (cluster, address)."""

    cluster_id: str
    address: str
    family: int
    hostname: str
    ports: tuple[Port, ...]


# ---- what the cluster exposes (docs/exposed-names.md) ------------------------------------


@dataclass(frozen=True, slots=True)
class Ingress:
    """An Ingress (networking.k8s.io/v1), reduced to its names and addresses.

    ``hosts``: ``spec.rules[].host`` then ``spec.tls[].hosts``, absolute, lower-case, in
    order without repeats; a wildcard host keeps its ``*.`` label. ``addresses``:
    ``status.loadBalancer.ingress`` as in :attr:`Service.lb_ingress` (IP text, or an
    absolute name for a ``hostname`` entry); empty until the controller has set one.
    """

    namespace: str
    name: str
    hosts: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Gateway:
    """A Gateway (gateway.networking.k8s.io/v1): ``status.addresses`` of type IPAddress
    (canonical text) or Hostname (absolute name), in order; other types are dropped."""

    namespace: str
    name: str
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Route:
    """A Gateway API route: ``spec.hostnames`` (absolute, lower-case, ``*.`` kept) and
    the Gateways of ``spec.parentRefs`` as ``(namespace, name)`` (the route's namespace
    when the ref has none; refs of another kind than Gateway are dropped)."""

    namespace: str
    name: str
    hostnames: tuple[str, ...] = ()
    parents: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class HTTPRoute(Route):
    """An HTTPRoute (gateway.networking.k8s.io/v1)."""


@dataclass(frozen=True, slots=True)
class TLSRoute(Route):
    """A TLSRoute (gateway.networking.k8s.io/v1alpha2)."""


@dataclass(frozen=True, slots=True)
class GRPCRoute(Route):
    """A GRPCRoute (gateway.networking.k8s.io/v1)."""


Record = (
    Namespace | Service | EndpointSlice | Pod | Ingress | Gateway | HTTPRoute | TLSRoute | GRPCRoute
    | ServiceImport
)
