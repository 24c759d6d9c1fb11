"""Real glibc lookups against a real server: ``getent hosts`` and ``getent ahostsv4`` in a
private mount + network namespace, with a pod's resolv.conf bind-mounted over
/etc/resolv.conf and ``clusterdns serve`` on 127.0.0.1:53.

Runs as root where ``unshare``, ``ip``, ``mount`` and ``getent`` exist; skipped elsewhere.
One shell script does every lookup inside the namespaces and prints one parseable block
per case; the tests below assert on it. A few lookups go through a small UDP relay on
127.0.0.2:53 that records each query glibc sent and the rcode it got back.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from clusterdns.core.rr import Rcode
from clusterdns.core.search import Libc, Reply, parse_resolv_conf, pod_resolv_conf, walk

from .conftest import ROOT, ZONES

TOOLS = ("unshare", "ip", "mount", "umount", "getent", "bash", "timeout")
SERVER = "127.0.0.1"  # clusterdns serve listens here, port 53
RELAY = "127.0.0.2"  # the recording relay, forwarding to SERVER
EXTRA_ADDRESS = "10.123.0.1/32"  # a non-loopback IPv4 address, so AI_ADDRCONFIG asks for A
RUN_TIMEOUT = 60.0
LOOKUP_TIMEOUT = 4  # seconds per getent (a healthy lookup takes milliseconds)


@dataclass(frozen=True)
class Case:
    id: str
    namespace: str  # the pod's namespace: which resolv.conf is mounted
    argv: tuple[str, ...]
    status: int  # getent's exit status
    addresses: frozenset[str] = frozenset()
    canonical: str | None = None  # the name getent prints after the address
    traced: bool = False  # resolve through the recording relay
    queries: tuple[str, ...] = ()  # traced: "QTYPE NAME RCODE" of each query, in order


CASES = [
    Case("default-hosts-kubernetes", "default", ("getent", "hosts", "kubernetes"), 0,
         frozenset({"10.96.0.1"}), "kubernetes.default.svc.cluster.local"),
    Case("default-ahostsv4-kubernetes.default", "default",
         ("getent", "ahostsv4", "kubernetes.default"), 0,
         frozenset({"10.96.0.1"}), "kubernetes.default.svc.cluster.local"),
    Case("shop-ahostsv4-web", "shop", ("getent", "ahostsv4", "web"), 0,
         frozenset({"10.96.100.10"}), "web.shop.svc.cluster.local"),
    Case("shop-ahostsv4-db-0.db", "shop", ("getent", "ahostsv4", "db-0.db"), 0,
         frozenset({"10.244.1.20"}), "db-0.db.shop.svc.cluster.local"),
    Case("shop-ahostsv4-kube-dns.kube-system", "shop",
         ("getent", "ahostsv4", "kube-dns.kube-system"), 0,
         frozenset({"10.96.0.10"}), "kube-dns.kube-system.svc.cluster.local"),
    # ExternalName with an in-zone target: the CNAME target is the canonical name.
    Case("shop-ahostsv4-web-alias", "shop", ("getent", "ahostsv4", "web-alias"), 0,
         frozenset({"10.96.100.10"}), "web.shop.svc.cluster.local"),
    Case("shop-ahostsv4-fqdn", "shop", ("getent", "ahostsv4", "web.shop.svc.cluster.local"), 0,
         frozenset({"10.96.100.10"}), "web.shop.svc.cluster.local"),
    Case("shop-ahostsv4-nosuch", "shop", ("getent", "ahostsv4", "nosuch"), 2),
    # The same lookups again through the relay, to see the queries glibc sends ("QTYPE NAME
    # RCODE"). getent hosts is gethostbyname2(AF_INET6), then AF_INET: a whole AAAA walk
    # first, with no AI_ADDRCONFIG to skip it. The bare name is outside the served zones:
    # REFUSED, which glibc retries (attempts:2) before giving up on it.
    Case("traced-default-hosts-kubernetes", "default", ("getent", "hosts", "kubernetes"), 0,
         frozenset({"10.96.0.1"}), "kubernetes.default.svc.cluster.local", traced=True,
         queries=("AAAA kubernetes.default.svc.cluster.local. NOERROR",
                  "AAAA kubernetes.svc.cluster.local. NXDOMAIN",
                  "AAAA kubernetes.cluster.local. NXDOMAIN",
                  "AAAA kubernetes. REFUSED",
                  "AAAA kubernetes. REFUSED",
                  "A kubernetes.default.svc.cluster.local. NOERROR")),
    # Four dots < ndots:5: the whole search list comes before the name as is.
    Case("traced-shop-ahostsv4-fqdn", "shop",
         ("getent", "ahostsv4", "web.shop.svc.cluster.local"), 0,
         frozenset({"10.96.100.10"}), "web.shop.svc.cluster.local", traced=True,
         queries=("A web.shop.svc.cluster.local.shop.svc.cluster.local. NXDOMAIN",
                  "A web.shop.svc.cluster.local.svc.cluster.local. NXDOMAIN",
                  "A web.shop.svc.cluster.local.cluster.local. NXDOMAIN",
                  "A web.shop.svc.cluster.local. NOERROR")),
    Case("traced-shop-ahostsv4-nosuch", "shop", ("getent", "ahostsv4", "nosuch"), 2,
         traced=True,
         queries=("A nosuch.shop.svc.cluster.local. NXDOMAIN",
                  "A nosuch.svc.cluster.local. NXDOMAIN",
                  "A nosuch.cluster.local. NXDOMAIN",
                  "A nosuch. REFUSED",
                  "A nosuch. REFUSED")),
]

RELAY_SCRIPT = '''\
"""UDP relay LISTEN:53 -> UPSTREAM:53; appends "QTYPE QNAME RCODE ANCOUNT" per query to LOG."""
import socket
import struct
import sys

TYPES = {1: "A", 5: "CNAME", 12: "PTR", 28: "AAAA", 33: "SRV"}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def question(packet):
    labels, pos = [], 12
    while packet[pos]:
        size = packet[pos]
        labels.append(packet[pos + 1 : pos + 1 + size].decode("ascii", "replace"))
        pos += 1 + size
    (qtype,) = struct.unpack_from("!H", packet, pos + 1)
    return ".".join(labels) + ".", TYPES.get(qtype, str(qtype))


listen, upstream, path = sys.argv[1:4]
front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
front.bind((listen, 53))
back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
back.connect((upstream, 53))
back.settimeout(3)
with open(path, "a", buffering=1) as log:
    log.write("ready\\n")
    while True:
        packet, client = front.recvfrom(65535)
        try:
            name, qtype = question(packet)
        except (IndexError, struct.error):
            name, qtype = "?", "?"
        back.send(packet)
        try:
            reply = back.recv(65535)
            while reply[:2] != packet[:2]:
                reply = back.recv(65535)
        except OSError:
            log.write(f"{qtype} {name} NO-REPLY 0\\n")
            continue
        rcode = RCODES.get(reply[3] & 15, reply[3] & 15)
        (answers,) = struct.unpack_from("!H", reply, 6)
        log.write(f"{qtype} {name} {rcode} {answers}\\n")
        front.sendto(reply, client)
'''

SCRIPT_HEAD = r"""
set -u
server_pid=
relay_pid=
cleanup() {
    for pid in $relay_pid $server_pid; do kill -KILL "$pid" 2>/dev/null; done
}
trap cleanup EXIT
fatal() {
    echo "@@fatal $*"
    sed 's/^/@@serverlog /' "$SERVER_LOG" 2>/dev/null
    exit 1
}
# wait_for FILE TEXT PID: poll FILE for TEXT while PID lives, 20 s at most.
wait_for() {
    local end=$((SECONDS + 20))
    while [ "$SECONDS" -le "$end" ]; do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.02
    done
    return 1
}
# lookup ID RESOLV_CONF COMMAND...: one case, printed as @@case/@@out/@@query lines.
lookup() {
    local id=$1 conf=$2 start out status
    shift 2
    kill -0 "$server_pid" 2>/dev/null || fatal "server died before $id"
    mount --bind "$conf" /etc/resolv.conf || fatal "cannot mount $conf"
    start=$(wc -l < "$RELAY_LOG")
    out=$(timeout "$LOOKUP_TIMEOUT" "$@" 2>&1)
    status=$?
    umount /etc/resolv.conf || fatal "cannot unmount /etc/resolv.conf"
    echo "@@case $id $status"
    [ -n "$out" ] && printf '%s\n' "$out" | sed "s/^/@@out $id /"
    tail -n "+$((start + 1))" "$RELAY_LOG" | sed "s/^/@@query $id /"
}

