"""The expression language of CoreDNS's ``view`` plugin: parse once, evaluate per query.

CoreDNS's plugin/view compiles each ``expr`` line with expr-lang/expr against the request
functions of plugin/pkg/expression (``DefaultEnv``) and routes a query to the server block
when every expression evaluates to ``true``. This module is the subset of that language
view users write, checked and compiled once into a tree of closures; evaluation never
touches the parser, and nothing is ever handed to ``eval``/``exec``.

Language (expr-lang/expr docs/language-definition.md; precedence from its
parser/operator/operator.go, loosest first):

- ``or`` ``||`` (10); ``and`` ``&&`` (15);
- ``==`` ``!=`` ``<`` ``<=`` ``>`` ``>=`` ``in`` ``matches`` ``contains`` ``startsWith``
  ``endsWith`` (20, left-associative; ``a < b < c`` means ``a < b and b < c``; the word
  operators take a ``not`` prefix: ``type() not in ['A']``);
- ``not`` ``!`` (50: tighter than comparisons, as in expr, so ``not name() == 'x'`` is
  ``(not name()) == 'x'``, a type error; write ``!(name() == 'x')`` or ``!=``);
- unary ``-`` on numbers; parentheses; ``'...'``, ``"..."`` (Go escapes) and raw
  `````...````` strings; integers (``42``, ``0x2A``, ``0o52``, ``0b101010``) and floats;
  ``true``/``false``; list literals ``['A', 'AAAA']``; calls of the functions below.

Functions (CoreDNS plugin/pkg/expression/expression.go and request/request.go): ``bufsize()``
int, ``class()`` string, ``client_ip()`` string, ``do()`` bool, ``id()`` int, ``name()``
string, ``opcode()`` int, ``port()`` string, ``proto()`` string, ``server_ip()`` string,
``server_port()`` string, ``size()`` int, ``type()`` string, ``incidr(ip, cidr)`` bool,
``metadata(key)`` string.

Types are checked at compile time as expr's checker does: ``==`` between a string and a
number is refused (``server_port() == 53`` is an error in CoreDNS too: write
``server_port() == '53'``).

Bounds: an expression is at most :data:`MAX_TEXT` characters and nests at most
:data:`MAX_DEPTH` levels; a regular expression is a literal, compiled once.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NoReturn

import lark

from ..core.errors import ConfigError
from ..dns.message import Query

MAX_TEXT = 4096  # characters of one expression
MAX_DEPTH = 64  # levels of the syntax tree (parentheses, not, each operator of a chain)

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Request:
    """What a view expression may read of one query.

    ``client_ip``/``server_ip``: IP text without brackets or zone (``"10.0.0.1"``, ``"::1"``);
    ports: integers; ``proto``: ``"udp"`` or ``"tcp"``; ``name``: the qname in presentation
    form, absolute (``"example.com."``; ``name()`` lower-cases it as CoreDNS's
    ``request.Name`` does); ``qtype``/``qclass``/``opcode``: the numbers from the message;
    ``bufsize``: the EDNS0 UDP payload size the query advertised, 0 without an OPT record
    (``bufsize()`` normalises it as CoreDNS ``request.Size``); ``metadata``: the values a
    ``metadata`` plugin would expose (``metadata(key)`` is ``""`` for an absent key);
    ``msg_id``, ``do``, ``size``: the message ID, the EDNS0 DO bit and the query's length
    in bytes (``id()``, ``do()``, ``size()``).
    """

    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    proto: str
    name: str
    qtype: int
    opcode: int
    bufsize: int
    metadata: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    qclass: int = 1
    msg_id: int = 0
    do: bool = False
    size: int = 0


def request_of(
    query: Query, size: int, tcp: bool, client: tuple[str, int], local: tuple[str, int]
) -> Request:
    """The :class:`Request` of a parsed query (``size``: the message's length in bytes)
    that came from ``client`` (ip, port) to ``local`` (our ip, port) over TCP or UDP.
    CoreDNS: ``request.Request`` on the ``dns.ResponseWriter``'s addresses."""
    edns = query.edns
    return Request(
        client[0],
        client[1],
        local[0],
        local[1],
        "tcp" if tcp else "udp",
        query.qname,
        query.qtype,
        (query.flags >> 11) & 0xF,
        edns[0] if edns is not None else 0,
        qclass=query.qclass,
        msg_id=query.id,
        do=bool(edns is not None and edns[2]),
        size=size,
    )


class ExprError(ConfigError):
    """An expression outside the subset: ``msg`` at ``line`` and ``column`` (1-based; the
    column counts characters of the expression text, the line is the caller's line plus
    the expression's own line breaks). ``str()`` reads ``line 3, column 14: msg``."""

    def __init__(self, msg: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {msg}")
        self.msg = msg
        self.line = line
        self.column = column


class _EvalFailed(Exception):
    """An error while evaluating (``incidr`` of something that is no IP): the expression
    does not match, as CoreDNS's ``View.Filter`` treats an error of ``expr.Run``."""


Eval = Callable[[Request], Any]


@dataclass(frozen=True, slots=True)
class ViewExpr:
    """A compiled expression: :meth:`matches` says whether a request passes it."""

    text: str
    _run: Eval

    def matches(self, req: Request) -> bool:
        """True if the expression is true for ``req``; False if it is false or failed
        while evaluating (CoreDNS plugin/view ``Filter``: an error is no match)."""
        try:
            return self._run(req) is True
        except _EvalFailed:
            return False


# ---- the grammar -----------------------------------------------------------------------

_GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr | or_expr (OR | OROR) and_expr -> logic
?and_expr: cmp_expr | and_expr (AND | ANDAND) cmp_expr -> logic
?cmp_expr: unary
    | cmp_expr CMP unary -> compare
    | cmp_expr NOT? (IN | MATCHES | CONTAINS | STARTSWITH | ENDSWITH) unary -> wordop
?unary: primary | (NOT | BANG) unary -> negate | MINUS unary -> minus
?primary: STRING -> string
    | NUMBER -> number
    | TRUE -> true
    | FALSE -> false
    | NAME "(" [_args] ")" -> call
    | NAME -> variable
    | LSQB [_args] "]" -> list
    | LPAR or_expr ")" -> paren
_args: or_expr ("," or_expr)* ","?

OR.2: /or\b/
OROR: "||"
AND.2: /and\b/
ANDAND: "&&"
NOT.2: /not\b/
BANG: "!"
MINUS: "-"
IN.2: /in\b/
MATCHES.2: /matches\b/
CONTAINS.2: /contains\b/
STARTSWITH.2: /startsWith\b/
ENDSWITH.2: /endsWith\b/
TRUE.2: /true\b/
FALSE.2: /false\b/
LSQB: "["
LPAR: "("
CMP: "==" | "!=" | "<=" | ">=" | "<" | ">"
NAME: /[A-Za-z_][A-Za-z0-9_]*/
STRING: /'(?:[^'\\\n]|\\.)*'/ | /"(?:[^"\\\n]|\\.)*"/ | /`[^`]*`/
NUMBER: /0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+/
    | /(?:[0-9][0-9_]*(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?/
%ignore /[ \t\r\n]+/
%ignore /\/\/[^\n]*/
%ignore /\/\*(?:[^*]|\*(?!\/))*\*\//
"""

# Word operators end at a word boundary (``andx`` is a name, not ``and x``), and win over
# NAME where both match the same word.
_PARSER = lark.Lark(_GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)

_TERMINALS = {
    "OR": "'or'", "OROR": "'||'", "AND": "'and'", "ANDAND": "'&&'", "NOT": "'not'",
    "BANG": "'!'", "MINUS": "'-'", "IN": "'in'", "MATCHES": "'matches'",
    "CONTAINS": "'contains'", "STARTSWITH": "'startsWith'", "ENDSWITH": "'endsWith'",
    "TRUE": "'true'", "FALSE": "'false'", "LSQB": "'['", "LPAR": "'('", "RPAR": "')'",
    "RSQB": "']'", "COMMA": "','", "CMP": "a comparison", "NAME": "a function",
    "STRING": "a string", "NUMBER": "a number", "$END": "the end",
}

# ---- types: expr's checker, for the kinds of value this subset has ----------------------

STR, INT, FLOAT, BOOL, LIST = "string", "int", "float", "bool", "list"
_NUMBERS = (INT, FLOAT)


@dataclass(frozen=True, slots=True)
class _Node:
    """A compiled sub-expression: its closure, static type and, for a constant, value."""

    run: Eval
    kind: str
    const: bool = False
    value: Any = None
    elems: tuple[_Node, ...] = ()


def _constant(value: Any, kind: str) -> _Node:
    return _Node(lambda _req: value, kind, True, value)


# ---- the request functions (CoreDNS plugin/pkg/expression DefaultEnv) --------------------

# miekg/dns TypeToString for the types a client asks; others read TYPEnnn as dns.Type.String
_TYPE_NAMES = {
    1: "A", 2: "NS", 3: "MD", 4: "MF", 5: "CNAME", 6: "SOA", 7: "MB", 8: "MG", 9: "MR",
    10: "NULL", 12: "PTR", 13: "HINFO", 14: "MINFO", 15: "MX", 16: "TXT", 17: "RP",
    18: "AFSDB", 19: "X25", 20: "ISDN", 21: "RT", 23: "NSAPPTR", 24: "SIG", 25: "KEY",
    26: "PX", 27: "GPOS", 28: "AAAA", 29: "LOC", 30: "NXT", 31: "EID", 32: "NIMLOC",
    33: "SRV", 34: "ATMA", 35: "NAPTR", 36: "KX", 37: "CERT", 39: "DNAME", 41: "OPT",
    42: "APL", 43: "DS", 44: "SSHFP", 45: "IPSECKEY", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY",
    49: "DHCID", 50: "NSEC3", 51: "NSEC3PARAM", 52: "TLSA", 53: "SMIMEA", 55: "HIP",
    56: "NINFO", 57: "RKEY", 58: "TALINK", 59: "CDS", 60: "CDNSKEY", 61: "OPENPGPKEY",
    62: "CSYNC", 63: "ZONEMD", 64: "SVCB", 65: "HTTPS", 99: "SPF", 100: "UINFO", 101: "UID",
    102: "GID", 103: "UNSPEC", 104: "NID", 105: "L32", 106: "L64", 107: "LP", 108: "EUI48",
    109: "EUI64", 249: "TKEY", 250: "TSIG", 251: "IXFR", 252: "AXFR", 253: "MAILB",
    254: "MAILA", 255: "ANY", 256: "URI", 257: "CAA", 258: "AVC", 260: "AMTRELAY",
    32768: "TA", 32769: "DLV",
}
_CLASS_NAMES = {1: "IN", 3: "CH", 4: "HS", 254: "NONE", 255: "ANY"}


def _type(req: Request) -> str:
    return _TYPE_NAMES.get(req.qtype) or f"TYPE{req.qtype}"


def _class(req: Request) -> str:
    return _CLASS_NAMES.get(req.qclass) or f"CLASS{req.qclass}"


def _bufsize(req: Request) -> int:
    # CoreDNS request.Size -> edns.Size: 65535 over TCP, at least 512 over UDP
    return 65535 if req.proto == "tcp" else max(512, req.bufsize)


_NULLARY: dict[str, tuple[Eval, str]] = {
    "client_ip": (lambda req: req.client_ip, STR),
    "server_ip": (lambda req: req.server_ip, STR),
    "port": (lambda req: str(req.client_port), STR),
    "server_port": (lambda req: str(req.server_port), STR),
    "proto": (lambda req: req.proto, STR),
    "name": (lambda req: req.name.lower(), STR),
    "type": (_type, STR),
    "class": (_class, STR),
    "opcode": (lambda req: req.opcode, INT),
    "bufsize": (_bufsize, INT),
    "id": (lambda req: req.msg_id, INT),
    "do": (lambda req: req.do, BOOL),
    "size": (lambda req: req.size, INT),
}

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _network(text: str) -> _Network | None:
    """A CIDR as Go's net.ParseCIDR reads it (host bits allowed); None if it is none."""
    if "/" not in text:
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _in_network(ip_text: str, net: _Network) -> bool:
    """Go net.IPNet.Contains: an IPv4-mapped IPv6 address is in an IPv4 network."""
    try:
        ip = ipaddress.ip_address(ip_text)
    except ValueError:
        raise _EvalFailed from None  # CoreDNS: "first argument is not an IP address"
    if ip.version != net.version:
        mapped = getattr(ip, "ipv4_mapped", None)
        return mapped is not None and mapped in net
    return ip in net


# ---- compiling --------------------------------------------------------------------------


class _Compiler:
    def __init__(self, text: str, line: int) -> None:
        self.text = text
        self.line = line

    def fail(self, msg: str, where: lark.Tree[Any] | lark.Token | None) -> NoReturn:
        line, column = 1, 1
        if isinstance(where, lark.Token):
            line, column = where.line or 1, where.column or 1
        elif where is not None and where.meta and not where.meta.empty:
            line, column = where.meta.line, where.meta.column
        raise ExprError(msg, self.line + line - 1, column)

    def node(self, tree: lark.Tree[Any] | lark.Token) -> _Node:
        if isinstance(tree, lark.Token):  # only bare terminals of inlined rules reach here
            self.fail(f"unexpected {tree.value!r}", tree)
        method = getattr(self, f"_{tree.data}")
        result: _Node = method(tree, *tree.children)
        return result

    # literals
    def _string(self, tree: lark.Tree[Any], tok: lark.Token) -> _Node:
        return _constant(_unquote(tok, self), STR)

    def _number(self, tree: lark.Tree[Any], tok: lark.Token) -> _Node:
        text = tok.value
        try:
            if re.fullmatch(r"0[xXoObB].*|[0-9_]+", text):
                return _constant(int(text, 0), INT)
            return _constant(float(text.replace("_", "")), FLOAT)
        except ValueError:
            self.fail(f"not a number: {text!r}", tok)

    def _true(self, tree: lark.Tree[Any], tok: lark.Token) -> _Node:
        return _constant(True, BOOL)

    def _false(self, tree: lark.Tree[Any], tok: lark.Token) -> _Node:
        return _constant(False, BOOL)

    def _variable(self, tree: lark.Tree[Any], tok: lark.Token) -> _Node:
        if tok.value in _NULLARY or tok.value in ("incidr", "metadata"):
            self.fail(f"{tok.value} is a function: write {tok.value}()", tok)
        self.fail(f"unknown name {tok.value!r} (the request functions are called: name())", tok)

    def _paren(self, tree: lark.Tree[Any], _lpar: lark.Token, inner: Any) -> _Node:
        # its own tree ("paren"), so a parenthesised comparison never chains: (a < b) < c
        return self.node(inner)

    def _list(self, tree: lark.Tree[Any], _lsqb: lark.Token, *items: Any) -> _Node:
        elems = tuple(self.node(item) for item in items)
        if all(e.const for e in elems):
            values = tuple(e.value for e in elems)
            return _Node(lambda _req: values, LIST, True, values, elems)
        runs = tuple(e.run for e in elems)
        return _Node(lambda req: tuple(run(req) for run in runs), LIST, False, None, elems)

    def _call(self, tree: lark.Tree[Any], name: lark.Token, *args: Any) -> _Node:
        fn = name.value
        nodes = [self.node(arg) for arg in args]
        if fn in _NULLARY:
            if nodes:
                self.fail(f"{fn}() takes no arguments, got {len(nodes)}", name)
            run, kind = _NULLARY[fn]
            return _Node(run, kind)
        if fn == "metadata":
            self.want_args(fn, nodes, (STR,), args, name)
            key = nodes[0]
            if key.const:
                k = key.value
                return _Node(lambda req: req.metadata.get(k, ""), STR)
            key_run = key.run
            return _Node(lambda req: req.metadata.get(key_run(req), ""), STR)
        if fn == "incidr":
            self.want_args(fn, nodes, (STR, STR), args, name)
            ip, cidr = nodes
            if cidr.const:
                net = _network(cidr.value)
                if net is None:
                    # DIFFERS: CoreDNS compiles it and the view never matches
                    self.fail(f"incidr: not a CIDR: {cidr.value!r}", args[1])
                ip_run = ip.run
                return _Node(lambda req: _in_network(ip_run(req), net), BOOL)
            ip_run, cidr_run = ip.run, cidr.run

            def incidr(req: Request) -> bool:
                net = _network(cidr_run(req))
                if net is None:
                    raise _EvalFailed
                return _in_network(ip_run(req), net)

            return _Node(incidr, BOOL)
        known = ", ".join(sorted([*_NULLARY, "incidr", "metadata"]))
        self.fail(f"unknown function {fn!r} (want one of {known})", name)

    def want_args(
        self, fn: str, nodes: list[_Node], kinds: tuple[str, ...], args: tuple[Any, ...],
        name: lark.Token,
    ) -> None:
        if len(nodes) != len(kinds):
            self.fail(f"{fn}() takes {len(kinds)} argument(s), got {len(nodes)}", name)
        for i, (node, kind) in enumerate(zip(nodes, kinds, strict=True)):
            if node.kind != kind:
                self.fail(f"{fn}() argument {i + 1}: want a {kind}, got a {node.kind}", args[i])

    # operators
    def _negate(self, tree: lark.Tree[Any], op: lark.Token, inner: Any) -> _Node:
        node = self.node(inner)
        if node.kind != BOOL:
            self.fail(f"{op.value}: want a bool, got a {node.kind} (expr binds 'not' tighter "
                      "than comparisons: write !(a == b) or a != b)", op)
        run = node.run
        return _Node(lambda req: not run(req), BOOL)

    def _minus(self, tree: lark.Tree[Any], op: lark.Token, inner: Any) -> _Node:
        node = self.node(inner)
        if node.kind not in _NUMBERS:
            self.fail(f"-: want a number, got a {node.kind}", op)
        if node.const:
            return _constant(-node.value, node.kind)
        run = node.run
        return _Node(lambda req: -run(req), node.kind)

    def _logic(self, tree: lark.Tree[Any], left: Any, op: lark.Token, right: Any) -> _Node:
        lhs, rhs = self.node(left), self.node(right)
        for side in (lhs, rhs):
            if side.kind != BOOL:
                self.fail(f"{op.value}: want bools, got a {side.kind}", op)
        lrun, rrun = lhs.run, rhs.run
        if op.type in ("AND", "ANDAND"):
            return _Node(lambda req: lrun(req) and rrun(req), BOOL)
        return _Node(lambda req: lrun(req) or rrun(req), BOOL)

    def _compare(self, tree: lark.Tree[Any], left: Any, op: lark.Token, right: Any) -> _Node:
        chained = (
            isinstance(left, lark.Tree) and left.data == "compare"
            and str(left.children[1]) in ("<", "<=", ">", ">=")
            and op.value in ("<", "<=", ">", ">=")
        )
        if chained:  # expr: a < b < c is a < b && b < c
            first = self.node(left)
            middle = self.node(left.children[2])
            last = self.compare(middle, op, self.node(right))
            frun, lrun = first.run, last.run
            return _Node(lambda req: frun(req) and lrun(req), BOOL)
        return self.compare(self.node(left), op, self.node(right))

    def compare(self, lhs: _Node, op: lark.Token, rhs: _Node) -> _Node:
        sym = op.value
        lrun, rrun = lhs.run, rhs.run
        if sym in ("==", "!="):
            comparable = lhs.kind == rhs.kind or (lhs.kind in _NUMBERS and rhs.kind in _NUMBERS)
            if not comparable:
                self.fail(f"{sym}: mismatched types {lhs.kind} and {rhs.kind}", op)
            if sym == "==":
                return _Node(lambda req: lrun(req) == rrun(req), BOOL)
            return _Node(lambda req: lrun(req) != rrun(req), BOOL)
        ordered = (lhs.kind in _NUMBERS and rhs.kind in _NUMBERS) or lhs.kind == rhs.kind == STR
        if not ordered:
            self.fail(f"{sym}: want two numbers or two strings, got {lhs.kind} and {rhs.kind}", op)
        if sym == "<":
            return _Node(lambda req: lrun(req) < rrun(req), BOOL)
        if sym == "<=":
            return _Node(lambda req: lrun(req) <= rrun(req), BOOL)
        if sym == ">":
            return _Node(lambda req: lrun(req) > rrun(req), BOOL)
        return _Node(lambda req: lrun(req) >= rrun(req), BOOL)

    def _wordop(self, tree: lark.Tree[Any], left: Any, *rest: Any) -> _Node:
        negated = len(rest) == 3
        op: lark.Token = rest[-2]
        lhs, rhs = self.node(left), self.node(rest[-1])
        node = self.wordop(lhs, op, rhs, rest[-1])
        if not negated:
            return node
        run = node.run
        return _Node(lambda req: not run(req), BOOL)

    def wordop(self, lhs: _Node, op: lark.Token, rhs: _Node, rtree: Any) -> _Node:
        sym = op.value
        lrun, rrun = lhs.run, rhs.run
        if sym == "in":
            if rhs.kind != LIST:
                self.fail(f"in: want a list like ['A', 'AAAA'] on the right, got a {rhs.kind}",
                          op)
            for elem in rhs.elems:
                same = elem.kind == lhs.kind or (elem.kind in _NUMBERS and lhs.kind in _NUMBERS)
                if not same:
                    self.fail(f"in: mismatched types {lhs.kind} and a list item {elem.kind}", op)
            if rhs.const:
                values = frozenset(rhs.value)
                return _Node(lambda req: lrun(req) in values, BOOL)
            return _Node(lambda req: lrun(req) in rrun(req), BOOL)
        if lhs.kind != STR or rhs.kind != STR:
            self.fail(f"{sym}: want two strings, got {lhs.kind} and {rhs.kind}", op)
        if sym == "matches":
            if not rhs.const:
                # DIFFERS: expr compiles a computed pattern per evaluation; we refuse it
                self.fail("matches: want a string literal pattern", op)
            pattern = _regex(rhs.value, self, rtree)
            search = pattern.search
            return _Node(lambda req: search(lrun(req)) is not None, BOOL)
        if sym == "contains":
            return _Node(lambda req: rrun(req) in lrun(req), BOOL)
        if sym == "startsWith":
            return _Node(lambda req: lrun(req).startswith(rrun(req)), BOOL)
        return _Node(lambda req: lrun(req).endswith(rrun(req)), BOOL)


_ESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
    "\\": "\\", "'": "'", '"': '"', "`": "`", "?": "?",
}
_ESCAPE = re.compile(
    r"\\(?:(?P<c>[abfnrtv\\'\"`?])|[xX](?P<x>[0-9a-fA-F]{2})|u\{(?P<ub>[0-9a-fA-F]{1,6})\}"
    r"|u(?P<u>[0-9a-fA-F]{4})|U(?P<U>[0-9a-fA-F]{8})|(?P<o>[0-3][0-7]{2})|(?P<bad>.?))",
    re.S,
)


def _unquote(tok: lark.Token, compiler: _Compiler) -> str:
    """A string literal's value, escapes read as expr's lexer (parser/lexer/utils.go)."""
    text = str(tok)
    body = text[1:-1]
    if text[0] == "`":
        return body

    def one(match: re.Match[str]) -> str:
        if match["c"] is not None:
            return _ESCAPES[match["c"]]
        if match["bad"] is not None:
            column = (tok.column or 1) + 1 + match.start()
            raise ExprError(f"bad escape {match[0]!r} in a string", tok.line or 1, column)
        digits = match["x"] or match["ub"] or match["u"] or match["U"]
        value = int(digits, 16) if digits else int(match["o"], 8)
        if value > 0x10FFFF:
            raise ExprError(f"bad escape {match[0]!r} in a string", tok.line or 1,
                            (tok.column or 1) + 1 + match.start())
        return chr(value)

    try:
        return _ESCAPE.sub(one, body)
    except ExprError as exc:
        raise ExprError(exc.msg, compiler.line + exc.line - 1, exc.column) from None


def _regex(pattern: str, compiler: _Compiler, where: Any) -> re.Pattern[str]:
    """``pattern`` compiled for ``matches`` (Go regexp/RE2 syntax read by Python's ``re``).
    Lookaround and backreferences, which RE2 refuses, are refused; ``\\z`` (RE2's end of
    text) is read as Python's ``\\Z``."""
    if re.search(r"\(\?<?[=!]|\\[1-9]|\(\?P=", pattern):
        compiler.fail("matches: lookaround and backreferences are not RE2: "
                      f"{pattern[:80]!r}", where)
    try:
        return re.compile(re.sub(r"(?<!\\)((?:\\\\)*)\\z", r"\1\\Z", pattern))
    except re.error as exc:
        compiler.fail(f"matches: bad regular expression {pattern[:80]!r}: {exc.msg}"
                      f" at offset {exc.pos}", where)


def _depth(tree: lark.Tree[Any]) -> int:
    """The depth of ``tree``, walked without recursion (the parse may be deep)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, lark.Tree):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in node.children)
    return deepest


def _syntax_error(exc: lark.exceptions.UnexpectedInput, text: str, line: int) -> ExprError:
    where_line = exc.line if isinstance(exc.line, int) and exc.line > 0 else 1
    column = exc.column if isinstance(exc.column, int) and exc.column > 0 else len(text) + 1
    if isinstance(exc, lark.exceptions.UnexpectedCharacters):
        pos = exc.pos_in_stream or 0
        char = text[pos] if pos < len(text) else ""
        hint = ""
        if char in "+*/%^|&?.:;{}=$#":
            hint = " (outside the supported subset: arithmetic, pipes, maps, ternaries, =)"
        return ExprError(f"unexpected character {char!r}{hint}", line + where_line - 1, column)
    if isinstance(exc, lark.exceptions.UnexpectedToken):
        token = exc.token
        if token.type == "$END":
            msg = "unexpected end of expression"
            column = len(text.rsplit("\n", 1)[-1]) + 1
        else:
            msg = f"unexpected {token.value!r}"
        wants = sorted({_TERMINALS.get(t, t) for t in exc.expected if not t.startswith("__")})
        if 0 < len(wants) <= 6:
            msg += f", want {' or '.join(wants)}"
        return ExprError(msg, line + where_line - 1, column)
    return ExprError("unexpected end of expression", line, len(text) + 1)


def compile_view(text: str, line: int = 1) -> ViewExpr:
    """Compile the expression ``text`` (a view's ``expr`` arguments joined by spaces, as
    CoreDNS plugin/view setup.go joins them) into a :class:`ViewExpr`.

    ``line`` is the line the expression starts on (the Corefile's), used in errors.
    Raises :class:`ExprError` with the line and 1-based column for a syntax error, an
    unknown function, mismatched types, a result that is not a bool, a regular expression
    or CIDR literal that does not compile, more than :data:`MAX_TEXT` characters or more
    than :data:`MAX_DEPTH` levels of nesting.
    """
    if len(text) > MAX_TEXT:
        raise ExprError(f"expression longer than {MAX_TEXT} characters ({len(text)})", line,
                        MAX_TEXT + 1)
    if not text.strip():
        raise ExprError("empty expression", line, 1)
    try:
        tree = _PARSER.parse(text)
    except lark.exceptions.UnexpectedInput as exc:
        raise _syntax_error(exc, text, line) from None
    compiler = _Compiler(text, line)
    if isinstance(tree, lark.Token):
        tree = lark.Tree("string" if tree.type == "STRING" else tree.type.lower(), [tree])
    if _depth(tree) > MAX_DEPTH:
        raise ExprError(f"expression nested deeper than {MAX_DEPTH} levels", line, 1)
    node = compiler.node(tree)
    if node.kind != BOOL:
        # DIFFERS: CoreDNS compiles it and the view never matches
        compiler.fail(f"the expression is a {node.kind}, want a bool", tree)
    return ViewExpr(text, node.run)
