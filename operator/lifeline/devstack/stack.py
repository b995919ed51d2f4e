"""Everything `lifeline dev up` runs, started in order and stopped in reverse, under one directory.

:class:`DevStack` starts, on 127.0.0.1 only: an OpenBao dev server holding the transit keys the
manifests name (or, without `bao`, nothing: local keys, said in one line), Debian's PostgreSQL
as the hospital's "HIS" database with sample patient rows (skipped with one line when absent),
the directories standing for PACS images and the on-site and off-site backup stores, the two
monitoring endpoints the hospital FailoverPlan watches, the hash-chained audit log, a real Kubernetes control plane
(:class:`~lifeline.devstack.cluster.Cluster`: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and the process kubelet) with the hospital's namespace, claims, Secrets, people
and two real Prometheus servers as StatefulSets, and Lifeline installed into it by ``helm
install`` (the operator runs as the chart's Deployment, with the chart's RBAC). Pods log in to
OpenBao with their ServiceAccount tokens (Vault's Kubernetes auth, reviewed by the API server).
Leaving the ``async with`` (normally, on an error or on Ctrl-C) stops all of it; server processes
also have a watchdog that stops them if this process is killed.

What the scenes need to know about it is written to ``<state>/stack.json`` (never a credential).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import secrets
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from lifeline.devstack import install, live
from lifeline.devstack.children import free_port
from lifeline.devstack.cluster import MISSING, Cluster, kube_binary
from lifeline.devstack.cluster_version import KUBE_VERSION
from lifeline.devstack.install import CHART
from lifeline.devstack.monitoring import prometheus
from lifeline.devstack.notice_receiver import NoticeReceiver
from lifeline.devstack.openbao import OpenBaoServer, prepare_keys, trust_cluster
from lifeline.devstack.postgres import PostgresServer
from lifeline.devstack.tools import helm_path
from lifeline.keys import create_key_file

NAMESPACE = "hospital"
TOKEN = "root"  # the dev server's root token: a throwaway in-memory server on loopback
ONSITE, OFFSITE = "hospital-backup-onsite", "hospital-backup-offsite"
PACS_CLAIM = "pacs-studies"
HIS_SECRET = "his-db-backup"
MONITORING_PORTS = {"site-a": 19090, "site-b": 19091}
STATE_MARKERS = ("stack.json", "kubeconfig", "operator.log")  # what a previous run leaves
LOCAL_KEY_SECRET = "hospital-local-key"
LOCAL_KEY_REF = f"secret://{LOCAL_KEY_SECRET}/key"  # the fallback when `bao` is missing


def load_manifests(*dirs: Path) -> list[dict]:
    """Every document of every ``*.yaml`` directly in ``dirs``, in name order."""
    return [d for directory in dirs for p in sorted(Path(directory).glob("*.yaml"))
            for d in yaml.safe_load_all(p.read_text()) if d]


def key_refs(manifests: list[dict]) -> list[str]:
    return [ref for m in manifests if m.get("kind") == "BackupPolicy"
            if (ref := ((m.get("spec") or {}).get("encryption") or {}).get("keyRef"))]


def _reachable_by(user: str, path: Path) -> bool:
    """Can ``user`` (not root) walk down to ``path``? PostgreSQL runs as that user when we are root."""
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        return False
    for parent in [*reversed(path.parents)]:
        st = parent.stat()
        if st.st_uid != uid and not st.st_mode & stat.S_IXOTH:
            return False
    return True


# ---- the HIS database -----------------------------------------------------------------------------

HIS_SCHEMA = """
CREATE TABLE patients (id serial PRIMARY KEY, mrn text UNIQUE NOT NULL, name text NOT NULL,
                       ward text NOT NULL, born date NOT NULL, admitted timestamptz NOT NULL DEFAULT now());
CREATE TABLE observations (id bigserial PRIMARY KEY, patient int REFERENCES patients(id),
                           taken timestamptz NOT NULL, heart_rate int, spo2 int);
