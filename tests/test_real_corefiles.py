"""The Corefiles real clusters run (issue 13), rewritten to loopback: each one loads, its
blocks are built as `clusterdns -conf` builds them, and a query or two get the answer
CoreDNS gives; a Corefile with a genuinely unsupported plugin is refused naming its line.

Sources (shapes as shipped or documented; ports and upstreams mapped to loopback):
kubeadm/kind (Corefile.example), k3s (manifests/coredns.yaml: NodeHosts hosts file, custom
imports), AKS (default plus the documented coredns-custom *.override/*.server examples),
EKS, minikube (host.minikube.internal in hosts), MicroK8s, RKE2 (rke2-coredns chart), Talos,
k0s, kops, kubespray, vcluster (rewrite of node names), OpenShift (the DNS operator's
default with bufsize and chaos, and its DNS-over-TLS upstream option), NodeLocal DNSCache
(node-local-dns ConfigMap), Gardener (rewrites in coredns-custom; provider-local's two
blocks on one port split by `view`)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.rcode
import dns.rdatatype
import pytest

from clusterdns.core.errors import ConfigError

from .corefile_server import serve
from .test_forward_tls import TLSUpstream, pki  # noqa: F401 - the pki fixture
from .upstream import Upstream

KUBE = "10.96.0.1"  # kubernetes.default.svc.cluster.local in zones/
WEB = "10.96.100.10"  # web.shop.svc.cluster.local
WWW = "93.184.216.34"  # www.example.com at the test upstream
IO_WWW = "198.51.100.7"  # www.example.io at the root test upstream (it has www.example.com too)


@dataclass
class Case:
    """A Corefile (``{up}``: the upstream's address, ``{cluster_up}``: an upstream serving
    cluster.local, ``{dir}``: the Corefile's directory, ``{tls}``/``{pki}``: the DoT
    upstream), files beside it, and queries ``(name, type, rcode, answers, port, class,
    tcp)`` (answers: sorted RDATA texts, None: not checked) - or the error it must give."""

    corefile: str
    files: dict[str, str] = field(default_factory=dict)
    queries: list[Query] = field(default_factory=list)
    error: str = ""


Query = tuple[str, str, str, list[str] | None, int | None, str, bool]


def q(name: str, rcode: str = "NOERROR", answers: list[str] | None = None, qtype: str = "A",
      port: int | None = None, rdclass: str = "IN", tcp: bool = False) -> Query:
    return (name, qtype, rcode, answers, port, rdclass, tcp)


KUBEADM_QUERIES = [
    q("kubernetes.default.svc.cluster.local.", answers=[KUBE]),
    q("www.example.com.", answers=[WWW]),
    q("1.0.96.10.in-addr.arpa.", qtype="PTR", answers=["kubernetes.default.svc.cluster.local."]),
]

CASES: dict[str, Case] = {
    "kubeadm": Case((Path(__file__).parent.parent / "Corefile.example").read_text()
                    .replace("/etc/resolv.conf", "{up}"), queries=KUBEADM_QUERIES),
    "k3s": Case("""\
