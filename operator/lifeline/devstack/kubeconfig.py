"""A kubeconfig for a served emulator, so real clients find it as they find a cluster.

kubectl, kopf and the ``kubernetes`` client all read kubeconfig files; one written
here points them at the emulator's URL with a token nobody checks.
"""
from __future__ import annotations

from pathlib import Path

import yaml


def write_kubeconfig(url: str, path: str | Path, *, namespace: str = "default", token: str = "emulator") -> Path:
    """A kubeconfig for kubectl, kopf and the kubernetes client; the token is a dummy nobody checks."""
    path = Path(path)
    config = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "lifeline-emulator", "cluster": {"server": url}}],
        "users": [{"name": "lifeline-emulator", "user": {"token": token}}],
        "contexts": [{"name": "lifeline-emulator",
                      "context": {"cluster": "lifeline-emulator", "user": "lifeline-emulator",
                                  "namespace": namespace}}],
        "current-context": "lifeline-emulator",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
