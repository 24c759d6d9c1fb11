"""Batched UDP datagram I/O: many datagrams per system call with ``recvmmsg``/``sendmmsg``
(Linux, recvmmsg(2), sendmmsg(2)), reached through :mod:`ctypes` over libc, so nothing is
compiled at install time (issue 19, part 1).

Why: a cache hit costs ~1.3 us of our code but ~5 us of server CPU; the rest is the event
loop and two system calls per datagram (docs/performance.md). Knot DNS batches datagrams
the same way. :class:`BatchServer` is the body of a serving thread: one blocking
``recvmmsg`` returns as soon as one datagram is there (``MSG_WAITFORONE``) with up to
``batch`` of them; each goes to an ``answer`` callable; the replies of the batch leave in
one ``sendmmsg``; the datagrams ``answer`` declined go to ``hand_off`` once per batch (the
event loop handles them as it would any datagram).

Memory, preallocated once per server and bounded: ``batch`` receive slots of ``slot``
bytes each (64 x 4096 = 256 KiB by default), ``batch`` source-address slots, the
``mmsghdr``/``iovec`` arrays for both directions, a send arena of 64 KiB for replies
longer than a slot (a reply that fits is written over its query), and the address-decode cache of
at most :data:`ADDRESS_CACHE` entries (cleared when full).

The slot size is the largest query served. RFC 6891 6.2.5: the payload size a server
advertises in its OPT record is what it can reassemble, so a query longer than our EDNS
payload (``--udp-size``, 1232 by default, at most 65535) is longer than anything we claim
to take; real queries are under 512 bytes (a 255-byte name, an OPT record with a cookie,
RFC 7830 padding to 128-byte blocks). The default 4096 covers every ``--udp-size`` up to
4096 with no change in what is answered; a server configured larger should pass
``slot=udp_size``. A datagram longer than its slot is cut by the kernel (``MSG_TRUNC`` in
its ``msg_flags``): it is counted in :attr:`BatchServer.oversize` and dropped, never
answered from the cut bytes and never handed over (its end is gone). DIFFERS: CoreDNS
(miekg/dns) reads UDP into a buffer of its server's ``UDPSize`` and parses what fits;
docs/behaviour.md section 17.

Off Linux, or with a libc without the calls, :func:`available` is False and callers keep
plain ``recvfrom``/``sendto`` (``server/transport.py``'s ``UDPThread``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import select
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("clusterdns.server.batch")

MSG_TRUNC = 0x20  # linux/socket.h: the datagram was longer than the buffer
MSG_WAITFORONE = 0x10000  # linux/socket.h: block for the first datagram only (recvmmsg)
BATCH = 64  # datagrams per system call (Knot's default is 10-64; more gains little)
SLOT = 4096  # bytes per receive slot: the largest query served (see the module docstring)
ADDRESS_CACHE = 4096  # decoded source hosts kept, by raw address bytes; cleared when full
SEND_TRIES = 8  # sendmmsg calls per batch that send nothing before the rest is dropped
POLL_MS = 200  # a non-blocking socket is polled this long before the stop flag is re-read

Address = tuple[str, int] | tuple[str, int, int, int]  # as socket.recvfrom returns it
Answer = Callable[[bytes, Any], Any]  # (query, source address) -> reply bytes, or not bytes
Quick = Callable[[bytes, bool, Any], "bytes | None"]  # (query, False, state) -> reply or None
Rest = Callable[[bytes, bool, Any], Any]  # (query, False, state) -> reply, None (drop), other
Prepare = Callable[[], "tuple[Quick, Rest, Any] | None"]  # once per batch
HandOff = Callable[[list[tuple[bytes, Any, Any]]], None]  # (query, source, what answer gave)


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    # glibc's layout; musl's int msg_iovlen/msg_controllen plus padding read the same on
    # little-endian 64-bit machines for the small values written here
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


_MMSG = ctypes.sizeof(_Mmsghdr)
_IOV = ctypes.sizeof(_Iovec)
_NAME = 32  # bytes per source-address slot: a sockaddr_in6 (28) rounded to 8
_SOCKADDR_IN6 = 28
_SOCKADDR_IN = 16
# field offsets inside one mmsghdr, and inside one iovec
_OFF_NAME = _Mmsghdr.msg_hdr.offset + _Msghdr.msg_name.offset
_OFF_NAMELEN = _Mmsghdr.msg_hdr.offset + _Msghdr.msg_namelen.offset
_OFF_FLAGS = _Mmsghdr.msg_hdr.offset + _Msghdr.msg_flags.offset
_OFF_LEN = _Mmsghdr.msg_len.offset
_OFF_IOV_BASE = _Iovec.iov_base.offset
_OFF_IOV_LEN = _Iovec.iov_len.offset
_WORD = ctypes.sizeof(ctypes.c_void_p)  # pointers and size_t: the same size on Linux

_libc: Any = None


def _load() -> Any:
    """libc with ``recvmmsg`` and ``sendmmsg`` typed, or None where they are missing."""
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                libc = ctypes.CDLL(None, use_errno=True)
                recv, send = libc.recvmmsg, libc.sendmmsg
                recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int,
                                 ctypes.c_void_p]
                recv.restype = ctypes.c_int
                send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
                send.restype = ctypes.c_int
                _libc = libc
    return _libc or None


def available() -> bool:
    """Whether batched I/O works here: Linux with a libc that has ``recvmmsg`` and
    ``sendmmsg`` (glibc 2.14+, musl 1.1+). False elsewhere: callers fall back to
    ``recvfrom``/``sendto``."""
    return _load() is not None


class BatchServer:
    """Serve a bound UDP socket in batches: the body of one serving thread.

    ``sock``: a bound ``SOCK_DGRAM`` socket, IPv4 or IPv6, blocking or not (a non-blocking
    one is polled). It stays the caller's: :meth:`stop` does not close it.

    ``answer(data, addr)``: called once per datagram on this thread with the query bytes
    and the source address as ``socket.recvfrom`` gives it (``(host, port)`` for IPv4,
    ``(host, port, flowinfo, scope_id)`` for IPv6); returns the reply bytes, ``b""`` to
    drop the datagram, or anything that is not bytes (None, a parsed query) to decline it.
    An exception it raises counts as a decline with None (logged once per server).

    ``hand_off(items)``: called once per batch, after the batch's replies are sent, with
    the declined datagrams as a list of ``(data, addr, what answer returned)`` (a parsed
    query is not parsed again); meant to pass them to the event loop
    (``loop.call_soon_threadsafe``). A RuntimeError from it (the loop is closed) ends
    :meth:`run`.

    ``batch``: datagrams per system call (1-1024). ``slot``: bytes per receive slot, the
    largest query served (512-65535); longer datagrams are dropped and counted in
    :attr:`oversize`. ``addresses``: decode each source for ``answer`` (False: ``answer``
    gets None, and only the handed-over datagrams' sources are decoded, ~0.3 us saved
    per datagram). ``prepare``: called once per batch when sources are not decoded,
    returns ``(quick, rest, state)`` or None (then ``answer`` serves the batch); each
    datagram goes to ``quick(data, False, state)`` (a kept answer straight from the bytes,
    or None), then when that is None to ``rest(data, False, state)`` (the reply, None to
    send nothing, anything else to decline): one call per hit instead of ``answer``'s
    layers. Raises ValueError on a bad ``batch`` or ``slot``, OSError where
    :func:`available` is False.

    Counters (plain integers, read by any thread): :attr:`received`, :attr:`answered`
    (replies sent), :attr:`dropped` (``b""`` from ``answer``), :attr:`handed`,
    :attr:`oversize`, :attr:`send_failed` (replies the kernel refused), :attr:`batches`.
    """

    def __init__(
        self,
        sock: socket.socket,
        answer: Answer,
        hand_off: HandOff,
        batch: int = BATCH,
        slot: int = SLOT,
        addresses: bool = True,
        prepare: Prepare | None = None,
    ) -> None:
        if not 1 <= batch <= 1024:
            raise ValueError(f"batch: want 1 to 1024 datagrams, got {batch}")
        if not 512 <= slot <= 65535:
            raise ValueError(f"slot: want 512 to 65535 bytes, got {slot}")
        libc = _load()
        if libc is None:
            raise OSError(errno.ENOSYS, "recvmmsg/sendmmsg are not available here")
        self._recvmmsg = libc.recvmmsg
        self._sendmmsg = libc.sendmmsg
        self.sock = sock
        self.answer = answer
        self.hand_off = hand_off
        self.batch = batch
        self.slot = slot
        self.addresses = addresses
        self.prepare = prepare
        self.stopping = False
        self.thread: threading.Thread | None = None
        self.received = self.answered = self.dropped = self.handed = 0
        self.oversize = self.send_failed = self.batches = 0
        self._failed_logged = False
        self._hosts: dict[bytes, str] = {}  # raw IP address -> its text (bounded)
        self._v6 = sock.family == socket.AF_INET6
        # the kernel writes the source's real length back: the family's, always the same
        namelen = _SOCKADDR_IN6 if self._v6 else _SOCKADDR_IN

        # receive side: batch slots of `slot` bytes, batch address slots, the headers
        self._rbuf = ctypes.create_string_buffer(batch * slot)
        self._names = ctypes.create_string_buffer(batch * _NAME)
        self._riov = (_Iovec * batch)()
        self._rmsgs = (_Mmsghdr * batch)()
        rbuf, names = ctypes.addressof(self._rbuf), ctypes.addressof(self._names)
        for i in range(batch):
            self._riov[i].iov_base = rbuf + i * slot
            self._riov[i].iov_len = slot
            hdr = self._rmsgs[i].msg_hdr
            hdr.msg_name = names + i * _NAME
            hdr.msg_namelen = namelen
            hdr.msg_iov = ctypes.addressof(self._riov[i])
            hdr.msg_iovlen = 1
        self._riov_template = bytes(self._riov)  # every iov_len = slot, restored per batch
        # send side, for batches with datagrams left unanswered: headers pointing at the
        # replies in their receive slots, and an arena for replies longer than a slot
        # (room for the largest UDP datagram)
        self._arena_size = 65536
        self._sbuf = ctypes.create_string_buffer(self._arena_size)
        self._siov = (_Iovec * batch)()
        self._smsgs = (_Mmsghdr * batch)()
        for i in range(batch):
            hdr = self._smsgs[i].msg_hdr
            hdr.msg_namelen = namelen
            hdr.msg_iov = ctypes.addressof(self._siov[i])
            hdr.msg_iovlen = 1

        self._rmsgs_addr = ctypes.addressof(self._rmsgs)
        self._smsgs_addr = ctypes.addressof(self._smsgs)
        self._sbuf_addr = ctypes.addressof(self._sbuf)
        self._names_addr = names
        self._rbuf_addr = rbuf
        # views for reading and writing fields without ctypes attribute access (~30 ns each)
        self._rdata = memoryview(self._rbuf).cast("B")
        self._rname = memoryview(self._names).cast("B")
        self._rmsg_u32 = memoryview(self._rmsgs).cast("B").cast("I")
        self._smsg_word = memoryview(self._smsgs).cast("B").cast("P")
        self._riov_word = memoryview(self._riov).cast("B").cast("P")
        self._siov_word = memoryview(self._siov).cast("B").cast("P")
        self._sdata = memoryview(self._sbuf).cast("B")

    # --- the thread -------------------------------------------------------------------

    def start(self) -> threading.Thread:
        """Run :meth:`run` on a new daemon thread named ``udp-batch``; returns it."""
        self.thread = threading.Thread(target=self.run, name="udp-batch", daemon=True)
        self.thread.start()
        return self.thread

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving: set the flag, then send one empty datagram to the socket so that a
        blocked ``recvmmsg`` returns (as ``UDPThread.stop`` does); join the thread started
        by :meth:`start`, for at most ``timeout`` seconds. The socket stays open."""
        self.stopping = True
        with contextlib.suppress(OSError):
            host, port = self.sock.getsockname()[:2]
            if host in ("0.0.0.0", ""):
                host = "127.0.0.1"
            elif host == "::":
                host = "::1"
            with socket.socket(self.sock.family, socket.SOCK_DGRAM) as wake:
                wake.sendto(b"", (host, port))
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout)

    def run(self) -> None:
        """Serve until :meth:`stop` (the thread's body). Each turn: one ``recvmmsg``
        (``MSG_WAITFORONE``), ``answer`` per datagram, one ``sendmmsg`` of the replies,
        ``hand_off`` of the declined ones. Returns on stop, on a closed socket, or when
        ``hand_off`` raises RuntimeError.

        A reply that fits its query's slot is written over the query (already copied out);
        when every datagram of a batch is answered so, the receive headers go back to
        ``sendmmsg`` unchanged (their sources are the destinations): per datagram, one
        copy of the query out, one of the reply in, one length written."""
        fd = self.sock.fileno()
        recvmmsg, rmsgs, batch = self._recvmmsg, self._rmsgs_addr, self.batch
        u32, iov = self._rmsg_u32, self._riov_word
        step, iov_step = _MMSG // 4, _IOV // _WORD
        len_at, flags_at, iov_len_at = _OFF_LEN // 4, _OFF_FLAGS // 4, _OFF_IOV_LEN // _WORD
        rdata, slot = self._rdata, self.slot
        answer, address = self.answer, self._address
        riov, riov_template, riov_size = self._riov, self._riov_template, ctypes.sizeof(
            self._riov)
        poller = None
        while not self.stopping:
            n = recvmmsg(fd, rmsgs, batch, MSG_WAITFORONE, None)
            if n <= 0:
                err = ctypes.get_errno()
                if self.stopping or err in (errno.EBADF, errno.ENOTSOCK):
                    return
                if err in (errno.EAGAIN, errno.EWOULDBLOCK):
                    if poller is None:
                        poller = select.poll()
                        poller.register(fd, select.POLLIN)
                    poller.poll(POLL_MS)
                continue  # EINTR, or an error queued for the socket (ICMP): read on
            if self.stopping:
                return
            self.batches += 1
            self.received += n
            decode = self.addresses  # per batch: the owner may change it (a reload)
            quick = None if decode or self.prepare is None else self.prepare()
            if quick is not None:
                first, rest, state = quick
            answered: list[int] = []  # slots holding their reply in place
            big: list[tuple[int, bytes]] = []  # (slot, reply) for replies over the slot
            declined: list[tuple[bytes, Any, Any]] = []
            for i in range(n):
                base = i * step
                if u32[base + flags_at] & MSG_TRUNC:
                    self.oversize += 1
                    continue
                off = i * slot
                data = rdata[off : off + u32[base + len_at]].tobytes()
                addr = None
                try:
                    if quick is None:
                        addr = address(i) if decode else None
                        reply = answer(data, addr)
                    else:
                        reply = first(data, False, state)
                        if reply is not None:  # a kept answer: the commonest, first
                            size = len(reply)
                            if size <= slot:
                                rdata[off : off + size] = reply
                                iov[i * iov_step + iov_len_at] = size
                                answered.append(i)
                            else:
                                big.append((i, reply))
                            continue
                        reply = rest(data, False, state)
                        if reply is None:
                            reply = b""  # send nothing
                except Exception:  # a fault in answer: the loop handles the datagram
                    if not self._failed_logged:
                        self._failed_logged = True
                        log.exception("batch: answer failed; handing the datagram over")
                    reply = None
                if type(reply) is not bytes:  # declined: handed over with what answer said
                    declined.append((data, addr if decode else address(i), reply))
                elif reply:
                    size = len(reply)
                    if size <= slot:
                        rdata[off : off + size] = reply
                        iov[i * iov_step + iov_len_at] = size
                        answered.append(i)
                    else:
                        big.append((i, reply))
                else:
                    self.dropped += 1
            if answered or big:
                if len(answered) == n:
                    self._flush(fd, rmsgs, n)
                else:
                    self._send(fd, answered, big)
                if answered:
                    ctypes.memmove(riov, riov_template, riov_size)  # every iov_len = slot
            if declined:
                self.handed += len(declined)
                try:
                    self.hand_off(declined)
                except RuntimeError:  # the loop is closed: shutting down
                    return

    # --- helpers ----------------------------------------------------------------------

    def _address(self, i: int) -> Address:
        """The source of the datagram in receive slot ``i`` (its ``sockaddr_in`` or
        ``sockaddr_in6``) as ``socket.recvfrom`` gives it; the host text is cached by its
        raw address bytes (pods ask from a few addresses and many ports), at most
        :data:`ADDRESS_CACHE` hosts."""
        raw = self._rname[i * _NAME : i * _NAME + _SOCKADDR_IN6]
        port = (raw[2] << 8) | raw[3]
        if self._v6:  # an AF_INET6 socket gets sockaddr_in6 (IPv4 as ::ffff:a.b.c.d)
            key = raw[8:28].tobytes()  # address and scope id
            host = self._hosts.get(key)
            if host is None:
                host = self._host6(key)
            return host, port, int.from_bytes(raw[4:8], "big"), int.from_bytes(
                key[16:20], sys.byteorder
            )
        key = raw[4:8].tobytes()
        host = self._hosts.get(key)
        if host is None:
            host = self._remember(key, socket.inet_ntop(socket.AF_INET, key))
        return host, port

    def _host6(self, key: bytes) -> str:
        """The text of an IPv6 address plus scope id (``fe80::1%eth0`` as getnameinfo
        writes it for a link-local address), remembered."""
        host = socket.inet_ntop(socket.AF_INET6, key[:16])
        scope = int.from_bytes(key[16:20], sys.byteorder)
        if scope:
            try:
                host = f"{host}%{socket.if_indextoname(scope)}"
            except OSError:
                host = f"{host}%{scope}"
        return self._remember(key, host)

    def _remember(self, key: bytes, host: str) -> str:
        if len(self._hosts) >= ADDRESS_CACHE:
            self._hosts.clear()
        self._hosts[key] = host
        return host

    def _send(self, fd: int, answered: list[int], big: list[tuple[int, bytes]]) -> None:
        """Send the replies of a batch where some datagrams got none: ``answered`` are
        receive slots holding their reply in place, ``big`` replies longer than a slot
        (copied to the arena; more calls when it fills). Each goes to its datagram's
        source through the send headers."""
        word, iov, data = self._smsg_word, self._siov_word, self._sdata
        riov = self._riov_word
        step_w, iov_step = _MMSG // _WORD, _IOV // _WORD
        name_at, base_at, len_at = _OFF_NAME // _WORD, _OFF_IOV_BASE // _WORD, _OFF_IOV_LEN // _WORD
        names, rbuf, slot = self._names_addr, self._rbuf_addr, self.slot
        smsgs, arena, arena_size = self._smsgs_addr, self._sbuf_addr, self._arena_size
        count = 0
        for i in answered:
            word[count * step_w + name_at] = names + i * _NAME
            iov[count * iov_step + base_at] = rbuf + i * slot
            iov[count * iov_step + len_at] = riov[i * iov_step + len_at]
            count += 1
        used = 0
        for i, reply in big:
            size = len(reply)
            if size > arena_size:  # cannot happen for UDP (65,507 bytes at most)
                self.send_failed += 1
                continue
            if used + size > arena_size:
                self._flush(fd, smsgs, count)
                count = used = 0
            data[used : used + size] = reply
            word[count * step_w + name_at] = names + i * _NAME
            iov[count * iov_step + base_at] = arena + used
            iov[count * iov_step + len_at] = size
            used += size
            count += 1
        if count:
            self._flush(fd, smsgs, count)

    def _flush(self, fd: int, msgs: int, count: int) -> None:
        """``sendmmsg`` the first ``count`` headers of the array at address ``msgs``: a
        partial send goes on from the first unsent one, EINTR retries, EAGAIN waits for
        the socket to be writable; a reply the kernel refuses (EMSGSIZE, EPERM from a
        firewall...) is skipped. At most
        :data:`SEND_TRIES` calls that send nothing; what is left then is dropped."""
        start, idle = 0, 0
        while start < count:
            sent = self._sendmmsg(fd, msgs + start * _MMSG, count - start, 0)
            if sent > 0:
                start += sent
                self.answered += sent
                idle = 0
                continue
            err = ctypes.get_errno()
            idle += 1
            if idle > SEND_TRIES or err in (errno.EBADF, errno.ENOTSOCK):
                self.send_failed += count - start
                return
            if err == errno.EINTR:
                continue
            if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS):
                select.select([], [fd], [], POLL_MS / 1000)
                continue
            self.send_failed += 1  # this reply cannot be sent: skip it
            start += 1
