"""A stop is prompt in every phase (issue 22, item 1): SIGINT or SIGTERM while waiting for
the API at start-up, while serving unsynced, and while serving; a Ctrl-C before the server
has set its handlers is one line, not a traceback.

Each test runs the real command in a subprocess and bounds how long it may take to exit
(:data:`STOP_BOUND`) against a ``--startup-timeout`` far longer than that.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .conftest import ROOT, free_port

STOP_BOUND = 3.0  # seconds a stop may take; the start-up timeout below is 30 s
STARTUP_TIMEOUT = "30"


class Process:
    """``python -m clusterdns ARGS`` (or ``python -c CODE``) with its stderr collected by a
    thread, so the test can poll the log with a deadline."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
        )
        self.lines: list[str] = []
        assert self.process.stderr is not None
        self._reader = threading.Thread(
            target=lambda: self.lines.extend(iter(self.process.stderr.readline, "")),  # type: ignore[union-attr]
            daemon=True,
        )
        self._reader.start()

    def wait_for(self, text: str, deadline: float = 20.0) -> str:
        """Poll the log until a line contains ``text``; return that line."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            for line in list(self.lines):
                if text in line:
                    return line
            assert self.process.poll() is None, "exited early:\n" + "".join(self.lines)
            time.sleep(0.02)
        raise AssertionError(f"no log line with {text!r}:\n" + "".join(self.lines))

    def stop(self, signum: int) -> int:
        """Send ``signum``; the exit status if the process ends within :data:`STOP_BOUND`
        (AssertionError with the log otherwise)."""
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=STOP_BOUND)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"still running {STOP_BOUND} s after {signal.Signals(signum).name}:\n"
                + "".join(self.lines)
            ) from None
        self._reader.join(5)
        return code

    @property
    def log(self) -> str:
        return "".join(self.lines)


def serve(*args: str) -> Process:
    return Process(
        [sys.executable, "-m", "clusterdns", "serve", "--listen", "127.0.0.1:0", *args]
    )


def unreachable_kubeconfig(tmp_path: Path) -> Path:
    """A kubeconfig whose API server is a closed port on 127.0.0.1 (connection refused)."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{free_port()}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"
    )
    return path


def test_sigint_while_waiting_for_the_api_at_start_up(tmp_path: Path) -> None:
    """The start-up wait for the first sync (30 s here) is given up at once."""
    server = serve(
        "--kubeconfig", str(unreachable_kubeconfig(tmp_path)), "--startup-timeout", STARTUP_TIMEOUT
    )
    server.wait_for("cannot reach the Kubernetes API")
    assert server.stop(signal.SIGINT) == 0, server.log
    assert "SIGINT: stopping" in server.log
    assert "stopping before the sources were loaded" in server.log
    assert "listening on" not in server.log, server.log
    assert "Traceback" not in server.log, server.log


def test_sigterm_while_serving_unsynced(tmp_path: Path) -> None:
    """Ports open, the reflectors still retrying the API: SIGTERM stops them promptly."""
    server = serve(
        "--kubeconfig", str(unreachable_kubeconfig(tmp_path)), "--startup-timeout", "0.2"
    )
    line = server.wait_for("listening on")
    assert "not synced with the API yet" in line, line
    assert server.stop(signal.SIGTERM) == 0, server.log
    assert "SIGTERM: stopping" in server.log
    assert "Traceback" not in server.log, server.log


def test_sigint_while_serving_manifests() -> None:
    server = serve("--zones", str(ROOT / "zones"))
    server.wait_for("listening on")
    assert server.stop(signal.SIGINT) == 0, server.log
    assert "SIGINT: stopping" in server.log
    assert "Traceback" not in server.log, server.log


def test_ctrl_c_before_the_handlers_is_one_line() -> None:
    """SIGINT while the command line is still being imported (the console script's first
    few hundred ms): one line on stderr and exit status 130, no KeyboardInterrupt traceback.
    The child says (from an audit hook) when the real entry point starts importing the
    command line; the signal lands in those imports (they take ~0.4 s)."""
    code = (
        "import sys\n"
        "def hook(event, args):\n"
        "    if event == 'import' and args[0] == 'clusterdns.tools.cli':\n"
        "        print('go', flush=True)\n"
        "sys.addaudithook(hook)\n"
        "import clusterdns.__main__ as m\n"
        f"sys.exit(m.main(['serve', '--listen', '127.0.0.1:0', '--zones', {str(ROOT / 'zones')!r}]))"
    )
    child = Process([sys.executable, "-c", code])
    assert child.process.stdout is not None
    assert child.process.stdout.readline() == "go\n"
    status = child.stop(signal.SIGINT)
    if "SIGINT: stopping" in child.log:  # a very fast machine got to serving first
        assert status == 0, child.log
        return
    assert status == 130, child.log
    assert child.lines == ["clusterdns: interrupted\n"], child.log
