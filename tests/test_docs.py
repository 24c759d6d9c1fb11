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


# ---- the Corefile pages against the parser (issue 22, item 3) ------------------------------
# docs/corefile.md's directive table, its list of refused directives, the README's list of
# supported ones and behaviour.md's section 18 are checked against what
# clusterdns.corefile.config.load accepts: a directive or option the docs call supported
# must be recognised (it may still want arguments), one they call refused must be refused.

from clusterdns.core.errors import ConfigError  # noqa: E402
from clusterdns.corefile.config import LOG_ONLY, load, supported  # noqa: E402

DIRECTIVES = frozenset(supported())  # the server's own directives and the plugin table's

CELL = re.compile(r"(?<!\\)\|")
TICKED = re.compile(r"`([^`]+)`")
OPTION = re.compile(r"[a-z][a-z0-9_]*$", re.I)
# How to write an option of each directive with options (OPT: the option and no arguments).
WITH_OPTION = {
    "kubernetes": "kubernetes cluster.local {\n OPT\n}",
    "forward": "forward . 127.0.0.1 {\n OPT\n}",
    "cache": "cache {\n OPT\n}",
    "hosts": "hosts {\n OPT\n}",
    "template": "template IN A example.org {\n OPT\n}",
    "log": "log {\n OPT\n}",
    "health": "health {\n OPT\n}",
    "k8s_external": "k8s_external example.org {\n OPT\n}",
    "k8s_gateway": "k8s_gateway example.org {\n OPT\n}",
    "rewrite": "rewrite OPT a b",  # its "options" are the fields it rewrites
    "view": "view v {\n OPT true\n}",
    "multicluster": "multicluster clusterset.local {\n OPT\n}",
}
NOT_RECOGNISED = re.compile(r"is not supported by clusterdns|unknown (option|field)|or an option, got")


def corefile_error(body: str) -> str:
    """The error loading a Corefile whose one block holds ``body`` ('' if it loads)."""
    try:
        load(f".:53 {{\n{body}\n}}\n")
    except ConfigError as exc:
        return str(exc)
    return ""


def recognised(body: str) -> bool:
    """Whether the parser knows every name in ``body``: it loads, or fails for another reason
    (a missing argument) than an unknown or refused directive, option or field."""
    return not NOT_RECOGNISED.search(corefile_error(body))


def directive_table() -> list[tuple[list[str], str, str]]:
    """docs/corefile.md's directive table: (directive names, options cell, notes cell)."""
    text = (ROOT / "docs" / "corefile.md").read_text()
    section = text[text.index("## Directives") :]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in CELL.split(line)[1:-1]]
        names = [t.split()[0] for t in TICKED.findall(cells[0])]
        rows.append((names, cells[1], cells[2]))
    return rows


def ticked_names(text: str) -> list[str]:
    """The first word of each `ticked` word that is a plain name (not `IP NAME...`)."""
    words = [t.split()[0] for t in TICKED.findall(text) if t.strip()]
    return [w for w in words if OPTION.match(w) and not w.isupper()]


def refused_in(notes: str) -> dict[str, list[str]]:
    """``Refused: `a`, `b`; ...`` and ``Refused (NAME): ...`` in a notes cell: the names up
    to the first ';' or '.' after it, by directive ('' when the row has one)."""
    found: dict[str, list[str]] = {}
    for match in re.finditer(r"Refused(?: \((\w+)\))?: ([^;.]*(?:\.\w[^;.]*)*)", notes):
        found.setdefault(match.group(1) or "", []).extend(ticked_names(match.group(2)))
    return found


def test_every_directive_of_the_parser_is_in_the_table() -> None:
    documented = {name for names, _, _ in directive_table() for name in names}
    assert set(DIRECTIVES) | LOG_ONLY <= documented, sorted(set(DIRECTIVES) | LOG_ONLY - documented)


def test_the_table_s_directives_are_accepted() -> None:
    for names, _, notes in directive_table():
        for name in names:
            assert name in DIRECTIVES or name in LOG_ONLY, name
            assert recognised(name), (name, corefile_error(name))
            if name in LOG_ONLY:
                assert "Accepted with a warning" in notes, name