mount --make-rprivate / || fatal "mount --make-rprivate / failed"
ip link set lo up || fatal "ip link set lo up failed"
ip addr add "$EXTRA_ADDRESS" dev lo || fatal "ip addr add failed"
# Only files and dns, whatever the host's nsswitch.conf says (mdns4_minimal would take
# every *.local name, resolved would not read our resolv.conf), and no nscd cache.
# Without /etc/nsswitch.conf glibc uses "dns files", which is fine too.
for file in nsswitch.conf hosts; do
    if [ -e "/etc/$file" ]; then
        mount --bind "$WORK/$file" "/etc/$file" || fatal "cannot mount /etc/$file"
    fi
done
for dir in /run/nscd /var/run/nscd; do
    [ -d "$dir" ] && mount -t tmpfs tmpfs "$dir"
done

cd "$REPO" || fatal "no $REPO"
: > "$SERVER_LOG"
PYTHONUNBUFFERED=1 "$PYTHON" -m clusterdns serve --listen "$SERVER:53" --zones "$ZONES" \
    > "$SERVER_LOG" 2>&1 &
server_pid=$!
wait_for "$SERVER_LOG" "listening on" "$server_pid" || fatal "server did not start"
: > "$RELAY_LOG"
"$PYTHON" "$WORK/relay.py" "$RELAY" "$SERVER" "$RELAY_LOG" 2>> "$SERVER_LOG" &
relay_pid=$!
wait_for "$RELAY_LOG" "ready" "$relay_pid" || fatal "relay did not start"
echo "@@ready"
"""

SCRIPT_TAIL = r"""
kill -TERM "$relay_pid" "$server_pid"
end=$((SECONDS + 10))
while kill -0 "$server_pid" 2>/dev/null && [ "$SECONDS" -le "$end" ]; do sleep 0.02; done
wait "$server_pid"
echo "@@server-exit $?"
sed 's/^/@@serverlog /' "$SERVER_LOG"
"""


@dataclass
class Result:
    status: int | None = None
    lines: list[str] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)


@dataclass
class Run:
    results: dict[str, Result]
    server_exit: int | None
    server_log: list[str]
    output: str


def conf_path(work: Path, namespace: str, traced: bool) -> Path:
    return work / f"resolv-{namespace}{'-traced' if traced else ''}.conf"


def write_files(work: Path) -> Path:
    """The pod resolv.confs, nsswitch.conf, hosts, the relay and the script; returns the
    script's path."""
    for case in CASES:
        nameserver = RELAY if case.traced else SERVER
        text = pod_resolv_conf(case.namespace, nameservers=(nameserver,)).text()
        conf_path(work, case.namespace, case.traced).write_text(text)
    (work / "nsswitch.conf").write_text("hosts: files dns\n")
    (work / "hosts").write_text("127.0.0.1 localhost\n::1 localhost\n")
    (work / "relay.py").write_text(RELAY_SCRIPT)
    variables = {
        "PYTHON": sys.executable,
        "REPO": str(ROOT),
        "ZONES": str(ZONES),
        "WORK": str(work),
        "SERVER": SERVER,
        "RELAY": RELAY,
        "EXTRA_ADDRESS": EXTRA_ADDRESS,
        "LOOKUP_TIMEOUT": str(LOOKUP_TIMEOUT),
        "SERVER_LOG": str(work / "server.log"),
        "RELAY_LOG": str(work / "relay.log"),
    }
    lines = [f"{key}={shlex.quote(value)}" for key, value in variables.items()]
    lines.append(SCRIPT_HEAD)
    for case in CASES:
        conf = conf_path(work, case.namespace, case.traced)
        lines.append(shlex.join(["lookup", case.id, str(conf), *case.argv]))
    lines.append(SCRIPT_TAIL)
    script = work / "lookups.sh"
    script.write_text("\n".join(lines))
    return script


