"""Several worker processes on one port (``serve --workers N``, the ``workers`` option).

Each worker is a fork of this process serving the same addresses through SO_REUSEPORT
(the kernel spreads queries over them), with its own sources and store (so N times the
store's memory and N sets of API watches). ``--workers auto`` is one worker per usable
CPU (:func:`usable_cpus`), the image's default. The parent waits
for them, passes signals on (:func:`.signals.pass_on`) and returns the worst exit status.
Each worker asks the kernel for SIGTERM when the parent dies (Linux PR_SET_PDEATHSIG), so
no orphan keeps serving old data on the shared port (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import logging
import math
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


def usable_cpus(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """How many CPUs this process may keep busy: the CPUs its affinity mask allows
    (``sched_getaffinity``: cpusets, ``taskset``, Kubernetes' static CPU manager), at most
    its cgroup's CPU quota rounded up (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us``: a container's ``resources.limits.cpu``); at least 1. What
    ``--workers auto`` resolves to. ``cgroup_root``: where the cgroup tree is mounted."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


WORKER_MEMORY = 256 * 1024 * 1024  # bytes of the memory limit ``auto`` allows per worker


def auto_workers(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """What ``--workers auto`` resolves to: one per usable CPU (:func:`usable_cpus`), and at
    most one per :data:`WORKER_MEMORY` bytes of the container's memory limit (cgroup v2
    ``memory.max``, v1 ``memory.limit_in_bytes``), at least 1. Each worker holds its own
    copy of the cluster (about 150 MB at 10,000 services and 100,000 pods,
    docs/performance.md), so CoreDNS's 170Mi limit, which an image swap keeps, runs one."""
    workers = usable_cpus(cgroup_root)
    limit = cgroup_memory_limit(cgroup_root)
    if limit is not None:
        workers = min(workers, limit // WORKER_MEMORY)
    return max(1, workers)


def cgroup_memory_limit(root: str = "/sys/fs/cgroup") -> int | None:
    """This process's cgroup memory limit in bytes, or None when it has none or it cannot
    be read: cgroup v2 ``memory.max`` of its own group (else the root as a container sees
    it), v1 ``memory/memory.limit_in_bytes`` (a value of 2**60 or more means none)."""
    own = ""
    with contextlib.suppress(OSError), open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                own = line[3:].strip().strip("/")
    for path in dict.fromkeys(
        [os.path.join(root, own, "memory.max"), os.path.join(root, "memory.max")]
    ):
        with contextlib.suppress(OSError, ValueError), open(path) as f:
            text = f.read().strip()
            return None if text == "max" else int(text)
    with contextlib.suppress(OSError, ValueError):
        with open(os.path.join(root, "memory", "memory.limit_in_bytes")) as f:
            value = int(f.read())
        return None if value >= 2**60 else value
    return None


def cgroup_cpu_quota(root: str = "/sys/fs/cgroup") -> float | None:
    """This process's cgroup CPU limit in CPUs (1.5 for ``150000 100000``), or None when
    it has none or it cannot be read. cgroup v2: ``cpu.max`` of the process's own group
    (``0::/path`` in /proc/self/cgroup), else of the root as a container sees it; v1:
    ``cpu/cpu.cfs_quota_us`` over ``cpu/cpu.cfs_period_us`` (-1: no limit)."""
    own = ""
    with contextlib.suppress(OSError), open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                own = line[3:].strip().strip("/")
    for path in dict.fromkeys([os.path.join(root, own, "cpu.max"), os.path.join(root, "cpu.max")]):
        with contextlib.suppress(OSError, ValueError):
            with open(path) as f:
                quota, period = f.read().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
    with contextlib.suppress(OSError, ValueError):
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as f:
            quota_us = int(f.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as f:
            period_us = int(f.read())
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    return None


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
