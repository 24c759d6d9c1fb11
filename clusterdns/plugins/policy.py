"""Which upstream next, and which are down (CoreDNS forward ``policy``, ``max_fails``).

No I/O and no clock: the caller passes the time (monotonic seconds) where one matters.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from .upstream import Upstream

DEADLINE = 5.0  # seconds for one forwarded query over every try


class Policy:
    """The order to try ``upstreams`` in: ``random`` (shuffled per query), ``round_robin``
    (the start moves by one per query) or ``sequential`` (as listed); healthy ones first.
    An upstream is down after ``max_fails`` failures in a row (0: never); when every one
    is down, one is picked at random anyway (CoreDNS forward README, ``policy``).
    ``rng``: the randomness (seedable in tests)."""

    def __init__(
        self,
        upstreams: Sequence[Upstream],
        policy: str = "random",
        max_fails: int = 2,
        *,
        deadline: float = DEADLINE,
        rng: random.Random | None = None,
    ) -> None:
        self.upstreams = list(upstreams)
        self.policy = policy
        self.max_fails = max_fails
        self.deadline = deadline
        self.rng = rng or random.Random()
        self._next = 0

    def down(self, upstream: Upstream) -> bool:
        """Whether ``upstream`` failed ``max_fails`` times in a row."""
        return 0 < self.max_fails <= upstream.fails

    def order(self) -> tuple[list[Upstream], bool]:
        """(upstreams to try, in order; whether every one was down, so that health
        checking itself may be broken and a random one is returned alone)."""
        ups = list(self.upstreams)
        if self.policy == "random":
            self.rng.shuffle(ups)
        elif self.policy == "round_robin":
            start = self._next % len(ups)
            self._next += 1
            ups = ups[start:] + ups[:start]
        healthy = [u for u in ups if not self.down(u)]
        if healthy:
            return healthy, False
        return [self.rng.choice(ups)], True

    def expired(self, began: float, now: float) -> bool:
        """Whether a query begun at ``began`` is past its deadline at ``now`` (no more tries)."""
        return now >= began + self.deadline

    @staticmethod
    def failed(upstream: Upstream) -> None:
        """``upstream`` gave no usable reply (timeout, network error, bad reply)."""
        upstream.fails += 1

    @staticmethod
    def answered(upstream: Upstream) -> None:
        """``upstream`` replied (or answered a health probe): healthy again."""
        upstream.fails = 0

    def ids(self) -> int:
        """A random 16-bit query ID for the next upstream exchange."""
        return self.rng.getrandbits(16)
