"""loadbalance: A/AAAA answers in turn (CoreDNS loadbalance, ``round_robin`` policy).

The chain encodes a few rotations of an answer's addresses once, on the miss, and keeps them
with it; the fast path serves them in turn, each serving thread on its own turn counter
(``AnswerCache._rotated``): a hit stays a byte copy (docs/design.md).
CNAMEs stay first, as CoreDNS keeps them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.resolver import Answer
from ..core.rr import QType
from ..dns.encode import encode_answer
from ..dns.message import Query
from .plugin import Build, Plugin

if TYPE_CHECKING:
    from ..corefile.reader import Reader, Setup

LOADBALANCE_VARIANTS = 4  # rotations of an A/AAAA answer kept in the answer cache


def rotations(query: Query, answer: Answer, limit: int) -> list[bytes]:
    """Up to :data:`LOADBALANCE_VARIANTS` - 1 further encodings (the tails after the
    question, as ``encode_answer`` gives them, within ``limit`` bytes) of ``answer`` with its
    A/AAAA records rotated (CNAMEs first, the rest in place: CoreDNS loadbalance)."""
    records = answer.answer
    first = next((i for i, rr in enumerate(records) if rr.rtype in (QType.A, QType.AAAA)), None)
    if first is None or len(records) - first < 2:
        return []
    head, addresses = records[:first], records[first:]
    out = []
    step = max(1, len(addresses) // LOADBALANCE_VARIANTS)
    for shift in range(step, len(addresses), step)[: LOADBALANCE_VARIANTS - 1]:
        rotated = Answer(
            answer.rcode,
            answer.zone,
            head + addresses[shift:] + addresses[:shift],
            answer.authority,
            answer.additional,
        )
        out.append(encode_answer(query, rotated, limit)[2])
    return out


def _parse(r: Reader, setup: Setup) -> bool:
    if r.d.args not in ([], ["round_robin"]):
        raise r.error(f"want round_robin, got {' '.join(r.d.args)!r}")
    return True


def _build(on: bool, build: Build) -> None:
    build.rotations = rotations  # the chain keeps them with each A/AAAA answer


PLUGIN = Plugin("loadbalance", _parse, _build)
"""CoreDNS plugin/loadbalance (round_robin): rotations kept beside each answer."""
