"""What a user sees at start-up: the listening line, and one clear line for each thing that
stops or slows the start (a port that cannot be bound, an API that cannot be reached)."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import ROOT, free_port, start_server, stop_server

PR_CAPBSET_DROP = 24
CAP_NET_BIND_SERVICE = 10


def run_clusterdns(*args: str, timeout: float = 20.0, preexec: object = None) -> tuple[int, str]:
    """Run ``python -m clusterdns ARGS`` to its end; (exit status, stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "clusterdns", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        preexec_fn=preexec,  # type: ignore[arg-type]
    )
    return done.returncode, done.stderr


def test_listening_line_says_where_which_loop_and_from_what() -> None:
    server = start_server()
    try:
        line = server.wait_for_log("listening on")
    finally:
        assert stop_server(server) == 0
    loop = "uvloop" if _has_uvloop() else "asyncio loop"
    assert re.search(
        rf"clusterdns \S+ listening on 127\.0\.0\.1:{server.port} \(UDP, TCP; {loop}\) for "
        r"cluster\.local\., in-addr\.arpa\., ip6\.arpa\.: \d+ Namespace, \d+ Service, "
        r"\d+ EndpointSlice, \d+ Pod(, \d+ \w+)* from manifests in zones/$",
        line.strip(),
    ), line


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_address_in_use_is_one_line_and_exit_1(proto: str) -> None:
    port = free_port()
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as holder:
        holder.bind(("127.0.0.1", port))
        if proto == "tcp":
            holder.listen()
        code, err = run_clusterdns("serve", "--listen", f"127.0.0.1:{port}")
    assert code == 1, err
    assert "Traceback" not in err
    assert (
        f"[ERROR] cannot listen on 127.0.0.1:{port}/{proto}: address already in use "
        "(another server holds it: stop it, or pick a free port with --listen HOST:PORT, or "
        "the port in the Corefile)" in err.splitlines()
    ), err


def test_metrics_port_in_use_is_one_line(tmp_path: Path) -> None:
    port, http = free_port(), free_port()
    corefile = tmp_path / "Corefile"
    corefile.write_text(f".:{port} {{\n  bind 127.0.0.1\n  prometheus 127.0.0.1:{http}\n}}\n")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", http))
        holder.listen()
        code, err = run_clusterdns("-conf", str(corefile))
    assert code == 1, err
    assert "Traceback" not in err
    assert f"cannot listen on 127.0.0.1:{http}/http: address already in use" in err, err


def _drop_bind_capability() -> None:
    """In the child before exec: without CAP_NET_BIND_SERVICE in the bounding set, even
    root's exec'd interpreter cannot bind ports below 1024."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_CAPBSET_DROP, CAP_NET_BIND_SERVICE, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _privileged_port_denied() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "import socket; socket.socket().bind(('127.0.0.1', 1))"],
        preexec_fn=_drop_bind_capability,
        capture_output=True,
        text=True,
    )
    return "Permission denied" in probe.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping a capability needs root")
def test_permission_denied_says_what_to_do() -> None:
    if not _privileged_port_denied():
        pytest.skip("this kernel lets any process bind port 1 (ip_unprivileged_port_start)")
    code, err = run_clusterdns(
        "serve", "--listen", "127.0.0.1:53", preexec=_drop_bind_capability
    )
    assert code == 1, err
    assert "Traceback" not in err
    assert (
        "[ERROR] cannot listen on 127.0.0.1:53/udp: permission denied (run as root, grant "
        "CAP_NET_BIND_SERVICE, or listen on a port above 1023: --listen 127.0.0.1:1053, or "
        ".:1053 in a Corefile)" in err.splitlines()
    ), err


def test_unreachable_api_is_one_line_per_backoff_step(tmp_path: Path) -> None:
    """A closed API port: a line per back-off step for all kinds together, no urllib3
    retry warnings, and the listening line says the cluster names answer SERVFAIL."""
    closed = free_port()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{closed}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"
    )
    server = start_server("--kubeconfig", str(kubeconfig), "--startup-timeout", "0.5")
    began = time.monotonic()
    try:
        listening = server.wait_for_log("listening on")
        # Watch the log for a bounded window after the start: back-off steps of about
        # 0.5, 1, 2 and 4 s give at most a handful of lines in it.
        deadline = began + 4.0
        while time.monotonic() < deadline and server.process.poll() is None:
            time.sleep(0.1)
    finally:
        assert stop_server(server) == 0
    log = "".join(server.log_lines)
    assert "not synced with the API yet: cluster names answer SERVFAIL" in listening, listening
    outages = [line for line in server.log_lines if "cannot reach the Kubernetes API" in line]
    assert 1 <= len(outages) <= 6, log
    assert f"at http://127.0.0.1:{closed} (list " in outages[0], outages[0]
    assert "Connection refused" in outages[0], outages[0]
    # Never synced: there is no last good state to serve (issue 22, item 2).
    assert "not synced yet: names not found answer SERVFAIL" in outages[0], outages[0]
    assert "last good state" not in log, log
    assert "Retrying" not in log and "Traceback" not in log, log


def test_corefile_mode_reads_zones_from_the_current_directory(tmp_path: Path) -> None:
    """Without an API, a Corefile's kubernetes directive answers from ./zones of the
    current directory (docs/corefile.md, issue 22 item 4); missing, the error names the
    path it looked for and says how to give another."""
    corefile = tmp_path / "Corefile"
    corefile.write_text(".:0 {\n  bind 127.0.0.1\n  kubernetes cluster.local\n}\n")
    done = subprocess.run(
        [sys.executable, "-m", "clusterdns", "-conf", str(corefile)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=20,
    )
    assert done.returncode == 1, done.stderr
    assert (
        f"[ERROR] zones: no such file or directory; looked for {tmp_path / 'zones'} "
        "(pass --zones DIR)" in done.stderr.splitlines()
    ), done.stderr
    assert "Traceback" not in done.stderr
    (tmp_path / "zones").symlink_to(ROOT / "zones")
    with subprocess.Popen(
        [sys.executable, "-m", "clusterdns", "-conf", str(corefile)],
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    ) as server:
        assert server.stderr is not None
        deadline = threading.Timer(20, server.kill)  # the read below ends by then at the latest
        deadline.start()
        try:
            line = ""
            for line in server.stderr:  # ends at EOF if the server exits
                if "listening on" in line:
                    break
            assert "from manifests in zones/" in line, line
        finally:
            deadline.cancel()
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=10) == 0
