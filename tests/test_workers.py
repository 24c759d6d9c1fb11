"""``--workers N|auto``: how many worker processes (server/workers.py, tools/arguments.py).

``auto`` is one per CPU this process may use: its affinity mask, capped by its cgroup CPU
quota (a container's ``resources.limits.cpu``). The cgroup files are written to a temporary
tree here; the processes themselves are tested end to end in test_e2e.py and test_hostile.py.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from clusterdns.server.workers import (
    WORKER_MEMORY,
    auto_workers,
    cgroup_cpu_quota,
    cgroup_memory_limit,
    usable_cpus,
)
from clusterdns.tools.arguments import parse_workers
from clusterdns.tools.cli import build_parser

AFFINITY = len(os.sched_getaffinity(0))


def cgroup(tmp_path: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(tmp_path)


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu.max": "garbage\n"}, None),
        ({}, None),
    ],
    ids=["v2-limit", "v2-max", "v1-limit", "v1-none", "unreadable", "absent"],
)
def test_cgroup_cpu_quota(tmp_path: Path, files: dict[str, str], quota: float | None) -> None:
    assert cgroup_cpu_quota(cgroup(tmp_path, files)) == quota


def test_usable_cpus_is_the_affinity_capped_by_the_quota(tmp_path: Path) -> None:
    assert usable_cpus(cgroup(tmp_path, {})) == AFFINITY
    limited = cgroup(tmp_path / "a", {"cpu.max": "150000 100000\n"})
    assert usable_cpus(limited) == min(AFFINITY, 2)  # 1.5 CPUs: 2 workers keep them busy
    small = cgroup(tmp_path / "b", {"cpu.max": "10000 100000\n"})
    assert usable_cpus(small) == 1  # never 0


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"memory.max": "178257920\n"}, 178257920),
        ({"memory.max": "max\n"}, None),
        ({"memory/memory.limit_in_bytes": "1073741824\n"}, 1073741824),
        ({"memory/memory.limit_in_bytes": "9223372036854771712\n"}, None),
        ({}, None),
    ],
    ids=["v2-limit", "v2-max", "v1-limit", "v1-none", "absent"],
)
def test_cgroup_memory_limit(tmp_path: Path, files: dict[str, str], limit: int | None) -> None:
    assert cgroup_memory_limit(cgroup(tmp_path, files)) == limit


def test_auto_allows_one_worker_per_256_mib_of_the_memory_limit(tmp_path: Path) -> None:
    """CoreDNS's own 170Mi limit (an image swap keeps it): one worker, whatever the CPUs;
    1 GiB: at most 4; no limit: one per CPU."""
    coredns = cgroup(tmp_path / "a", {"memory.max": f"{170 * 2**20}\n"})
    assert auto_workers(coredns) == 1
    gib = cgroup(tmp_path / "b", {"memory.max": f"{4 * WORKER_MEMORY}\n"})
    assert auto_workers(gib) == min(AFFINITY, 4)
    assert auto_workers(cgroup(tmp_path / "c", {})) == AFFINITY


def test_workers_auto_and_numbers() -> None:
    assert parse_workers("auto") == auto_workers() >= 1
    assert parse_workers("AUTO") == usable_cpus()
    assert parse_workers("3") == 3
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="or auto, got"):
            parse_workers(bad)


def test_workers_default_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLUSTERDNS_WORKERS", raising=False)
    assert build_parser().parse_args(["serve"]).workers == 1
    monkeypatch.setenv("CLUSTERDNS_WORKERS", "auto")
    assert build_parser().parse_args(["serve"]).workers == usable_cpus()
    assert build_parser().parse_args(["serve", "--workers", "1"]).workers == 1
    monkeypatch.setenv("CLUSTERDNS_WORKERS", "nonsense")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve"])