def parse(output: str) -> Run:
    results: dict[str, Result] = {}
    server_exit = None
    server_log = []
    for line in output.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "@@case":
            case_id, status = rest.split()
            results.setdefault(case_id, Result()).status = int(status)
        elif tag in ("@@out", "@@query"):
            case_id, _, text = rest.partition(" ")
            result = results.setdefault(case_id, Result())
            (result.lines if tag == "@@out" else result.queries).append(text)
        elif tag == "@@server-exit":
            server_exit = int(rest)
        elif tag == "@@serverlog":
            server_log.append(rest)
    return Run(results, server_exit, server_log, output)


def skip_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "needs Linux namespaces"
    if os.geteuid() != 0:
        return "needs root (unshare --net, mount --bind over /etc/resolv.conf, port 53)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return "missing tools: " + ", ".join(missing)
    version = subprocess.run(["getent", "--version"], capture_output=True, text=True, timeout=10)
    if "libc" not in version.stdout.lower():
        return "getent is not glibc's (these cases pin glibc's search-list behaviour)"
    probe = subprocess.run(
        ["unshare", "--mount", "--net", "--fork", "--", "true"],
        capture_output=True, text=True, timeout=10,
    )
    if probe.returncode != 0:
        return f"unshare --mount --net does not work here: {probe.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("glibc")
    script = write_files(work)
    host_resolv_conf = Path("/etc/resolv.conf").read_bytes()
    process = subprocess.Popen(
        ["unshare", "--mount", "--net", "--fork", "--", "bash", str(script)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # the server and relay share its process group
    )
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"lookups did not finish in {RUN_TIMEOUT} s:\n{output}")
    assert Path("/etc/resolv.conf").read_bytes() == host_resolv_conf  # the mount stayed inside
    assert "@@fatal" not in output and process.returncode == 0, output
    return parse(output)


