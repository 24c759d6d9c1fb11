"""The image and the kube-system manifests, checked as files: no Docker, no cluster.

deploy/clusterdns.yaml must be a drop-in for what kubeadm installs for CoreDNS (same object
names, the same Corefile, probes, ports and Service IP) with RBAC cut down to list/watch on
the four kinds clusterdns reads; the Dockerfile must build an image that the Deployment's
`args` and securityContext can run.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from .test_config import KUBEADM

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
COREFILE_EXAMPLE = ROOT / "Corefile.example"

# KUBEADM `CoreDNSConfigMap` with DNSDomain cluster.local: what kind installs.
KUBEADM_COREFILE = KUBEADM  # the same text the config tests parse

EXPECTED_OBJECTS = {
    ("ServiceAccount", "coredns"),
    ("ClusterRole", "system:coredns"),
    ("ClusterRoleBinding", "system:coredns"),
    ("ConfigMap", "coredns"),
    ("Deployment", "coredns"),
    ("Service", "kube-dns"),
}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}
ARGS = ["-conf", "/etc/coredns/Corefile"]
ENTRYPOINT = ["/opt/clusterdns/bin/clusterdns"]


def lines(corefile: str) -> list[str]:
    """Corefile text as its non-blank lines, stripped: equality modulo whitespace."""
    return [line.strip() for line in corefile.splitlines() if line.strip()]


def strip_comments(corefile: str) -> str:
    """Drop Corefile comments: a word starting with ``#`` and the rest of its line."""
    return "\n".join(re.sub(r"(^|\s)#.*$", "", line) for line in corefile.splitlines())


# --- deploy/*.yaml ---------------------------------------------------------------------


def documents() -> list[dict[str, Any]]:
    files = sorted([*DEPLOY.glob("*.yaml"), *DEPLOY.glob("*.yml")])
    assert files, "no manifests in deploy/"
    docs = []
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            assert isinstance(doc, dict), f"{path.name}: empty or non-mapping document"
            docs.append(doc)
    return docs


def objects() -> dict[str, dict[str, Any]]:
    """The deploy/ objects by kind (one of each)."""
    found = {doc["kind"]: doc for doc in documents()}
    assert set(found) == {kind for kind, _ in EXPECTED_OBJECTS}
    return found


def container() -> dict[str, Any]:
    (only,) = objects()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


def test_documents_parse_with_the_expected_kinds_and_names() -> None:
    docs = documents()
    assert len(docs) == len(EXPECTED_OBJECTS)
    assert {(doc["kind"], doc["metadata"]["name"]) for doc in docs} == EXPECTED_OBJECTS
    for doc in docs:
        assert doc["apiVersion"], doc["kind"]
        namespace = doc["metadata"].get("namespace")
        assert namespace == (None if doc["kind"] in CLUSTER_SCOPED else "kube-system"), doc["kind"]


def test_documents_use_only_known_api_fields() -> None:
    """A round trip through the kubernetes client's typed models loses any unknown field."""
    from kubernetes.client import ApiClient

    api = ApiClient()
    for doc in documents():
        model = api.deserialize(json.dumps(doc), f"V1{doc['kind']}", "application/json")
        assert api.sanitize_for_serialization(model) == doc, doc["kind"]


def test_cluster_role_is_exactly_list_and_watch_on_four_kinds() -> None:
    rules = objects()["ClusterRole"]["rules"]
    granted = set()
    for rule in rules:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule  # no names, no URLs
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    granted.add((group, resource, verb))
    assert granted == {
        (group, resource, verb)
        for group, resource in [
            ("", "namespaces"),
            ("", "services"),
            ("", "pods"),
            ("discovery.k8s.io", "endpointslices"),
        ]
        for verb in ("list", "watch")
    }


