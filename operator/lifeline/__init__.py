"""Lifeline: a disaster-recovery control plane for Kubernetes."""

__version__ = "0.1.0"

GROUP = "dr.lifeline.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
