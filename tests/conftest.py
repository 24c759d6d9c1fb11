"""Shared fixtures: stores built from real manifests, and a real server on loopback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from clusterdns.core.store import Store
from clusterdns.sources.manifests import ManifestSource

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = Path(__file__).resolve().parent / "manifests"
COREDNS = MANIFESTS / "coredns.yaml"
ZONES = ROOT / "zones"
NOW = 1_700_000_000.0  # the SOA serial of test stores


def load_store(*paths: Path) -> Store:
    """A synced store holding the manifests at ``paths``."""
    store = Store()
    result = ManifestSource(store, list(paths)).load(NOW)
    assert not result.errors, result.errors
    return store


@pytest.fixture(scope="session")
def coredns_store() -> Store:
    """CoreDNS's kubernetes plugin test data set (tests/manifests/coredns.yaml)."""
    return load_store(COREDNS)


@dataclass
class RunningServer:
    """A ``clusterdns serve`` process on 127.0.0.1 at an ephemeral port; a thread keeps
    collecting its log lines."""

    process: subprocess.Popen[str]
    port: int
    log_lines: list[str]

    def wait_for_log(self, text: str, deadline: float = 10.0) -> str:
        """Poll the log until a line contains ``text``; return it (AssertionError if not)."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            for line in list(self.log_lines):
                if text in line:
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no log line with {text!r}:\n" + "".join(self.log_lines))


def start_server(*args: str, deadline: float = 20.0) -> RunningServer:
    """Start ``python -m clusterdns serve --listen 127.0.0.1:0 ARGS`` and wait (polling the
    log, with a deadline) for its listening line."""
    return start_clusterdns("serve", "--listen", "127.0.0.1:0", *args, deadline=deadline)


def start_clusterdns(*args: str, deadline: float = 20.0) -> RunningServer:
    """Start ``python -m clusterdns ARGS`` and wait for the listening line (the first
    listener's port is taken from it)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "clusterdns", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    lines: list[str] = []
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r"listening on \[?[0-9a-f.:]+?\]?:(\d+)", line)
        if match:
            threading.Thread(
                target=lines.extend, args=(iter(process.stderr.readline, ""),), daemon=True
            ).start()
            return RunningServer(process, int(match.group(1)), lines)
    process.kill()
    raise AssertionError("server did not start:\n" + "".join(lines))


def stop_server(server: RunningServer) -> int:
    """SIGTERM the server and return its exit status."""
    server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=10)
    finally:
        if server.process.poll() is None:
            server.process.kill()


def big_service_manifest(count: int = 100) -> str:
    """A headless service ``testns/big`` with ``count`` ready endpoints 10.1.x.y (YAML)."""
    endpoints = "".join(
        f"  - addresses: [10.1.{i // 250}.{i % 250 + 1}]\n" for i in range(count)
    )
    return (
        "apiVersion: v1\nkind: Service\nmetadata: {name: big, namespace: testns}\n"
        "spec: {clusterIP: None, ports: [{name: http, port: 80, protocol: TCP}]}\n---\n"
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n"
        "  name: big-x1\n  namespace: testns\n  labels: {kubernetes.io/service-name: big}\n"
        f"addressType: IPv4\nports: [{{name: http, port: 80, protocol: TCP}}]\nendpoints:\n{endpoints}"
    )


@pytest.fixture(scope="module")
def coredns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A real server answering the CoreDNS test data set plus a 100-endpoint service."""
    big = tmp_path_factory.mktemp("zones") / "big.yaml"
    big.write_text(big_service_manifest())
    server = start_server("--zones", str(COREDNS), "--zones", str(big))
    yield server
    assert stop_server(server) == 0


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host`` right now (the caller binds it soon)."""
    import socket

    for _ in range(50):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            udp.bind((host, port))
            return int(port)
        except OSError:
            continue
        finally:
            tcp.close()
            udp.close()
    raise RuntimeError("no free port")
