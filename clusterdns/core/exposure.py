"""Indexes of what the cluster exposes: host names of Ingresses and Gateway API routes.

Kept apart from :mod:`clusterdns.core.store`'s service/endpoint indexes: the store calls
:meth:`ExposureIndex.on_change` for the exposure kinds and nothing else touches them. Pure
(no I/O); mutated from the store's one thread, like the store.

Read by :mod:`clusterdns.plugins.k8s_gateway` (host -> objects) and by ``clusterdns resolve``'s
explanations. Host names are absolute and lower-case; a wildcard host is indexed under its
literal ``*.rest.`` form, which a query reaches by replacing its first label with ``*``
(k8s_gateway ``toWildcardQName``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .records import Gateway, Ingress, Route

EXPOSURE_KINDS = ("Ingress", "Gateway", "HTTPRoute", "TLSRoute", "GRPCRoute")
"""The kinds this index follows (API ``kind``)."""

HOST_KINDS = ("HTTPRoute", "TLSRoute", "GRPCRoute", "Ingress")

Owner = tuple[str, str, str]
"""``(kind, namespace, name)`` of an object that claims a host name."""


class ExposureIndex:
    """Host name -> the Ingresses and routes that claim it; Gateways by key.

    ``merged``: the store's merged objects by kind (read, never written here).
    """

    def __init__(self, merged: Mapping[str, Mapping[Any, Any]]) -> None:
        self._merged = merged
        self._hosts: dict[str, list[Owner]] = {}

    def on_change(self, kind: str, key: tuple[str, str], old: Any, new: Any) -> None:
        """Re-index one object of an exposure kind (``old``/``new``: None when absent)."""
        if kind == "Gateway":
            return  # looked up by key in the merged state: nothing derived
        owner = (kind, *key)
        for host in _hosts(old):
            owners = self._hosts.get(host)
            if owners is not None and owner in owners:
                owners.remove(owner)
                if not owners:
                    del self._hosts[host]
        for host in _hosts(new):
            owners = self._hosts.setdefault(host, [])
            if owner not in owners:
                owners.append(owner)
                owners.sort()

    def owners(self, host: str, kind: str) -> list[Ingress | Route]:
        """The objects of ``kind`` that claim ``host`` (absolute, lower-case, maybe
        ``*.``-prefixed), sorted by namespace and name."""
        objects = self._merged[kind]
        return [objects[(ns, name)] for k, ns, name in self._hosts.get(host, ()) if k == kind]

    def claimed(self, host: str) -> bool:
        """Whether any Ingress or route names ``host``."""
        return host in self._hosts

    def gateway(self, namespace: str, name: str) -> Gateway | None:
        """The Gateway ``namespace/name``, or None."""
        found = self._merged["Gateway"].get((namespace, name))
        return found if isinstance(found, Gateway) else None


def _hosts(record: Any) -> tuple[str, ...]:
    if isinstance(record, Ingress):
        return record.hosts
    if isinstance(record, Route):
        return record.hostnames
    return ()
