"""The API resources clusterdns lists and watches: kind, collection path, RBAC names.

The four kinds every cluster zone needs (Namespaces, Services, EndpointSlices, Pods) and
the exposure kinds a k8s_gateway directive reads (Ingress and the Gateway API kinds:
:data:`EXPOSURE_RESOURCES`), and ServiceImports for a multicluster directive
(:data:`MULTICLUSTER_RESOURCES`). Paths and groups as the Kubernetes API serves them
(https://kubernetes.io/docs/reference/using-api/api-concepts/); the Gateway API kinds
are CRDs (https://gateway-api.sigs.k8s.io/), absent from a cluster that did not install
them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    """An API resource to list and watch: its kind, collection path and RBAC names.

    ``kind``: the object kind (``"Service"``); ``path``: the cluster-scope collection URL
    path (``/api/v1/services``); ``group``/``plural``: the RBAC API group (``""`` for the
    core group) and resource name, for the permission-denied message; ``field_selector``:
    sent with every LIST and WATCH (empty: none); ``optional``: a CRD that may not be
    installed, so that 404 means "none of them".
    """

    kind: str
    path: str
    group: str
    plural: str
    field_selector: str = ""
    optional: bool = False


NAMESPACES = Resource("Namespace", "/api/v1/namespaces", "", "namespaces")
SERVICES = Resource("Service", "/api/v1/services", "", "services")
ENDPOINTSLICES = Resource(
    "EndpointSlice",
    "/apis/discovery.k8s.io/v1/endpointslices",
    "discovery.k8s.io",
    "endpointslices",
)
PODS = Resource(
    "Pod",
    "/api/v1/pods",
    "",
    "pods",
    "status.phase!=Succeeded,status.phase!=Failed,status.phase!=Unknown",
)

GATEWAY_API = "gateway.networking.k8s.io"

# What the cluster exposes (k8s_gateway): listed and watched only when a directive reads
# them. The Gateway API kinds are CRDs; a cluster without them answers 404.
EXPOSURE_RESOURCES = {
    r.kind: r
    for r in (
        Resource(
            "Ingress", "/apis/networking.k8s.io/v1/ingresses", "networking.k8s.io", "ingresses"
        ),
        Resource(
            "Gateway",
            "/apis/gateway.networking.k8s.io/v1/gateways",
            GATEWAY_API,
            "gateways",
            optional=True,
        ),
        Resource(
            "HTTPRoute",
            "/apis/gateway.networking.k8s.io/v1/httproutes",
            GATEWAY_API,
            "httproutes",
            optional=True,
        ),
        Resource(
            "GRPCRoute",
            "/apis/gateway.networking.k8s.io/v1/grpcroutes",
            GATEWAY_API,
            "grpcroutes",
            optional=True,
        ),
        Resource(
            "TLSRoute",
            "/apis/gateway.networking.k8s.io/v1alpha2/tlsroutes",
            GATEWAY_API,
            "tlsroutes",
            optional=True,
        ),
    )
}

MULTICLUSTER_API = "multicluster.x-k8s.io"

# Multi-cluster services (KEP-1645; a multicluster directive): a CRD, listed and watched
# only when a directive reads it; a cluster without it answers 404.
MULTICLUSTER_RESOURCES = {
    "ServiceImport": Resource(
        "ServiceImport",
        "/apis/multicluster.x-k8s.io/v1alpha1/serviceimports",
        MULTICLUSTER_API,
        "serviceimports",
        optional=True,
    ),
}

OPTIONAL_RESOURCES = {**EXPOSURE_RESOURCES, **MULTICLUSTER_RESOURCES}
"""Every kind a plugin may ask the live source for (``Plugin.kinds``), by kind."""