def test_cluster_role_binding_binds_the_service_account() -> None:
    found = objects()
    binding = found["ClusterRoleBinding"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": found["ClusterRole"]["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}
    ]
    spec = found["Deployment"]["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == found["ServiceAccount"]["metadata"]["name"]


def test_config_map_holds_the_kubeadm_corefile() -> None:
    corefile = objects()["ConfigMap"]["data"]["Corefile"]
    assert lines(corefile) == lines(KUBEADM_COREFILE)


def test_deployment_is_kubeadms_with_the_clusterdns_image() -> None:
    deployment = objects()["Deployment"]
    assert deployment["metadata"]["labels"] == {"k8s-app": "kube-dns"}
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    assert spec["selector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert spec["template"]["metadata"]["labels"] == {"k8s-app": "kube-dns"}
    pod = spec["template"]["spec"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["dnsPolicy"] == "Default"
    assert {"key": "CriticalAddonsOnly", "operator": "Exists"} in pod["tolerations"]
    assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    spread = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert spread[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert pod["volumes"] == [
        {
            "name": "config-volume",
            "configMap": {"name": "coredns", "items": [{"key": "Corefile", "path": "Corefile"}]},
        }
    ]


def test_container_image_args_and_config_mount() -> None:
    c = container()
    assert c["name"] == "coredns"  # `kubectl set image deploy/coredns coredns=...`
    assert c["image"] == "clusterdns:dev"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["args"] == ARGS
    assert "command" not in c  # the image's ENTRYPOINT runs
    assert c["volumeMounts"] == [
        {"name": "config-volume", "mountPath": "/etc/coredns", "readOnly": True}
    ]
    assert c["resources"] == {
        "limits": {"memory": "170Mi"},
        "requests": {"cpu": "100m", "memory": "70Mi"},
    }


def test_container_ports() -> None:
    ports = {(p["name"], p["containerPort"], p["protocol"]) for p in container()["ports"]}
    assert ports == {("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")}


def test_container_probes() -> None:
    c = container()
    assert c["livenessProbe"] == {
        "httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"},
        "initialDelaySeconds": 60,
        "timeoutSeconds": 5,
        "successThreshold": 1,
        "failureThreshold": 5,
    }
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 8181, "scheme": "HTTP"}


def test_container_security_context() -> None:
    sc = container()["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_service_is_kube_dns_on_kinds_address() -> None:
    service = objects()["Service"]
    assert service["metadata"]["annotations"] == {
        "prometheus.io/port": "9153",
        "prometheus.io/scrape": "true",
    }
    assert "resourceVersion" not in service["metadata"]  # would break `kubectl apply`
    spec = service["spec"]
    assert spec["clusterIP"] == "10.96.0.10"
    assert spec["selector"] == objects()["Deployment"]["spec"]["selector"]["matchLabels"]
    ports = {(p["name"], p["port"], p["protocol"], p["targetPort"]) for p in spec["ports"]}
    assert ports == {
        ("dns", 53, "UDP", 53),
        ("dns-tcp", 53, "TCP", 53),
        ("metrics", 9153, "TCP", 9153),
    }


# --- Dockerfile ------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comment lines dropped, continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        if raw.lstrip().startswith("#"):
            continue  # Docker removes comment lines, even inside a continuation
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line = (pending + raw).strip()
        pending = ""
        if line:
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continuation"
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last:]


def test_dockerfile_has_two_stages_from_python_311_slim() -> None:
    froms = [args.split() for word, args in instructions() if word == "FROM"]
    assert len(froms) == 2
    assert froms[0][0] == froms[1][0] == "python:3.11-slim"
    assert [word.lower() for word in froms[0][1:]] == ["as", "builder"]
    copies = [args for word, args in final_stage() if word == "COPY"]
    assert copies == ["--from=builder /opt/clusterdns /opt/clusterdns"]


def test_dockerfile_copies_only_files_that_exist() -> None:
    for word, args in instructions():
        if word == "COPY" and not args.startswith("--from"):
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), source


def test_dockerfile_runs_as_numeric_non_root_user() -> None:
    users = [args for word, args in final_stage() if word == "USER"]
    assert users, "no USER in the final stage"
    for part in users[-1].split(":"):
        assert part.isdigit() and int(part) != 0, users[-1]
    assert users[-1].split(":")[0] == "65532"


def test_dockerfile_entrypoint_and_cmd_match_the_deployment() -> None:
    steps = dict(final_stage())
    assert json.loads(steps["ENTRYPOINT"]) == ENTRYPOINT
    assert json.loads(steps["CMD"]) == ARGS == container()["args"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert Path(ENTRYPOINT[0]).name in scripts


def test_dockerfile_exposes_dns_health_ready_and_metrics() -> None:
    exposed = set()
    for word, args in instructions():
        if word == "EXPOSE":
            for port in args.split():
                number, _, protocol = port.partition("/")
                exposed.add((int(number), protocol.lower() or "tcp"))
    assert exposed == {(53, "udp"), (53, "tcp"), (8080, "tcp"), (8181, "tcp"), (9153, "tcp")}


def test_dockerfile_gives_the_real_interpreter_net_bind_service() -> None:
    runs = " ".join(args for word, args in final_stage() if word == "RUN")
    setcap = re.search(r'setcap cap_net_bind_service=\+ep ("[^"]*"|\S+)', runs)
    assert setcap, "no setcap cap_net_bind_service=+ep"
    # the file itself: bin/python is a symlink, and symlinks carry no file capabilities
    assert setcap[1] in ('"$(readlink -f /opt/clusterdns/bin/python)"', "/usr/local/bin/python3.11")
    assert "libcap2-bin" in runs


def test_dockerfile_is_ready_for_a_read_only_root_filesystem() -> None:
    steps = instructions()
    runs = " ".join(args for word, args in steps if word == "RUN")
    assert "compileall" in runs
    env = " ".join(args for word, args in final_stage() if word == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env.split()


def test_image_runs_one_worker_per_cpu_by_default() -> None:
    """The image's default is ``--workers auto`` through the environment, so the
    Deployment's args stay CoreDNS's (``-conf`` only) and kubeadm's args get it too."""
    env = " ".join(args for word, args in final_stage() if word == "ENV")
    assert "CLUSTERDNS_WORKERS=auto" in env.split()
    assert container()["args"] == ARGS
    assert not any(e.get("name") == "CLUSTERDNS_WORKERS" for e in container().get("env", []))


def test_dockerignore_keeps_the_working_tree_out() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".pytest_cache", ".mypy_cache", ".ruff_cache"} <= ignored


# --- Corefile.example ------------------------------------------------------------------


def test_corefile_example_is_the_kubeadm_corefile_with_comments() -> None:
    text = COREFILE_EXAMPLE.read_text()
    assert lines(strip_comments(text)) == lines(KUBEADM_COREFILE)


def test_corefile_example_annotates_every_directive() -> None:
    previous = ""
    for line in COREFILE_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and line != "}":
            assert previous.startswith("#"), f"no comment above {line!r}"
        previous = line


def test_corefile_example_loads_like_the_kubeadm_corefile() -> None:
    from clusterdns.corefile.config import load

    example = load(COREFILE_EXAMPLE.read_text(), "Corefile.example")
    assert example == load(KUBEADM_COREFILE, "Corefile")
