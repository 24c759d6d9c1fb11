"""Where cluster state comes from: manifests in ``zones/`` and the Kubernetes API.

``manifests`` (the zones/ loader: YAML and JSON, bounded, reloaded when files change),
``yamlsafe`` (PyYAML with aliases bounded), ``kube`` (``KubeSource``: API changes applied
on the loop; ``api_client`` over the official client), ``reflector`` (list/watch threads,
back-off), ``resources`` (the API resources listed and watched), ``memory`` (giving freed
heap back after a large load).

May import: the standard library, ``clusterdns.core``, PyYAML (``yamlsafe`` only) and
kubernetes/urllib3 (``kube`` only).
"""
