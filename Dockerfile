# clusterdns, as a drop-in for the CoreDNS image of kube-system/coredns (see deploy/clusterdns.yaml):
#   docker build -t clusterdns:dev . && kind load docker-image clusterdns:dev

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the wheel is built from.
COPY pyproject.toml README.md ./
COPY clusterdns ./clusterdns
# The venv gets no pip of its own: the builder's pip builds the wheel and installs it, with its
# dependencies from PyPI, into the venv (--no-compile: compileall below does it once).
RUN python -m venv --without-pip /opt/clusterdns \
 && pip wheel --no-deps --wheel-dir /wheels . \
 && pip --python /opt/clusterdns/bin/python install --no-compile /wheels/*.whl
# Bytecode now, since nothing can be written at run time; unchecked-hash .pyc files are used
# without comparing them to their sources' mtimes, which COPY need not preserve.
RUN python -m compileall -q -f --invalidation-mode unchecked-hash /opt/clusterdns/lib

FROM python:3.11-slim
COPY --from=builder /opt/clusterdns /opt/clusterdns
# - setcap: let the interpreter bind :53 as non-root, as CoreDNS's image does for its binary.
#   File capabilities must be on the real file: the venv's bin/python is a symlink to the base
#   image's /usr/local/bin/python3.11. libcap2-bin is needed for setcap only, so it goes again.
# - compileall: the base image ships its standard library without .pyc files (its own
#   site-packages, pip and setuptools, are never imported).
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends libcap2-bin; \
    setcap cap_net_bind_service=+ep "$(readlink -f /opt/clusterdns/bin/python)"; \
    getcap "$(readlink -f /opt/clusterdns/bin/python)" | grep -q cap_net_bind_service; \
    apt-get purge -y --auto-remove libcap2-bin; \
    rm -rf /var/lib/apt/lists/*; \
    python -m compileall -q --invalidation-mode unchecked-hash -x /site-packages/ \
        /usr/local/lib/python3.11
# No .pyc writes (read-only root filesystem), logs out at once, the venv first on PATH.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/clusterdns/bin:$PATH
# One worker process per usable CPU (the affinity mask, capped by the container's CPU limit),
# at most one per 256 MiB of its memory limit (CoreDNS's 170Mi: one), all on :53 through
# SO_REUSEPORT: the default of `serve --workers`, so that kubeadm's own Deployment args
# (-conf only) get it too. Each worker keeps its own store: memory grows with the count
# (docs/performance.md); set CLUSTERDNS_WORKERS=1 (or N) in the pod to choose.
ENV CLUSTERDNS_WORKERS=auto
# distroless's "nonroot" user; no passwd entry is needed and nothing is written to $HOME.
USER 65532:65532
# Fail the build unless, as that user, the interpreter starts, imports clusterdns and holds
# CAP_NET_BIND_SERVICE (bit 10) in its effective set.
RUN ["python", "-c", "import clusterdns.__main__; s = open('/proc/self/status').read(); assert int(s.split('CapEff:')[1].split()[0], 16) & 1 << 10, s"]
EXPOSE 53/udp 53/tcp 8080 8181 9153
ENTRYPOINT ["/opt/clusterdns/bin/clusterdns"]
CMD ["-conf", "/etc/coredns/Corefile"]
