"""The view expression language (plugins/viewexpr.py): every function and operator true and
false on fixed requests, the refusals with their line and column, and the bounds.

Semantics from CoreDNS plugin/view (README, setup.go), plugin/pkg/expression and
request/request.go, and expr-lang/expr's language definition."""

from __future__ import annotations

import pytest

from clusterdns.core.errors import ConfigError
from clusterdns.plugins.viewexpr import (
    MAX_DEPTH,
    MAX_TEXT,
    ExprError,
    Request,
    ViewExpr,
    compile_view,
)

UDP4 = Request(
    client_ip="10.0.0.5", client_port=40000, server_ip="10.96.0.10", server_port=53,
    proto="udp", name="Web.Shop.svc.cluster.local.", qtype=1, opcode=0, bufsize=1232,
    metadata={"kubernetes/client-namespace": "shop"}, qclass=1, msg_id=4660, do=True, size=45,
)
TCP6 = Request(
    client_ip="fd00::7", client_port=51000, server_ip="::1", server_port=1053,
    proto="tcp", name="db.internal.", qtype=28, opcode=4, bufsize=0,
)
NO_EDNS = Request("192.168.1.9", 1, "127.0.0.1", 53, "udp", "x.", 65399, 0, 0, qclass=3)

# (expression, on UDP4, on TCP6)
TABLE = [
    # the request functions
    ("client_ip() == '10.0.0.5'", True, False),
    ("client_ip() == 'fd00::7'", False, True),  # no brackets: request.IP uses SplitHostPort
    ("server_ip() == '10.96.0.10'", True, False),
    ("server_ip() == '::1'", False, True),
    ("server_port() == '53'", True, False),  # a string, as CoreDNS's LocalPort
    ("server_port() == '1053'", False, True),
    ("port() == '40000'", True, False),
    ("port() != '40000'", False, True),
    ("proto() == 'udp'", True, False),
    ("proto() == 'tcp'", False, True),
    ("name() == 'web.shop.svc.cluster.local.'", True, False),  # lower-cased, absolute
    ("name() == 'db.internal.'", False, True),
    ("type() == 'A'", True, False),
    ("type() == 'AAAA'", False, True),
    ("class() == 'IN'", True, True),
    ("opcode() == 0", True, False),  # an int, as CoreDNS's Req.Opcode
    ("opcode() == 4", False, True),
    ("bufsize() == 1232", True, False),
    ("bufsize() == 65535", False, True),  # TCP: edns.Size
    ("id() == 4660", True, False),
    ("do()", True, False),
    ("size() > 0", True, False),
    ("incidr(client_ip(), '10.0.0.0/24')", True, False),
    ("incidr(client_ip(), 'fd00::/8')", False, True),
    ("incidr(server_ip(), '10.96.0.0/12')", True, False),
    ("incidr('::ffff:10.0.0.9', '10.0.0.0/24')", True, True),  # Go: mapped IPv4 is IPv4
    ("incidr(client_ip(), '10.0.0.1/24')", True, False),  # host bits: net.ParseCIDR
    ("metadata('kubernetes/client-namespace') == 'shop'", True, False),
    ("metadata('absent') == ''", True, True),
    # operators
    ("name() != 'db.internal.'", True, False),
    ("name() matches '^web\\\\..*\\\\.local\\\\.$'", True, False),
    ("name() matches 'internal'", False, True),  # unanchored: Go MatchString
    ("name() not matches 'internal'", True, False),
    ("type() in ['A', 'AAAA']", True, True),
    ("type() in ['MX']", False, False),
    ("type() not in ['AAAA']", True, False),
    ("opcode() in [0, 2]", True, False),
    ("name() startsWith 'web.'", True, False),
    ("name() not startsWith 'web.'", False, True),
    ("name() endsWith '.internal.'", False, True),
    ("name() not endsWith '.internal.'", True, False),
    ("name() contains 'shop'", True, False),
    ("name() not contains 'shop'", False, True),
    ("proto() == 'udp' and type() == 'A'", True, False),
    ("proto() == 'udp' && type() == 'AAAA'", False, False),
    ("proto() == 'tcp' or type() == 'A'", True, True),
    ("proto() == 'x' || type() == 'MX'", False, False),
    ("not do()", False, True),
    ("!(proto() == 'udp')", False, True),
    ("!incidr(client_ip(), '10.0.0.0/8')", False, True),
    ("(proto() == 'tcp' || type() == 'A') && !(name() endsWith '.local.')", False, True),
    ("opcode() < 1", True, False),
    ("opcode() <= 0", True, False),
    ("opcode() > 3", False, True),
    ("opcode() >= 4", False, True),
    ("0 <= opcode() < 1", True, False),  # chained: 0 <= opcode() && opcode() < 1
    ("bufsize() > 1.5e3", False, True),
    ("opcode() == -0", True, False),
    ("port() < '5'", True, False),  # strings order as in Go
    ("true", True, True),
    ("false", False, False),
    ("true == (1 == 1)", True, True),
    ("type() == \"A\"", True, False),  # double quotes
    ("type() == `A`", True, False),  # raw string
    ("type() == '\\x41'", True, False),  # Go escapes
    ("opcode() == 0x0 and bufsize() == 0b10011010000", True, False),
    ("proto() == 'udp' // a comment", True, False),
    ("proto() /* here */ == 'tcp'", False, True),
]


