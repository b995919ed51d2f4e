"""Kubernetes auth end to end: the agent's provider logs in to a real OpenBao, whose real
kubernetes auth backend reviews the projected service-account token with TokenReview against
the project's API emulator (lifeline.devstack.emulator) served over HTTP.

What is real: OpenBao's kubernetes auth backend (JWT parsing, the TokenReview HTTP call, the
role's bound service account and namespace, the policy of the token it issues), hvac's login
request, our provider's choice of role, mount and token file. What stands in: the emulator does
not mint service-account tokens, so this test signs a JWT shaped like a projected token with its
own ES256 key, and the TokenReview reaction (added here, in the test only) plays the API server's
authenticator: it verifies that signature and answers with the token's service account.
"""
from __future__ import annotations

import asyncio
import base64
import json
import re
import time

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from lifeline.devstack.emulator import make_emulator, serve
from lifeline.keys.vault import VaultAuthError, VaultTransitProvider

from .test_docs import _self_signed_ca

SIGNER = ec.generate_private_key(ec.SECP256R1())


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def projected_token(namespace: str, sa: str, key=SIGNER) -> str:
    now = int(time.time())
    claims = {"iss": "https://kubernetes.default.svc", "sub": f"system:serviceaccount:{namespace}:{sa}",
              "aud": ["vault"], "iat": now, "nbf": now, "exp": now + 600,
              "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": sa, "uid": "u-" + sa}}}
    head = _b64(json.dumps({"alg": "ES256", "kid": "test", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    r, s = decode_dss_signature(key.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256())))
    return f"{head}.{body}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def verify(token: str) -> dict | None:
    try:
        head, body, sig = token.split(".")
        raw = _unb64(sig)
        SIGNER.public_key().verify(encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                                        int.from_bytes(raw[32:], "big")),
                                   f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
        return json.loads(_unb64(body))
    except (ValueError, InvalidSignature):
        return None


async def test_kubernetes_login_through_tokenreview_on_the_emulator(transit, tmp_path):
    reviews = []

    def token_review(request):
        body = json.loads(request.body)
        claims = verify(body["spec"]["token"])
        reviews.append({"bearer": request.headers.get("Authorization", ""), "token": body["spec"]["token"],
                        "authenticated": bool(claims)})
        status = {"authenticated": False, "error": "invalid bearer token"}
        if claims:
            k = claims["kubernetes.io"]
            status = {"authenticated": True, "audiences": claims["aud"],
                      "user": {"username": claims["sub"], "uid": k["serviceaccount"]["uid"],
                               "groups": ["system:serviceaccounts", f"system:serviceaccounts:{k['namespace']}"]}}
        return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "metadata": {"creationTimestamp": None}, "spec": body["spec"], "status": status}

    emulator = make_emulator()
    emulator["post", re.compile(r"/apis/authentication\.k8s\.io/v1/tokenreviews")] << token_review
    c = transit.client
    mount = "k8s" + transit.mount
    policy = "pol" + transit.mount
    c.sys.create_or_update_policy(name=policy, policy=transit.agent_policy())
    async with serve(emulator) as url:
        c.sys.enable_auth_method("kubernetes", path=mount)
        # the CA is required with disable_local_ca_jwt; the emulator speaks plain http, so it is not used
        c.write(f"auth/{mount}/config", kubernetes_host=url, disable_local_ca_jwt=True,
                kubernetes_ca_cert=_self_signed_ca().decode())
        c.write(f"auth/{mount}/role/lifeline-his", bound_service_account_names=["lifeline-backup"],
                bound_service_account_namespaces=["his"], token_policies=[policy], token_ttl="10m")

        jwt_file = tmp_path / "token"
        good = projected_token("his", "lifeline-backup")
        jwt_file.write_text(good)
        env = {"VAULT_ADDR": transit.addr, "LIFELINE_VAULT_SA_TOKEN_PATH": str(jwt_file)}
        ref = transit.ref + f"&role=lifeline-his&auth_mount={mount}"
        p = VaultTransitProvider(ref, env=env)
        assert p.cfg.auth == "kubernetes"
        dek, wrapped = await asyncio.to_thread(p.new_data_key)
        assert await asyncio.to_thread(p.unwrap, wrapped) == dek
        assert reviews[-1] == {"bearer": f"Bearer {good}", "token": good, "authenticated": True}
        info = (await asyncio.to_thread(p.client().auth.token.lookup_self))["data"]
        assert policy in info["policies"] and info["meta"]["service_account_namespace"] == "his"
        p.close()

        # a service account of another namespace: OpenBao refuses after a successful review
        jwt_file.write_text(projected_token("lab", "lifeline-backup"))
        with pytest.raises(VaultAuthError, match=f"kubernetes login at auth/{mount}/login role 'lifeline-his'"):
            await asyncio.to_thread(VaultTransitProvider(ref, env=env).new_data_key)
        # a forged token (wrong signer): the review says unauthenticated and OpenBao refuses
        jwt_file.write_text(projected_token("his", "lifeline-backup", key=ec.generate_private_key(ec.SECP256R1())))
        with pytest.raises(VaultAuthError):
            await asyncio.to_thread(VaultTransitProvider(ref, env=env).new_data_key)
        assert reviews[-1]["authenticated"] is False
        # no token file: the error names the path to mount
        with pytest.raises(VaultAuthError, match="service-account token file .*missing does not exist"):
            VaultTransitProvider(ref, env={**env, "LIFELINE_VAULT_SA_TOKEN_PATH": str(tmp_path / "missing")}).client()
