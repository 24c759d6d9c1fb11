"""Which signals do what, in one place (CoreDNS reload on SIGUSR1, Knot and most daemons on
SIGHUP): SIGTERM/SIGINT stop (after ``lameduck``), :data:`RELOAD_SIGNALS` re-read the
Corefile and zones/, :data:`IGNORED_SIGNALS` are logged and otherwise ignored, so that none
ends the server unannounced.

:func:`install` sets them on a serving process's event loop; :func:`pass_on` makes the
parent of several worker processes hand each of them on to its workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("clusterdns")

STOP_SIGNALS = ("SIGINT", "SIGTERM")  # stop after the lameduck period
RELOAD_SIGNALS = ("SIGHUP", "SIGUSR1")  # reload the Corefile and zones/ (CoreDNS: SIGUSR1)
IGNORED_SIGNALS = ("SIGUSR2", "SIGALRM", "SIGVTALRM", "SIGPROF")  # logged, not fatal


def install(
    loop: asyncio.AbstractEventLoop,
    on_stop: Callable[[str], None],
    on_reload: Callable[[str], None],
) -> None:
    """Set the handlers on ``loop`` (Unix only): ``on_stop``/``on_reload`` get the signal's
    name (``"SIGTERM"``); the ignored ones are logged at info level."""
    for name in STOP_SIGNALS:
        loop.add_signal_handler(getattr(signal, name), on_stop, name)
    for name in RELOAD_SIGNALS:
        loop.add_signal_handler(getattr(signal, name), on_reload, name)
    for name in IGNORED_SIGNALS:
        if hasattr(signal, name):
            loop.add_signal_handler(getattr(signal, name), log.info, "%s: ignored", name)


def pass_on(children: Sequence[int]) -> None:
    """In the parent of worker processes (pids ``children``): every signal above is sent
    on to each worker (one already gone is skipped), which acts on it as it would alone."""

    def forward(signum: int, _frame: Any) -> None:
        log.info("%s: passing it on to %d workers", signal.Signals(signum).name, len(children))
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    for name in (*STOP_SIGNALS, *RELOAD_SIGNALS, *IGNORED_SIGNALS):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), forward)
