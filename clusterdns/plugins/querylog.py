"""The ``log`` plugin: one line per query on stdout, written off the hot path (CoreDNS
plugin/log README).

The handler hands each query's packet, reply and timing to :meth:`QueryLog.record`, which
only appends a tuple to a deque (thread-safe, no lock, no formatting). A writer thread
wakes every :data:`FLUSH_INTERVAL` seconds, formats everything queued in one batch and
writes it with one call. When more than :data:`MAX_QUEUED` lines wait, new ones are
dropped and counted (a log must never grow memory without bound).
"""

from __future__ import annotations

import collections
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from ..core.names import find_zone
from ..core.rr import QTYPE_NAMES, RCODE_NAMES
from .plugin import Build, Plugin, Started, Step

if TYPE_CHECKING:
    from ..corefile.reader import Reader

COMMON = (
    '{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" '
    "{rcode} {>rflags} {rsize} {duration}"
)
COMBINED = COMMON + ' "{>opcode}"'
CLASSES = ("success", "denial", "error", "all")
FLUSH_INTERVAL = 0.2  # seconds between batches
MAX_QUEUED = 100_000  # lines waiting to be written; beyond that they are dropped
CLASS_NAMES = {1: "IN", 3: "CH", 4: "HS", 254: "NONE", 255: "ANY"}
OPCODES = {0: "QUERY", 1: "IQUERY", 2: "STATUS", 4: "NOTIFY", 5: "UPDATE"}
FLAG_BITS = (("qr", 0x8000), ("aa", 0x0400), ("tc", 0x0200), ("rd", 0x0100),
             ("ra", 0x0080), ("z", 0x0040), ("ad", 0x0020), ("cd", 0x0010))


@dataclass
class QueryLogConfig:
    """``log [NAMES...] [FORMAT] { class CLASSES... }``: names (zones) to log, the line
    format with CoreDNS placeholders, the response classes to log."""

    names: tuple[str, ...] = (".",)
    format: str = COMMON
    classes: frozenset[str] = frozenset({"all"})


def parse_log(r: Reader) -> QueryLogConfig:
    """Parse the ``log`` directive. Raises ConfigError naming the line."""
    from ..corefile.reader import zones_args

    args = list(r.d.args)
    fmt = COMMON
    if args and ("{" in args[-1] or " " in args[-1]):
        fmt = args.pop()
    fmt = fmt.replace("{common}", COMMON).replace("{combined}", COMBINED)
    config = QueryLogConfig(zones_args(args, (".",), r), fmt)
    classes: set[str] = set()
    for sub in r.d.block:
        if sub.name != "class":
            raise r.error(f"unknown option {sub.name!r}", sub.line)
        r.count(sub.args, 1, 4, "class success|denial|error|all...", sub.line)
        for name in sub.args:
            if name not in CLASSES:
                raise r.error(f"class: want success|denial|error|all, got {name!r}", sub.line)
            classes.add(name)
    if classes:
        config.classes = frozenset(classes)
    return config


def classify(reply: bytes) -> str:
    """success, denial (NXDOMAIN, or NOERROR without answers: NODATA) or error (any other
    rcode) - CoreDNS plugin/pkg/response Classify."""
    rcode = reply[3] & 0xF
    if rcode == 0:
        return "success" if reply[6] | reply[7] else "denial"
    return "denial" if rcode == 3 else "error"


_QUESTIONS: dict[bytes, tuple[str, str, str]] = {}  # question bytes -> name, type, class
MAX_QUESTIONS = 4096


def _question_text(data: bytes) -> tuple[str, str, str, int] | None:
    """(name as sent, type, class as text, offset after the question) or None; the
    questions seen most are remembered (the writer thread is the only user)."""
    end = data.find(0, 12)
    if end < 0 or end + 5 > len(data):
        return None
    key = data[12 : end + 5]
    known = _QUESTIONS.get(key)
    if known is None:
        question = _question(data)
        if question is None:
            return None
        name, qtype, qclass, _ = question
        known = (
            name,
            QTYPE_NAMES.get(qtype) or f"TYPE{qtype}",
            CLASS_NAMES.get(qclass) or f"CLASS{qclass}",
        )
        if len(_QUESTIONS) >= MAX_QUESTIONS:
            _QUESTIONS.clear()
        _QUESTIONS[key] = known
    return known[0], known[1], known[2], end + 5


def _question(data: bytes) -> tuple[str, int, int, int] | None:
    """(name as sent, qtype, qclass, offset after the question) or None."""
    end = data.find(0, 12)
    if end < 0 or end + 5 > len(data):
        return None
    raw = bytearray(data[12:end])
    pos = 0
    while pos < len(raw):  # length bytes become dots
        length = raw[pos]
        if length > 63:
            return None
        raw[pos] = 0x2E
        pos += 1 + length
    if pos != len(raw):
        return None
    name = raw[1:].decode("latin-1") + "." if raw else "."
    qtype = (data[end + 1] << 8) | data[end + 2]
    qclass = (data[end + 3] << 8) | data[end + 4]
    return name, qtype, qclass, end + 5


def _edns(data: bytes, pos: int) -> tuple[int, bool]:
    """(advertised payload, DO) of a query's OPT, (512, False) without one."""
    if len(data) >= pos + 11 and data[pos] == 0 and data[pos + 1 : pos + 3] == b"\x00\x29":
        payload = (data[pos + 3] << 8) | data[pos + 4]
        return payload, bool(data[pos + 7] & 0x80)
    return 512, False


PLACEHOLDERS = (
    "{remote}", "{port}", "{>id}", "{type}", "{class}", "{name}", "{proto}", "{size}",
    "{>do}", "{>bufsize}", "{rcode}", "{>rflags}", "{rsize}", "{duration}", "{>opcode}",
    "{local}",
)
_PLACEHOLDER = re.compile(r"\{>?[a-z]+\}")
_FLAGS: dict[int, str] = {}