def test_the_table_s_options_are_accepted_and_its_refused_ones_refused() -> None:
    checked = 0
    for names, options_cell, notes in directive_table():
        with_options = [n for n in names if n in WITH_OPTION]
        groups = options_cell.split(";") if len(with_options) > 1 else [options_cell]
        for name, cell in zip(with_options, groups, strict=False):
            for option in ticked_names(cell):
                body = WITH_OPTION[name].replace("OPT", option)
                assert recognised(body), (name, option, corefile_error(body))
                checked += 1
        for owner, refused in refused_in(notes).items():
            name = owner or names[0]
            assert name in WITH_OPTION, f"add how to write an option of {name} to WITH_OPTION"
            for option in refused:
                body = WITH_OPTION[name].replace("OPT", option)
                assert not recognised(body), f"docs/corefile.md says {name} refuses {option}"
                checked += 1
        if len(names) == 1 and ticked_names(options_cell):
            assert names[0] in WITH_OPTION, f"add how to write an option of {names[0]}"
    assert checked > 60, checked  # the table was read


def test_the_refused_directives_are_refused() -> None:
    text = (ROOT / "docs" / "corefile.md").read_text()
    paragraph = text[text.index("**Refused**") :].split("\n\n")[0]
    names = ticked_names(paragraph)
    assert len(names) > 20 and "etcd" in names, names
    for name in names:
        assert name not in DIRECTIVES and name not in LOG_ONLY, name
        assert f"plugin '{name}' is not supported by clusterdns" in corefile_error(name)


def test_the_readme_s_supported_directives_are_accepted() -> None:
    text = (ROOT / "README.md").read_text()
    sentence = text[text.index("Supported: `kubernetes`") :].split("; CIDR zones")[0]
    names = ticked_names(re.sub(r"\([^)]*\)", "", sentence))  # (with `prefetch`...) are options
    assert len(names) > 20, names
    for name in names:
        if name != "import":  # syntax, not a plugin (docs/corefile.md, Syntax)
            assert name in DIRECTIVES, name


def test_behaviour_s_refused_and_served_agree_with_the_parser() -> None:
    text = (ROOT / "docs" / "behaviour.md").read_text()
    section = text[text.index("## 18.") :]
    options = section[section.index("kubernetes options") :].split("(")[0]
    refused = ticked_names(options)
    assert len(refused) >= 5, refused
    for option in refused:
        assert not recognised(WITH_OPTION["kubernetes"].replace("OPT", option)), option
    for name in re.findall(r"\(`(\w+)`\) (?:are|is) not served", section):
        assert not recognised(name), name
    for name in re.findall(r"`(\w+)` is served", section):
        assert name in DIRECTIVES, name


def test_the_help_says_what_serve_answers_from() -> None:
    text = " ".join(build_parser().format_help().split())
    assert "answer DNS from manifests in zones/, a cluster's API, or a Corefile" in text, text


def sentences(page: Path) -> list[str]:
    """The page's sentences, each on one line (a rough cut: enough for the checks below)."""
    found = []
    for paragraph in page.read_text().split("\n\n"):
        if paragraph.lstrip().startswith(("|", "```")):  # a table: each cell; code: nothing
            if paragraph.lstrip().startswith("|"):
                found += [c for line in paragraph.splitlines() for c in CELL.split(line)]
            continue
        found += re.split(r"(?<=[.!?])\s+(?=[A-Z`*])", " ".join(paragraph.split()))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_what_a_page_says_is_accepted_or_not_supported_is_so(page: Path) -> None:
    """A sentence saying names are "accepted with a warning" may only name the directives
    that are (logging-only ones); one saying "not supported" may not name a directive
    clusterdns implements (docs/behaviour.md said so of `chaos` and of refused options)."""
    wrong = []
    for sentence in sentences(page):
        names = ticked_names(sentence)
        if "accepted with a warning" in sentence.lower():
            wrong += [(n, sentence) for n in names if n not in LOG_ONLY]
        if re.search(r"\bnot supported\b", sentence) and "is not supported by clusterdns" not in sentence:
            wrong += [(n, sentence) for n in names if n in DIRECTIVES]
    assert not wrong, wrong


def test_the_docs_index_lists_every_page() -> None:
    """docs/README.md links every page of docs/, and the README links troubleshooting."""
    index = set(LINK.findall((ROOT / "docs" / "README.md").read_text()))
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"README.md"}
    assert pages <= index, sorted(pages - index)
    assert "docs/troubleshooting.md" in LINK.findall((ROOT / "README.md").read_text())


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
