"""Search-path semantics: what a pod's resolver does to a name (docs/behaviour.md 15).

Client side, pure: the resolv.conf the kubelet writes for a pod (:func:`pod_resolv_conf`),
and the order of queries glibc and musl send for a name and which answers end the walk
(:func:`walk`). The server side of search paths, autopath, lives in the handler.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .rr import Rcode

MAX_SEARCH_DOMAINS = 32  # kubelet / apiserver validation (pkg/apis/core/validation)
MAX_SEARCH_CHARS = 2048  # total length of the search line's domains
DEFAULT_NDOTS = 5  # kubelet defaultDNSOptions
GLIBC_ATTEMPTS = 2  # resolv.conf "attempts" default: tries of one name on SERVFAIL/REFUSED


class DNSPolicy(enum.Enum):
    """A pod's ``spec.dnsPolicy``."""

    CLUSTER_FIRST = "ClusterFirst"
    CLUSTER_FIRST_WITH_HOST_NET = "ClusterFirstWithHostNet"
    DEFAULT = "Default"
    NONE = "None"


@dataclass
class ResolvConf:
    """The parts of resolv.conf a resolver reads: nameservers, search list, options."""

    nameservers: list[str] = field(default_factory=list)
    search: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # search domains over the kubelet limits

    @property
    def ndots(self) -> int:
        """``options ndots:N`` (glibc's default 1 when absent), clamped to 0..15."""
        value = 1
        for option in self.options:
            if option.startswith("ndots:"):
                try:
                    value = int(option.split(":", 1)[1])
                except ValueError:
                    continue
        return max(0, min(value, 15))

    @property
    def attempts(self) -> int:
        """``options attempts:N`` (default 2)."""
        for option in self.options:
            if option.startswith("attempts:") and option[9:].isdigit():
                return max(1, min(int(option[9:]), 5))
        return GLIBC_ATTEMPTS

    def text(self) -> str:
        """resolv.conf file content, as the kubelet writes it."""
        lines = [f"nameserver {ns}" for ns in self.nameservers]
        if self.search:
            lines.append("search " + " ".join(self.search))
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "\n".join(lines) + "\n"


def parse_resolv_conf(text: str) -> ResolvConf:
    """Parse resolv.conf text (``nameserver``, ``search``/``domain``, ``options``); the
    last ``search`` or ``domain`` line wins, as in glibc."""
    conf = ResolvConf()
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        key, args = words[0], words[1:]
        if key == "nameserver" and args:
            conf.nameservers.append(args[0])
        elif key in ("search", "domain"):
            conf.search = [a.rstrip(".") for a in args]
        elif key == "options":
            conf.options.extend(args)
    return conf


def _merge_options(base: Sequence[str], extra: Sequence[str]) -> list[str]:
    """Options with later ones replacing earlier ones of the same name (kubelet
    mergeDNSOptions)."""
    merged: dict[str, str] = {}
    for option in [*base, *extra]:
        merged[option.split(":", 1)[0]] = option
    return list(merged.values())


def _fit_search(domains: Sequence[str]) -> tuple[list[str], list[str]]:
    """De-duplicate, then keep what fits 32 domains and 2048 characters (kubelet
    formDNSSearchFitsLimits); return (kept, dropped)."""
    unique = list(dict.fromkeys(d.rstrip(".") for d in domains if d.strip(".")))
    kept: list[str] = []
    length = 0
    for domain in unique:
        extra = len(domain) + (1 if kept else 0)
        if len(kept) >= MAX_SEARCH_DOMAINS or length + extra > MAX_SEARCH_CHARS:
            break
        kept.append(domain)
        length += extra
    return kept, unique[len(kept) :]