"""


def his_rows(first: int, count: int) -> str:
    """SQL adding ``count`` sample patients (numbered from ``first``) with a few observations each."""
    return f"""
INSERT INTO patients (mrn, name, ward, born)
SELECT 'MRN' || lpad(n::text, 7, '0'), 'Patient ' || n, 'ward-' || (n % 6 + 1),
       date '1940-01-01' + (n * 97 % 25000)
FROM generate_series({first}, {first + count - 1}) AS n;
INSERT INTO observations (patient, taken, heart_rate, spo2)
SELECT p.id, now() - (m || ' minutes')::interval, 55 + (p.id * m) % 50, 90 + (p.id + m) % 10
FROM patients p, generate_series(0, 55, 5) AS m WHERE p.id >= {first};
"""


def start_his(server, password: str) -> int:
    """The "HIS" database with sample rows and a read-only backup role; returns the patient count."""
    server.createdb("his")
    server.psql("his", HIS_SCHEMA + his_rows(1, 200))
    server.psql("postgres", f"CREATE ROLE lifeline_backup LOGIN PASSWORD '{password}';"
                            "GRANT pg_read_all_data TO lifeline_backup;")
    return int(server.psql("his", "SELECT count(*) FROM patients").strip())


def write_pacs_study(root: Path, number: int, images: int = 3, size: int = 48 * 1024) -> Path:
    """One study: a directory of image files (random bytes: images barely compress)."""
    study = root / "studies" / f"study-{number:04d}"
    study.mkdir(parents=True, exist_ok=True)
    for i in range(images):
        (study / f"image-{i + 1:03d}.dcm").write_bytes(os.urandom(size))
    return study


@dataclass
class DevStack:
    """See the module docstring. ``say`` prints one line to the person watching."""

    state: Path
    examples: Path
    say: Callable[[str], None]
    hospital: Path | None = None
    extra_key_refs: list[str] = field(default_factory=list)
    without: frozenset[str] = frozenset()  # "vault", "postgres": run the fallback even when present
    # filled in on start
    vault: object | None = None
    postgres: object | None = None
    audit_url: str = ""
    url: str = ""
    kubeconfig: Path | None = None
    cluster: object | None = None
    release: object | None = None
    volumes: dict[str, Path] = field(default_factory=dict)
    manifests: list[dict] = field(default_factory=list)
    hospital_manifests: list[dict] = field(default_factory=list)
    his_patients: int = 0
    notices: object | None = None  # the stand-in for the wards' screens and the on-call chat
    _stack: contextlib.AsyncExitStack | None = None
    _saved_env: dict[str, str | None] = field(default_factory=dict)

    async def __aenter__(self) -> "DevStack":
        self._stack = contextlib.AsyncExitStack()
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        await self._stack.aclose()

    # ---- start-up ----------------------------------------------------------------------------------

    async def _start(self) -> None:
        self._fresh_state()
        self.say(f"state directory   {self.state}  (logs, kubeconfig, audit log, volumes, report)")
        self._logging()
        self.manifests = load_manifests(self.examples)
        if self.hospital and self.hospital.is_dir():
            self.hospital_manifests = load_manifests(self.hospital)
        await asyncio.gather(self._start_vault(), self._start_postgres(), self._start_cluster())
        self._volumes()
        self.audit_url = f"file://{self.state / 'audit'}"
        await asyncio.to_thread(self._seed)
        await self._start_monitoring()
        await self._start_notice_receiver()
        await self._install()
        self._write_facts()

    async def _start_cluster(self) -> None:
        if kube_binary() is None:
            raise SystemExit(f"lifeline dev up: {MISSING}")
        self.cluster = Cluster(self.state / "cluster", name="hospital", crds=CHART / "crds")
        await asyncio.to_thread(self.cluster.start)
        self._stack.callback(self.cluster.stop)
        self.kubeconfig = self.cluster.write_kubeconfig(self.state / "kubeconfig", namespace=NAMESPACE)
        self.url = self.cluster.url
        self.say(f"Kubernetes        {KUBE_VERSION} at {self.url}: etcd, kube-apiserver, kube-controller-manager, "
                 f"kube-scheduler; node {self.cluster.node} (process kubelet)")

    async def _start_notice_receiver(self) -> None:
        self.notices = await NoticeReceiver(self.state / "notices.jsonl").start()
        self._stack.push_async_callback(self.notices.stop)
        self.say(f"notices           a receiver at {self.notices.url} stands for the wards' screens (generic JSON) "
                 f"and the on-call chat (DingTalk robot); what it gets goes to {self.state / 'notices.jsonl'}")

    async def _install(self) -> None:
        """``helm install`` Lifeline: the operator runs as the chart's Deployment under the process kubelet."""
        env = [{"name": "LIFELINE_RPO_CHECK_INTERVAL", "value": "2"}]
        if self.vault is not None:
            env += [{"name": "VAULT_ADDR", "value": self.vault.addr},
                    {"name": "LIFELINE_VAULT_AUTH", "value": "kubernetes"},
                    {"name": "LIFELINE_VAULT_ROLE", "value": "lifeline-agent"}]
        began = asyncio.get_running_loop().time()
        # the hash-chained audit log on a claim of the operator's own (a host directory of the state)
        await asyncio.to_thread(live.namespace, self.cluster, install.SYSTEM_NAMESPACE)
        await asyncio.to_thread(live.host_claim, self.cluster, install.SYSTEM_NAMESPACE, "audit-log",
                                self.state / "audit")
        self.release = await asyncio.to_thread(install.install, self.kubeconfig, helm_path(),
                                               values={"audit": {"claimName": "audit-log"}, "extraEnv": env,
                                                       "notifications": {"targets": self.notices.targets()}},
                                               webhook_client_ca=self.cluster.webhook_client_ca)
        await asyncio.to_thread(install.metrics_token, self.cluster.request, self.release)  # the scraper's account
        self.say(f"operator          helm install {self.release.name} into {self.release.namespace}: Ready in "
                 f"{asyncio.get_running_loop().time() - began:.1f}s; metrics on "
                 f"http://127.0.0.1:{self.release.health_port}/metrics (a bearer token of a reader: "
                 f"kubectl -n {self.release.namespace} create token {install.SCRAPER}), "
                 f"webhooks on :{self.release.webhook_port}")

    def _fresh_state(self) -> None:
        """Start from an empty state directory: the last run's repositories were keyed by an
        in-memory Vault that is gone. Only a directory an earlier run made (or an empty one) is wiped."""
        if self.state.exists() and any(self.state.iterdir()):
            if not any((self.state / marker).exists() for marker in STATE_MARKERS):
                raise SystemExit(f"{self.state} is not empty and not a `lifeline dev up` state directory; "
                                 "give another one with --dir")
            shutil.rmtree(self.state)
        self.state.mkdir(parents=True, exist_ok=True)

    def _logging(self) -> None:
        handler = logging.FileHandler(self.state / "operator.log", mode="w")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
        self._stack.callback(handler.close)

    async def _start_vault(self) -> None:
        ok, why = (False, "left out (--without vault)") if "vault" in self.without else OpenBaoServer.available()
        if not ok:
            self.say(f"keys              no OpenBao: {why}; backups use local keys (secret://) instead")
            return
        server = OpenBaoServer(token=TOKEN, workdir=self.state / "openbao")
        await asyncio.to_thread(server.start)
        self._stack.callback(server.stop)
        refs = [*key_refs(self.manifests + self.hospital_manifests), *self.extra_key_refs]
        prepared = await asyncio.to_thread(prepare_keys, server, refs)
        self._set_env(server.env())
        self.vault = server
        self.say(f"OpenBao           {server.addr} (dev server, pid {server.pid}); {len(prepared)} keys ready: "
                 + ", ".join(sorted({r.split('?')[0] for r in prepared})))

    async def _start_postgres(self) -> None:
        ok, why = (False, "left out (--without postgres)") if "postgres" in self.without else PostgresServer.available()
        if not ok:
            self.say(f"HIS database      skipped: {why}")
            return
        workdir = self.state / "postgres"
        if os.geteuid() == 0 and not _reachable_by("postgres", workdir):
            workdir = None  # the server user cannot reach the state directory: a temp dir of its own
        server = PostgresServer(workdir=workdir)
        await asyncio.to_thread(server.start)
        self._stack.callback(server.stop)
        password = secrets.token_urlsafe(18)
        self.his_patients = await asyncio.to_thread(start_his, server, password)
        self._his_password = password
        self.postgres = server
        self.say(f"HIS database      PostgreSQL on 127.0.0.1:{server.port} (pid {server.pid}), database his: "
                 f"{self.his_patients} patients")

    def _volumes(self) -> None:
        root = self.state / "volumes"
        self.volumes = {claim: root / claim for claim in (ONSITE, OFFSITE, PACS_CLAIM)}
        for path in self.volumes.values():
            path.mkdir(parents=True, exist_ok=True)
        studies = self.volumes[PACS_CLAIM] / "studies"
        if not studies.is_dir() or not any(studies.iterdir()):
            for n in range(1, 5):
                write_pacs_study(self.volumes[PACS_CLAIM], n)
        count = len(list(studies.iterdir()))
        self.say(f"PACS images       {self.volumes[PACS_CLAIM]} ({count} studies); backup stores "
                 f"{self.volumes[ONSITE].name}/ (on site) and {self.volumes[OFFSITE].name}/ (off site)")

    async def _start_monitoring(self) -> None:
        """The wards' two Prometheus servers (Debian's ``prometheus``) as StatefulSets the kubelet runs."""
        self.endpoints = {}
        for site in MONITORING_PORTS:
            # A free port, not the example's fixed one: two stacks on one machine (tests run them side
            # by side) would otherwise both see it free and then both bind it. The plan is rewritten.
            port = free_port()
            name = f"ward-prometheus-{site[-1]}"
            for path, body in prometheus(name, NAMESPACE, port, labels={"site": site}):
                await asyncio.to_thread(live.create, self.cluster, path, body)
            self.endpoints[site] = f"http://127.0.0.1:{port}"
        for site in MONITORING_PORTS:
            name = f"ward-prometheus-{site[-1]}"
            await live.until(lambda n=name: (live.get(self.cluster, f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets/{n}")
                                             or {}).get("status", {}).get("readyReplicas") == 1,
                             120, f"StatefulSet {name} to be ready")
        self.say("monitoring        ward Prometheus servers (StatefulSets, real Prometheus): " +
                 ", ".join(f"{site} {url}" for site, url in self.endpoints.items()))

    def _set_env(self, env: dict[str, str]) -> None:
        """The scenes (in this process) read Vault's address from the env, as the CLI does."""
        for key, value in env.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

        def restore() -> None:
            for key, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

        self._stack.callback(restore)

    def _seed(self) -> None:
        """What a platform team has in place before applying the hospital manifests."""
        import base64

        live.namespace(self.cluster, NAMESPACE)
        for claim, path in self.volumes.items():
            live.host_claim(self.cluster, NAMESPACE, claim, path)
        secrets_path = f"/api/v1/namespaces/{NAMESPACE}/secrets"
        if self.postgres is not None:
            live.create(self.cluster, secrets_path, {
                "metadata": {"name": HIS_SECRET},
                "data": {"password": base64.b64encode(self._his_password.encode()).decode()}})
        if self.vault is None:
            key = self.state / "keys" / "hospital.kek"
            key.parent.mkdir(parents=True, exist_ok=True)
            if not key.exists():
                create_key_file(key)
            live.create(self.cluster, secrets_path, {"metadata": {"name": LOCAL_KEY_SECRET},
                                                     "data": {"key": base64.b64encode(key.read_bytes()).decode()}})
        else:
            self._vault_kubernetes_auth()
        install.bind_people(self.cluster.request, NAMESPACE)
        install.grant_tenant(self.cluster.request, NAMESPACE)
        live.create(self.cluster, f"/api/v1/namespaces/{NAMESPACE}/services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "ward-monitoring"},
            "spec": {"selector": {"site": "site-a"}, "ports": [{"port": 9090}]}})

    def _vault_kubernetes_auth(self) -> None:
        """OpenBao reviews pods' ServiceAccount tokens with the API server (a reviewer allowed to)."""
        trust_cluster(self.vault, self.cluster)

    def _write_facts(self) -> None:
        facts = {
            "namespace": NAMESPACE,
            "kubeconfig": str(self.kubeconfig),
            "server": self.url,
            "cluster": str(self.cluster.directory),
            "operator": {"namespace": self.release.namespace, "healthPort": self.release.health_port},
            "auditUrl": self.audit_url,
            "vault": {"addr": self.vault.addr} if self.vault else None,
            "postgres": ({"host": "127.0.0.1", "port": self.postgres.port, "bin": str(self.postgres.bin_dir),
                          "patients": self.his_patients} if self.postgres else None),
            "volumes": {claim: str(path) for claim, path in self.volumes.items()},
            "hospital": [{"kind": m["kind"], "name": m["metadata"]["name"]} for m in self.hospital_manifests],
        }
        (self.state / "stack.json").write_text(json.dumps(facts, indent=2))

    # ---- the hospital manifests the stack can serve ---------------------------------------------------

    def applicable_hospital(self) -> list[dict]:
        """The hospital manifests as this machine can serve them: without the HIS policy when there is
        no database to dump, and with the local key instead of Vault's when there is no OpenBao."""
        out = []
        for m in self.hospital_manifests:
            spec = m.get("spec") or {}
            if m["kind"] == "BackupPolicy" and self.postgres is None and "command" in (spec.get("source") or {}):
                continue
            if m["kind"] == "BackupPolicy" and self.vault is None:
                m = {**m, "spec": {**spec, "encryption": {**spec["encryption"], "keyRef": LOCAL_KEY_REF}}}
            if m["kind"] == "BackupPolicy" and self.postgres is not None and "command" in (spec.get("source") or {}):
                m = self._with_database_address(m)
            if m["kind"] == "FailoverPlan":
                m = self._with_monitoring_ports(m)
            out.append(m)
        return out

    def _with_monitoring_ports(self, manifest: dict) -> dict:
        """The plan with each site's check URL on the port its Prometheus really listens on."""
        text = json.dumps(manifest)
        for site, port in MONITORING_PORTS.items():
            url = getattr(self, "endpoints", {}).get(site)
            if url and not url.endswith(f":{port}"):
                text = text.replace(f"http://127.0.0.1:{port}/", f"{url}/")
        return json.loads(text)

    def _with_database_address(self, manifest: dict) -> dict:
        """Pods here share this machine's network and there is no cluster DNS: the dump reaches the
        HIS server at 127.0.0.1 and its port instead of ``his-db.hospital.svc:5432``."""
        text = json.dumps(manifest)
        text = text.replace('"his-db.hospital.svc"', '"127.0.0.1"')
        text = text.replace('{"name": "PGPORT", "value": "5432"}', f'{{"name": "PGPORT", "value": "{self.postgres.port}"}}')
        return json.loads(text)


def connect_postgres(pg: dict):
    """A client for the stack's running PostgreSQL, from its facts in stack.json (psql only)."""
    client = PostgresServer(bin_dir=Path(pg["bin"]))
    client.port = pg["port"]
    return client


def read_facts(state: Path) -> dict:
    path = Path(state) / "stack.json"
    return json.loads(path.read_text()) if path.exists() else {}


__all__ = ["DevStack", "NAMESPACE", "connect_postgres", "his_rows", "load_manifests", "read_facts", "write_pacs_study"]
