"""The ``view`` plugin (CoreDNS plugin/view) end to end: several blocks on one zone and
port, the first (in Corefile order) whose view matches answers, a block without a view is
the fallback; over real sockets on loopback, the client bound to 127.0.0.2 or 127.0.0.3
(split horizon by ``incidr(client_ip(), ...)``), with the event loop and with the UDP
thread, and a kept answer never crosses views. The expression language itself:
tests/test_viewexpr.py."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dns.message
import dns.query
import dns.rcode
import pytest

from clusterdns.core.errors import ConfigError
from clusterdns.core.store import Store
from clusterdns.corefile.config import load
from clusterdns.plugins.chain import Handler, Mux, for_port
from clusterdns.server.blocks import build_block
from clusterdns.server.transport import DNSServer

SPLIT = """\
. {
  view one {
    expr incidr(client_ip(), '127.0.0.2/32')
  }
  hosts {
    1.1.1.1 test
  }
}
. {
  view two {
    expr incidr(client_ip(), '127.0.0.3/32')
    expr type() in ['A', 'AAAA']
  }
  hosts {
    2.2.2.2 test
  }
}
. {
  hosts {
    3.3.3.3 test
  }
}
"""


@contextmanager
def served(text: str, udp_thread: bool = False) -> Iterator[DNSServer]:
    """Every block of ``text`` on one listener at 127.0.0.1 (an ephemeral port)."""
    servers = load(text)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> DNSServer:
        store = Store()
        handlers = [build_block(s, store, 1000).handler for s in servers]
        server = DNSServer(for_port(handlers), "127.0.0.1", 0, udp_thread=udp_thread)
        await server.start()
        return server

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def ask(port: int, name: str, qtype: str = "A", source: str = "127.0.0.1",
        tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, qtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, "127.0.0.1", port=port, timeout=5, source=source)


def addresses(reply: dns.message.Message) -> list[str]:
    return sorted(rr.to_text() for rrset in reply.answer for rr in rrset)


@pytest.mark.parametrize("udp_thread", [False, True])
def test_split_horizon_by_client_address(udp_thread: bool) -> None:
    """127.0.0.2 sees view one, 127.0.0.3 view two (for A only: its second expr), anyone
    else the fallback; asked in turn, twice, so a kept answer of one view would show."""
    with served(SPLIT, udp_thread) as server:
        assert isinstance(server.handler, Mux) and server.handler.views
        for _ in range(2):
            for source, want in (("127.0.0.2", "1.1.1.1"), ("127.0.0.3", "2.2.2.2"),
                                 ("127.0.0.1", "3.3.3.3")):
                for tcp in (False, True):
                    reply = ask(server.port, "test.", source=source, tcp=tcp)
                    assert addresses(reply) == [want], (source, tcp, reply)
        # view two ANDs its expr lines: a PTR from 127.0.0.3 falls to the fallback block
        reply = ask(server.port, "3.3.3.3.in-addr.arpa.", "PTR", source="127.0.0.3")
        assert addresses(reply) == ["test."]


def test_a_single_block_with_a_view_refuses_what_it_does_not_match() -> None:
    """CoreDNS: no block passes its filters -> REFUSED; the view is checked even alone."""
    text = ". {\n  view tcponly {\n    expr proto() == 'tcp'\n  }\n  hosts {\n    1.1.1.1 test\n  }\n}\n"
    with served(text) as server:
        assert isinstance(server.handler, Mux)
        assert addresses(ask(server.port, "test.", tcp=True)) == ["1.1.1.1"]
        assert ask(server.port, "test.").rcode() == dns.rcode.REFUSED


def test_server_address_and_name_functions() -> None:
    """server_ip()/server_port() are where the query arrived; name() matches; the zone
    walk goes from the longest zone to the root: example.org's view fails, then '.'."""
    with served(
        "example.org {\n  view here {\n    expr server_ip() == '127.0.0.1' && server_port() == '1'\n"
        "  }\n  hosts {\n    10.0.0.1 a.example.org\n  }\n}\n"
        ". {\n  view internal {\n    expr name() matches '^.*\\\\.internal\\\\.$'\n  }\n"
        "  hosts {\n    10.0.0.2 db.internal a.example.org\n  }\n}\n"
        ". {\n  hosts {\n    10.0.0.3 db.internal a.example.org\n  }\n}\n"
    ) as server:
        # no listener is on port 1: example.org's view fails, the walk falls to '.',
        # where the name does not match 'internal': the fallback
        assert addresses(ask(server.port, "a.example.org.")) == ["10.0.0.3"]
        assert addresses(ask(server.port, "DB.Internal.")) == ["10.0.0.2"]


