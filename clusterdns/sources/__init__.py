"""Sources of cluster state: manifests on disk and the Kubernetes API."""
