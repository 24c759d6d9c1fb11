"""Long fuzzing run of the decoder and the handler (issue 7), with figures.

Runs the three hypothesis fuzzers of tests/test_fuzz.py with many more examples, under
coverage.py when it is installed (`pip install coverage`; nothing is installed here), and
prints: inputs executed, failures (hypothesis stops at the first and prints it), the line
coverage of the modules a packet goes through, and the largest reply/query byte ratio seen
over UDP without EDNS (amplification).

Usage: python bench/fuzz.py [--examples 100000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MODULES = ["wire", "handler", "resolver", "names", "store"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100000, help="per fuzzer")
    args = parser.parse_args()
    os.environ["CLUSTERDNS_FUZZ_EXAMPLES"] = str(args.examples)
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


if __name__ == "__main__":
    sys.exit(main())
