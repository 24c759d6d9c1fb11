"""The in-process server behind the pytest plugin: :class:`ClusterDNS` and its helpers.

It serves Kubernetes objects a test gives it (dicts as ``kubectl`` writes them, or manifest
files) on 127.0.0.1 at an ephemeral port, UDP and TCP, from a background thread with its
own asyncio loop, with the project's real store, converter, manifest loader, handler and
transports. Imported by :mod:`clusterdns.testing` (the plugin) and usable without pytest.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..core import defaults  # constants only: no imports of its own

if TYPE_CHECKING:
    import dns.resolver

    from ..core.records import Record
    from ..core.resolver import ZoneConfig
    from ..core.store import Key, Store
    from ..server.transport import DNSServer

__all__ = ["DEFAULT_OBJECTS", "ClusterDNS", "convert_objects", "load_manifests"]

SOURCE = "testing"  # the store source every object of a ClusterDNS belongs to
HOST = "127.0.0.1"
CALL_TIMEOUT = 10.0  # seconds to wait for the loop thread to start, change or stop
RESOLVER_TIMEOUT = 2.0  # seconds per query try (dnspython Resolver.timeout)
RESOLVER_LIFETIME = 5.0  # seconds per resolve() call, search list included

T = TypeVar("T")


def _namespace(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
    }


DEFAULT_OBJECTS: tuple[Mapping[str, Any], ...] = (
    _namespace("default"),
    _namespace("kube-node-lease"),
    _namespace("kube-public"),
    _namespace("kube-system"),
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "clusterIP": "10.96.0.1",
            "clusterIPs": ["10.96.0.1"],
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
            "type": "ClusterIP",
        },
    },
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kube-dns",
            "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"},
        },
        "spec": {
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
            ],
            "type": "ClusterIP",
        },
    },
)
"""What every :class:`ClusterDNS` starts with, as a fresh kubeadm/kind cluster has it: the
namespaces ``default``, ``kube-node-lease``, ``kube-public``, ``kube-system``, the
``kubernetes`` service (10.96.0.1, https 443) and ``kube-dns`` (10.96.0.10, 53 UDP/TCP,
9153). Manifests and objects given to it override these (same kind, namespace, name)."""


def _unwrap(objects: Iterable[Any]) -> Iterator[Mapping[str, Any]]:
    """Objects with ``kind: List`` / ``ServiceList`` ... wrappers opened (items without a kind
    take it from the list, as the API writes them). TypeError for a non-mapping."""
    from ..core.convert import unwrap_lists

    for obj in unwrap_lists(objects):
        if not isinstance(obj, Mapping):
            raise TypeError(f"not a Kubernetes object (a mapping with a kind): {obj!r:.80}")
        yield obj


def convert_objects(objects: Iterable[Mapping[str, Any]]) -> list[Record]:
    """Kubernetes object dicts -> records, in order.

    Objects of kinds clusterdns does not serve (Deployment, ConfigMap, ...) are skipped, as
    the manifest loader skips them. Raises ValueError naming the object for an invalid one
    (``Service shop/web: spec.ports[1].port: not an integer``; also for a missing kind) and
    TypeError for something that is not a mapping.
    """
    from ..core.convert import CONVERTERS, convert_or_error

    records: list[Record] = []
    for obj in _unwrap(objects):
        kind = obj.get("kind")
        if isinstance(kind, str) and kind and kind not in CONVERTERS:
            continue
        record, error = convert_or_error(obj)
        if error:
            raise ValueError(error)
        if record is not None:
            records.append(record)
    return records


def load_manifests(paths: Sequence[str | Path]) -> list[Record]:
    """The records of manifest files and directories (searched recursively for ``*.yaml``,
    ``*.yml``, ``*.json``), in file order.

    Raises FileNotFoundError for a missing path and ValueError listing every error line
    (``zones/shop.yaml: Service shop/web: ...``) when any file or object is invalid.
    """
    from ..sources.manifests import load_file, manifest_files

    records: list[Record] = []
    errors: list[str] = []
    for path in manifest_files([Path(p) for p in paths]):
        result = load_file(path)
        errors.extend(result.errors)
        records.extend(result.records)
    if errors:
        raise ValueError("invalid manifests:\n  " + "\n  ".join(errors))
    return records


class ClusterDNS:
    """An in-process clusterdns on 127.0.0.1 at an ephemeral port (UDP and TCP), answering
    from objects the test gives it, in a background thread with its own asyncio loop.

    ``manifests``: files or directories of Kubernetes manifests (relative paths from the
    current directory); ``objects``: object dicts as ``kubectl get -o json`` writes them
    (``kind: List`` wrappers too). Both are served on top of :data:`DEFAULT_OBJECTS`, later
    ones replacing earlier ones with the same kind, namespace and name. ``zone``: the
    cluster domain; ``ttl``: answer TTL in seconds (0-3600); ``pods``: ``insecure``,
    ``verified`` or ``disabled`` (CoreDNS ``pods``). ``gateway_zone``/``external_zone``:
    a zone (or several) answered like CoreDNS's k8s_gateway (Ingress hosts, Gateway API
    route hostnames, LoadBalancer Services) and k8s_external (Services' external IPs) do,
    with their default options (docs/exposed-names.md); objects may then include Ingress,
    Gateway, HTTPRoute, TLSRoute and GRPCRoute. ``clusterset_zone``: a zone (KEP-1645 says
    ``clusterset.local``) answered like CoreDNS's multicluster plugin from ServiceImports
    and the EndpointSlices labelled ``multicluster.kubernetes.io/service-name``. Names
    outside these zones, the cluster zone and the reverse zones are answered REFUSED:
    there is no upstream.

    Invalid objects or manifests raise ValueError (naming the object) here, before anything
    starts; a missing manifest path raises FileNotFoundError.

    :meth:`start` / :meth:`stop`, or use it as a context manager. :attr:`host`,
    :attr:`port` and :attr:`address` (``"127.0.0.1:PORT"``) are set once started. All
    methods may be called from any thread except the server's own; changes run on the
    server's loop thread (the store has one writer) and return when done.
    """

    def __init__(
        self,
        *,
        manifests: Sequence[str | Path] = (),
        objects: Sequence[Mapping[str, Any]] = (),
        zone: str = defaults.CLUSTER_DOMAIN,
        ttl: int = defaults.TTL,
        pods: str = "insecure",
        gateway_zone: str | Sequence[str] = (),
        external_zone: str | Sequence[str] = (),
        clusterset_zone: str | Sequence[str] = (),
    ) -> None:
        from ..core.resolver import PodMode, ZoneConfig
        from ..plugins.k8s_external import ExternalConfig
        from ..plugins.k8s_gateway import GatewayConfig
        from ..plugins.multicluster import MulticlusterConfig

        self.zone = zone.strip().strip(".").lower()
        if not self.zone:
            raise ValueError(f"zone: not a domain name: {zone!r}")
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= 3600:
            raise ValueError(f"ttl: want an integer from 0 to 3600 seconds, got {ttl!r}")
        try:
            mode = PodMode(pods)
        except ValueError:
            choices = "|".join(m.value for m in PodMode)
            raise ValueError(f"pods: want {choices}, got {pods!r}") from None
        if isinstance(manifests, (str, Path)):
            manifests = [manifests]
        self.config: ZoneConfig = ZoneConfig(
            zones=(f"{self.zone}.", "in-addr.arpa.", "ip6.arpa."),
            ttl=ttl,
            pods=mode,
            ns_addresses=(HOST,),
        )
        gateway = _zones("gateway_zone", gateway_zone)
        external = _zones("external_zone", external_zone)
        self.gateway = GatewayConfig(gateway, ns_addresses=(HOST,)) if gateway else None
        self.external = (
            ExternalConfig(external, ns_addresses=(HOST,), namespaces=self.config.namespaces)
            if external
            else None
        )
        clusterset = _zones("clusterset_zone", clusterset_zone)
        self.clusterset = MulticlusterConfig(clusterset) if clusterset else None
        self.zones = self.config.zones + gateway + external + clusterset
        self._initial = [
            *convert_objects(DEFAULT_OBJECTS),
            *load_manifests(manifests),
            *convert_objects(objects),
        ]
        self.host = HOST
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: DNSServer | None = None
        self._store: Store | None = None
        self._objects: dict[str, dict[Key, Record]] = {}  # what the source holds, by kind
        self._stopped = False

    # ---- lifecycle ------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``"127.0.0.1:PORT"`` (the port is 0 until started)."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._server is not None

    def start(self) -> None:
        """Start the loop thread, load the objects and bind UDP and TCP on one ephemeral
        port; return once the server answers.

        Raises RuntimeError if already started or stopped (a ClusterDNS runs once), OSError
        if it cannot bind.
        """
        if self._thread is not None or self._stopped:
            raise RuntimeError(f"{self!r}: start() may be called once")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=_run_loop, args=(loop,), name="clusterdns-testing", daemon=True
        )
        self._loop, self._thread = loop, thread
        thread.start()
        try:
            self._wait(self._serve())
        except BaseException:
            self.stop()
            raise

    async def _serve(self) -> None:
        from ..core.store import KINDS, Store, record_key
        from ..corefile.config import ServerConfig
        from ..server.blocks import build_block
        from ..server.transport import DNSServer

        store = Store()
        store.add_source(SOURCE, synced=True)
        self._objects = {kind: {} for kind in KINDS}
        for record in self._initial:  # the last one of a key wins
            self._objects[type(record).__name__][record_key(record)] = record
        now = time.time()
        for kind, objects in self._objects.items():
            store.replace(SOURCE, kind, objects.values(), now)
        plugins: dict[str, Any] = {"kubernetes": self.config}
        if self.gateway is not None:
            plugins["k8s_gateway"] = self.gateway
        if self.external is not None:
            plugins["k8s_external"] = self.external
        if self.clusterset is not None:
            plugins["multicluster"] = self.clusterset
        block = ServerConfig(self.zones, 0, (self.host,), plugins=plugins)
        handler = build_block(block, store, defaults.CACHE_SIZE).handler
        server = DNSServer(handler, self.host, 0)
        await server.start()
        self._store, self._server, self.port = store, server, server.port

    def stop(self) -> None:
        """Close the listeners and end the loop thread. Idempotent; never raises for a
        server that already stopped."""
        loop, thread, server = self._loop, self._thread, self._server
        self._stopped = True
        if loop is None or thread is None:
            return
        try:
            if server is not None and thread.is_alive():
                self._wait(server.stop())
        finally:
            self._server = None
            if thread.is_alive():
                loop.call_soon_threadsafe(loop.stop)
                thread.join(CALL_TIMEOUT)
            self._loop = None

    def __enter__(self) -> ClusterDNS:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else ("stopped" if self._stopped else "not started")
        return f"<ClusterDNS {self.address} zone={self.zone} {state}>"

    # ---- running things on the loop thread ------------------------------------------------

    def _wait(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop thread and return its result (its exception raised
        here). TimeoutError after :data:`CALL_TIMEOUT` seconds."""
        loop = self._loop
        if loop is None or self._thread is None or not self._thread.is_alive():
            coro.close()
            raise RuntimeError(f"{self!r}: not running (call start() or use `with`)")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(f"{self!r}: cannot wait for itself on its own loop thread")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(CALL_TIMEOUT)

    def _call(self, fn: Callable[[Store], T]) -> T:
        """Call ``fn(store)`` on the loop thread (where the store may change) and return
        its result. RuntimeError if not running."""

        async def call() -> T:
            if self._store is None:
                raise RuntimeError(f"{self!r}: not running")
            return fn(self._store)

        return self._wait(call())

    # ---- changing the cluster -------------------------------------------------------------

    def apply(self, *objects: Mapping[str, Any]) -> None:
        """Add or change Kubernetes objects (dicts as kubectl writes them; each replaces the
        object of the same kind, namespace and name, as ``kubectl apply`` of a whole
        object would). Returns once the server answers from them.

        All objects are checked before any is applied: ValueError naming the first invalid
        one, and nothing changes. Kinds clusterdns does not serve are ignored.
        """
        from ..core.store import record_key

        records = convert_objects(objects)

        def upsert(store: Store) -> None:
            now = time.time()
            for record in records:
                store.upsert(SOURCE, record, now)
                self._objects[type(record).__name__][record_key(record)] = record

        self._call(upsert)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete one object: ``kind`` is ``Namespace``, ``Service``, ``EndpointSlice`` or
        ``Pod``; ``namespace`` is ``""`` for a Namespace (and means ``default`` for the
        others, as for kubectl). Deleting a Namespace deletes the objects in it, as the
        namespace controller does. Returns once the server answers without it.

        Raises ValueError for another kind, KeyError when there is no such object.
        """
        from ..core.store import KINDS

        if kind not in KINDS:
            raise ValueError(f"kind: not one of {', '.join(KINDS)}: {kind!r}")
        ns = namespace.lower() if kind == "Namespace" else (namespace.lower() or "default")
        key: Key = name.lower() if kind == "Namespace" else (ns, name.lower())

        def remove(store: Store) -> bool:
            if self._objects[kind].pop(key, None) is None:
                return False
            now = time.time()
            store.delete(SOURCE, kind, key, now)
            if kind == "Namespace":
                for other in ("Service", "EndpointSlice", "Pod"):
                    inside = [k for k in self._objects[other] if k[0] == key]
                    for each in inside:
                        del self._objects[other][each]
                        store.delete(SOURCE, other, each, now)
            return True

        if not self._call(remove):
            where = name if kind == "Namespace" else f"{ns}/{name}"
            raise KeyError(f"{kind} {where}: not found")

    # ---- what a pod sees ------------------------------------------------------------------

    def resolv_conf(self, namespace: str, **kw: Any) -> str:
        """The resolv.conf text the kubelet writes for a ClusterFirst pod in ``namespace``,
        with ``nameserver 127.0.0.1``. ``kw``: the other arguments of
        :func:`clusterdns.core.search.pod_resolv_conf` (``searches``, ``options``, ``policy``,
        ``host``, ...). A real resolv.conf cannot carry a port: the server is on
        :attr:`port`, so point a resolver at it yourself (or use :meth:`resolver`).
        """
        from ..core.search import pod_resolv_conf

        kw.setdefault("cluster_domain", self.zone)
        kw.setdefault("nameservers", (HOST,))
        return pod_resolv_conf(namespace.lower(), **kw).text()

    def resolver(
        self, namespace: str = "default", *, search: Sequence[str] = (), ndots: int = 5
    ) -> dns.resolver.Resolver:
        """A dnspython resolver configured as a pod in ``namespace`` would be: nameserver
        127.0.0.1 on :attr:`port`, the pod's search list (``<ns>.svc.<zone> svc.<zone>
        <zone>``, then ``search``: the pod's ``dnsConfig.searches``), ``ndots`` (default 5),
        search list used for relative names; 2 s per try, 5 s per ``resolve()``, no cache.

        A relative name that matches nothing ends with the bare name, which is outside the
        cluster zone and REFUSED here (no upstream): dnspython raises ``NoNameservers``
        then, where a real cluster's upstream would say NXDOMAIN. Ask for an absolute name
        (trailing dot) to see NXDOMAIN. Needs dnspython (``pip install dnspython``);
        RuntimeError if not started.
        """
        try:
            import dns.name
            import dns.resolver
        except ImportError as exc:  # pragma: no cover - dnspython is a test dependency
            raise ImportError(
                "ClusterDNS.resolver() needs dnspython: pip install dnspython"
            ) from exc
        from ..core.search import pod_resolv_conf

        if not self.running:
            raise RuntimeError(f"{self!r}: not running (call start() or use `with`)")
        conf = pod_resolv_conf(
            namespace.lower(),
            cluster_domain=self.zone,
            nameservers=(HOST,),
            searches=search,
            options=(f"ndots:{ndots}",),
        )
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = list(conf.nameservers)
        resolver.port = self.port
        resolver.search = [dns.name.from_text(domain) for domain in conf.search]
        resolver.domain = dns.name.root
        resolver.ndots = conf.ndots
        resolver.use_search_by_default = True
        resolver.timeout = RESOLVER_TIMEOUT
        resolver.lifetime = RESOLVER_LIFETIME
        resolver.cache = None
        return resolver

    def env(self, namespace: str = "default") -> dict[str, str]:
        """The service environment variables the kubelet gives a pod in ``namespace``
        (``enableServiceLinks: true``): see :func:`clusterdns.tools.servicelinks.service_env`."""
        from ..tools.servicelinks import service_env

        return self._call(lambda store: service_env(store, namespace))


def _zones(option: str, value: str | Sequence[str]) -> tuple[str, ...]:
    """``"example.org"`` or a list of them -> absolute lower-case zones; ValueError."""
    names = [value] if isinstance(value, str) else list(value)
    out = []
    for name in names:
        zone = name.strip().strip(".").lower() if isinstance(name, str) else ""
        if not zone:
            raise ValueError(f"{option}: not a domain name: {name!r}")
        out.append(zone + ".")
    return tuple(out)


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    """The loop thread: run until stopped, then cancel what is left and close the loop."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
