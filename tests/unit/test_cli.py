"""The `lifeline` command: help lists every area; validate reports and exits as a CI step needs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lifeline.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "lifeline.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("crds", "operator", "validate", "demo", "agent"):
        assert f"    {command} " in out, out


def test_validate_accepts_the_examples(capsys):
    assert main(["validate", *map(str, sorted((ROOT / "examples").glob("*.yaml")))]) == 0
    assert capsys.readouterr().out.count(": valid") >= 6


def test_validate_names_each_problem_and_fails(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "examples" / "backuppolicy-pacs-images.yaml").read_text()
                   .replace("tier: B", "tier: Z").replace("keepDaily: 30", "keepDaily: -30"))
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: BackupPolicy/pacs-images: spec.tier: Input should be 'A', 'B' or 'C' (got 'Z')" in err
    assert "spec.retention.keepDaily: Input should be greater than or equal to 0 (got -30)" in err


def test_validate_says_when_a_file_is_not_yaml(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [unclosed")
    assert main(["validate", str(bad)]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_each_area_registers_exactly_the_commands_it_is_named_for():
    """The command -> area map (which lets a command import only its own area) is what the
    areas register: a command added to an area and not to the map would be unreachable."""
    import argparse
    import importlib

    from lifeline.cli import _AREAS

    for area in set(_AREAS.values()):
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(area).register(sub)
        assert sorted(sub.choices) == sorted(c for c, a in _AREAS.items() if a == area), area


def test_a_command_imports_only_its_own_area():
    """`lifeline agent ...` and `lifeline keys ...` start without kopf, the operator's handlers
    or the Kubernetes client; `lifeline --help` still lists everything (above)."""
    probe = ("import sys; from lifeline.cli import build_parser; "
             "build_parser(sys.argv[1:]).parse_args(sys.argv[1:]); "
             "print(sorted(m for m in ('kopf', 'kubernetes', 'lifeline.commands.operator') if m in sys.modules))")
    for argv in (["agent", "init", "--repo", "file:///x"], ["keys", "rotate", "--repo", "file:///x"]):
        out = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, cwd=ROOT,
                             env={"PYTHONPATH": str(ROOT / "operator"), "PATH": "/usr/bin:/bin"})
        assert out.returncode == 0 and out.stdout.strip() == "[]", (argv, out.stdout, out.stderr)


def test_an_unknown_command_is_a_usage_error():
    with pytest.raises(SystemExit) as exit_:
        main(["frobnicate"])
    assert exit_.value.code == 2


def test_replicas_of_one_deployment_get_distinct_peering_priorities():
    """kopf freezes all replicas that tie on priority; names must break the tie."""
    from lifeline.commands.operator import peering_priority

    names = [f"lifeline-operator-7d9f8c6b5-{suffix}" for suffix in ("x2kq9", "p8m4z", "q1w2e")]
    derived = [peering_priority(None, "lifeline", n) for n in names]
    assert len(set(derived)) == len(derived)
    assert all(p > 0 for p in derived)
    assert peering_priority(None, "lifeline", names[0]) == derived[0]  # stable across restarts of one pod
    assert peering_priority(250, "lifeline", names[0]) == 250  # an explicit priority wins
    assert peering_priority(None, None, names[0]) == 0  # standalone: kopf's default


def test_failover_commands_take_the_namespace_of_the_context_they_connect_with(tmp_path):
    """`lifeline failover … --context site-b` must act in site-b's namespace, not the current one's."""
    import argparse

    import yaml

    from lifeline.commands.failover import _namespace

    cluster = {"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}
    user = {"name": "u", "user": {"token": "t"}}
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster], "users": [user],
        "contexts": [{"name": "site-a", "context": {"cluster": "c", "user": "u", "namespace": "ward-a"}},
                     {"name": "site-b", "context": {"cluster": "c", "user": "u", "namespace": "ward-b"}}],
        "current-context": "site-a"}))
    args = argparse.Namespace(namespace=None, kubeconfig=str(config), context="site-b")
    assert _namespace(args) == "ward-b"
    assert _namespace(argparse.Namespace(namespace=None, kubeconfig=str(config), context=None)) == "ward-a"
    assert _namespace(argparse.Namespace(namespace="icu", kubeconfig=str(config), context="site-b")) == "icu"
