"""A Pod's volumes and environment, made local for the process kubelet.

Each volume becomes a directory: a bound claim is its PersistentVolume's host path (the real PV
binder and host-path provisioner made it), an emptyDir a fresh directory of the pod, Secrets,
ConfigMaps, projected ServiceAccount tokens and downward-API files are written out as a kubelet
writes them. Everything is read through the API with the node's own identity, so the Node
authorizer decides what the kubelet may read, as it does for a real one.

Processes cannot see a mount at the path a container asks for (no container engine, no mount
namespace per pod), so mount paths in a container's command, args and environment are rewritten
to those directories: the one thin stand-in of this module, listed in docs/testing.md.
"""
from __future__ import annotations

import base64
import os
import re
from pathlib import Path

from .kube_http import KubeHTTP
from .snapshotter import DRIVER as CSI_DRIVER

TOKEN_SECONDS = 3607  # what the ServiceAccount admission plugin asks for
SA_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


class MountError(RuntimeError):
    """A volume cannot be made yet or at all (the reason a kubelet gives as FailedMount)."""

    def __init__(self, message: str, retry: bool = False):
        super().__init__(message)
        self.retry = retry


def rewriter(mounts: list[tuple[str, Path]]):
    """Replace mount paths by local directories where they start a path (not inside another), in one pass."""
    if not mounts:
        return lambda text: text
    local = {mount.rstrip("/") or "/": str(path) for mount, path in mounts}
    alternatives = "|".join(re.escape(m) for m in sorted(local, key=len, reverse=True))
    pattern = re.compile(r"(^|[\s\"'=:,\[(]|file://)(" + alternatives + r")(?=/|$|[\s\"'\\,}\])])")

    def rewrite(text: str) -> str:
        return pattern.sub(lambda m: m.group(1) + local[m.group(2)], text)

    return rewrite


