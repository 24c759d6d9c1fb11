"""clusterdns: a cluster DNS server for Kubernetes service discovery."""

__version__ = "0.1.0"