.:53 {
    errors
    health
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
      pods insecure
      fallthrough in-addr.arpa ip6.arpa
    }
    hosts {dir}/NodeHosts {
      ttl 60
      reload 15s
      fallthrough
    }
    prometheus :9153
    forward . {up}
    cache 30
    loop
    reload
    loadbalance
    import /etc/coredns/custom-nonexistent/*.override
}
import /etc/coredns/custom-nonexistent/*.server
""", {"NodeHosts": "172.30.0.2 k3d-server-0\n172.30.0.3 k3d-agent-0\n"},
        [q("k3d-server-0.", answers=["172.30.0.2"]), *KUBEADM_QUERIES,
         q("2.0.30.172.in-addr.arpa.", qtype="PTR", answers=["k3d-server-0."])]),
    "aks": Case("""\
.:53 {
    errors
    ready
    health {
      lameduck 5s
    }
    kubernetes cluster.local in-addr.arpa ip6.arpa {
      pods insecure
      fallthrough in-addr.arpa ip6.arpa
      ttl 30
    }
    prometheus :9153
    forward . {up}
    cache 30
    loop
    reload
    loadbalance
    import custom/*.override
}
import custom/*.server
""", {
        "custom/hosts.override": "hosts {\n    10.0.0.1 example1.org\n    10.0.0.2 example2.org\n    fallthrough\n}\n",
        "custom/rewrite.override": "rewrite name substring legacy.corp.example shop.svc.cluster.local\n",
        "custom/log.override": "log\n",
        "custom/puglife.server": "puglife.local:53 {\n    errors\n    cache 30\n    forward . {up}\n}\n",
    }, [q("example1.org.", answers=["10.0.0.1"]),
        q("web.legacy.corp.example.", answers=[WEB]),
        q("kubernetes.default.svc.cluster.local.", answers=[KUBE]),
        q("www.example.com.", answers=[WWW])]),
    "eks": Case("""\
.:53 {
    errors
    health {
        lameduck 5s
      }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
      pods insecure
      fallthrough in-addr.arpa ip6.arpa
    }
    prometheus :9153
    forward . {up}
    cache 30
    loop
    reload
    loadbalance
}
""", queries=KUBEADM_QUERIES),
    "minikube": Case("""\
.:53 {
    log
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    hosts {
       192.168.49.1 host.minikube.internal
       fallthrough
    }
    forward . {up} {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
""", queries=[q("host.minikube.internal.", answers=["192.168.49.1"]), *KUBEADM_QUERIES]),
    "microk8s": Case("""\
.:53 {
    errors
    health {
      lameduck 5s
    }
    ready
    log . {
      class error
    }
    kubernetes cluster.local in-addr.arpa ip6.arpa {
      pods insecure
      fallthrough in-addr.arpa ip6.arpa
    }
    prometheus :9153
    forward . {up} {up}
    cache 30
    loop
    reload
    loadbalance
}
""", queries=KUBEADM_QUERIES),
    "rke2": Case("""\
.:53 {
    errors
    health  {
        lameduck 5s
    }
    ready
    kubernetes   cluster.local  cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    prometheus   0.0.0.0:9153
    forward   . {up}
    cache   30
    loop
    reload
    loadbalance
}
""", queries=KUBEADM_QUERIES),
    "talos": Case("""\
.:53 {
    errors
    health {
        lameduck 5s
    }
    ready
    log . {
        class error
    }
    prometheus :9153

    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    forward . {up} {
       max_concurrent 1000
    }
    cache 30 {
        denial 9984 30
    }
    loop
    reload
    loadbalance
}
""", queries=KUBEADM_QUERIES),
    "k0s": Case("""\
.:53 {
    errors
    health {
      lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
      pods insecure
      ttl 30
      fallthrough in-addr.arpa ip6.arpa
    }
    prometheus :9153
    forward . {up} {
      max_concurrent 1000
      policy sequential
    }
    cache 30
    loop
    reload
    loadbalance
}
""", queries=KUBEADM_QUERIES),
    "kops": Case("""\
.:53 {
    errors
    health {
      lameduck 5s
    }
    ready
    kubernetes cluster.local. in-addr.arpa ip6.arpa {
      pods insecure
      fallthrough in-addr.arpa ip6.arpa
      ttl 30
    }
    prometheus :9153
    forward . {up} {
      max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
""", queries=KUBEADM_QUERIES),
    "kubespray": Case("""\
.:53 {
    errors {
    }
    health {
        lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
      pods insecure
      fallthrough in-addr.arpa ip6.arpa
    }
    prometheus :9153
    forward . {up} {
      prefer_udp
      max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
""", queries=KUBEADM_QUERIES),
    # kubespray's coredns_external_zones (docs/dns-stack.md's example, rendered by
    # coredns-config.yml.j2): `example.com example.io:1053` serves each key on its own port
    "kubespray-external-zones": Case("""\
example.com example.io:1053 {
    log
    errors {
    }
    forward . {io_up}
    loadbalance
    cache 5
    reload
}
mydomain.tld {
    log
    errors {
    }
    rewrite name substring website.tld web.shop.svc.cluster.local
    forward . {cluster_up}
    loadbalance
    cache 5
    reload
}
.:53 {
    errors {
    }
    health {
        lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
      pods insecure
      fallthrough in-addr.arpa ip6.arpa
    }
    prometheus :9153
    forward . {up} {
      prefer_udp
      max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
""", queries=[
        q("www.example.com.", answers=[WWW], port=53),
        q("www.example.com.", answers=[WWW], port=53, tcp=True),
        q("www.example.io.", answers=[IO_WWW], port=1053),
        q("www.example.io.", answers=[IO_WWW], port=1053, tcp=True),
        q("www.example.com.", "REFUSED", port=1053),  # example.com is not served on 1053
        q("kubernetes.default.svc.cluster.local.", answers=[KUBE], port=53),
    ]),
    "vcluster": Case("""\
.:1053 {
    errors
    health
    ready
    rewrite name regex .*\\.nodes\\.vcluster\\.com kubernetes.default.svc.cluster.local
    kubernetes cluster.local in-addr.arpa ip6.arpa {
      pods insecure
      fallthrough in-addr.arpa ip6.arpa
    }
    hosts {dir}/NodeHosts {
      ttl 60
      reload 15s
      fallthrough
    }
    prometheus :9153
    forward . {up}
    cache 30
    loop
    loadbalance
}
import /etc/coredns/custom-nonexistent/*.server
""", {"NodeHosts": "172.30.0.9 vcluster-node\n"},
        [q("worker-1.nodes.vcluster.com.", answers=[KUBE]),
         q("vcluster-node.", answers=["172.30.0.9"]), *KUBEADM_QUERIES]),
    "openshift": Case("""\
.:5353 {
    bufsize 1232
    errors
    log . {
        class error
    }
    health {
        lameduck 20s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    prometheus 127.0.0.1:9153
    forward . {up} {
        policy sequential
    }
    cache 900 {
        denial 9984 30
    }
    reload
}
hostname.bind:5353 {
    chaos
}
# DNS-over-TLS for one domain (the operator's spec.servers[].forwardPlugin.transportConfig)
example.org:5353 {
    forward . tls://127.0.0.1:{tls} {
        tls_servername dns.test
        tls {pki}/ca.pem
        policy round_robin
        health_check 5s
    }
    errors
    log . {
        class error
    }
    bufsize 1232
    cache 900 {
        denial 9984 30
    }
}
""", queries=[*KUBEADM_QUERIES,
              q("hostname.bind.", qtype="TXT", rdclass="CH", answers=[f'"{socket.gethostname()}"']),
              q("secure.example.org.", answers=["192.0.2.1"])]),
    "nodelocaldns": Case("""\
cluster.local:53 {
    errors
    cache {
            success 9984 30
            denial 9984 5
    }
    reload
    loop
    bind 169.254.20.10 10.0.0.10
    forward . {cluster_up} {
            force_tcp
    }
    prometheus :9253
    health 169.254.20.10:8080
    }
in-addr.arpa:53 {
    errors
    cache 30
    reload
    loop
    bind 169.254.20.10 10.0.0.10
    forward . {cluster_up} {
            force_tcp
    }
    prometheus :9253
    }
ip6.arpa:53 {
    errors
    cache 30
    reload
    loop
    bind 169.254.20.10 10.0.0.10
    forward . {cluster_up} {
            force_tcp
    }
    prometheus :9253
    }
.:53 {
    errors
    cache 30
    reload
    loop
    bind 169.254.20.10 10.0.0.10
    forward . {up}
    prometheus :9253
    }
""", queries=[q("kubernetes.default.svc.cluster.local.", answers=[KUBE]),
              q("www.example.com.", answers=[WWW])]),
    "gardener": Case("""\
.:8053 {
    errors
    log . {
        class error
    }
    health {
        lameduck 15s
    }
    ready
    rewrite stop {
        name regex (.*)\\.svc\\.cluster\\.local\\.svc\\.cluster\\.local {1}.svc.cluster.local
        answer auto
    }
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    prometheus :9153
    loop
    import custom/*.override
    forward . {up}
    cache 30
    reload
    loadbalance
}
import custom/*.server
""", {"custom/rewrites.override":
      "rewrite stop {\n  name exact metrics.prow.example.local web.shop.svc.cluster.local\n}\n"},
        [q("web.shop.svc.cluster.local.svc.cluster.local.", answers=[WEB]),
         q("metrics.prow.example.local.", answers=[WEB]), *KUBEADM_QUERIES]),
    # Gardener's provider-local CoreDNS (charts/gardener/provider-local, coredns configmap):
    # TCP queries see the `external` view (hosts for the istio ingress gateways), UDP ones
    # the fallback block (no hosts: forwarded, and the test upstream refuses cluster.local)
    "gardener-provider-local-view": Case("""\
.:9053 {
    view external {
      expr proto() == 'tcp'
    }
    errors
    health {
       lameduck 5s
    }
    ready
    import custom/*.override
    prometheus :9153
    hosts {
      172.18.255.1 istio-ingressgateway.istio-ingress.svc.cluster.local
      172.18.255.10 istio-ingressgateway.istio-ingress--0.svc.cluster.local
      fallthrough
    }
    forward . {up} {
       max_concurrent 1000
    }
    cache 30
    loop
    log
    reload
    loadbalance
}
.:9053 {
    errors
    health {
       lameduck 5s
    }
    ready
    import custom/*.override
    rewrite stop {
      name regex (.*)\\.ingress\\.local\\.seed\\.local\\.gardener\\.cloud istio-ingressgateway.istio-ingress.svc.cluster.local answer auto
    }
    prometheus :9153
    forward . {up} {
       max_concurrent 1000
    }
    cache 30
    loop
    log
    reload
    loadbalance
}
""", queries=[
        q("istio-ingressgateway.istio-ingress.svc.cluster.local.", answers=["172.18.255.1"], tcp=True),
        q("istio-ingressgateway.istio-ingress--0.svc.cluster.local.", answers=["172.18.255.10"],
          tcp=True),
        q("www.example.com.", answers=[WWW], tcp=True),
        q("istio-ingressgateway.istio-ingress.svc.cluster.local.", "REFUSED"),
        q("www.example.com.", answers=[WWW]),
        q("istio-ingressgateway.istio-ingress.svc.cluster.local.", answers=["172.18.255.1"], tcp=True),
    ]),
    # genuinely unsupported: refused with the line
    "skydns-etcd": Case("""\
.:53 {
    errors
    etcd skydns.local {
        path /skydns
        endpoint http://localhost:2379
    }
    forward . {up}
}
""", error="{dir}/Corefile:3: plugin 'etcd' is not supported by clusterdns"),
    "kubernetes-upstream-option": Case("""\
.:53 {
    kubernetes cluster.local {
        upstream
    }
}
""", error="{dir}/Corefile:3: kubernetes: unknown option 'upstream'"),
}


@pytest.fixture(scope="module")
def upstreams(pki: Path) -> Iterator[tuple[Upstream, Upstream, TLSUpstream, Upstream]]:  # noqa: F811
    cluster = Upstream(
        "$TTL 30\n@ IN SOA ns hostmaster 1 7200 3600 1209600 30\n@ IN NS ns\nns IN A 10.96.0.10\n"
        f"kubernetes.default.svc IN A {KUBE}\n", origin="cluster.local.")
    io = Upstream(
        "$TTL 30\n@ IN SOA ns hostmaster 1 7200 3600 1209600 30\n@ IN NS ns\nns IN A 10.96.0.10\n"
        f"www.example.io. IN A {IO_WWW}\nwww.example.com. IN A {WWW}\n", origin=".")
    with Upstream() as up, cluster, io:
        tls = TLSUpstream(pki)
        try:
            yield up, cluster, tls, io
        finally:
            tls.stop()


@pytest.mark.parametrize("name", list(CASES))
def test_real_corefile(
    name: str, tmp_path: Path, pki: Path,  # noqa: F811
    upstreams: tuple[Upstream, Upstream, TLSUpstream, Upstream],
) -> None:
    case = CASES[name]
    up, cluster, tls, io = upstreams
    values = {"{up}": up.address, "{cluster_up}": cluster.address, "{io_up}": io.address,
              "{dir}": str(tmp_path),
              "{tls}": str(tls.port), "{pki}": str(pki)}

    def fill(text: str) -> str:
        for key, value in values.items():
            text = text.replace(key, value)
        return text

    for path, text in case.files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(fill(text))
    corefile = tmp_path / "Corefile"
    corefile.write_text(fill(case.corefile))
    if case.error:
        with pytest.raises(ConfigError) as info, serve(corefile.read_text(), str(corefile)):
            pass
        assert str(info.value) == fill(case.error)
        return
    with serve(corefile.read_text(), str(corefile)) as s:
        for qname, qtype, rcode, answers, port, rdclass, tcp in case.queries:
            reply = s.ask(qname, qtype, port=port, rdclass=rdclass, tcp=tcp)
            assert dns.rcode.to_text(reply.rcode()) == rcode, (qname, reply)
            if answers is not None:
                got = sorted(rr.to_text() for rrset in reply.answer for rr in rrset
                             if rrset.rdtype == dns.rdatatype.from_text(qtype))
                assert got == sorted(answers), (qname, reply)
