"""The Corefile's plugins, one module each, and the chain that runs them in CoreDNS's order.

``plugin`` (what a plugin is: Plugin, Step, the public Chain face), ``order`` (the table:
every plugin, one line each, in chain order), ``chain`` (the fast path and the steps of a
block: Handler, Mux, assemble). Each plugin module exports one ``PLUGIN``: ``loop``,
``querylog`` (log), ``any``, ``chaos``, ``loadbalance``, ``cache``, ``rewrite``,
``autopath``, ``template``, ``zones`` (the block's own zone check), ``hosts``,
``k8s_gateway``, ``k8s_external``, ``kubernetes``, ``forward``, ``whoami``. Helpers that are
not plugins: ``kubernetes_setup`` (the kubernetes directive), ``forward_cache``,
``upstream``, ``policy``, ``exposure``, ``report`` (metrics protocol, fault log),
``viewexpr`` (the ``view`` expression language, compiled once; for the view plugin to come).
A new plugin is a new module here and one line in ``order.ORDER``.

May import: the standard library, ``clusterdns.core``, ``clusterdns.dns``,
``clusterdns.corefile.reader``, dnslib (messages built or inspected off the hot path) and
cachetools (the forward cache), lark (``viewexpr`` alone). No module here but ``order``
imports a plugin module.
"""
