"""Command-line errors are one line (issue 22, item 5): a usage error of any subcommand is
``PROG: error: MESSAGE (PROG --help lists the options)`` and exit status 2, nothing else;
``resolve --server`` at a closed port says connection refused once."""

from __future__ import annotations

import subprocess
import sys

import pytest

from clusterdns.__main__ import main
from clusterdns.tools.arguments import USAGE_ERROR

from .conftest import ROOT, free_port

USAGE_ERRORS = [
    (["serve", "--ttl", "-5"], "clusterdns serve", "argument --ttl: want seconds from 0 to 3600, got '-5'"),
    (["serve", "--listen", "127.0.0.1:99999"], "clusterdns serve", "argument --listen: want a port from 0 to 65535, got '127.0.0.1:99999'"),
    (["serve", "--listen", "dns.local:53"], "clusterdns serve", "argument --listen: want an IP address as HOST in HOST:PORT, got 'dns.local' in 'dns.local:53'"),
    (["serve", "--workers", "0"], "clusterdns serve", "argument --workers: want a number of processes from 1 to 1024, or auto, got '0'"),
    (["serve", "--udp-size", "100"], "clusterdns serve", "argument --udp-size/--bufsize: want 512 to 65535 bytes, got '100'"),
    (["serve", "--cache-size", "0"], "clusterdns serve", "argument --cache-size: want 1 to 100000000 entries, got '0'"),
    (["serve", "--startup-timeout", "-1"], "clusterdns serve", "argument --startup-timeout: want seconds, 0 or more, got '-1'"),
    (["serve", "--max-tcp-queries", "many"], "clusterdns serve", "argument --max-tcp-queries: want 1 to 1000000000 queries, got 'many'"),
    (["serve", "--pods", "all"], "clusterdns serve", "argument --pods: invalid choice: 'all'"),
    (["serve", "--bogus"], "clusterdns serve", "unrecognized arguments: --bogus"),
    (["check", "--strict"], "clusterdns check", "unrecognized arguments: --strict"),
    (["resolve"], "clusterdns resolve", "the following arguments are required: name"),
    (["resolve", "web", "--server", "127.0.0.1"], "clusterdns resolve", "argument --server: want HOST:PORT, got '127.0.0.1'"),
    (["resolvconf", "--ndots", "99"], "clusterdns resolvconf", "argument --ndots: want 0 to 15, got '99'"),
    (["env", "--namespace"], "clusterdns env", "argument --namespace: expected one argument"),
    ([], "clusterdns", "the following arguments are required: command"),
    (["serv"], "clusterdns", "argument command: invalid choice: 'serv'"),
    (["--log-level", "loud", "serve"], "clusterdns", "argument --log-level: invalid choice: 'loud'"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "prog", "message"), USAGE_ERRORS)
def test_usage_error_is_one_line_and_exit_2(
    argv: list[str], prog: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == USAGE_ERROR == 2
    out, err = capsys.readouterr()
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith(f"{prog}: error: {message}"), line
    assert line.endswith(f"({prog} --help lists the options)"), line


def test_usage_error_from_the_console_entry_point() -> None:
    """The real process: exit status 2, one line, no usage block."""
    done = subprocess.run(
        [sys.executable, "-m", "clusterdns", "serve", "--ttl", "-5"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "clusterdns serve: error: argument --ttl: want seconds from 0 to 3600, got '-5' "
        "(clusterdns serve --help lists the options)\n"
    )


def test_resolve_against_a_closed_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listens at --server: the connected UDP socket gets the ICMP port
    unreachable as ConnectionRefusedError; one line and exit 1, not 16 timed-out queries."""
    port = free_port()
    assert main(["resolve", "web.shop", "--server", f"127.0.0.1:{port}"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith(f"cannot ask 127.0.0.1:{port}: connection refused (nothing listens there"), line
