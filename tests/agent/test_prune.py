"""Retention (keep-last/daily/weekly/monthly/yearly), --dry-run, garbage collection, shredding."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

from lifeline.agent.prune import apply_retention
from lifeline.messages import RetentionPlan
from lifeline.repository.repo import PointRef

from .helpers import Repo

MiB = 1 << 20


def _pt(i: int, when: dt.datetime, source="s") -> PointRef:
    return PointRef(f"points/{i}", {"id": f"{i:04d}", "start_time": when.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
                                    "source": {"kind": "stdin", "name": source}})


def test_retention_rules_pure():
    base = dt.datetime(2026, 1, 1, 3, 0)
    # every 6 hours for 2 years
    pts = [_pt(i, base + dt.timedelta(hours=6 * i)) for i in range(4 * 730)]
    newest = pts[-1]

    def kept(**kw):
        keep, forget, _ = apply_retention(pts, RetentionPlan(**kw))
        assert len(keep) + len(forget) == len(pts)
        return keep

    assert [p.id for p in kept(last=3)] == [p.id for p in pts[-3:]]
    days = kept(daily=7)
    assert len(days) == 7 and newest in days
    assert len({p.header["start_time"][:10] for p in days}) == 7
    assert len(kept(weekly=4)) == 4
    months = kept(monthly=6)
    assert len(months) == 6 and len({p.header["start_time"][:7] for p in months}) == 6
    assert len(kept(yearly=5)) == 2  # only two years of data
    combo = kept(last=2, daily=3, monthly=2)
    assert len(combo) == 2 + 2 + 1  # newest two overlap the newest day; one more month
    assert kept() == pts  # no policy: forget nothing
    # rules apply per source
    other = [_pt(10_000 + i, base + dt.timedelta(days=i), source="t") for i in range(5)]
    keep, _, _ = apply_retention(pts + other, RetentionPlan(last=1))
    assert {p.header["source"]["name"] for p in keep} == {"s", "t"} and len(keep) == 2


def test_prune_by_retention_with_dates(repo: Repo, tmp_path):
    day = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
    ids = []
    payloads = {}
    for i in range(6):  # six days, two backups on the last day
        when = day + dt.timedelta(days=min(i, 4), hours=i)
        data = os.urandom(MiB) + b"common" * 1000
        s = repo.backup("--stdin", "--time", when.isoformat().replace("+00:00", "Z"), input=data)
        ids.append(s["point_id"])
        payloads[s["point_id"]] = data
    root = Path(repo.url[len("file://"):])
    size_before = sum(p.stat().st_size for p in (root / "data").rglob("*") if p.is_file())

    r = repo.ok("prune", "--keep-last", "1", "--keep-daily", "3", "--dry-run", "--json")
    forget = {f["point_id"] for f in r.json["forget"]}
    # keep: newest (last+daily on day 5), newest of day 4 and day 3 → forget days 1, 2 and the older of day 5
    assert forget == {ids[0], ids[1], ids[4]}
    assert r.json["dry_run"] and r.json["bytes_freed"] > 0
    assert len(repo.ok("points", "--json").json["points"]) == 6  # dry run deleted nothing
    assert sum(p.stat().st_size for p in (root / "data").rglob("*") if p.is_file()) == size_before
    r = repo.ok("prune", "--keep-last", "1", "--keep-daily", "3", "--dry-run")
    assert f"would forget point {ids[0]}" in r.text

    r = repo.ok("prune", "--keep-last", "1", "--keep-daily", "3", "--json")
    left = {p["point_id"] for p in repo.ok("points", "--json").json["points"]}
    assert left == set(ids) - forget
    for pid in left:
        assert repo.ok("restore", pid, "--to", "-").out == payloads[pid]
    r = repo.ok("check", "--read-data", "--json")
    assert r.json["ok"] and r.json["leftovers"] == {}
    size_after = sum(p.stat().st_size for p in (root / "data").rglob("*") if p.is_file())
    assert size_after < size_before


def test_shred_epoch(repo: Repo, tmp_path):
    a = repo.backup("--stdin", "--source-name", "a", input=b"patient A" * 1000)
    a2 = repo.backup("--stdin", "--source-name", "a", input=b"patient A v2" * 1000)
    b = repo.backup("--stdin", "--source-name", "b", input=b"patient B" * 1000)
    assert a2["epoch"] == a["epoch"] != b["epoch"]
    r = repo.run("shred", "--point", a2["point_id"])
    assert r.rc == 2 and "--yes" in r.err
    audit_url = (tmp_path / "audit").as_uri()
    r = repo.ok("shred", "--point", a2["point_id"], "--yes", "--json",
                env={"LIFELINE_AUDIT_URL": audit_url, "LIFELINE_ACTOR": "dr-oncall@hospital"})
    assert set(r.json["points_shredded"]) == {a["point_id"], a2["point_id"]}
    # the shred is in the audit trail, with who did it
    log = subprocess.run([sys.executable, "-m", "lifeline.cli", "audit", "log", "--url", audit_url, "--json"],
                         capture_output=True, text=True, check=True).stdout
    shreds = [rec for rec in map(json.loads, log.splitlines()) if rec["action"] == "key-shred"]
    assert [(rec["actor"], rec["outcome"]) for rec in shreds] == [("dr-oncall@hospital", "succeeded")]
    assert {p["point_id"] for p in repo.ok("points", "--json").json["points"]} == {b["point_id"]}
    r = repo.run("restore", a["point_id"], "--to", "-")
    assert r.rc == 5
    repo.ok("prune")
    assert repo.ok("restore", b["point_id"], "--to", "-").out == b"patient B" * 1000
    r = repo.ok("check", "--json")
    assert r.json["leftovers"] == {}
