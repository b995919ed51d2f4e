"""Everything `lifeline dev up` runs, started in order and stopped in reverse, under one directory.

:class:`DevStack` starts, on 127.0.0.1 only: an OpenBao dev server holding the transit keys the
manifests name (or, without `bao`, nothing: local keys, said in one line), Debian's PostgreSQL
as the hospital's "HIS" database with sample patient rows (skipped with one line when absent),
the directories standing for PACS images and the on-site and off-site backup stores, the two
monitoring endpoints the hospital FailoverPlan watches, the hash-chained audit log, the API
emulator and the real operator. Leaving the ``async with`` (normally, on an error or on Ctrl-C)
stops all of it; server processes also have a watchdog that stops them if this process is killed.

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
    emulator: object | None = None
    ctx: object | None = None
    volumes: dict[str, Path] = field(default_factory=dict)
    manifests: list[dict] = field(default_factory=list)
    hospital_manifests: list[dict] = field(default_factory=list)
    his_patients: int = 0
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
        from lifeline.devstack.emulator import make_emulator, serve, write_kubeconfig
        from lifeline.devstack.operator_thread import running_operator

        self._fresh_state()
        self.say(f"state directory   {self.state}  (logs, kubeconfig, audit log, volumes, report)")
        self._logging()
        self.manifests = load_manifests(self.examples)
        if self.hospital and self.hospital.is_dir():
            self.hospital_manifests = load_manifests(self.hospital)
        await asyncio.gather(self._start_vault(), self._start_postgres())
        self._volumes()
        await self._start_audit()
        await self._start_monitoring()

        self.emulator = make_emulator()
        self._seed()
        self.url = await self._stack.enter_async_context(serve(self.emulator))
        self.kubeconfig = write_kubeconfig(self.url, self.state / "kubeconfig", namespace=NAMESPACE)
        self.say(f"API emulator      {self.url}   (kubeconfig: {self.kubeconfig})")
        self.ctx = await self._stack.enter_async_context(running_operator(self.kubeconfig, self.emulator))
        self.say(f"operator          running; probes and metrics on http://127.0.0.1:{self.ctx.health_port}/metrics")
        self._write_facts()

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
        from lifeline.devstack.openbao import OpenBaoServer, prepare_keys

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
        from lifeline.devstack.postgres import PostgresServer

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

    async def _start_audit(self) -> None:
        from lifeline.observability import audit

        self.audit_url = f"file://{self.state / 'audit'}"
        sink = audit.use_store(self.audit_url, writer="lifeline-dev-up")

        def stop() -> None:
            sink.flush()
            audit.remove_sink(sink)

        self._stack.callback(stop)
        self.say(f"audit log         {self.audit_url} (hash-chained)")

    async def _start_monitoring(self) -> None:
        from lifeline.devstack.kubelet import PodEndpoint

        self.endpoints = {}
        for site, port in MONITORING_PORTS.items():
            endpoint = PodEndpoint(f"ward-{site}")
            endpoint.port = port
            try:
                await endpoint.start()
            except OSError as exc:
                # another demo (or anything) holds the port the example names: take a free one and
                # point the hospital FailoverPlan at it (applicable_hospital rewrites the URL)
                from lifeline.devstack.children import free_port

                endpoint = PodEndpoint(f"ward-{site}")
                endpoint.port = free_port()
                await endpoint.start()
                self.say(f"monitoring        port {port} is taken ({exc.strerror}): {site} on {endpoint.port}")
            self._stack.push_async_callback(endpoint.stop)
            self.endpoints[site] = endpoint
        self.say("monitoring        ward Prometheus endpoints: " +
                 ", ".join(f"{site} {e.url}" for site, e in self.endpoints.items()))

    def _set_env(self, env: dict[str, str]) -> None:
        """The operator (in this process) and the Jobs it runs read Vault's address from the env."""
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

        from lifeline.devstack.kubelet import ready_status

        em = self.emulator
        em.seed("v1/namespaces", {"metadata": {"name": NAMESPACE}})
        for claim in self.volumes:
            em.seed("v1/persistentvolumeclaims", {"metadata": {"name": claim, "namespace": NAMESPACE},
                                                  "spec": {"accessModes": ["ReadWriteOnce"]}})
        if self.postgres is not None:
            em.seed("v1/secrets", {"metadata": {"name": HIS_SECRET, "namespace": NAMESPACE},
                                   "data": {"password": base64.b64encode(self._his_password.encode()).decode()}})
        if self.vault is None:
            from lifeline.keys import create_key_file

            key = self.state / "keys" / "hospital.kek"
            key.parent.mkdir(parents=True, exist_ok=True)
            if not key.exists():
                create_key_file(key)
            em.seed("v1/secrets", {"metadata": {"name": LOCAL_KEY_SECRET, "namespace": NAMESPACE},
                                   "data": {"key": base64.b64encode(key.read_bytes()).decode()}})
        for site in MONITORING_PORTS:
            name = f"ward-prometheus-{site[-1]}"
            body = {"apiVersion": "apps/v1", "kind": "StatefulSet",
                    "metadata": {"name": name, "namespace": NAMESPACE, "generation": 1},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                             "template": {"metadata": {"labels": {"app": name, "site": site}},
                                          "spec": {"containers": [{"name": "main", "image": "prom/prometheus:v3"}]}}}}
            body["status"] = ready_status(body, 1)
            em.seed("apps/v1/statefulsets", body)
        em.seed("v1/services", {"apiVersion": "v1", "kind": "Service",
                                "metadata": {"name": "ward-monitoring", "namespace": NAMESPACE},
                                "spec": {"selector": {"site": "site-a"}, "ports": [{"port": 9090}]}})

    def _write_facts(self) -> None:
        facts = {
            "namespace": NAMESPACE,
            "kubeconfig": str(self.kubeconfig),
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
            if m["kind"] == "FailoverPlan":
                m = self._with_monitoring_ports(m)
            out.append(m)
        return out

    def _with_monitoring_ports(self, manifest: dict) -> dict:
        """The plan with each site's check URL on the port its endpoint really listens on."""
        text = json.dumps(manifest)
        for site, port in MONITORING_PORTS.items():
            endpoint = getattr(self, "endpoints", {}).get(site)
            if endpoint is not None and endpoint.port != port:
                text = text.replace(f"127.0.0.1:{port}/", f"127.0.0.1:{endpoint.port}/")
        return json.loads(text)


def connect_postgres(pg: dict):
    """A client for the stack's running PostgreSQL, from its facts in stack.json (psql only)."""
    from lifeline.devstack.postgres import PostgresServer

    client = PostgresServer(bin_dir=Path(pg["bin"]))
    client.port = pg["port"]
    return client


def read_facts(state: Path) -> dict:
    path = Path(state) / "stack.json"
    return json.loads(path.read_text()) if path.exists() else {}


__all__ = ["DevStack", "NAMESPACE", "connect_postgres", "his_rows", "load_manifests", "read_facts", "write_pacs_study"]
