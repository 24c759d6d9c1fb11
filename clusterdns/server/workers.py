"""Several worker processes on one port (``serve --workers N``, the ``workers`` option).

Each worker is a fork of this process serving the same addresses through SO_REUSEPORT
(the kernel spreads queries over them), with its own sources and store. The parent waits
for them, passes signals on (:func:`.signals.pass_on`) and returns the worst exit status.
Each worker asks the kernel for SIGTERM when the parent dies (Linux PR_SET_PDEATHSIG), so
no orphan keeps serving old data on the shared port (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Protocol, TypeVar

from ..corefile.config import ServerConfig
from . import signals

log = logging.getLogger("clusterdns")

PR_SET_PDEATHSIG = 1  # linux/prctl.h


class WorkerOptions(Protocol):
    """What the workers need of the command-line options (:class:`.app.Options`)."""

    workers: int  # how many processes
    worker: int  # this process's index among them, set in each child


OptionsT = TypeVar("OptionsT", bound=WorkerOptions)


def run_workers(
    servers: list[ServerConfig],
    options: OptionsT,
    run_one: Callable[[list[ServerConfig], OptionsT], int],
) -> int:
    """Fork ``options.workers`` processes, each calling ``run_one(servers, options)`` with
    its own ``options.worker`` index, and wait for them; returns the worst exit status
    (0-255). A block on port 0 gets one free port first: every worker must bind the same.
    """
    for server in servers:
        if server.port == 0:
            server.port = free_port(server.bind[0] if server.bind else "0.0.0.0")
    children = []
    parent = os.getpid()
    for index in range(options.workers):
        pid = os.fork()
        if pid == 0:
            options.worker = index
            code = 1
            try:
                die_with_parent(parent)
                code = run_one(servers, options)
            finally:
                os._exit(code)
        children.append(pid)
    signals.pass_on(children)
    worst = 0
    for child in children:
        _, status = os.waitpid(child, 0)
        worst = max(worst, os.waitstatus_to_exitcode(status) & 0xFF)
    return worst


def die_with_parent(parent: int) -> None:
    """Ask the kernel to send this worker SIGTERM when its parent dies (Linux
    PR_SET_PDEATHSIG, prctl(2)), so that no orphan keeps serving old data on the shared
    port after the parent is killed; exit at once if the parent is already gone."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("workers: prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != parent:
        os._exit(0)


def free_port(host: str) -> int:
    """A port free for both UDP and TCP on ``host`` (an IPv4 or IPv6 address), for workers
    that must all bind the same one. Raises OSError if ``host`` cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as udp, socket.socket(family) as tcp:
        tcp.bind((host, 0))
        port = int(tcp.getsockname()[1])
        udp.bind((host, port))
        return port
