"""The ``template`` plugin: answers built from the question by templates (CoreDNS
plugin/template README).

``template CLASS TYPE [ZONE...] { match REGEX... answer RR additional RR authority RR
rcode CODE fallthrough [ZONES...] }``. CLASS and TYPE may be ``ANY``. For a question of
that class and type under the zones, the first ``match`` regex that matches the
(lower-case) name answers, with the RRs rendered from their templates, the rcode and AA
set; no ``match`` means ``.*``. When none matches: the next template or plugin under
``fallthrough``, else SERVFAIL.

Supported subset of Go templates: ``{{ .Name }}``, ``{{ .Zone }}``, ``{{ .Class }}``,
``{{ .Type }}``, ``{{ .Group.NAME }}`` (a named group, ``(?P<NAME>...)`` or Go's
``(?<NAME>...)``), ``{{ index .Match N }}``, with ``{{-``/``-}}`` trimming. Anything else
(``.Message``, ``.Question``, ``.Remote``, ``.Var``, ``.Meta``, functions, pipelines,
``if``/``range``) is refused when the Corefile is read, as are ``var``, ``expr`` and
``ederror``. Records are parsed as zone-file lines (``NAME [TTL] [CLASS] TYPE RDATA``, TTL
3600 when left out, names absolute) and built with dnslib: off the cluster hot path.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dnslib import CLASS, EDNS0, QTYPE, RCODE, RR, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from ..core.names import find_zone
from ..core.rr import Rcode
from ..dns.wire import FLAG_TC, Query, error_response
from .plugin import Ask, Build, Chain, Outcome, Plugin, Step

if TYPE_CHECKING:
    from ..corefile.reader import Reader

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}")
_FIELD = re.compile(r"^\.(Name|Zone|Class|Type)$|^\.Group\.(\w+)$|^index\s+\.Match\s+(\d+)$")
_RR_HEAD = re.compile(
    r"^\s*(\S+)\s+(?:(\d+)\s+)?(?:(IN|CH|CS|HS|ANY)\s+)?([A-Za-z][A-Za-z0-9]*)\s+(.*)$",
    re.IGNORECASE,
)
UNSUPPORTED_OPTIONS = ("var", "expr", "ederror")


@dataclass
class TemplateConfig:
    """One ``template`` directive. ``qclass``/``qtype``: numbers, 255 for ANY."""

    qclass: int
    qtype: int
    zones: tuple[str, ...]
    matches: list[re.Pattern[str]] = field(default_factory=list)
    answer: list[str] = field(default_factory=list)
    additional: list[str] = field(default_factory=list)
    authority: list[str] = field(default_factory=list)
    rcode: int = Rcode.NOERROR
    fallthrough: tuple[str, ...] | None = None


def _check_template(r: Reader, text: str, line: int) -> None:
    for action in _ACTION.finditer(text):
        if not _FIELD.match(action.group(2)):
            raise r.error(
                f"{{{{ {action.group(2)} }}}} is not supported by clusterdns (supported: .Name, "
                ".Zone, .Class, .Type, .Group.NAME, index .Match N)",
                line,
            )


def _go_regex(r: Reader, text: str, line: int) -> re.Pattern[str]:
    if len(text) > 10000:
        raise r.error("regex longer than 10000 characters", line)
    try:
        return re.compile(re.sub(r"\(\?<(\w+)>", r"(?P<\1>", text))  # Go's named groups
    except re.error as exc:
        raise r.error(f"bad regex {text!r}: {exc}", line) from None


def parse_template(r: Reader, server_zones: tuple[str, ...]) -> TemplateConfig:
    """Parse one ``template`` directive. Raises ConfigError naming the line."""
    from ..corefile.reader import zones_args

    args = r.d.args
    r.count(args, 2, 1000, "CLASS TYPE [ZONE...]")
    try:
        qclass = 255 if args[0].upper() == "ANY" else int(getattr(CLASS, args[0].upper()))
        qtype = 255 if args[1].upper() == "ANY" else int(getattr(QTYPE, args[1].upper()))
    except Exception:  # dnslib raises its DNSError for an unknown name
        raise r.error(f"want CLASS TYPE, got {args[0]!r} {args[1]!r}") from None
    config = TemplateConfig(qclass, qtype, zones_args(args[2:], server_zones, r))
    for sub in r.d.block:
        a, line = sub.args, sub.line
        if sub.name == "match":
            r.count(a, 1, 1000, "match REGEX...", line)
            config.matches.extend(_go_regex(r, text, line) for text in a)
        elif sub.name in ("answer", "additional", "authority"):
            r.count(a, 1, 1, f"{sub.name} RR", line)
            _check_template(r, a[0], line)
            getattr(config, sub.name).append(a[0])
        elif sub.name == "rcode":
            r.count(a, 1, 1, "rcode CODE", line)
            try:
                config.rcode = int(getattr(RCODE, a[0].upper()))
            except Exception:
                raise r.error(f"rcode: unknown rcode {a[0]!r}", line) from None
        elif sub.name == "fallthrough":
            config.fallthrough = zones_args(a, (), r, line)
        elif sub.name in UNSUPPORTED_OPTIONS:
            raise r.error(f"option {sub.name!r} is not supported by clusterdns", line)
        else:
            raise r.error(f"unknown option {sub.name!r}", line)
    if not config.matches:
        config.matches.append(re.compile(".*"))
    return config


def render(text: str, values: dict[str, str], match: re.Match[str]) -> str:
    """Fill a template's actions from ``values`` (Name, Zone, Class, Type) and ``match``."""

    def action(m: re.Match[str]) -> str:
        found = _FIELD.match(m.group(2))
        assert found is not None  # checked when the Corefile was read
        if found.group(1):
            return values[found.group(1)]
        if found.group(2):
            return match.groupdict().get(found.group(2)) or ""
        index = int(found.group(3))
        return (match.group(index) or "") if index <= (match.re.groups or 0) else ""

    out = []
    pos = 0
    for m in _ACTION.finditer(text):
        before = text[pos : m.start()]
        if m.group(1):
            before = before.rstrip()
        out.append(before)
        out.append(action(m))
        pos = m.end()
        if m.group(3):
            while pos < len(text) and text[pos].isspace():
                pos += 1
    out.append(text[pos:])
    return "".join(out)


