"""Service links: the environment variables the kubelet gives a pod about services.

Pure, no I/O. Follows the kubelet exactly:

- which services: ``getServiceEnvVarMap`` in kubernetes/kubernetes
  ``pkg/kubelet/kubelet_pods.go``. Only services with a ClusterIP set count
  (``IsServiceIPSet``: not ``None``, not empty; so headless and ExternalName services never
  do). The pod gets the ``kubernetes`` service of the master service namespace
  (``default``) always, and, with ``enableServiceLinks``, every service of its own
  namespace. A service named ``kubernetes`` in the pod's own namespace replaces the master
  one whichever the kubelet lists first (the master one is only added when the name is
  not taken; the namespace's own one is set unconditionally).
- which variables: ``FromServices`` and ``makeLinkVariables`` in
  ``pkg/kubelet/envvars/envvars.go``. For a service ``my-svc`` with ClusterIP ``IP``
  (``spec.clusterIP``, the primary one: ``clusterIPs[0]``) and ports ``P0, P1, ...``::

      MY_SVC_SERVICE_HOST=IP
      MY_SVC_SERVICE_PORT=<P0.port>
      MY_SVC_SERVICE_PORT_<NAME>=<port>          for each named port
      MY_SVC_PORT=<proto>://IP:<P0.port>         Docker link of the first port
      MY_SVC_PORT_<port>_<PROTO>=<proto>://IP:<port>
      MY_SVC_PORT_<port>_<PROTO>_PROTO=<proto>
      MY_SVC_PORT_<port>_<PROTO>_PORT=<port>
      MY_SVC_PORT_<port>_<PROTO>_ADDR=IP          for each port

  Names: upper case with ``-`` turned into ``_`` (``makeEnvVariableName``); the protocol
  is lower case in values and upper case in names. The URLs join host and port with Go's
  ``net.JoinHostPort``, so an IPv6 ClusterIP is bracketed there
  (``tcp://[fd00:10:96::1]:443``) and bare in ``_SERVICE_HOST`` and ``_ADDR``.

The kubelet builds its list from a Go map, so where two services would write the same
variable (only possible with contrived names such as ``a`` and ``a-port-80-tcp``) which one
wins is unspecified there; here services are taken in name order and the later one wins.
A ClusterIP service without ports cannot pass API validation (the kubelet would index
``Ports[0]`` and fail); here it gets ``_SERVICE_HOST`` only.
"""

from __future__ import annotations

from ..core.records import Service, ServiceKind
from ..core.store import Store

MASTER_SERVICES = ("kubernetes",)  # kubelet_pods.go masterServices


def env_name(name: str) -> str:
    """``makeEnvVariableName``: ``my-svc`` -> ``MY_SVC``."""
    return name.replace("-", "_").upper()


def _join_host_port(host: str, port: int) -> str:
    """Go ``net.JoinHostPort``: brackets around a host that contains a colon."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _has_cluster_ip(service: Service) -> bool:
    """``IsServiceIPSet``: ClusterIP neither ``None`` (headless) nor empty (ExternalName)."""
    return service.kind is ServiceKind.CLUSTER_IP and bool(service.cluster_ips)


def service_variables(service: Service) -> dict[str, str]:
    """The variables of one service (``FromServices`` for a list of one); empty when it has
    no ClusterIP."""
    if not _has_cluster_ip(service):
        return {}
    prefix = env_name(service.name)
    ip = service.cluster_ips[0]
    env = {f"{prefix}_SERVICE_HOST": ip}
    if not service.ports:
        return env
    env[f"{prefix}_SERVICE_PORT"] = str(service.ports[0].port)
    for port in service.ports:
        if port.name:
            env[f"{prefix}_SERVICE_PORT_{env_name(port.name)}"] = str(port.port)
    for index, port in enumerate(service.ports):
        proto = (port.protocol or "tcp").lower()
        url = f"{proto}://{_join_host_port(ip, port.port)}"
        if index == 0:
            env[f"{prefix}_PORT"] = url  # Docker special-cases the first port
        link = f"{prefix}_PORT_{port.port}_{proto.upper()}"
        env[link] = url
        env[f"{link}_PROTO"] = proto
        env[f"{link}_PORT"] = str(port.port)
        env[f"{link}_ADDR"] = ip
    return env


def linked_services(
    store: Store,
    namespace: str,
    *,
    master_namespace: str = "default",
    enable_service_links: bool = True,
) -> list[Service]:
    """The services whose variables a pod in ``namespace`` gets, sorted by name
    (``getServiceEnvVarMap``'s ``serviceMap``)."""
    namespace = namespace.lower()
    master_namespace = master_namespace.lower()
    chosen: dict[str, Service] = {}
    for (ns, name), service in sorted(store.services.items()):
        if not _has_cluster_ip(service):
            continue
        if ns == master_namespace and name in MASTER_SERVICES:
            chosen.setdefault(name, service)
        elif ns == namespace and enable_service_links:
            chosen[name] = service
    return [chosen[name] for name in sorted(chosen)]


def service_env(
    store: Store,
    namespace: str,
    *,
    master_namespace: str = "default",
    enable_service_links: bool = True,
) -> dict[str, str]:
    """The service environment variables of a pod in ``namespace``: name -> value.

    ``master_namespace``: where the ``kubernetes`` service lives (the kubelet's
    ``default``); ``enable_service_links``: the pod's ``spec.enableServiceLinks`` (the
    Kubernetes default, True); when False only the master service's variables remain.
    Reads ``store.services`` only; never raises for any store content.
    """
    env: dict[str, str] = {}
    for service in linked_services(
        store,
        namespace,
        master_namespace=master_namespace,
        enable_service_links=enable_service_links,
    ):
        env.update(service_variables(service))
    return env