def compile_format(fmt: str) -> str:
    """A CoreDNS log format as a :meth:`str.format` template over :data:`PLACEHOLDERS`
    (positional fields); unknown placeholders stay as written, as CoreDNS leaves them."""
    out = []
    pos = 0
    for match in _PLACEHOLDER.finditer(fmt):
        out.append(fmt[pos : match.start()].replace("{", "{{").replace("}", "}}"))
        key = match.group(0)
        if key in PLACEHOLDERS:
            out.append("{" + str(PLACEHOLDERS.index(key)) + "}")
        else:
            out.append(key.replace("{", "{{").replace("}", "}}"))
        pos = match.end()
    out.append(fmt[pos:].replace("{", "{{").replace("}", "}}"))
    return "".join(out)


_COMMON_TEMPLATE = compile_format(COMMON)


def _rflags(flags: int) -> str:
    text = _FLAGS.get(flags)
    if text is None:
        text = _FLAGS[flags] = ",".join(n for n, bit in FLAG_BITS if flags & bit)
    return text


def format_line(
    template: str, client: str, port: int, tcp: bool, data: bytes, reply: bytes, seconds: float
) -> str | None:
    """One log line from a :func:`compile_format` template, without the ``[INFO] ``
    prefix; None for a packet whose question cannot be read. The default format takes a
    faster path (an f-string) with the same result."""
    question = _question_text(data)
    if question is None or len(reply) < 12:
        return None
    name, qtype, qclass, end = question
    payload, do = _edns(data, end)
    rflags = (reply[2] << 8) | reply[3]
    remote = f"[{client}]" if ":" in client else client
    rcode = RCODE_NAMES.get(rflags & 0xF) or str(rflags & 0xF)
    duration = f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"
    if template is _COMMON_TEMPLATE:
        return (
            f'{remote}:{port} - {(data[0] << 8) | data[1]} "{qtype} {qclass} {name} '
            f'{"tcp" if tcp else "udp"} {len(data)} {"true" if do else "false"} {payload}" '
            f"{rcode} {_rflags(rflags & 0xFFF0)} {len(reply)} {duration}"
        )
    opcode = (data[2] >> 3) & 0xF
    return template.format(
        remote,
        port,
        (data[0] << 8) | data[1],
        qtype,
        qclass,
        name,
        "tcp" if tcp else "udp",
        len(data),
        "true" if do else "false",
        payload,
        rcode,
        _rflags(rflags & 0xFFF0),
        len(reply),
        duration,
        OPCODES.get(opcode) or str(opcode),
        "-",
    )


class QueryLog:
    """The query log of one server block: :meth:`record` on the hot path, a writer thread
    formats and writes. ``out``: where lines go (stdout, as CoreDNS)."""

    def __init__(self, config: QueryLogConfig, out: TextIO | None = None) -> None:
        self.config = config
        self.out = out
        self.queue: collections.deque[tuple[str, int, bool, bytes, bytes, float]] = (
            collections.deque()
        )
        self.dropped = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._all = "all" in config.classes
        self._everywhere = "." in config.names
        self._template = (
            _COMMON_TEMPLATE if config.format == COMMON else compile_format(config.format)
        )

    def record(
        self, client: str, port: int, tcp: bool, data: bytes, reply: bytes | None, seconds: float
    ) -> None:
        """Queue one answered query (no reply: nothing is logged, as CoreDNS logs
        responses). Cheap: one append."""
        if reply is None:
            return
        if len(self.queue) >= MAX_QUEUED:
            self.dropped += 1
            return
        self.queue.append((client, port, tcp, data, reply, seconds))

    def start(self) -> None:
        """Start the writer thread (idempotent)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="querylog", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Write what is queued and stop the writer thread."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(5)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL):
            self.flush()

    def wanted(self, data: bytes, reply: bytes) -> bool:
        """Whether a query is logged: its class (success/denial/error) and its name."""
        if not self._all and classify(reply) not in self.config.classes:
            return False
        if self._everywhere:
            return True
        question = _question(data)
        return question is not None and bool(
            find_zone(question[0].lower(), self.config.names)
        )

    def flush(self) -> int:
        """Format and write everything queued; return how many lines were written."""
        lines = []
        queue = self.queue
        fmt = self._template
        while queue:
            client, port, tcp, data, reply, seconds = queue.popleft()
            if not self.wanted(data, reply):
                continue
            line = format_line(fmt, client, port, tcp, data, reply, seconds)
            if line is not None:
                lines.append("[INFO] " + line + "\n")
        if lines:
            out = self.out or sys.stdout
            try:
                out.write("".join(lines))
                out.flush()
            except (OSError, ValueError):
                pass  # a closed stdout must not stop the server
        return len(lines)


def now() -> float:
    """The clock query durations are measured with (seconds, monotonic)."""
    return time.perf_counter()


class _LogStep(Step):
    """The log beside the chain: the chain records every query and its reply into the
    :class:`QueryLog`; this starts and stops its writer thread."""

    def __init__(self, querylog: QueryLog) -> None:
        super().__init__(None)
        self.querylog = querylog

    def start(self, started: Started) -> None:
        self.querylog.start()

    async def stop(self) -> None:
        self.querylog.stop()


def _build(config: QueryLogConfig | QueryLog, build: Build) -> Step:
    querylog = config if isinstance(config, QueryLog) else QueryLog(config)
    build.querylog = querylog
    return _LogStep(querylog)


PLUGIN = Plugin("log", lambda r, setup: parse_log(r), _build)
"""CoreDNS plugin/log: a line per query, in CoreDNS's formats."""
