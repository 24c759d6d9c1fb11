"""Batched datagram I/O (server/batch.py): recvmmsg/sendmmsg over real UDP sockets on
loopback, with a trivial answer function (the reply is the query with a byte in front), so
that what is checked is the batching: every datagram answered once, to its own sender,
oversize ones never served cut, declined ones handed over, a clean stop.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from clusterdns.server import batch
from clusterdns.server.batch import BatchServer, available

pytestmark = pytest.mark.skipif(not available(), reason="recvmmsg/sendmmsg need Linux")

DEADLINE = 10.0  # seconds any wait below may take before the test fails


def echo(data: bytes, addr: Any) -> bytes | None:
    """R + the query: a reply that shows which query it answers."""
    return b"R" + data


class Served:
    """A BatchServer on a loopback socket, recording every answer call and hand-off."""

    def __init__(self, family: int, answer: Callable[[bytes, Any], bytes | None],
                 **kwargs: Any) -> None:
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        self.address = self.sock.getsockname()[:2]
        self.seen: list[tuple[bytes, Any]] = []
        self.handed: list[list[tuple[bytes, Any, Any]]] = []
        self.lock = threading.Lock()

        def recording(data: bytes, addr: Any) -> bytes | None:
            self.seen.append((data, addr))
            return answer(data, addr)

        def hand_off(items: list[tuple[bytes, Any, Any]]) -> None:
            with self.lock:
                self.handed.append(list(items))

        self.server = BatchServer(self.sock, recording, hand_off, **kwargs)

    def handed_items(self) -> list[tuple[bytes, Any, Any]]:
        with self.lock:
            return [item for call in self.handed for item in call]


@contextlib.contextmanager
def serving(family: int = socket.AF_INET,
            answer: Callable[[bytes, Any], bytes | None] = echo,
            start: bool = True, **kwargs: Any) -> Iterator[Served]:
    served = Served(family, answer, **kwargs)
    if start:
        served.server.start()
    try:
        yield served
    finally:
        served.server.stop()
        served.sock.close()


def client(family: int = socket.AF_INET, host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((host, 0))
    sock.settimeout(DEADLINE)
    return sock


def receive(sock: socket.socket, count: int) -> list[tuple[bytes, Any]]:
    return [sock.recvfrom(65535) for _ in range(count)]


def wait_for(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.005)


def test_available_on_linux() -> None:
    assert available() is True


def test_many_clients_each_get_their_own_replies() -> None:
    """400 datagrams from 4 sockets, 50 in flight at a time: each socket gets exactly the
    replies to its own queries, from the server's address; ``answer`` saw each sender's
    address as recvfrom gives it."""
    with serving() as served:
        clients = [client() for _ in range(4)]
        for round_ in range(2):
            for n, sock in enumerate(clients):
                sent = {b"c%d-%d-%d" % (n, round_, i) for i in range(50)}
                for query in sent:
                    sock.sendto(query, served.address)
                replies = receive(sock, 50)
                assert {data for data, _ in replies} == {b"R" + q for q in sent}
                assert {src for _, src in replies} == {served.address}
        by_sender = {addr for _, addr in served.seen}
        assert by_sender == {sock.getsockname() for sock in clients}
        assert len(served.seen) == 400
        wait_for(lambda: served.server.answered == 400)
        assert served.server.received == 400
        assert served.server.handed == served.server.oversize == 0
        for sock in clients:
            sock.close()


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not has_ipv6(), reason="this machine has no IPv6 loopback (::1)")
def test_ipv6_sources_are_decoded_and_answered() -> None:
    with serving(socket.AF_INET6) as served:
        sock = client(socket.AF_INET6, "::1")
        for i in range(20):
            sock.sendto(b"six%d" % i, served.address)
        replies = receive(sock, 20)
        assert sorted(data for data, _ in replies) == sorted(b"Rsix%d" % i for i in range(20))
        host, port, flowinfo, scope = served.seen[0][1]
        assert (host, port, flowinfo, scope) == sock.getsockname()
        assert host == "::1"
        sock.close()


def test_oversize_datagram_is_dropped_not_served_cut() -> None:
    """slot=512: a 513-byte query is counted and dropped (answer never sees a cut one); a
    512-byte one is served whole."""
    with serving(slot=512) as served:
        sock = client()
        sock.sendto(b"x" * 513, served.address)
        sock.sendto(b"y" * 512, served.address)
        data, _ = sock.recvfrom(65535)
        assert data == b"R" + b"y" * 512
        wait_for(lambda: served.server.received == 2)
        assert served.server.oversize == 1
        assert [len(d) for d, _ in served.seen] == [512]
        assert served.handed_items() == []
        sock.close()


def test_declined_datagrams_are_handed_off_with_their_sources() -> None:
    """``answer`` returns None for some, b"" for others (dropped), raises for one: the
    declined and the failed ones reach ``hand_off`` with their sources, each call
    non-empty; the others are answered."""

    def picky(data: bytes, addr: Any) -> bytes | None:
        if data.startswith(b"loop"):
            return None
        if data.startswith(b"drop"):
            return b""
        if data == b"boom":
            raise ValueError("a fault in answer")
        return b"R" + data

    with serving(answer=picky) as served:
        sock = client()
        queries = [b"loop1", b"hit1", b"drop1", b"loop2", b"boom", b"hit2"]
        for query in queries:
            sock.sendto(query, served.address)
        replies = receive(sock, 2)
        assert sorted(data for data, _ in replies) == [b"Rhit1", b"Rhit2"]
        wait_for(lambda: served.server.received == 6 and len(served.handed_items()) == 3)
        me = sock.getsockname()
        assert sorted(served.handed_items(), key=lambda item: item[0]) == [
            (b"boom", me, None), (b"loop1", me, None), (b"loop2", me, None)]
        assert all(served.handed), "hand_off is never called with nothing"
        assert served.server.dropped == 1
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):  # nothing for the dropped or the handed ones
            sock.recvfrom(65535)
        sock.close()


def test_prepared_quick_and_rest_serve_without_answer() -> None:
    """With sources not decoded, ``prepare`` gives (quick, rest, state) once per batch:
    ``quick`` answers what it knows, ``rest`` the others (None: nothing sent; not bytes:
    handed over), ``answer`` is never called; when ``prepare`` gives None, ``answer``
    serves the batch."""
    prepared: list[int] = []
    use_quick = [True]

    def quick(data: bytes, tcp: bool, state: str) -> bytes | None:
        assert tcp is False
        return (state.encode() + data) if data.startswith(b"hit") else None

    def rest(data: bytes, tcp: bool, state: str) -> object:
        if data.startswith(b"drop"):
            return None
        if data.startswith(b"loop"):
            return ("parsed", data)
        return b"rest:" + data

    def prepare() -> tuple[Any, Any, str] | None:
        prepared.append(1)
        return (quick, rest, "Q:") if use_quick[0] else None

    with serving(addresses=False, prepare=prepare) as served:
        sock = client()
        for query in (b"hit1", b"miss1", b"drop1", b"loop1"):
            sock.sendto(query, served.address)
        replies = receive(sock, 2)
        assert sorted(data for data, _ in replies) == [b"Q:hit1", b"rest:miss1"]
        wait_for(lambda: served.server.received == 4 and len(served.handed_items()) == 1)
        assert served.handed_items() == [(b"loop1", sock.getsockname(), ("parsed", b"loop1"))]
        assert served.server.dropped == 1 and served.seen == [] and prepared
        use_quick[0] = False  # e.g. a reload brought a block with log: answer serves
        sock.sendto(b"hit2", served.address)
        assert receive(sock, 1)[0][0] == b"Rhit2"
        assert [data for data, _ in served.seen] == [b"hit2"]
        sock.close()


def test_a_burst_larger_than_the_batch_is_served_in_several_batches() -> None:
    """100 datagrams queued before the server starts, batch=8: all answered, in at least
    13 batches (recvmmsg returns at most 8 at a time)."""
    with serving(start=False, batch=8) as served:
        sock = client()
        for i in range(100):
            sock.sendto(b"b%d" % i, served.address)
        served.server.start()
        replies = receive(sock, 100)
        assert sorted(data for data, _ in replies) == sorted(b"Rb%d" % i for i in range(100))
        wait_for(lambda: served.server.answered == 100)
        assert served.server.received == 100
        assert served.server.batches >= 13
        sock.close()


def test_large_replies_fill_the_arena_and_still_all_go_out() -> None:
    """Replies of 20,000 bytes with batch=8, slot=512 (a 64 KiB send arena): each batch
    needs several sendmmsg calls; every reply arrives whole."""
    with serving(answer=lambda data, addr: data[:1] * 20000, start=False, batch=8,
                 slot=512) as served:
        sock = client()
        for i in range(8):
            sock.sendto(bytes([65 + i]), served.address)
        served.server.start()
        replies = receive(sock, 8)
        assert sorted(data for data, _ in replies) == [bytes([65 + i]) * 20000 for i in range(8)]
        sock.close()


def test_address_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """With room for 2 hosts, queries from 4 loopback addresses are all answered to the
    right sender and at most 2 decoded hosts are kept."""
    monkeypatch.setattr(batch, "ADDRESS_CACHE", 2)
    with serving() as served:
        socks = [client(host=f"127.0.0.{n}") for n in range(1, 5)]
        for _ in range(2):
            for sock in socks:
                sock.sendto(b"from", served.address)
                data, _ = sock.recvfrom(100)
                assert data == b"Rfrom"
        assert {addr[0] for _, addr in served.seen} == {f"127.0.0.{n}" for n in range(1, 5)}
        assert len(served.server._hosts) <= 2
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("blocking", [True, False], ids=["blocking", "non-blocking"])
def test_stop_ends_the_thread(blocking: bool) -> None:
    """stop() on an idle server (blocked in recvmmsg, or polling a non-blocking socket)
    ends its thread; the socket stays open for its owner."""
    with serving(start=False) as served:
        served.sock.setblocking(blocking)
        thread = served.server.start()
        sock = client()
        sock.sendto(b"one", served.address)
        assert sock.recvfrom(100)[0] == b"Rone"
        served.server.stop()
        assert not thread.is_alive()
        assert served.sock.fileno() != -1
        sock.close()


def test_bad_sizes_are_refused() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(ValueError, match="batch"):
        BatchServer(sock, echo, lambda items: None, batch=0)
    with pytest.raises(ValueError, match="batch"):
        BatchServer(sock, echo, lambda items: None, batch=1025)
    with pytest.raises(ValueError, match="slot"):
        BatchServer(sock, echo, lambda items: None, slot=511)
    with pytest.raises(ValueError, match="slot"):
        BatchServer(sock, echo, lambda items: None, slot=65536)
    sock.close()
