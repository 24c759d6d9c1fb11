"""``/health`` and ``/ready`` over HTTP (CoreDNS health and ready plugins).

``/health`` answers 200 ``OK`` while the process serves (the liveness probe), also during
the lameduck period on shutdown. ``/ready`` answers 200 ``OK`` once every source has
synced and the server is not shutting down; otherwise 503 with the names of what is not
ready, one per line (the readiness probe). Each runs in a daemon thread on the standard
library's HTTP server, so a busy event loop never fails a probe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..core.names import split_hostport


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve_http(address: str, routes: dict[str, Callable[[], tuple[int, str]]]) -> Any:
    """Serve GET ``routes`` (path -> function giving (status, body)) on ``host:port``.

    Returns the server (``shutdown()`` then ``server_close()`` stop it; ``server_address``
    has the bound port). Raises OSError if it cannot bind, ValueError for an ``address``
    that is not ``HOST:PORT`` (:func:`~clusterdns.core.names.split_hostport`).
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = routes.get(self.path.split("?", 1)[0])
            status, body = route() if route else (404, "404 page not found\n")
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # probes are not news
            pass

    host, port = split_hostport(address)
    server = _Server((host or "0.0.0.0", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name=f"http{address}").start()
    return server


class Readiness:
    """What ``/ready`` reports: named checks that must all pass, and shutdown."""

    def __init__(self) -> None:
        self.checks: dict[str, Callable[[], bool]] = {}
        self.shutting_down = False

    def not_ready(self) -> list[str]:
        """Names of the checks that fail now (``lameduck`` while shutting down)."""
        names = [name for name, ok in self.checks.items() if not ok()]
        return ["lameduck", *names] if self.shutting_down else names

    def route(self) -> tuple[int, str]:
        """The ``/ready`` answer."""
        missing = self.not_ready()
        return (503, "\n".join(missing) + "\n") if missing else (200, "OK")


def health_route() -> tuple[int, str]:
    """The ``/health`` answer: the process is up and serving."""
    return 200, "OK"