def test_server_port_matches_the_listener() -> None:
    servers = load(
        "example.org {\n  view here {\n    expr server_ip() == '127.0.0.1'\n  }\n"
        "  hosts {\n    10.0.0.1 a.example.org\n  }\n}\n"
    )
    handler = build_block(servers[0], Store(), 100).handler
    mux = for_port([handler])
    wire = dns.message.make_query("a.example.org.", "A").to_wire()
    reply = mux.handle(wire, False, "1", "127.0.0.9", 5353, ("127.0.0.1", 53))
    assert isinstance(reply, bytes) and addresses(dns.message.from_wire(reply)) == ["10.0.0.1"]
    reply = mux.handle(wire, False, "1", "127.0.0.9", 5353, ("127.0.0.5", 53))
    assert isinstance(reply, bytes) and dns.message.from_wire(reply).rcode() == dns.rcode.REFUSED


def test_no_view_keeps_the_single_handler() -> None:
    """One block without a view is served by its own Handler: nothing evaluated."""
    handler = build_block(load(". {\n  whoami\n}\n")[0], Store(), 100).handler
    assert for_port([handler]) is handler and isinstance(handler, Handler)


def test_blocks_with_views_may_share_a_zone_and_port() -> None:
    servers = load(SPLIT)
    assert [s.plugins.get("view").name if "view" in s.plugins else "" for s in servers] == [
        "one", "two", ""]
    with pytest.raises(ConfigError, match=r"Corefile:4: cannot serve dns://\.:53: it is already "
                       r"defined at Corefile:1"):
        load(". {\n  whoami\n}\n. {\n  whoami\n}\n")


@pytest.mark.parametrize(("text", "error"), [
    ("view {\n  expr true\n}", "Corefile:2: view: want NAME, got 'nothing'"),
    ("view a {\n  when true\n}", "Corefile:3: view: unknown property 'when'"),
    ("view a {\n  expr name() ==\n}",
     "Corefile:3: view: expr column 10: unexpected end of expression"),
    ("view a {\n  expr nosuch() == 'x'\n}", "Corefile:3: view: expr column 1: "),
    ("view a {\n  expr true\n}\nview b {\n  expr true\n}",
     "Corefile:5: view: only one view per server block"),
])
def test_refused_with_file_line_and_column(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(f". {{\n{text}\n  whoami\n}}\n")
    assert str(info.value).startswith(error)


def test_a_view_without_expr_matches_everything() -> None:
    with served(". {\n  view all\n  hosts {\n    1.1.1.1 test\n  }\n}\n") as server:
        assert addresses(ask(server.port, "test.", source="127.0.0.3")) == ["1.1.1.1"]


def test_metrics_carry_the_view_name() -> None:
    """CoreDNS labels a view block's series with its name (two blocks on one zone and port
    would otherwise export the same series twice)."""
    servers = load(SPLIT.replace("  hosts {", "  prometheus :9153\n  hosts {"))
    blocks = [build_block(s, Store(), 100) for s in servers]
    assert [b.metrics.view if b.metrics else None for b in blocks] == ["one", "two", ""]
