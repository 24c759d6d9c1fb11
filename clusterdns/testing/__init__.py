"""A cluster DNS for other projects' test suites: an in-process clusterdns and a pytest plugin.

:class:`ClusterDNS` serves Kubernetes objects the test gives it (dicts as ``kubectl``
writes them, or manifest files) on 127.0.0.1 at an ephemeral port, UDP and TCP, from a
background thread with its own asyncio loop. It is the real server: the project's
:class:`~clusterdns.core.store.Store`, :func:`~clusterdns.core.convert.convert`, the
manifest loader, :class:`~clusterdns.plugins.chain.Handler` and
:class:`~clusterdns.server.transport.DNSServer`.

May import anything in the package; dnspython (the resolver it hands to tests).

The pytest plugin (entry point ``pytest11``: ``clusterdns = "clusterdns.testing"``, so it
loads in every pytest run once clusterdns is installed; from a checkout that is not
installed, ``-p clusterdns.testing``, but not both: it would be registered twice) provides:

- the ``clusterdns`` fixture: a started :class:`ClusterDNS`, stopped after the test, serving
  what ``@pytest.mark.clusterdns(manifests=[...], objects=[...], zone=..., ttl=..., pods=...,
  gateway_zone=..., external_zone=..., clusterset_zone=...)`` gives (on the test, its class
  or its module); relative manifest paths are taken from the test file's directory;
- the ``clusterdns_factory`` fixture: ``clusterdns_factory(**options)`` starts another one
  with those options (same path rule); all are stopped after the test.

Pytest loads this module in every run, so at import it takes only the standard library and
pytest (loaded already) and :mod:`clusterdns.core.defaults`; the server's modules load on
first use, dnspython only in :meth:`ClusterDNS.resolver`.
It has no assertions for pytest to rewrite: PYTEST_DONT_REWRITE.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..core import defaults  # constants only: no imports of its own
from .server import DEFAULT_OBJECTS, ClusterDNS, convert_objects, load_manifests

__all__ = ["DEFAULT_OBJECTS", "ClusterDNS", "convert_objects", "load_manifests"]

# ---- the pytest plugin ---------------------------------------------------------------------

MARKER = (
    f"clusterdns(manifests=(), objects=(), zone={defaults.CLUSTER_DOMAIN!r}, "
    f"ttl={defaults.TTL}, pods='insecure', gateway_zone=(), external_zone=(), "
    "clusterset_zone=()): what the "
    "clusterdns fixture serves (relative manifest paths from the test file's directory)"
)


def _with_paths(options: dict[str, Any], base: Path) -> dict[str, Any]:
    """``options`` with relative ``manifests`` paths taken from ``base``."""
    manifests = options.get("manifests")
    if manifests is None:
        return options
    if isinstance(manifests, (str, Path)):
        manifests = [manifests]
    return {**options, "manifests": [base / Path(p) for p in manifests]}


try:
    import pytest
except ImportError:  # used as a library without pytest: no plugin, ClusterDNS still works
    pass
else:

    def pytest_configure(config: pytest.Config) -> None:
        """Register the ``clusterdns`` marker."""
        config.addinivalue_line("markers", MARKER)

    @pytest.fixture
    def clusterdns_factory(
        request: pytest.FixtureRequest,
    ) -> Iterator[Callable[..., ClusterDNS]]:
        """``clusterdns_factory(**options) -> ClusterDNS``: start a server with the options
        of :class:`ClusterDNS` (relative manifest paths from the test file's directory);
        every one started is stopped after the test."""
        started: list[ClusterDNS] = []
        base = Path(request.path).parent

        def factory(**options: Any) -> ClusterDNS:
            server = ClusterDNS(**_with_paths(options, base))
            server.start()
            started.append(server)
            return server

        yield factory
        failures: list[Exception] = []
        for server in reversed(started):
            try:
                server.stop()
            except Exception as exc:  # stop the others all the same
                failures.append(exc)
        if failures:
            raise failures[0]

    @pytest.fixture
    def clusterdns(
        request: pytest.FixtureRequest, clusterdns_factory: Callable[..., ClusterDNS]
    ) -> ClusterDNS:
        """A started :class:`ClusterDNS` serving what ``@pytest.mark.clusterdns(...)`` gives
        (the closest marker: test, class or module), or just :data:`DEFAULT_OBJECTS`."""
        marker = request.node.get_closest_marker("clusterdns")
        if marker is None:
            return clusterdns_factory()
        if marker.args:
            raise TypeError(
                "@pytest.mark.clusterdns takes keyword arguments only: "
                "manifests=[...], objects=[...], zone=, ttl=, pods=, gateway_zone=, "
                "external_zone=, clusterset_zone="
            )
        return clusterdns_factory(**marker.kwargs)
