"""What goes into a record: who, what, when, outcome, object; never key material. And reading it back."""
from __future__ import annotations

import json
import logging

from lifeline.cli import main
from lifeline.observability import audit

from .conftest import T0, store_of, write_records

DATA_KEY = bytes(range(32))
DATA_KEY_B64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
TOKEN = "hvs.CAESIJ7lZQxfGr0yw1bHh0r2rWqsXc9MhD1Jt0aZ"
WRAPPED = "vault:v3:Zm9vYmFyYmF6cXV4"


def test_no_key_material_reaches_the_log_line_or_the_store(audit_url, chained, caplog):
    caplog.set_level(logging.INFO, logger="lifeline.audit")
    audit.record("key-rotation", actor="ops@hospital", outcome="succeeded",
                 subject={"kind": "BackupPolicy", "namespace": "hospital", "name": "his-db"},
                 details={"key_ref": "vault-transit://lifeline-his?mount=transit", "latest_version": 3,
                          "rewrapped": ["epoch-1", "epoch-2"], "data_key": DATA_KEY_B64, "raw": DATA_KEY,
                          "vault": {"token": TOKEN, "token_display_name": "approle-lifeline"},
                          "wrapped_keys": [WRAPPED], "note": WRAPPED}, when=T0)
    store = store_of(audit_url)
    stored = b"".join(store.backend.get(o.name) for o in store.backend.list(""))
    logged = caplog.text.encode()
    for secret in (DATA_KEY_B64.encode(), TOKEN.encode(), WRAPPED.encode(), b"Zm9vYmFyYmF6cXV4"):
        assert secret not in stored
        assert secret not in logged
    assert DATA_KEY not in stored
    record = next(store.records())
    # the facts an auditor needs are all there
    assert record["details"]["key_ref"] == "vault-transit://lifeline-his?mount=transit"
    assert record["details"]["latest_version"] == 3
    assert record["details"]["rewrapped"] == ["epoch-1", "epoch-2"]
    assert record["details"]["vault"] == {"token": "[redacted]", "token_display_name": "approle-lifeline"}
    assert (record["actor"], record["action"], record["outcome"], record["time"]) == \
        ("ops@hospital", "key-rotation", "succeeded", T0.isoformat())
    assert record["subject"] == {"kind": "BackupPolicy", "namespace": "hospital", "name": "his-db"}


def test_audit_log_filters_by_action_and_time(audit_url, chained, capsys):
    write_records(12)  # 5 minutes apart from T0
    assert main(["audit", "log", "--url", audit_url, "--action", "drill", "--json"]) == 0
    drills = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["seq"] for r in drills] == [1, 7]
    since = T0.replace(minute=40).isoformat()
    assert main(["audit", "log", "--url", audit_url, "--since", since]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0].split()[0] == "8"
    assert "failover succeeded FailoverPlan/hospital/monitoring by system:serviceaccount:lifeline:operator" \
        in "\n".join(lines)
