"""Corefile text -> tokens -> server blocks (CoreDNS's Caddyfile dialect), with ``import``
and snippets expanded (Caddy's import). Errors are ConfigError naming ``file:line``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re

from ..core.errors import ConfigError
from .reader import Block, Directive, Token

_ENV = re.compile(r"\{\$([A-Za-z_][A-Za-z0-9_]*)\}|\{%([A-Za-z_][A-Za-z0-9_]*)%\}")


def tokenize(text: str, filename: str = "Corefile", origin: int = 0) -> list[Token]:
    """Split Corefile text into tokens: words, quoted strings, ``{`` and ``}``.

    ``#`` starts a comment at the start of a word; ``{$VAR}`` and ``{%VAR%}`` are replaced
    by the environment variable (empty if unset). Raises ConfigError for an unclosed quote.
    """
    tokens: list[Token] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = _ENV.sub(lambda m: os.environ.get(m.group(1) or m.group(2), ""), raw)
        i = 0
        while i < len(line):
            ch = line[i]
            if ch.isspace():
                i += 1
            elif ch == "#":
                break
            elif ch == '"':
                j, chars = i + 1, []
                while j < len(line) and line[j] != '"':
                    if line[j] == "\\" and j + 1 < len(line):
                        j += 1
                    chars.append(line[j])
                    j += 1
                if j >= len(line):
                    raise ConfigError(f"{filename}:{number}: unclosed quote")
                tokens.append(Token("".join(chars), number, filename, origin))
                i = j + 1
            else:
                j = i
                while j < len(line) and not line[j].isspace():
                    j += 1
                word = line[i:j]
                # "foo{" and "}" glued to words are split like Caddy does at line ends
                if len(word) > 1 and word.endswith("{") and not word.startswith("{$"):
                    tokens.append(Token(word[:-1], number, filename, origin))
                    word = "{"
                tokens.append(Token(word, number, filename, origin))
                i = j
    return tokens


def _same_line(a: Token, b: Token) -> bool:
    return a.line == b.line and a.origin == b.origin and a.file == b.file


MAX_IMPORT_DEPTH = 10  # Caddy's limit on nested imports (a file importing itself)


class _Expander:
    """Expands ``import`` (files by glob, snippets) into tokens (Caddy/CoreDNS import).

    A pattern is a snippet name, or a path relative to the importing Corefile's directory,
    with globs. A glob that matches nothing imports nothing; a plain path that does not
    exist is an error (Caddy). Snippets ``(name) { ... }`` are defined at the top level;
    ``{args[N]}`` in a snippet or file is replaced by the import's N-th argument.
    """

    def __init__(self) -> None:
        self.snippets: dict[str, list[Token]] = {}
        self.origins = 0
        self.files: list[str] = []  # every file imported, in order

    def expand(self, tokens: list[Token], depth: int = 0, top: bool = True) -> list[Token]:
        out: list[Token] = []
        pos = 0
        nesting = 0
        while pos < len(tokens):
            tok = tokens[pos]
            first = pos == 0 or not _same_line(tokens[pos - 1], tok)
            snippet = tok.text.startswith("(") and tok.text.endswith(")")
            if top and nesting == 0 and first and snippet:
                pos = self._snippet(tokens, pos)
                continue
            if tok.text == "import" and first:
                args = []
                pos += 1
                while pos < len(tokens) and _same_line(tokens[pos], tok):
                    args.append(tokens[pos].text)
                    pos += 1
                out.extend(self._import(tok, args, depth, top and nesting == 0))
                continue
            nesting += {"{": 1, "}": -1}.get(tok.text, 0)
            out.append(tok)
            pos += 1
        return out

    def _snippet(self, tokens: list[Token], pos: int) -> int:
        tok = tokens[pos]
        name = tok.text[1:-1]
        if pos + 1 >= len(tokens) or tokens[pos + 1].text != "{":
            raise ConfigError(f"{tok.file}:{tok.line}: snippet {tok.text} has no '{{'")
        depth, end = 0, pos + 1
        while end < len(tokens):
            depth += {"{": 1, "}": -1}.get(tokens[end].text, 0)
            if depth == 0:
                break
            end += 1
        if end >= len(tokens):
            raise ConfigError(f"{tok.file}:{tok.line}: snippet {tok.text}: missing '}}'")
        if name in self.snippets:
            raise ConfigError(f"{tok.file}:{tok.line}: snippet {tok.text} defined twice")
        self.snippets[name] = tokens[pos + 2 : end]
        return end + 1

    def _import(self, tok: Token, args: list[str], depth: int, top: bool) -> list[Token]:
        where = f"{tok.file}:{tok.line}"
        if not args:
            raise ConfigError(f"{where}: import: want a file, glob or snippet name")
        if depth >= MAX_IMPORT_DEPTH:
            raise ConfigError(f"{where}: import: more than {MAX_IMPORT_DEPTH} nested imports")
        pattern, params = args[0], args[1:]
        if pattern in self.snippets:
            self.origins += 1
            body = [
                Token(_params(t.text, params), t.line, t.file, self.origins)
                for t in self.snippets[pattern]
            ]
            return self.expand(body, depth + 1, top)
        base = os.path.dirname(tok.file) or "."
        full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        if any(c in pattern for c in "*?["):
            paths = sorted(glob.glob(full))
        elif os.path.exists(full):
            paths = [full]
        else:
            raise ConfigError(f"{where}: import: no such file or snippet {pattern!r}")
        out: list[Token] = []
        for path in paths:
            try:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    text = handle.read()
            except OSError as exc:
                raise ConfigError(f"{where}: import {path}: {exc.strerror or exc}") from None
            self.origins += 1
            self.files.append(path)
            body = [
                Token(_params(t.text, params), t.line, t.file, t.origin)
                for t in tokenize(text, path, self.origins)
            ]
            out.extend(self.expand(body, depth + 1, top))
        return out


def _params(text: str, params: list[str]) -> str:
    if "{args[" not in text:
        return text
    return re.sub(
        r"\{args\[(\d+)\]\}",
        lambda m: params[int(m.group(1))] if int(m.group(1)) < len(params) else "",
        text,
    )


def imported_files(text: str, filename: str = "Corefile") -> list[str]:
    """The files the ``import`` lines of a Corefile read (globs expanded now), for the
    reload plugin to notice when one changes (CoreDNS >= 1.7). A Corefile that does not
    parse gives what was found before the error."""
    expander = _Expander()
    with contextlib.suppress(ConfigError):
        expander.expand(tokenize(text, filename))
    return expander.files


def parse_blocks(text: str, filename: str = "Corefile") -> list[Block]:
    """Parse Corefile text into server blocks, with ``import`` and snippets expanded.

    Raises ConfigError (``file:line: ...``, naming the imported file for its lines).
    """
    tokens = _Expander().expand(tokenize(text, filename))
    blocks: list[Block] = []
    pos = 0
    while pos < len(tokens):
        keys: list[str] = []
        first = tokens[pos]
        while pos < len(tokens) and tokens[pos].text != "{":
            if tokens[pos].text == "}":
                raise ConfigError(f"{tokens[pos].file}:{tokens[pos].line}: unexpected '}}'")
            keys.extend(k for k in tokens[pos].text.split(",") if k)
            pos += 1
        if pos >= len(tokens):
            raise ConfigError(
                f"{first.file}:{first.line}: server block {' '.join(keys)} has no '{{'"
            )
        directives, pos = _directives(tokens, pos + 1, first.file)
        blocks.append(Block(keys, first.line, directives, first.file))
    if not blocks:
        raise ConfigError(f"{filename}: no server block")
    return blocks


def _directives(tokens: list[Token], pos: int, filename: str) -> tuple[list[Directive], int]:
    """Read directives up to the matching ``}``; return them and the position after it."""
    out: list[Directive] = []
    while pos < len(tokens):
        tok = tokens[pos]
        if tok.text == "}":
            return out, pos + 1
        if tok.text == "{":
            raise ConfigError(f"{tok.file}:{tok.line}: unexpected '{{'")
        directive = Directive(tok.text, [], tok.line, file=tok.file)
        pos += 1
        while (
            pos < len(tokens)
            and _same_line(tokens[pos], tok)
            and tokens[pos].text not in ("{", "}")
        ):
            directive.args.append(tokens[pos].text)
            pos += 1
        if pos < len(tokens) and tokens[pos].text == "{" and _same_line(tokens[pos], tok):
            directive.block, pos = _directives(tokens, pos + 1, tok.file)
        out.append(directive)
    raise ConfigError(f"{filename}: missing '}}' at the end")
