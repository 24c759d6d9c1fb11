"""Where cluster state comes from: manifests in ``zones/`` and the Kubernetes API.

``manifests`` (the zones/ loader: YAML and JSON, bounded, reloaded when files change),
``kube`` (list/watch reflectors over the official client), ``memory`` (giving freed heap
back after a large load).

May import: the standard library, ``clusterdns.core``, PyYAML (``manifests`` only) and
kubernetes/urllib3 (``kube`` only).
"""
