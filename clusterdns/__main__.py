"""``python -m clusterdns`` and the ``clusterdns`` console script: the command line lives in
clusterdns/tools/cli.py.

This shim imports it lazily so that a Ctrl-C while the interpreter loads the server (the
first quarter second or so, before the server's own signal handlers are set) is one line on
stderr and exit status 130 (128 + SIGINT, the shell's convention), not a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

INTERRUPTED = 130  # 128 + SIGINT


def build_parser() -> argparse.ArgumentParser:
    """The whole command line (:func:`clusterdns.tools.cli.build_parser`)."""
    from .tools.cli import build_parser as build

    return build()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``clusterdns`` console script; the exit status.

    A KeyboardInterrupt that reaches here (SIGINT before the server set its handlers, or
    during a subcommand other than ``serve``) prints ``clusterdns: interrupted`` and gives
    :data:`INTERRUPTED`; once serving, SIGINT stops the server cleanly (exit 0).
    """
    try:
        from .tools.cli import main as cli_main

        return cli_main(argv)
    except KeyboardInterrupt:
        print("clusterdns: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