@pytest.mark.parametrize(("text", "on_udp4", "on_tcp6"), TABLE, ids=[row[0] for row in TABLE])
def test_the_table(text: str, on_udp4: bool, on_tcp6: bool) -> None:
    expr = compile_view(text)
    assert isinstance(expr, ViewExpr)
    assert (expr.matches(UDP4), expr.matches(TCP6)) == (on_udp4, on_tcp6)


def test_types_and_classes_without_a_mnemonic_and_bufsize_without_edns() -> None:
    assert compile_view("type() == 'TYPE65399'").matches(NO_EDNS)  # miekg/dns Type.String
    assert compile_view("class() == 'CH'").matches(NO_EDNS)
    assert compile_view("bufsize() == 512").matches(NO_EDNS)  # UDP without OPT: 512
    assert not compile_view("do() || id() != 0 || size() != 0").matches(NO_EDNS)


def test_a_failure_while_evaluating_is_no_match() -> None:
    """CoreDNS View.Filter: an error of expr.Run is false, whatever surrounds it."""
    bad_ip = Request("not-an-ip", 1, "127.0.0.1", 53, "udp", "x.", 1, 0, 0)
    assert not compile_view("incidr(client_ip(), '10.0.0.0/8')").matches(bad_ip)
    assert not compile_view("!incidr(client_ip(), '10.0.0.0/8')").matches(bad_ip)
    meta = Request("10.0.0.1", 1, "127.0.0.1", 53, "udp", "x.", 1, 0, 0, {"net": "10.0.0.0/8"})
    assert compile_view("incidr(client_ip(), metadata('net'))").matches(meta)
    assert not compile_view("incidr(client_ip(), metadata('none'))").matches(meta)


