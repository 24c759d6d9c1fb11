"""Giving freed memory back to the operating system after a large load."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import threading


def release_memory() -> None:
    """Return the heap freed by a large load (JSON/YAML documents, replaced records),
    and stop the cyclic garbage collector from scanning what remains.

    CPython keeps freed blocks in its arenas and glibc keeps freed pages in its heap, so
    after loading 100,000 objects the RSS would stay at its peak; a collection and
    ``malloc_trim`` give back what is free. A no-op where glibc is not the allocator.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    # What survives is long-lived (records, indexes): move it out of the collector's
    # sight, so a full collection no longer walks 300,000 objects in the middle of
    # answering queries (p99 latency). Records hold no cycles: reference counting alone
    # frees them when they are replaced.
    gc.freeze()


def _trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def release_memory_off_loop() -> None:
    """:func:`release_memory` without pausing the calling (serving) thread: for relists
    applied while queries are answered (issue 11).

    No full collection (it walks every object holding the GIL: 100-600 ms at 100,000
    pods): records hold no cycles, reference counting frees what a relist replaced.
    ``gc.freeze`` only moves the collector's lists (constant time), so later automatic
    full collections no longer walk the records. ``malloc_trim`` runs in a short-lived
    thread: ctypes releases the GIL around the call.
    """
    gc.freeze()
    threading.Thread(target=_trim, name="malloc-trim", daemon=True).start()
