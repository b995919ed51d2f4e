"""Kubernetes auth end to end: the agent's provider logs in to a real OpenBao with a real
ServiceAccount token (a TokenRequest, as the kubelet projects one), and OpenBao's kubernetes auth
backend reviews it with a TokenReview against the session's real API server.

Everything is real: the API server's token signing and review, OpenBao's backend (the role's bound
ServiceAccount and namespace, the policy of the token it issues), hvac's login request, and our
provider's choice of role, mount and token file."""
from __future__ import annotations

import asyncio
import base64

import pytest

from lifeline.devstack import install, live
from lifeline.keys.vault import VaultAuthError, VaultTransitProvider


def service_account(kube, namespace: str, name: str) -> str:
    """A ServiceAccount in ``namespace`` and a token for it."""
    live.create(kube.cluster, f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": name}})
    return install.service_account_token(kube.request, namespace, name, seconds=600)


def reviewer_token(kube, name: str) -> str:
    """A ServiceAccount allowed to review tokens (system:auth-delegator), as Vault's docs set one up."""
    token = service_account(kube, kube.namespace, name)
    kube.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        "metadata": {"name": f"{kube.namespace}-{name}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": kube.namespace}]})
    return token


def forged(token: str) -> str:
    """The same claims under a signature the API server never made."""
    head, body, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[0] ^= 0xFF
    return f"{head}.{body}.{base64.urlsafe_b64encode(bytes(raw)).rstrip(b'=').decode()}"


async def test_kubernetes_login_through_tokenreview_on_the_real_api_server(kube, transit, tmp_path):
    c = transit.client
    mount = "k8s" + transit.mount
    policy = "pol" + transit.mount
    c.sys.create_or_update_policy(name=policy, policy=transit.agent_policy())
    c.sys.enable_auth_method("kubernetes", path=mount)
    c.write(f"auth/{mount}/config", kubernetes_host=kube.cluster.url, disable_local_ca_jwt=True,
            kubernetes_ca_cert=kube.cluster.ca.read_text(), token_reviewer_jwt=reviewer_token(kube, "vault-reviewer"))
    c.write(f"auth/{mount}/role/lifeline-his", bound_service_account_names=["lifeline-backup"],
            bound_service_account_namespaces=[kube.namespace], token_policies=[policy], token_ttl="10m")

    jwt_file = tmp_path / "token"
    good = service_account(kube, kube.namespace, "lifeline-backup")
    jwt_file.write_text(good)
    env = {"VAULT_ADDR": transit.addr, "LIFELINE_VAULT_SA_TOKEN_PATH": str(jwt_file)}
    ref = transit.ref + f"&role=lifeline-his&auth_mount={mount}"
    p = VaultTransitProvider(ref, env=env)
    assert p.cfg.auth == "kubernetes"
    dek, wrapped = await asyncio.to_thread(p.new_data_key)
    assert await asyncio.to_thread(p.unwrap, wrapped) == dek
    info = (await asyncio.to_thread(p.client().auth.token.lookup_self))["data"]
    assert policy in info["policies"] and info["meta"]["service_account_namespace"] == kube.namespace
    p.close()

    # the same ServiceAccount name in another namespace: reviewed as valid, refused by the role
    jwt_file.write_text(service_account(kube, "default", "lifeline-backup"))
    with pytest.raises(VaultAuthError, match=f"kubernetes login at auth/{mount}/login role 'lifeline-his'"):
        await asyncio.to_thread(VaultTransitProvider(ref, env=env).new_data_key)
    # a forged token (a signature the API server did not make): the review fails and OpenBao refuses
    jwt_file.write_text(forged(good))
    with pytest.raises(VaultAuthError):
        await asyncio.to_thread(VaultTransitProvider(ref, env=env).new_data_key)
    # no token file: the error names the path to mount
    with pytest.raises(VaultAuthError, match="service-account token file .*missing does not exist"):
        VaultTransitProvider(ref, env={**env, "LIFELINE_VAULT_SA_TOKEN_PATH": str(tmp_path / "missing")}).client()