# (expression, column, the message's start)
REFUSED = [
    ("proto() == ", 12, "unexpected end of expression"),
    ("proto( == 'udp'", 8, "unexpected '=='"),
    ("proto() == 'udp' andx", 18, "unexpected 'andx'"),
    ("proto() = 'udp'", 9, "unexpected character '='"),
    ("bufsize() + 1 > 512", 11, "unexpected character '+'"),
    ("name() == 'a' ? true : false", 15, "unexpected character '?'"),
    ("foo() == 'x'", 1, "unknown function 'foo'"),
    ("len(name()) > 3", 1, "unknown function 'len'"),
    ("name == 'x'", 1, "name is a function"),
    ("proto() == 'udp' and x", 22, "unknown name 'x'"),
    ("server_port() == 53", 15, "==: mismatched types string and int"),
    ("opcode() == 'QUERY'", 10, "==: mismatched types int and string"),
    ("not name() == 'x'", 1, "not: want a bool, got a string"),
    ("proto() and true", 9, "and: want bools, got a string"),
    ("type() in 'A'", 8, "in: want a list"),
    ("type() in ['A', 28]", 8, "in: mismatched types string and a list item int"),
    ("opcode() matches '0'", 10, "matches: want two strings"),
    ("name() matches proto()", 8, "matches: want a string literal pattern"),
    ("name() matches '('", 16, "matches: bad regular expression '('"),
    ("name() matches '(?=x)'", 16, "matches: lookaround"),
    ("incidr(client_ip())", 1, "incidr() takes 2 argument(s), got 1"),
    ("incidr(client_ip(), 'banana')", 21, "incidr: not a CIDR: 'banana'"),
    ("incidr(1, '10.0.0.0/8')", 8, "incidr() argument 1: want a string, got a int"),
    ("name('x') == 'x'", 1, "name() takes no arguments, got 1"),
    ("metadata() == ''", 1, "metadata() takes 1 argument(s), got 0"),
    ("name() == '\\q'", 12, "bad escape '\\\\q' in a string"),
    ("name()", 1, "the expression is a string, want a bool"),
    ("opcode() < true", 10, "<: want two numbers or two strings"),
    ("-name() == ''", 1, "-: want a number"),
    ("   ", 1, "empty expression"),
]


@pytest.mark.parametrize(("text", "column", "message"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_with_line_and_column(text: str, column: int, message: str) -> None:
    with pytest.raises(ExprError) as caught:
        compile_view(text, line=7)
    err = caught.value
    assert (err.line, err.column) == (7, column), str(err)
    assert err.msg.startswith(message), err.msg
    assert str(err) == f"line 7, column {column}: {err.msg}"
    assert isinstance(err, ConfigError)


def test_a_later_line_of_the_expression_counts_from_the_callers_line() -> None:
    with pytest.raises(ExprError) as caught:
        compile_view("proto() == 'udp' &&\n   nme() == 'x'", line=12)
    assert (caught.value.line, caught.value.column) == (13, 4)


def test_bounds_on_size_and_depth() -> None:
    longest = "name() != '" + "a" * (MAX_TEXT - 12) + "'"
    assert len(longest) == MAX_TEXT and compile_view(longest).matches(UDP4)
    with pytest.raises(ExprError, match=f"longer than {MAX_TEXT} characters"):
        compile_view(longest + " " * (MAX_TEXT - len(longest) + 1))
    nested = "(" * 20 + "true" + " && true" * 40 + ")" * 20
    assert compile_view(nested).matches(UDP4)
    with pytest.raises(ExprError, match=f"nested deeper than {MAX_DEPTH} levels"):
        compile_view("true" + " && true" * MAX_DEPTH)  # each operator of a chain is a level
    with pytest.raises(ExprError, match=f"nested deeper than {MAX_DEPTH} levels"):
        compile_view("(" * 1000 + "true" + ")" * 1000)
    with pytest.raises(ExprError, match=f"nested deeper than {MAX_DEPTH} levels"):
        compile_view("!" * 2000 + "true")


def test_the_gardener_and_readme_expressions() -> None:
    """The expressions real Corefiles write (issue 21; CoreDNS plugin/view README)."""
    assert compile_view("proto() == 'tcp'").matches(TCP6)
    split = compile_view("incidr(client_ip(), '10.0.0.0/24')")
    assert split.matches(UDP4) and not split.matches(TCP6)
    internal = compile_view("name() matches '^.*\\\\.internal\\\\.$'")
    assert internal.matches(TCP6) and not internal.matches(UDP4)
    both = compile_view("(type() == 'A' && name() == 'example.com.') || client_ip() == '1.2.3.4'")
    assert not both.matches(UDP4)
