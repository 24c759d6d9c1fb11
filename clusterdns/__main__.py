"""``python -m clusterdns`` and the ``clusterdns`` console script: the command line lives in
clusterdns/tools/cli.py."""

from __future__ import annotations

import sys

from .tools.cli import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
