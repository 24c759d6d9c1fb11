"""What the exposure plugins (k8s_external, k8s_gateway) share: address records for the
names they answer, how their NXDOMAIN settles (SERVFAIL before sync, fallthrough), and how
their answer enters the chain. Not a plugin: the plugins import it, never each other.
"""

from __future__ import annotations

from ..core.names import find_zone
from ..core.resolver import Answer
from ..core.rr import RR, QType, Rcode
from ..core.store import Store
from .plugin import Ask, Chain, Outcome


def address_records(
    qname: str, qtype: int, ttl: int, addresses: tuple[str, ...]
) -> tuple[list[RR], str]:
    """Records for ``addresses`` (IP text, or absolute host names ending in a dot).

    A/AAAA: the IPs of the question's family, de-duplicated, in order. When there is no IP
    at all but a host name (a cloud load balancer), a CNAME to the first host name, whose
    name is returned second so the handler can chase it (CoreDNS msg_to_dns.go ``a``).
    DIFFERS: CoreDNS also adds CNAMEs next to A records when a Service has both; a name
    with a CNAME can have no other data (RFC 1034 3.6.2), so IPs win.
    """
    ips = [a for a in addresses if not a.endswith(".")]
    hosts = [a for a in addresses if a.endswith(".")]
    if not ips and hosts and qtype in (QType.A, QType.AAAA, QType.CNAME):
        chase = hosts[0] if qtype != QType.CNAME else ""
        return [RR(qname, QType.CNAME, ttl, hosts[0])], chase
    if qtype not in (QType.A, QType.AAAA):
        return [], ""
    v6 = qtype == QType.AAAA
    rtype = QType.AAAA if v6 else QType.A
    return [RR(qname, rtype, ttl, ip) for ip in dict.fromkeys(ips) if (":" in ip) == v6], ""


def settle_negative(
    store: Store, qname: str, zone: str, fallthrough: tuple[str, ...], answer: Answer
) -> Answer:
    """An exposure zone's NXDOMAIN, finished: SERVFAIL before the store has synced (clients
    cache NXDOMAIN; docs/behaviour.md 13), marked for the next plugin under ``fallthrough``
    (CoreDNS ``plugin.Fall``). Other answers pass unchanged."""
    if answer.rcode == Rcode.NXDOMAIN:
        if not store.synced:
            return Answer(Rcode.SERVFAIL, zone)
        if any(find_zone(qname, (z,)) for z in fallthrough):
            answer.fallthrough = True
    return answer


def exposed(chain: Chain, ask: Ask, answer: Answer | None, name: str) -> Outcome | None:
    """An exposure plugin's answer (None: not its zone); its NXDOMAIN under
    ``fallthrough`` is kept in ``ask.passed`` (the first one) and the chain goes on."""
    if answer is None:
        return None
    if not answer.fallthrough:
        return chain.reply(ask.query, answer, ask.limit, not ask.rewritten), name
    ask.passed = ask.passed or answer
    return None