def pod_resolv_conf(
    namespace: str,
    *,
    cluster_domain: str = "cluster.local",
    nameservers: Sequence[str] = ("10.96.0.10",),
    policy: DNSPolicy = DNSPolicy.CLUSTER_FIRST,
    host: ResolvConf | None = None,
    searches: Sequence[str] = (),
    options: Sequence[str] = (),
    host_network: bool = False,
) -> ResolvConf:
    """The resolv.conf the kubelet writes for a pod (KUBELET ``pkg/kubelet/network/dns``).

    ``host``: the node's resolv.conf (its search domains follow the cluster ones; its
    nameservers serve ``Default``); ``searches``/``options``: the pod's ``dnsConfig``.
    ClusterFirst on a hostNetwork pod falls back to Default, as the kubelet does; use
    ClusterFirstWithHostNet there. Search domains beyond 32 or 2048 characters are dropped
    (listed in ``dropped``).
    """
    host = host or ResolvConf()
    domain = cluster_domain.strip(".")
    if policy is DNSPolicy.CLUSTER_FIRST and host_network:
        policy = DNSPolicy.DEFAULT
    if policy is DNSPolicy.NONE:
        base = ResolvConf([], [], [])
    elif policy is DNSPolicy.DEFAULT:
        base = ResolvConf(list(host.nameservers), list(host.search), list(host.options))
    else:
        base = ResolvConf(
            list(nameservers),
            [f"{namespace}.svc.{domain}", f"svc.{domain}", domain, *host.search],
            [f"ndots:{DEFAULT_NDOTS}"],
        )
    search, dropped = _fit_search([*base.search, *searches])
    merged = _merge_options(base.options, options)
    return ResolvConf(base.nameservers[:3], search, merged, dropped)


# ---- the walk ------------------------------------------------------------------------------


class Libc(enum.Enum):
    """Which C library's search algorithm to follow."""

    GLIBC = "glibc"
    MUSL = "musl"


@dataclass
class Reply:
    """What one query got: rcode and the answer records' text (addresses, CNAME targets)."""

    rcode: int
    answers: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    milliseconds: float = 0.0


@dataclass
class Step:
    """One query the walk sent."""

    name: str
    qtype: str
    reply: Reply


@dataclass
class Walk:
    """The whole walk: every query sent, the addresses found (if any), and why it ended."""

    steps: list[Step] = field(default_factory=list)
    name: str = ""  # the candidate that resolved
    addresses: list[str] = field(default_factory=list)
    reason: str = ""
    error: bool = False  # ended on SERVFAIL/REFUSED-style failure rather than not found

    @property
    def resolved(self) -> bool:
        return bool(self.addresses)


Query = Callable[[str, str], Reply]
"""Ask one question: (absolute name, "A"/"AAAA") -> Reply. Raises TimeoutError if no reply."""


def candidates(name: str, conf: ResolvConf, libc: Libc) -> list[str]:
    """Absolute names in the order the libc tries them (glibc res_search; musl
    name_from_dns_search): a trailing dot means the name alone; ``ndots`` or more dots
    means the name first (glibc) or alone (musl); fewer, the search list first."""
    if name.endswith("."):
        return [name]
    dots = name.count(".")
    searched = [f"{name}.{domain}." for domain in conf.search]
    as_is = name + "."
    if dots >= conf.ndots:
        return [as_is] if libc is Libc.MUSL else [as_is, *searched]
    return [*searched, as_is]


