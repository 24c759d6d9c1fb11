"""The README and docs/ as a user reads them: every link inside the repository resolves, no
page points at files outside it, and the README's command line lists every option."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from clusterdns.__main__ import build_parser

from .conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_inside_the_repository_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor on the same page
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.exists() or ROOT not in path.parents:
            broken.append(target)
    assert not broken, f"{page.name}: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_page_points_outside_the_repository(page: Path) -> None:
    text = page.read_text()
    assert "../shared" not in text and "SPEC.md" not in text and "DESIGN.md" not in text


def options(parser: argparse.ArgumentParser) -> set[str]:
    """Every long option of ``parser`` and of its subcommands (``--help`` aside)."""
    found = {
        opt
        for action in parser._actions
        for opt in action.option_strings
        if opt.startswith("--") and opt != "--help"
    }
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= options(sub)
    return found


def test_readme_command_line_lists_every_option() -> None:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Command line") : text.index("## Where to read more")]
    missing = sorted(o for o in options(build_parser()) if not re.search(rf"{o}\b", section))
    assert not missing, missing
    assert "-conf COREFILE" in section


def test_every_directive_is_documented() -> None:
    """docs/corefile.md has a row and the README's supported list a mention for every
    directive the parser accepts (the server's own and the plugin table's)."""
    from clusterdns.corefile.config import supported

    table = (ROOT / "docs" / "corefile.md").read_text()
    readme = (ROOT / "README.md").read_text()
    listed = readme[readme.index("Supported: ") : readme.index("## Follow a live cluster")]
    assert not [d for d in supported() if not re.search(rf"^\| `{d}\b", table, re.M)
                and not re.search(rf"^\| `[^|]*`{d}\b", table, re.M)]
    assert not [d for d in supported() if f"`{d}`" not in listed]
