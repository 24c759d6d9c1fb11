"""Long fuzzing run of the decoder and the handler (issues 7, 14), with figures.

Runs the hypothesis fuzzers of tests/test_fuzz.py (UDP questions, EDNS options) with many
more examples and a random seed, then three fuzzers of its own: TCP streams (several
messages, mutated, with right and wrong length prefixes, sent to a real server on
loopback: every reply frame parses and carries a query's ID, and the server still answers
a fresh connection afterwards), and manifests in YAML and JSON (real manifests mutated, and
random structures with aliases: loading never raises, every error names the file). Under
coverage.py when it is installed (`pip install coverage`; nothing is installed here), and
prints: inputs executed, failures (hypothesis stops at the first and prints it), the line
coverage of the modules a packet goes through, and the largest reply/query byte ratio seen
over UDP without EDNS (amplification).

Usage: python bench/fuzz.py [--examples 100000] [--stream-examples 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MODULES = ["wire", "handler", "resolver", "names", "store"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100000, help="per fuzzer")
    parser.add_argument(
        "--stream-examples", type=int, default=2000, help="TCP streams and manifests"
    )
    args = parser.parse_args()
    os.environ["CLUSTERDNS_FUZZ_EXAMPLES"] = str(args.examples)
    os.environ["CLUSTERDNS_FUZZ_RANDOM"] = "1"  # the test suite's runs are derandomised
    try:
        import coverage
    except ImportError:
        cov = None
        print("coverage.py is not installed: no coverage figure (pip install coverage)")
    else:
        cov = coverage.Coverage(include=[str(ROOT / "clusterdns" / f"{m}.py") for m in MODULES])
        cov.start()
    from tests import test_fuzz

    count = 0
    original = test_fuzz.check

    def counting(data: bytes, tcp: bool = False) -> None:
        nonlocal count
        count += 1
        original(data, tcp)

    test_fuzz.check = counting
    began = time.perf_counter()
    failures = 0
    for fuzzer in (test_fuzz.test_random_bytes, test_fuzz.test_mutated_real_queries,
                   test_fuzz.test_well_formed_random_questions):
        try:
            fuzzer()
        except Exception as exc:  # hypothesis has printed the falsifying example
            failures += 1
            print(f"{fuzzer.__name__}: FAILED: {type(exc).__name__}: {exc}")
    for extra in (test_fuzz.test_edns_options, *other_fuzzers(args.stream_examples)):
        try:
            extra()
        except Exception as exc:
            failures += 1
            print(f"{extra.__name__}: FAILED: {type(exc).__name__}: {exc}")
    test_fuzz.test_seed_corpus_replies_and_amplification()
    seconds = time.perf_counter() - began
    print(f"inputs executed: {count} in {seconds:.0f} s ({count / seconds:.0f}/s), "
          f"failures: {failures}")
    print(f"largest reply/query byte ratio over UDP without EDNS: "
          f"{test_fuzz.largest_ratio[0]:.2f}")
    if cov is not None:
        cov.stop()
        total = cov.report(show_missing=False, file=sys.stdout)
        print(f"line coverage of {', '.join(MODULES)}: {total:.0f}%")
    return 1 if failures else 0


def other_fuzzers(examples: int) -> list[Any]:
    """The TCP stream and manifest fuzzers (see the module doc), ``examples`` each."""
    import asyncio
    import json
    import socket
    import struct
    import tempfile
    import threading

    import dns.message
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from clusterdns.server.transport import DNSServer
    from clusterdns.sources.manifests import load_file
    from tests import test_fuzz

    runs = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    server = DNSServer(test_fuzz.HANDLER, "127.0.0.1", 0, idle_timeout=0.3)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)

    def frames(sock: socket.socket) -> list[bytes]:
        data = b""
        sock.settimeout(0.5)
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except (TimeoutError, ConnectionError):
            pass
        out = []
        while len(data) >= 2:
            size = int.from_bytes(data[:2], "big")
            assert len(data) >= size + 2, "a reply frame cut short"
            out.append(data[2 : size + 2])
            data = data[size + 2 :]
        assert not data, "a stray byte after the last frame"
        return out

    message = st.tuples(
        st.sampled_from(test_fuzz.SEEDS),
        st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), max_size=3),
        st.sampled_from(["right", "right", "right", "short", "long", "zero"]),
    )

    @runs
    @given(st.lists(message, min_size=1, max_size=8))
    def test_tcp_streams(parts: list[tuple[bytes, list[tuple[int, int]], str]]) -> None:
        stream = b""
        ids = set()
        for seed, flips, prefix in parts:
            data = bytearray(seed)
            for position, value in flips:
                if position < len(data):
                    data[position] = value
            ids.add(struct.unpack_from("!H", data)[0])
            size = {"right": len(data), "short": max(len(data) - 3, 0), "long": len(data) + 9}
            stream += size.get(prefix, 0).to_bytes(2, "big") + bytes(data)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(stream)
            sock.shutdown(socket.SHUT_WR)
            for frame in frames(sock):
                msg = dns.message.from_wire(frame)
                assert msg.id in ids and msg.flags & 0x8000
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            probe = dns.message.make_query("web.shop.svc.cluster.local.", "A").to_wire()
            sock.sendall(len(probe).to_bytes(2, "big") + probe)
            sock.shutdown(socket.SHUT_WR)
            assert len(frames(sock)) == 1  # still serving

    real = [p.read_text() for p in sorted((ROOT / "zones").iterdir())]
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8))
    values = st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
        ),
        max_leaves=30,
    )
    kinds = st.sampled_from(["List", "Service", "Pod", "Namespace", "EndpointSlice", "X"])
    objects = st.fixed_dictionaries(
        {"apiVersion": st.just("v1"), "kind": kinds, "metadata": values, "spec": values,
         "items": st.lists(values, max_size=3)}
    )
    tmp = Path(tempfile.mkdtemp(prefix="clusterdns-fuzz-"))

    def loads(path: Path, text: str) -> None:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        result = load_file(path)
        assert all(line.startswith(str(path)) for line in result.errors), result.errors

    @runs
    @given(st.sampled_from(real), st.lists(st.tuples(st.integers(0, 5000), st.text(max_size=3)),
                                           max_size=5))
    def test_mutated_manifests(text: str, edits: list[tuple[int, str]]) -> None:
        for position, insert in edits:
            text = text[:position] + insert + text[position + len(insert) :]
        loads(tmp / "mutated.yaml", text)

    @runs
    @given(st.lists(objects, min_size=1, max_size=3), st.integers(0, 3), st.booleans())
    def test_random_manifests(docs: list[Any], aliases: int, as_json: bool) -> None:
        if as_json:
            loads(tmp / "random.json", json.dumps(docs[0] if len(docs) == 1 else docs))
            return
        import yaml

        text = yaml.safe_dump_all(docs)
        # anchors and aliases: the first document's metadata, reused, maybe recursively
        text = "x: &m {a: 1}\n" + "---\n".join(
            [f"alias{i}: *m\n" for i in range(aliases)] + [text]
        )
        loads(tmp / "random.yaml", text)

    return [test_tcp_streams, test_mutated_manifests, test_random_manifests]


if __name__ == "__main__":
    sys.exit(main())
