"""A real PostgreSQL: pg_dump streamed into a backup, restored with pg_restore into a fresh database."""
from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from .helpers import AGENT, Repo, make_key

SCHEMA = """
CREATE TABLE patients (id bigint PRIMARY KEY, name text NOT NULL, born date, notes text);
CREATE TABLE observations (id bigserial PRIMARY KEY, patient_id bigint REFERENCES patients(id),
                           taken_at timestamptz NOT NULL, value double precision, blob bytea);
INSERT INTO patients SELECT g, 'patient ' || g, date '1940-01-01' + (g % 25000),
       repeat(md5(g::text), 1 + g % 5) FROM generate_series(1, 40000) g;
INSERT INTO observations (patient_id, taken_at, value, blob)
SELECT 1 + g % 40000, timestamptz '2026-01-01' + g * interval '1 minute', sqrt(g),
       decode(md5(g::text) || md5((g * 7)::text), 'hex') FROM generate_series(1, 150000) g;
CREATE INDEX ON observations (patient_id, taken_at);
"""

FINGERPRINT = """
SELECT (SELECT count(*) FROM patients), (SELECT count(*) FROM observations),
       (SELECT md5(string_agg(id || ':' || name || ':' || coalesce(born::text, '') || ':' || coalesce(notes, ''),
                              ',' ORDER BY id)) FROM patients),
       (SELECT md5(string_agg(id || ':' || patient_id || ':' || taken_at || ':' || value || ':' || encode(blob, 'hex'),
                              ',' ORDER BY id)) FROM observations);
"""


def _round_trip(postgres, repo: Repo, env: dict) -> None:
    db = postgres.createdb(f"his_{uuid.uuid4().hex[:8]}")
    postgres.psql(db, SCHEMA)
    before = postgres.psql(db, FINGERPRINT).strip()
    pg_dump = postgres.bin_dir / "pg_dump"
    s = repo.backup("--command", f"{pg_dump} -Fc --no-owner {db}", "--source-name", f"pg/{db}",
                    "--stdin-name", f"{db}.dump", "--tag", "postgres", env={**env, **postgres.env()})
    assert s["files"] == 1 and s["size_bytes"] > 1_000_000 and s["tags"] == ["postgres"]

    # restore to stdout, straight into pg_restore
    target = postgres.createdb(f"restored_{uuid.uuid4().hex[:8]}")
    agent_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LIFELINE_"))}
    agent_env.update(env)
    restore = subprocess.Popen([*AGENT, "restore", s["point_id"], "--to", "-", "--repo", repo.url,
                                "--key", repo.key], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=agent_env)
    pg = subprocess.run([str(postgres.bin_dir / "pg_restore"), "--no-owner", "--exit-on-error", "-d", target],
                        stdin=restore.stdout, capture_output=True, text=True,
                        env={**os.environ, **postgres.env()}, timeout=180)
    restore.stdout.close()
    assert restore.wait(timeout=60) == 0, restore.stderr.read().decode()
    assert pg.returncode == 0, pg.stderr
    after = postgres.psql(target, FINGERPRINT).strip()
    assert after == before
    assert before.split("|")[:2] == ["40000", "150000"]

    # a second dump of the unchanged database deduplicates against the first
    s2 = repo.backup("--command", f"{pg_dump} -Fc --no-owner {db}", "--source-name", f"pg/{db}",
                     env={**env, **postgres.env()})
    assert s2["parent_id"] == s["point_id"] and s2["type"] == "incremental"


@pytest.mark.slow
def test_pg_dump_backup_restore_file(postgres, repo: Repo):
    _round_trip(postgres, repo, {})


@pytest.mark.slow
def test_pg_dump_backup_restore_s3(postgres, s3_server, tmp_path):
    bucket = s3_server.make_bucket(f"pg-{uuid.uuid4().hex[:12]}")
    repo = Repo(f"s3://{bucket}/db", make_key(tmp_path / "key"), env=s3_server.env())
    repo.ok("init")
    _round_trip(postgres, repo, s3_server.env())
