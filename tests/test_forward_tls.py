"""forward over TLS (CoreDNS forward: tls://, tls_servername, tls CERT KEY CA, expire)
against a DNS-over-TLS upstream on loopback with a test CA made here by the openssl CLI;
connections are reused until they idle ``expire``; force_tcp reuses TCP connections too."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import dns.rrset
import pytest

from clusterdns.core.errors import ConfigError
from clusterdns.corefile.config import load

from .corefile_server import serve, texts

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA, a server certificate for dns.test and 127.0.0.1, a client certificate."""
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=clusterdns test CA", cwd=d)
    for name, san in (("server", "DNS:dns.test,IP:127.0.0.1"), ("client", "DNS:client.test")):
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=d)
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
                "-extfile", f"{name}.ext", cwd=d)
    return d


class TLSUpstream:
    """A DNS-over-TLS server on 127.0.0.1: every A question answers 192.0.2.1; counts the
    connections it accepted and the client certificates it saw."""

    def __init__(self, pki: Path, require_client: bool = False) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(pki / "server.pem", pki / "server.key")
        if require_client:
            self.context.load_verify_locations(pki / "ca.pem")
            self.context.verify_mode = ssl.CERT_REQUIRED
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.queries = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            tls = self.context.wrap_socket(conn, server_side=True)
            while True:
                head = tls.recv(2)
                if len(head) < 2:
                    return
                length = int.from_bytes(head, "big")
                data = b""
                while len(data) < length:
                    chunk = tls.recv(length - len(data))
                    if not chunk:
                        return
                    data += chunk
                query = dns.message.from_wire(data)
                self.queries += 1
                reply = dns.message.make_response(query)
                q = query.question[0]
                reply.answer.append(dns.rrset.from_text(q.name, 60, "IN", "A", "192.0.2.1"))
                wire = reply.to_wire()
                tls.sendall(len(wire).to_bytes(2, "big") + wire)
        except (OSError, ssl.SSLError, dns.exception.DNSException):
            return
        finally:
            conn.close()

    def stop(self) -> None:
        self.stopping.set()
        self.sock.close()
        self.thread.join(2)


@pytest.fixture
def tls_up(pki: Path) -> Iterator[TLSUpstream]:
    up = TLSUpstream(pki)
    yield up
    up.stop()


def corefile(to: str, options: str) -> str:
    return f".:53 {{\n  forward . {to} {{\n{options}\n  }}\n}}\n"


@pytest.mark.parametrize(
    ("to", "options"),
    [
        ("tls://127.0.0.1:{port}", "    tls {pki}/ca.pem\n    tls_servername dns.test"),
        ("tls://127.0.0.1:{port}", "    tls {pki}/ca.pem"),  # verified against the IP SAN
        ("tls://127.0.0.1%dns.test:{port}", "    tls {pki}/ca.pem"),  # per-endpoint name
    ],
)
def test_dot_upstream_answers_and_reuses_one_connection(
    pki: Path, tls_up: TLSUpstream, to: str, options: str
) -> None:
    text = corefile(to.format(port=tls_up.port), options.format(pki=pki))
    with serve(text) as s:
        replies = [s.ask(f"name{i}.example.org.") for i in range(5)]
    assert [texts(r) for r in replies] == [
        [f"name{i}.example.org. 60 IN A 192.0.2.1"] for i in range(5)
    ]
    assert tls_up.queries == 5 and tls_up.connections == 1


def test_idle_connections_expire(pki: Path, tls_up: TLSUpstream) -> None:
    text = corefile(f"tls://127.0.0.1:{tls_up.port}",
                    f"    tls {pki}/ca.pem\n    tls_servername dns.test\n    expire 200ms")
    with serve(text) as s:
        assert s.ask("a.example.org.").rcode() == dns.rcode.NOERROR
        assert s.ask("b.example.org.").rcode() == dns.rcode.NOERROR
        assert tls_up.connections == 1
        time.sleep(0.3)  # longer than expire: the idle connection is not reused
        assert s.ask("c.example.org.").rcode() == dns.rcode.NOERROR
    assert tls_up.connections == 2


@pytest.mark.parametrize(
    "options",
    [
        "    tls_servername dns.test",  # system CAs do not know the test CA
        "    tls {pki}/ca.pem\n    tls_servername wrong.test",  # the name does not match
    ],
)
def test_unverified_upstream_is_servfail(pki: Path, tls_up: TLSUpstream, options: str) -> None:
    text = corefile(f"tls://127.0.0.1:{tls_up.port}", options.format(pki=pki))
    with serve(text) as s:
        reply = s.ask("a.example.org.")
    assert reply.rcode() == dns.rcode.SERVFAIL and tls_up.queries == 0


def test_client_certificate(pki: Path) -> None:
    up = TLSUpstream(pki, require_client=True)
    try:
        ok = corefile(f"tls://127.0.0.1:{up.port}",
                      f"    tls {pki}/client.pem {pki}/client.key {pki}/ca.pem\n    tls_servername dns.test")
        with serve(ok) as s:
            assert texts(s.ask("a.example.org.")) == ["a.example.org. 60 IN A 192.0.2.1"]
        without = corefile(f"tls://127.0.0.1:{up.port}", f"    tls {pki}/ca.pem\n    tls_servername dns.test")
        with serve(without) as s:
            assert s.ask("a.example.org.").rcode() == dns.rcode.SERVFAIL
    finally:
        up.stop()


def test_force_tcp_reuses_connections() -> None:
    from .upstream import Upstream

    with Upstream() as up:
        with serve(corefile(up.address, "    force_tcp")) as s:
            for _ in range(3):
                assert texts(s.ask("www.example.com.")) == ["www.example.com. 300 IN A 93.184.216.34"]
            forwarder = s.blocks[0].handler.forwarders[0]
            (pool,) = forwarder.pools.values()
            assert pool.opened == 1
        assert [q[0] for q in up.queries] == ["tcp", "tcp", "tcp"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("forward . tls://1.1.1.1 {\n    tls /nonexistent/ca.pem\n  }",
         "Corefile:3: forward: tls: no such file '/nonexistent/ca.pem'"),
        ("forward . tls://1.1.1.1 {\n    tls_servername\n  }",
         "Corefile:3: forward: want tls_servername NAME, got 'nothing'"),
        ("forward . tls://1.1.1.1 {\n    next NXDOMAIN\n  }",
         "Corefile:3: forward: option 'next' is not supported by clusterdns"),
    ],
)
def test_bad_tls_options(body: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(".:53 {\n  " + body + "\n}\n")
    assert str(info.value) == error
