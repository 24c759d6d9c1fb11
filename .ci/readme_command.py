#!/usr/bin/env python3
"""Print one of the README's two commands, exactly as a user copies it.

  python3 .ci/readme_command.py serve|test

The README marks each command's code block with an HTML comment (`<!-- ci:serve -->`,
`<!-- ci:test -->`) on the line before the opening fence; the command is the block's one
line. Exits 1 naming what is missing, so CI and the README cannot drift apart silently.
Standard library only: it runs before anything is installed.
"""

import re
import sys
from pathlib import Path


def command(readme: str, name: str) -> str:
    """The single line of the fenced block after ``<!-- ci:NAME -->``; ValueError if none."""
    match = re.search(rf"<!-- ci:{name} -->\s*\n```\w*\n(.*?)\n```", readme, re.S)
    if not match or "\n" in match.group(1).strip():
        raise ValueError(f"README.md: no one-line code block after <!-- ci:{name} -->")
    return match.group(1).strip()


if __name__ == "__main__":
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    try:
        print(command(readme, sys.argv[1]))
    except (IndexError, ValueError) as exc:
        print(f"readme_command: {exc}", file=sys.stderr)
        sys.exit(1)
