"""The local job runner maps pod paths to local ones, but never this machine's interpreter."""
import sys
from pathlib import Path

from lifeline.devstack.job_runner import JobRunner, _rewriter


def test_the_interpreter_is_not_mapped_even_when_a_mount_is_a_prefix_of_it(tmp_path):
    prefix = str(Path(sys.executable).parents[-2])  # e.g. /tmp or /root or /usr
    rewrite = _rewriter([(prefix, tmp_path / "mounted")])
    runner = JobRunner("http://127.0.0.1:1", workdir=tmp_path)
    agent = {"name": "agent", "image": "ghcr.io/lifeline-dr/lifeline:0.1.0",
             "args": ["agent", "backup", f"{prefix}/data"]}
    argv = runner._argv(agent, rewrite)
    assert argv[0] == sys.executable
    assert argv[-1] == f"{tmp_path / 'mounted'}/data"
    python = dict(agent, command=["python", "-m", "lifeline.cli"])
    assert runner._argv(python, rewrite)[0] == sys.executable