def addresses(lines: list[str]) -> set[str]:
    return {line.split()[0] for line in lines if line.strip()}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_getent(run: Run, case: Case) -> None:
    result = run.results.get(case.id)
    assert result is not None, run.output
    detail = "\n".join([*result.lines, *result.queries])
    assert result.status == case.status, detail
    assert addresses(result.lines) == set(case.addresses), detail
    if case.canonical is not None:
        # hosts: "ADDR NAME"; ahostsv4: "ADDR STREAM NAME", then DGRAM and RAW lines.
        assert result.lines[0].split()[-1] == case.canonical, detail


def test_server_stopped_cleanly(run: Run) -> None:
    assert run.server_exit == 0, "\n".join(run.server_log)
    assert any("listening on 127.0.0.1:53" in line for line in run.server_log), run.server_log


TRACED = [case for case in CASES if case.traced]


@pytest.mark.parametrize("case", TRACED, ids=[case.id for case in TRACED])
def test_queries_glibc_sent(run: Run, case: Case) -> None:
    result = run.results[case.id]
    sent = [" ".join(query.split()[:3]) for query in result.queries]
    assert sent == list(case.queries), "\n".join(result.queries)


@pytest.mark.parametrize("case", TRACED, ids=[case.id for case in TRACED])
def test_search_walk_model_matches_glibc(run: Run, case: Case) -> None:
    """clusterdns.core.search.walk, fed the rcodes the server gave, asks what glibc asked."""
    recorded: dict[tuple[str, str], Reply] = {}
    for query in run.results[case.id].queries:
        qtype, name, rcode, answers = query.split()
        recorded[(name, qtype)] = Reply(getattr(Rcode, rcode, Rcode.SERVFAIL), addresses=["?"] * int(answers))

    def ask(name: str, qtype: str) -> Reply:
        return recorded.get((name, qtype), Reply(Rcode.SERVFAIL, ["(glibc did not ask)"]))

    conf = parse_resolv_conf(pod_resolv_conf(case.namespace, nameservers=(RELAY,)).text())
    # getent hosts: gethostbyname2 AF_INET6, then AF_INET; getent ahostsv4: A only.
    passes = [("AAAA",), ("A",)] if case.argv[1] == "hosts" else [("A",)]
    modelled = []
    for qtypes in passes:
        walked = walk(case.argv[2], conf, ask, Libc.GLIBC, qtypes)
        modelled += [f"{step.qtype} {step.name}" for step in walked.steps]
        if walked.resolved:
            break
    sent = [" ".join(query.split()[:2]) for query in run.results[case.id].queries]
    assert modelled == sent
