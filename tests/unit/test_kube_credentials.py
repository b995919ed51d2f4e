"""kopf logs in with exactly the credentials kube.py uses: a kubeconfig's bearer token must reach it.

The kubernetes client keeps a kubeconfig's token under ``api_key["BearerToken"]`` and the in-cluster
one under ``api_key["authorization"]``; reading only the latter made kopf watch as
system:anonymous against a real API server (the emulator never asked).
"""
from __future__ import annotations

import yaml

from lifeline.kube import Kube


def _kubeconfig(tmp_path, user: dict):
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}], "current-context": "c"}))
    return path


def test_a_kubeconfig_token_reaches_the_login_handler(tmp_path):
    kube = Kube.connect(_kubeconfig(tmp_path, {"token": "s3cr3t-token"}))
    try:
        creds = kube.credentials()
    finally:
        kube.close()
    assert (creds["scheme"], creds["token"]) == ("Bearer", "s3cr3t-token")
    assert creds["server"] == "https://127.0.0.1:6443"


def test_client_certificates_reach_it_and_no_token_is_invented(tmp_path):
    cert, key = tmp_path / "c.crt", tmp_path / "c.key"
    cert.write_text("cert")
    key.write_text("key")
    kube = Kube.connect(_kubeconfig(tmp_path, {"client-certificate": str(cert), "client-key": str(key)}))
    try:
        creds = kube.credentials()
    finally:
        kube.close()
    assert creds["token"] is None and creds["certificate_path"] and creds["private_key_path"]
