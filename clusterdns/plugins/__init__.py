"""The Corefile's plugins, one module each, and the chain that runs them in CoreDNS's order.

``chain`` (the per-query chain: chaos, rewrite, template, hosts, k8s_gateway,
k8s_external, kubernetes with autopath, forward; loadbalance on the way out), ``forward``
(upstreams over UDP, TCP and TLS, health checks, the forward cache), ``autopath``,
``hosts``, ``rewrite``, ``template``, ``chaos``, ``querylog`` (log), ``k8s_external`` and
``k8s_gateway`` (names for what the cluster exposes), ``kubernetes`` (the cluster zone's
step around the core's resolver), ``loadbalance`` (rotations); ``steps`` (the chain's
per-query state and the steps of the older plugins), ``report`` (metrics protocol, fault
log), ``viewexpr`` (the ``view`` expression language, compiled once). A new plugin is a
new module here, parsed in ``clusterdns.corefile`` and placed as one row of
``chain.CHAIN``.

May import: the standard library, ``clusterdns.core``, ``clusterdns.dns``, other plugins,
dnslib (messages built or inspected off the hot path), cachetools (the forward cache) and
lark (``viewexpr`` alone: view expressions are parsed at configuration time).
"""