def walk(name: str, conf: ResolvConf, query: Query, libc: Libc, qtypes: Sequence[str]) -> Walk:
    """Resolve ``name`` as the libc would, asking ``query`` for each candidate and type.

    ``qtypes``: ("A",), ("AAAA",) or ("A", "AAAA") (getaddrinfo AF_UNSPEC: both per
    candidate). glibc (docs/behaviour.md 15.2, 15.3): NXDOMAIN and NODATA go on to the next
    candidate; SERVFAIL is retried ``attempts`` times, then the walk goes on; REFUSED (and
    other errors) is retried, then the search list is abandoned and only the name as is
    is tried. musl: only NXDOMAIN goes on; NODATA, SERVFAIL and anything else end the
    walk; an NXDOMAIN for either type makes the candidate missing.
    """
    result = Walk()
    as_is = name if name.endswith(".") else name + "."
    abandon = saw_nodata = saw_servfail = False
    for candidate in candidates(name, conf, libc):
        if abandon and candidate != as_is:
            continue
        replies = _ask(candidate, conf, query, libc, qtypes, result.steps)
        if libc is Libc.MUSL:
            if _musl_ends(result, candidate, replies):
                return result
            continue
        found = [a for r in replies for a in r.addresses]
        if found:
            return _found(result, candidate, found)
        rcodes = [r.rcode for r in replies]
        if all(r == Rcode.NXDOMAIN for r in rcodes):
            continue
        if any(r == Rcode.NOERROR for r in rcodes):
            saw_nodata = True
        elif any(r == Rcode.SERVFAIL for r in rcodes):
            saw_servfail = True
        elif not abandon:
            abandon = True  # REFUSED and the like: glibc gives up on the search list
            result.reason = f"{candidate}: refused: glibc abandons the search list"
    return _glibc_gave_up(result, abandon, saw_nodata, saw_servfail)


def _ask(
    candidate: str,
    conf: ResolvConf,
    query: Query,
    libc: Libc,
    qtypes: Sequence[str],
    steps: list[Step],
) -> list[Reply]:
    """One reply per type for ``candidate``, each query recorded in ``steps``; glibc
    retries SERVFAIL and REFUSED ``attempts`` times, musl asks once. A timeout counts as
    SERVFAIL."""
    replies = []
    for qtype in qtypes:
        tries = 1 if libc is Libc.MUSL else conf.attempts
        for _ in range(tries):
            try:
                reply = query(candidate, qtype)
            except TimeoutError:
                reply = Reply(Rcode.SERVFAIL, ["(timed out)"])
            steps.append(Step(candidate, qtype, reply))
            if reply.rcode not in (Rcode.SERVFAIL, Rcode.REFUSED) or libc is Libc.MUSL:
                break
        replies.append(reply)
    return replies


def _musl_ends(result: Walk, candidate: str, replies: list[Reply]) -> bool:
    """Whether musl's walk ends at ``candidate`` (``result`` then says how): it goes on only
    after an NXDOMAIN for either type, read in order (A first, then AAAA)."""
    for reply in replies:
        rcode = reply.rcode
        if rcode == Rcode.SERVFAIL:
            result.reason = f"{candidate}: SERVFAIL: musl stops (EAI_AGAIN)"
            result.error = True
            return True
        if rcode == Rcode.NXDOMAIN:
            return False
        if rcode != Rcode.NOERROR:
            result.reason = f"{candidate}: rcode {rcode}: musl stops (EAI_FAIL)"
            result.error = True
            return True
    found = [a for r in replies for a in r.addresses]
    if found:
        _found(result, candidate, found)
    else:
        result.reason = f"{candidate}: NODATA: musl stops here (EAI_NONAME)"
    return True


def _glibc_gave_up(result: Walk, abandon: bool, saw_nodata: bool, saw_servfail: bool) -> Walk:
    """``result`` after glibc tried every candidate without an address: why, and whether
    it is an error (TRY_AGAIN, or the search list abandoned) rather than not found."""
    if not result.reason or not abandon:
        if saw_nodata:
            result.reason = "every candidate failed; one existed without addresses (NO_DATA)"
        elif saw_servfail:
            result.reason = "every candidate failed; some with SERVFAIL (TRY_AGAIN)"
            result.error = True
        else:
            result.reason = "every candidate was NXDOMAIN (HOST_NOT_FOUND)"
    else:
        result.reason += "; the name as is did not resolve either"
        result.error = True
    return result


def _found(result: Walk, candidate: str, addresses: list[str]) -> Walk:
    result.name = candidate
    result.addresses = list(dict.fromkeys(addresses))
    result.reason = f"{candidate} answered"
    return result
