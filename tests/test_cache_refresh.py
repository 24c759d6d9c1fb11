"""cache prefetch and serve_stale for forwarded answers (CoreDNS plugin/cache README), with a
real upstream on loopback. TTLs of 1 s keep it fast; expiry is waited for by polling."""

from __future__ import annotations

import time
from collections.abc import Iterator

import dns.rcode
import pytest

from .corefile_server import serve
from .upstream import Upstream


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as up:
        up.add("quick", "A", "192.0.2.7", ttl=1)
        yield up


def corefile(upstream: Upstream, cache: str) -> str:
    return f".:53 {{\n  forward . {upstream.address}\n  cache {{\n    success 100 60 1\n{cache}\n  }}\n}}\n"


def asked(up: Upstream) -> int:
    return sum(1 for q in up.queries if q[1].lower() == "quick.example.com.")


def wait_until(check: object, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def expire() -> None:
    """Wait until the 1 s entry is past its TTL (the served TTL reaches 0)."""
    time.sleep(1.05)


@pytest.mark.parametrize(("prefetch", "upstream_queries"), [("    prefetch 2 1m 60%", 2), ("", 1)])
def test_prefetch_refreshes_a_popular_entry_before_it_expires(
    upstream: Upstream, prefetch: str, upstream_queries: int
) -> None:
    with serve(corefile(upstream, prefetch)) as s:
        for _ in range(3):  # a miss, then two hits: the second makes it popular
            reply = s.ask("quick.example.com.")
            assert [rr.to_text() for rrset in reply.answer for rr in rrset] == ["192.0.2.7"]
        wait_until(lambda: asked(upstream) >= upstream_queries)
        time.sleep(0.1)  # nothing more arrives
    assert asked(upstream) == upstream_queries


def test_serve_stale_immediate_answers_from_cache_and_refreshes(upstream: Upstream) -> None:
    with serve(corefile(upstream, "    serve_stale 1h")) as s:
        assert s.ask("quick.example.com.").answer
        expire()
        upstream.set_mode("timeout")  # the upstream is gone
        began = time.monotonic()
        reply = s.ask("quick.example.com.")
        assert time.monotonic() - began < 1.0  # not waiting for the upstream
        assert reply.rcode() == dns.rcode.NOERROR
        assert [(rrset.ttl, rr.to_text()) for rrset in reply.answer for rr in rrset] == [(0, "192.0.2.7")]
        assert wait_until(lambda: asked(upstream) == 2)  # the background refresh went out


def test_serve_stale_verify_asks_first_and_serves_stale_on_failure(upstream: Upstream) -> None:
    with serve(corefile(upstream, "    serve_stale 1h verify")) as s:
        assert s.ask("quick.example.com.").answer
        expire()
        upstream.add("quick", "A", "192.0.2.8", ttl=1)  # the upstream has news
        reply = s.ask("quick.example.com.")
        assert sorted(rr.to_text() for rrset in reply.answer for rr in rrset) == ["192.0.2.7", "192.0.2.8"]
        expire()
        upstream.set_mode("servfail")
        stale = s.ask("quick.example.com.")
        assert stale.rcode() == dns.rcode.NOERROR
        assert {rrset.ttl for rrset in stale.answer} == {0}


def test_without_serve_stale_an_expired_entry_is_not_served(upstream: Upstream) -> None:
    with serve(corefile(upstream, "")) as s:
        assert s.ask("quick.example.com.").answer
        expire()
        upstream.set_mode("servfail")
        assert s.ask("quick.example.com.").rcode() == dns.rcode.SERVFAIL
