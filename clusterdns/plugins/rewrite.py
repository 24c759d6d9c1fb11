"""The ``rewrite`` plugin: rewrite the question before the rest of the chain answers it,
and the answer back (CoreDNS plugin/rewrite README).

Supported rule fields: ``name`` (``exact``, ``prefix``, ``suffix``, ``substring``,
``regex`` with ``{N}`` groups; options ``answer auto``, ``answer name FROM TO``,
``answer value FROM TO``), ``type FROM TO`` and ``class FROM TO``, each with ``stop``
(the default) or ``continue``, on one line or as a ``rewrite [stop|continue] { ... }``
block. Rules apply in order; a matching ``stop`` rule ends the list. The rewritten
question then goes through the rest of the chain (template, hosts, kubernetes, forward)
and the reply gets the client's question back; answer rules of several matching rules
apply in reverse order. As in CoreDNS, names are compared lower-cased and made absolute
(``plugin.Name.Normalize``); an ``exact`` rule always rewrites its answers back; ``auto``
maps the rewritten name (and names below it) back to the asked one, and for ``suffix`` the
suffix back. A rewrite that gives an invalid name is answered SERVFAIL. Not supported
(refused with their line): ``ttl``, ``edns0``, ``cname``, ``rcode`` fields.

Replies are re-read and re-packed with dnslib: rewriting is off the cluster hot path, and
answers of rewritten questions are not kept in the answer cache.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

from dnslib import CLASS, QTYPE, DNSLabel, DNSQuestion, DNSRecord

from ..core.names import absolute
from ..core.rr import Rcode
from ..dns.wire import FLAG_TC, Query, error_response
from .plugin import Ask, Build, Chain, Outcome, Plugin, Step

if TYPE_CHECKING:
    from ..corefile.reader import Reader

Reply = Union[bytes, None, Awaitable[Union[bytes, None]]]  # noqa: UP007 - a runtime alias
StringRewriter = Callable[[str], str]
MATCH_TYPES = ("exact", "prefix", "suffix", "substring", "regex")
UNSUPPORTED_FIELDS = ("ttl", "edns0", "cname", "rcode")


def normalize(text: str) -> str:
    """CoreDNS ``plugin.Name(text).Normalize()``: lower-case, absolute."""
    return absolute(text)


def regex_rewriter(pattern: re.Pattern[str], replacement: str) -> StringRewriter:
    """``{0}``, ``{1}``... of the first match of ``pattern`` put into ``replacement``;
    a string that does not match is kept."""

    def rewrite(src: str) -> str:
        match = pattern.search(src)
        if match is None:
            return src
        out = replacement
        for index, group in enumerate((match.group(0), *match.groups())):
            out = out.replace("{" + str(index) + "}", group or "")
        return out

    return rewrite


def remap_rewriter(orig: str, replacement: str) -> StringRewriter:
    """``orig`` and names below it: ``orig`` replaced by ``replacement``."""

    def rewrite(src: str) -> str:
        low = src.lower()
        if low == orig:
            return replacement
        if low.endswith("." + orig):
            return src[: len(src) - len(orig)] + replacement
        return src

    return rewrite


def suffix_rewriter(suffix: str, replacement: str) -> StringRewriter:
    """A name ending in ``suffix`` gets ``replacement`` instead."""

    def rewrite(src: str) -> str:
        if src.lower().endswith(suffix):
            return src[: len(src) - len(suffix)] + replacement
        return src

    return rewrite


@dataclass
class AnswerRule:
    """Rewrites owner names (``value`` False) or the names inside RDATA (True)."""

    value: bool
    rewrite: StringRewriter


@dataclass
class RewriteRule:
    """One rule: what it matches and sets, ``stop`` or ``continue``, its answer rules.

    ``kind``: the field rewritten: name, type or class. For name: ``match`` (exact,
    prefix, ...), ``source`` and ``target`` (normalised, or the regex and its
    replacement), ``auto``.
    For type/class: ``source``/``target`` are the numeric values as text.
    """

    kind: str
    match: str
    source: str
    target: str
    stop: bool = True
    auto: bool = False
    answers: list[AnswerRule] = field(default_factory=list)
    pattern: re.Pattern[str] | None = None

    def apply(self, state: _State) -> bool:
        """Rewrite ``state`` if the rule matches; whether it did."""
        if self.kind == "type":
            if state.qtype != int(self.source):
                return False
            state.qtype = int(self.target)
            return True
        if self.kind == "class":
            if state.qclass != int(self.source):
                return False
            state.qclass = int(self.target)
            return True
        name = state.name
        if self.match == "exact":
            if name != self.source:
                return False
            new = self.target
        elif self.match == "prefix":
            if not name.startswith(self.source):
                return False
            new = self.target + name[len(self.source) :]
        elif self.match == "suffix":
            if not name.endswith(self.source):
                return False
            new = name[: len(name) - len(self.source)] + self.target
        elif self.match == "substring":
            if self.source not in name:
                return False
            new = name.replace(self.source, self.target)
        else:
            assert self.pattern is not None
            if self.pattern.search(name) is None:
                return False
            new = regex_rewriter(self.pattern, self.target)(name)
        state.name = new
        if self.match == "suffix" and self.auto:
            back = suffix_rewriter(self.target, self.source)
            state.answers.append([AnswerRule(False, back), AnswerRule(True, back), *self.answers])
        elif self.auto or self.match == "exact":
            back = remap_rewriter(new, name)
            state.answers.append([AnswerRule(False, back), AnswerRule(True, back), *self.answers])
        elif self.answers:
            state.answers.append(self.answers)
        return True


class InvalidName(Exception):
    """A rule rewrote the question to something that is no domain name (SERVFAIL)."""


@dataclass
class _State:
    name: str
    qtype: int
    qclass: int
    answers: list[list[AnswerRule]] = field(default_factory=list)


def _type_value(r: Reader, text: str, what: str) -> str:
    table = QTYPE if what == "type" else CLASS
    try:
        return str(int(getattr(table, text.upper())))
    except Exception:  # dnslib raises its DNSError for an unknown name
        raise r.error(f"{what}: unknown {what} {text!r}") from None


def _regex(r: Reader, text: str) -> re.Pattern[str]:
    if len(text) > 10000:
        raise r.error("regex longer than 10000 characters")
    try:
        return re.compile(text)
    except re.error as exc:
        raise r.error(f"bad regex {text!r}: {exc}") from None


def parse_rewrite(r: Reader) -> RewriteRule:
    """Parse one ``rewrite`` directive (a line, or a block whose lines form one rule).
    Raises ConfigError naming the line."""
    args = list(r.d.args)
    stop = True
    if args and args[0] in ("stop", "continue"):
        stop = args.pop(0) == "stop"
    for sub in r.d.block:
        args.extend([sub.name, *sub.args])
    if not args:
        raise r.error("want [continue|stop] FIELD ...")
    what, rest = args[0].lower(), args[1:]
    if what in ("type", "class"):
        if len(rest) != 2:
            raise r.error(f"{what}: want FROM TO, got {' '.join(rest)!r}")
        source, target = _type_value(r, rest[0], what), _type_value(r, rest[1], what)
        return RewriteRule(what, "", source, target, stop)
    if what in UNSUPPORTED_FIELDS:
        raise r.error(f"field {what!r} is not supported by clusterdns")
    if what != "name":
        raise r.error(f"unknown field {what!r}")
    if len(rest) < 2:
        raise r.error("name: too few arguments for a name rule")
    if len(rest) == 2:
        match, source, target, options = "exact", rest[0], rest[1], []
    else:
        match, source, target, options = rest[0].lower(), rest[1], rest[2], rest[3:]
    if match not in MATCH_TYPES:
        raise r.error(f"name: want exact|prefix|suffix|substring|regex, got {match!r}")
    rule = RewriteRule("name", match, source, target, stop)
    if match == "regex":
        rule.pattern = _regex(r, source)
        rule.target = normalize(target)
    else:
        rule.source, rule.target = normalize(source), normalize(target)
    rule.auto, rule.answers = _answer_options(r, options)
    return rule


def _answer_options(r: Reader, options: list[str]) -> tuple[bool, list[AnswerRule]]:
    """``answer auto | answer name FROM TO | answer value FROM TO`` (``answer`` may be left
    out after the first)."""
    auto = False
    rules: list[AnswerRule] = []
    pos = 0
    while pos < len(options):
        word = options[pos]
        if word == "answer":
            pos += 1
            if pos >= len(options):
                raise r.error("answer: want auto, name FROM TO or value FROM TO")
            word = options[pos]
        if word == "auto":
            auto = True
            pos += 1
        elif word in ("name", "value"):
            if pos + 2 >= len(options):
                raise r.error(f"answer {word}: want FROM TO")
            pattern = _regex(r, options[pos + 1])
            rewriter = regex_rewriter(pattern, normalize(options[pos + 2]))
            rules.append(AnswerRule(word == "value", rewriter))
            pos += 3
        else:
            raise r.error(f"unknown answer option {word!r}")
    if auto and any(not rule.value for rule in rules):
        raise r.error("auto name answer rule cannot be combined with explicit name answer rules")
    return auto, rules


def _wire_name(name: str) -> bytes | None:
    """Text name -> wire labels, None when it is no valid domain name."""
    if name == ".":
        return b"\x00"
    if not name.endswith(".") or ".." in name:
        return None
    out = bytearray()
    for label in name[:-1].split("."):
        raw = label.encode("latin-1", "replace")
        if not 0 < len(raw) <= 63:
            return None
        out.append(len(raw))
        out += raw
    out.append(0)
    return bytes(out) if len(out) <= 255 else None


class Revert:
    """Turns the reply to a rewritten question into the reply to the asked one."""

    def __init__(self, answers: list[list[AnswerRule]]) -> None:
        self.answers = [rule for rules in reversed(answers) for rule in rules]

    def reply(self, reply: Reply, query: Query, limit: int) -> Reply:
        """``reply`` (bytes, None or awaitable) for ``query`` as the client asked it."""
        if reply is None:
            return None
        if isinstance(reply, bytes):
            return self._bytes(reply, query, limit)
        return self._later(reply, query, limit)

    async def _later(
        self, pending: Awaitable[bytes | None], query: Query, limit: int
    ) -> bytes | None:
        reply = await pending
        return None if reply is None else self._bytes(reply, query, limit)

    def _bytes(self, reply: bytes, query: Query, limit: int) -> bytes:
        try:
            record = DNSRecord.parse(reply)
        except Exception:  # an unreadable reply from upstream
            return error_response(query, Rcode.SERVFAIL)
        record.questions = [DNSQuestion(DNSLabel(list(query.labels)), query.qtype, query.qclass)]
        for rr in record.rr + record.auth + record.ar:
            if rr.rtype == QTYPE.OPT:
                continue
            for rule in self.answers:
                if rule.value:
                    _rewrite_value(rr, rule.rewrite)
                else:
                    rr.rname = DNSLabel(rule.rewrite(str(rr.rname)))
        data = bytearray(record.pack())
        data[12 : 12 + len(query.question)] = query.question  # the client's case
        if len(data) > limit:
            tc = error_response(query, data[3] & 0xF)
            flags = struct.unpack_from("!H", tc, 2)[0] | FLAG_TC
            return tc[:2] + struct.pack("!H", flags) + tc[4:]
        return bytes(data)


def _rewrite_value(rr: object, rewrite: StringRewriter) -> None:
    """Rewrite the names inside RDATA: CNAME/PTR/NS/DNAME target, SRV target, MX exchange,
    SOA mname and rname (CoreDNS getRecordValueForRewrite)."""
    rdata = getattr(rr, "rdata", None)
    rtype = getattr(rr, "rtype", 0)
    if rtype in (QTYPE.CNAME, QTYPE.PTR, QTYPE.NS, QTYPE.DNAME, QTYPE.MX):
        rdata.label = DNSLabel(rewrite(str(rdata.label)))  # type: ignore[union-attr]
    elif rtype == QTYPE.SRV:
        rdata.target = DNSLabel(rewrite(str(rdata.target)))  # type: ignore[union-attr]
    elif rtype == QTYPE.SOA:
        rdata.mname = DNSLabel(rewrite(str(rdata.mname)))  # type: ignore[union-attr]
        rdata.rname = DNSLabel(rewrite(str(rdata.rname)))  # type: ignore[union-attr]


class Rewriter:
    """The rules of a server block, in order (CoreDNS rewrite ServeDNS)."""

    def __init__(self, rules: list[RewriteRule]) -> None:
        self.rules = rules

    def rewrite(self, query: Query, data: bytes) -> tuple[Query, bytes, Revert] | None:
        """The rewritten query and packet and how to revert the reply; None when no rule
        matched. Raises InvalidName when the rewritten name is no domain name."""
        state = _State(query.qname, query.qtype, query.qclass)
        matched = False
        for rule in self.rules:
            if rule.apply(state):
                matched = True
                if rule.stop:
                    break
        if not matched:
            return None
        wire = _wire_name(state.name)
        if wire is None:
            raise InvalidName(state.name)
        question = wire + struct.pack("!HH", state.qtype, state.qclass)
        labels = tuple(_split(wire))
        inner = Query(
            query.id,
            query.flags,
            question,
            state.name.lower(),
            labels,
            state.qtype,
            state.qclass,
            query.edns,
        )
        rest = data[12 + len(query.question) :]
        return inner, data[:12] + question + rest, Revert(state.answers)


def _split(wire: bytes) -> list[bytes]:
    labels = []
    pos = 0
    while wire[pos]:
        labels.append(wire[pos + 1 : pos + 1 + wire[pos]])
        pos += 1 + wire[pos]
    return labels


def _build(rules: list[RewriteRule], build: Build) -> Step:
    rewriter = Rewriter(rules)

    def run(chain: Chain, ask: Ask) -> Outcome | None:
        """The rest of the chain answers the rewritten question (SERVFAIL when the new
        name is no domain name); the chain turns the reply back (``ask.revert``)."""
        try:
            rewritten = rewriter.rewrite(ask.query, ask.data)
        except InvalidName:
            return error_response(ask.query, Rcode.SERVFAIL), "rewrite"
        if rewritten is not None:
            ask.query, ask.data, ask.revert = rewritten
            ask.rewritten = True
        return None

    return Step(run)


PLUGIN = Plugin("rewrite", lambda r, setup: parse_rewrite(r), _build, repeatable=True)
"""CoreDNS plugin/rewrite: name, type and class rules, answers turned back."""