def _write_files(directory: Path, files: dict[str, bytes], mode: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(data)
        tmp.chmod(mode)
        os.replace(tmp, target)


def _pick(data: dict[str, bytes], items: list | None, what: str, optional: bool) -> dict[str, bytes]:
    if not items:
        return dict(data)
    out = {}
    for item in items:
        if item["key"] not in data:
            if optional:
                continue
            raise MountError(f"{what} has no key {item['key']!r}")
        out[item["path"]] = data[item["key"]]
    return out


def field_value(pod: dict, path: str) -> str:
    """A downward-API fieldRef (``metadata.name``, ``status.podIP``, labels['x'], ...)."""
    meta, spec = pod["metadata"], pod["spec"]
    simple = {"metadata.name": meta["name"], "metadata.namespace": meta["namespace"],
              "metadata.uid": meta.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
              "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
              "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1"}
    if path in simple:
        return simple[path]
    found = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if found:
        return (meta.get(found.group(1)) or {}).get(found.group(2), "")
    raise MountError(f"fieldRef {path!r} is not supported by the process kubelet")


class PodFiles:
    """Makes one pod's volumes under ``root`` (the pod's directory) through the API as the node."""

    def __init__(self, api: KubeHTTP, pod: dict, root: Path):
        self.api = api
        self.pod = pod
        self.ns = pod["metadata"]["namespace"]
        self.root = root
        self.local: dict[str, Path] = {}

    async def _data(self, kind: str, name: str, optional: bool) -> dict[str, bytes]:
        """The keys of a Secret (``kind`` secret) or a ConfigMap (configmap); none of a missing optional one."""
        obj = await self.api.request("GET", f"/api/v1/namespaces/{self.ns}/{kind}s/{name}", missing_ok=True)
        if obj is None:
            if optional:
                return {}
            raise MountError(f'{kind} "{name}" not found', retry=True)
        if kind == "secret":
            return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return data

    async def _keyed(self, kind: str, spec: dict, name_key: str = "name") -> dict[str, bytes]:
        """A Secret's or ConfigMap's keys as files: all of them, or the ``items`` asked for."""
        name, optional = spec[name_key], spec.get("optional", False)
        data = await self._data(kind, name, optional)
        return _pick(data, spec.get("items"), f'{kind} "{name}"', optional)

    async def token(self, audiences: list[str] | None = None, seconds: int = TOKEN_SECONDS) -> bytes:
        """A ServiceAccount token bound to this pod, as the kubelet requests it (TokenRequest)."""
        meta = self.pod["metadata"]
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        spec = {"expirationSeconds": seconds,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": meta["name"], "uid": meta["uid"]}}
        if audiences:
            spec["audiences"] = audiences
        out = await self.api.request("POST", f"/api/v1/namespaces/{self.ns}/serviceaccounts/{sa}/token",
                                     {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                      "spec": spec})
        return out["status"]["token"].encode()

    async def _projected(self, spec: dict) -> dict[str, bytes]:
        files: dict[str, bytes] = {}
        for source in spec.get("sources") or []:
            if "serviceAccountToken" in source:
                t = source["serviceAccountToken"]
                aud = [t["audience"]] if t.get("audience") else None
                files[t["path"]] = await self.token(aud, t.get("expirationSeconds", TOKEN_SECONDS))
            elif "configMap" in source:
                files.update(await self._keyed("configmap", source["configMap"]))
            elif "secret" in source:
                files.update(await self._keyed("secret", source["secret"]))
            elif "downwardAPI" in source:
                files.update(self._downward(source["downwardAPI"]))
        return files

    def _downward(self, spec: dict) -> dict[str, bytes]:
        return {item["path"]: field_value(self.pod, item["fieldRef"]["fieldPath"]).encode()
                for item in spec.get("items") or [] if "fieldRef" in item}

    async def _claim_path(self, claim: str) -> Path:
        pvc = await self.api.request("GET", f"/api/v1/namespaces/{self.ns}/persistentvolumeclaims/{claim}",
                                     missing_ok=True)
        if pvc is None:
            raise MountError(f'persistentvolumeclaim "{claim}" not found', retry=True)
        volume = (pvc.get("spec") or {}).get("volumeName")
        if not volume or (pvc.get("status") or {}).get("phase") != "Bound":
            raise MountError(f'persistentvolumeclaim "{claim}" is not bound yet', retry=True)
        pv = await self.api.request("GET", f"/api/v1/persistentvolumes/{volume}")
        spec = pv.get("spec") or {}
        path = (spec.get("hostPath") or spec.get("local") or {}).get("path")
        csi = spec.get("csi") or {}
        if csi.get("driver") == CSI_DRIVER:  # NodePublishVolume of the stand-in driver: its handle is the directory
            path = csi.get("volumeHandle")
        if not path:
            raise MountError(f"persistentvolume {volume} is neither hostPath, local nor of the CSI driver "
                             f"{CSI_DRIVER}: the process kubelet can only mount directories")
        return Path(path)

    async def make(self) -> dict[str, Path]:
        """Every volume of the pod as a local directory (raises MountError)."""
        for vol in self.pod["spec"].get("volumes") or []:
            name = vol["name"]
            here = self.root / "volumes" / name
            if "persistentVolumeClaim" in vol:
                path = await self._claim_path(vol["persistentVolumeClaim"]["claimName"])
                path.mkdir(parents=True, exist_ok=True)
                self.local[name] = path
            elif "hostPath" in vol:
                path = Path(vol["hostPath"]["path"])
                if vol["hostPath"].get("type") in ("DirectoryOrCreate",):
                    path.mkdir(parents=True, exist_ok=True)
                self.local[name] = path
            elif "emptyDir" in vol:
                here.mkdir(parents=True, exist_ok=True)
                here.chmod(0o777)
                self.local[name] = here
            elif "secret" in vol or "configMap" in vol:
                spec = vol.get("secret") or vol["configMap"]
                files = await (self._keyed("secret", spec, "secretName") if "secret" in vol
                               else self._keyed("configmap", spec))
                _write_files(here, files, spec.get("defaultMode", 0o644))
                self.local[name] = here
            elif "projected" in vol:
                p = vol["projected"]
                _write_files(here, await self._projected(p), p.get("defaultMode", 0o644))
                self.local[name] = here
            elif "downwardAPI" in vol:
                _write_files(here, self._downward(vol["downwardAPI"]), 0o644)
                self.local[name] = here
            else:
                kind = next((k for k in vol if k != "name"), "?")
                raise MountError(f"volume {name}: {kind} volumes are not supported by the process kubelet")
        return self.local

    async def refresh_tokens(self) -> None:
        """Write fresh ServiceAccount tokens into projected volumes (a kubelet renews them at 80%)."""
        for vol in self.pod["spec"].get("volumes") or []:
            if "projected" in vol and any("serviceAccountToken" in s for s in vol["projected"].get("sources") or []):
                _write_files(self.root / "volumes" / vol["name"], await self._projected(vol["projected"]),
                             vol["projected"].get("defaultMode", 0o644))

    async def env(self, container: dict, rewrite) -> dict[str, str]:
        """The container's environment: envFrom, then env in order with ``$(VAR)`` expansion."""
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            secret = "secretRef" in source
            ref = source["secretRef" if secret else "configMapRef"]
            data = await self._data("secret" if secret else "configmap", ref["name"], ref.get("optional", False))
            env.update({prefix + k: v.decode() for k, v in data.items()})
        for e in container.get("env") or []:
            if "value" in e:
                env[e["name"]] = rewrite(expand(e["value"], env))
                continue
            source = e.get("valueFrom") or {}
            if "secretKeyRef" in source or "configMapKeyRef" in source:
                secret = "secretKeyRef" in source
                ref = source["secretKeyRef" if secret else "configMapKeyRef"]
                optional = ref.get("optional", False)
                data = await self._data("secret" if secret else "configmap", ref["name"], optional)
                if ref["key"] not in data:
                    if optional:
                        continue
                    raise MountError(f"{'secret' if secret else 'configmap'} {ref['name']!r} has no key "
                                     f"{ref['key']!r}", retry=True)
                env[e["name"]] = data[ref["key"]].decode()
            elif "fieldRef" in source:
                env[e["name"]] = field_value(self.pod, source["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in source:
                env[e["name"]] = "0"
            else:
                env[e["name"]] = ""
        return env


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known names are replaced, ``$$`` escapes, others stay."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _VAR.sub(sub, text)


__all__ = ["MountError", "PodFiles", "SA_PATH", "expand", "field_value", "rewriter"]