def parse_rr(text: str) -> list[RR]:
    """A zone-file line -> dnslib records; ValueError when it is not one."""
    head = _RR_HEAD.match(text)
    if head is None:
        raise ValueError(f"not a resource record: {text!r}")
    name, ttl, rclass, rtype, rdata = head.groups()
    rdata = rdata.replace("(", " ").replace(")", " ")
    line = f"{name} {ttl or 3600} {(rclass or 'IN').upper()} {rtype.upper()} {rdata}"
    try:
        records = RR.fromZone(line)
    except Exception as exc:  # dnslib raises several kinds
        raise ValueError(f"not a resource record: {text!r}: {exc}") from None
    return list(records)


class Template:
    """A runtime template; :meth:`answer` for the handler."""

    def __init__(self, config: TemplateConfig) -> None:
        self.config = config

    def answer(self, query: Query, limit: int) -> bytes | None:
        """The reply bytes, or None to go on (another class/type/zone, or no match under
        ``fallthrough``). SERVFAIL when no regex matches without fallthrough, or when a
        rendered record does not parse."""
        c = self.config
        if c.qclass != 255 and query.qclass != c.qclass:
            return None
        if c.qtype != 255 and query.qtype != c.qtype:
            return None
        zone = find_zone(query.qname, c.zones)
        if zone is None:
            return None
        for pattern in c.matches:
            match = pattern.search(query.qname)
            if match is not None:
                return self._reply(query, zone, match, limit)
        ft = c.fallthrough
        if ft is not None and (not ft or find_zone(query.qname, ft)):
            return None
        return error_response(query, Rcode.SERVFAIL)

    def _reply(self, query: Query, zone: str, match: re.Match[str], limit: int) -> bytes:
        c = self.config
        values = {
            "Name": query.qname,
            "Zone": zone,
            "Class": CLASS.get(query.qclass, str(query.qclass)),
            "Type": QTYPE.get(query.qtype, str(query.qtype)),
        }
        qname = DNSLabel(list(query.labels))
        record = DNSRecord(
            DNSHeader(id=query.id, qr=1, aa=1, rd=(query.flags >> 8) & 1, rcode=c.rcode),
            q=DNSQuestion(qname, query.qtype, query.qclass),
        )
        try:
            for text in c.answer:
                for rr in parse_rr(render(text, values, match)):
                    record.add_answer(rr)
            for text in c.authority:
                for rr in parse_rr(render(text, values, match)):
                    record.add_auth(rr)
            for text in c.additional:
                for rr in parse_rr(render(text, values, match)):
                    record.add_ar(rr)
        except ValueError:
            return error_response(query, Rcode.SERVFAIL)
        if query.edns is not None:
            payload = query.udp_size  # we advertise what we honour (RFC 6891 6.2.5)
            record.add_ar(EDNS0(udp_len=payload, flags="do" if query.edns[2] else ""))
        data = bytearray(record.pack())
        data[12 : 12 + len(query.question)] = query.question
        if len(data) > limit:
            tc = error_response(query, c.rcode)
            flags = struct.unpack_from("!H", tc, 2)[0] | FLAG_TC | 0x0400
            return tc[:2] + struct.pack("!H", flags) + tc[4:]
        return bytes(data)


def _build(configs: list[TemplateConfig], build: Build) -> Step:
    templates = [Template(config) for config in configs]

    def run(chain: Chain, ask: Ask) -> Outcome | None:
        """The first template that matches answers."""
        for template in templates:
            built = template.answer(ask.query, ask.limit)
            if built is not None:
                return built, "template"
        return None

    return Step(run)


PLUGIN = Plugin(
    "template", lambda r, setup: parse_template(r, setup.zones), _build, repeatable=True
)
"""CoreDNS plugin/template: answers made from a regex match of the question."""
