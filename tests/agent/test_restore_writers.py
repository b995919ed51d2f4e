"""Writer processes of a restore: many small files are written by them, and a restore that loses one
stops with an error instead of hanging or reporting success."""
from __future__ import annotations

import os
import signal

import pytest

from lifeline.errors import LifelineError, UsageError
from lifeline.repository.crypto import EpochKeys

from lifeline.agent import restore as restore_mod
from lifeline.agent.restore_writers import WriterProcess

from .helpers import Repo


def _settings(target) -> dict:
    keys = EpochKeys("ab" * 16, bytes(32))
    return {"keys": keys.handover(), "point_id": "p", "skip_damaged": False, "overwrite": False, "devices": False,
            "numeric_owner": False, "mode_mask": 0o777, "target": str(target), "openat2": False,
            "is_root": os.geteuid() == 0}


def test_a_writer_that_dies_is_an_error_not_a_hang(tmp_path):
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        w = WriterProcess(root, _settings(tmp_path))
        empty = {"path": "empty", "type": "file", "mode": 0o640, "size": 0, "mtime_ns": 10**18}
        answer = w.call(([(empty, (), [])], {}))
        assert answer["files"] == 1 and answer["stop"] is None and "raise" not in answer
        assert (tmp_path / "empty").stat().st_mtime_ns == 10**18
        os.kill(w.proc.pid, signal.SIGKILL)
        w.proc.wait()
        with pytest.raises(LifelineError, match="writer process stopped"):
            w.call(([({**empty, "path": "second"}, (), [])], {}))
        w.close()
        assert not (tmp_path / "second").exists()
    finally:
        os.close(root)


def test_writers_come_from_many_tiny_files_or_the_setting(monkeypatch):
    monkeypatch.delenv("LIFELINE_RESTORE_WRITERS", raising=False)
    many, tiny = restore_mod.WRITERS_FROM, restore_mod.WRITERS_AVERAGE
    assert restore_mod._writer_count(many - 1, (many - 1) * 100) == 0
    assert restore_mod._writer_count(many, many * tiny + 1) == 0  # larger files: the data is the time
    monkeypatch.setattr(restore_mod, "usable_cores", lambda: 3)
    assert restore_mod._writer_count(many, many * tiny) == 3  # (one a core it may use: tests/agent/test_cores.py)
    monkeypatch.setenv("LIFELINE_RESTORE_WRITERS", "3")
    assert restore_mod._writer_count(0, 0) == 3
    for bad in ("many", "\u00b2", "65"):
        monkeypatch.setenv("LIFELINE_RESTORE_WRITERS", bad)
        with pytest.raises(UsageError, match="LIFELINE_RESTORE_WRITERS"):
            restore_mod._writer_count(0, 0)


def test_writers_that_cannot_start_leave_the_writing_to_a_thread(repo: Repo, tmp_path, monkeypatch):
    """A pod's process limit reached: the restore goes on with one writer thread, nothing lost."""
    from lifeline.agent import helper_process

    def no_more_processes(*_a, **_kw):
        raise BlockingIOError(11, "Resource temporarily unavailable")

    src = tmp_path / "src"
    src.mkdir()
    for i in range(50):
        (src / f"f{i}").write_bytes(os.urandom(100 + i))
    pid = repo.backup(src)["point_id"]
    monkeypatch.setattr(helper_process, "start", no_more_processes)
    monkeypatch.setenv("LIFELINE_RESTORE_WRITERS", "2")
    from lifeline.agent.restore import Restorer
    from lifeline.keys import provider_from_ref
    from lifeline.repository.backend import open_backend
    from lifeline.repository.repo import Repository

    out = tmp_path / "out"
    r = Restorer(Repository.open(open_backend(repo.url)), provider_from_ref(repo.key), pid).to_directory(str(out))
    assert r["small_file_writers"] == 0 and r["files"] == 50
    for i in range(50):
        assert (out / f"f{i}").read_bytes() == (src / f"f{i}").read_bytes()


def _restore_in_process(repo: Repo, pid: str, out) -> dict:
    from lifeline.agent.restore import Restorer
    from lifeline.keys import provider_from_ref
    from lifeline.repository.backend import open_backend
    from lifeline.repository.repo import Repository

    return Restorer(Repository.open(open_backend(repo.url)), provider_from_ref(repo.key), pid).to_directory(str(out))


@pytest.mark.parametrize("shared", [True, False])
def test_writers_read_sealed_bytes_from_shared_memory_or_else_the_pipe(shared, repo: Repo, tmp_path, monkeypatch):
    """With shared memory (Linux's memfd) a task names where each chunk lies in it, and carries no
    sealed bytes; where there is none, the bytes go in the task. Every slot taken is given back."""
    from lifeline.agent import restore_writers

    src = tmp_path / "src"
    src.mkdir()
    for i in range(1500):
        (src / f"f{i:04d}").write_bytes(os.urandom(200 + i))
    pid = repo.backup(src)["point_id"]
    monkeypatch.setenv("LIFELINE_RESTORE_WRITERS", "2")
    if not shared:
        monkeypatch.setattr(restore_writers.SharedStretches, "make", classmethod(lambda cls, slots: None))
    carried: list[type] = []
    slots: list[int] = []
    call, take, give = WriterProcess.call, restore_writers.SharedStretches.take, restore_writers.SharedStretches.give

    def spying_call(self, task):
        carried.extend({type(v) for v in task[1].values()})
        return call(self, task)

    def spying_take(self):
        slots.append(1)
        return take(self)

    def spying_give(self, slot):
        slots.append(-1)
        give(self, slot)
    monkeypatch.setattr(WriterProcess, "call", spying_call)
    monkeypatch.setattr(restore_writers.SharedStretches, "take", spying_take)
    monkeypatch.setattr(restore_writers.SharedStretches, "give", spying_give)
    out = tmp_path / "out"
    r = _restore_in_process(repo, pid, out)
    assert r["small_file_writers"] == 2 and r["files"] == 1500 and not r["damaged"]
    assert set(carried) == ({tuple} if shared else {bytes})
    assert (sum(s > 0 for s in slots) >= 2 and sum(slots) == 0) if shared else slots == []
    for i in range(1500):
        assert (out / f"f{i:04d}").read_bytes() == (src / f"f{i:04d}").read_bytes()


def test_shared_stretches_keep_to_their_slots_and_writers_only_read_them():
    from lifeline.agent.restore_writers import SharedStretches, map_shared

    shared = SharedStretches.make(2)
    if shared is None:
        pytest.skip("no memfd_create here (the pipe carries the bytes: tested above)")
    try:
        slot = shared.take()
        at = shared.put(slot, 10, b"sealed")
        assert at == slot * SharedStretches.SLOT + 10
        for outside, size in ((SharedStretches.SLOT - 3, 4), (-1, 1)):  # past its slot's end, before its start
            with pytest.raises(ValueError):
                shared.put(slot, outside, bytes(size))
        seen = map_shared(shared.fd)
        assert bytes(seen[at:at + 6]) == b"sealed"
        with pytest.raises(TypeError):  # (mapped read-only: a writer cannot change what another reads)
            seen[at:at + 1] = b"x"
        seen.release()
        # ... nor through its descriptor, reopened or not; nor resize it under the main process
        again = os.open(f"/proc/self/fd/{shared.fd}", os.O_RDWR)
        try:
            for fd in (shared.fd, again):
                with pytest.raises(PermissionError):
                    os.pwrite(fd, b"x", at)
                with pytest.raises(PermissionError):
                    os.ftruncate(fd, 0)
        finally:
            os.close(again)
        shared.put(slot, 10, b"SEALED")  # (the main process still writes through its mapping)
        assert bytes(map_shared(shared.fd)[at:at + 6]) == b"SEALED"
    finally:
        shared.close()


def test_writers_give_each_file_its_recorded_mode_whatever_the_agent_s_umask(repo: Repo, tmp_path):
    """A writer creates a small file with its mode at once (no fchmod after): under a umask that
    would take bits away, every mode still comes back exact; special bits only when asked."""
    src = tmp_path / "src"
    src.mkdir()
    modes = [0o777, 0o640, 0o000, 0o604, 0o4755, 0o1777, 0o2750]
    for i in range(300):
        f = src / f"f{i:03d}"
        f.write_bytes(os.urandom(10 + i))
        os.chmod(f, modes[i % len(modes)])
    pid = repo.backup(src)["point_id"]
    env = {"LIFELINE_RESTORE_WRITERS": "2"}
    old = os.umask(0o077)
    try:
        plain = repo.ok("restore", pid, "--to", tmp_path / "plain", "--json", env=env).json
        special = repo.ok("restore", pid, "--to", tmp_path / "special", "--special-bits", "--json", env=env).json
    finally:
        os.umask(old)
    assert plain["small_file_writers"] == special["small_file_writers"] == 2
    for i in range(300):
        recorded = modes[i % len(modes)]
        assert (tmp_path / "plain" / f"f{i:03d}").stat().st_mode & 0o7777 == recorded & 0o777, oct(recorded)
        assert (tmp_path / "special" / f"f{i:03d}").stat().st_mode & 0o7777 == recorded, oct(recorded)


def test_a_bad_setting_is_refused_before_anything_is_made(repo: Repo, tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"x")
    pid = repo.backup(src)["point_id"]
    r = repo.run("restore", pid, "--to", tmp_path / "out", env={"LIFELINE_RESTORE_WRITERS": "lots"})
    assert r.rc != 0 and "LIFELINE_RESTORE_WRITERS" in r.err and "Traceback" not in r.err
    assert not (tmp_path / "out" / "d").exists()


def test_small_files_by_writers_come_back_byte_for_byte(repo: Repo, tmp_path):
    """More files than fit one span, some empty, some zeros, some sharing content, through 2 writers."""
    src = tmp_path / "src"
    for d in range(3):
        (src / f"d{d}").mkdir(parents=True)
        for i in range(700):
            data = b"" if i % 50 == 0 else bytes(3000) if i % 7 == 0 else os.urandom(1 + i * 3)
            (src / f"d{d}" / f"f{i:04d}").write_bytes(data if i % 11 else b"shared content")
    pid = repo.backup(src)["point_id"]
    out = tmp_path / "out"
    r = repo.ok("restore", pid, "--to", out, "--json", env={"LIFELINE_RESTORE_WRITERS": "2"}).json
    assert r["small_file_writers"] == 2 and r["files"] == 2100 and r["damaged"] == [] and r["skipped"] == []
    for d in range(3):
        for i in range(700):
            a, b = src / f"d{d}" / f"f{i:04d}", out / f"d{d}" / f"f{i:04d}"
            assert b.read_bytes() == a.read_bytes()
            assert b.stat().st_mtime_ns == a.stat().st_mtime_ns and b.stat().st_mode == a.stat().st_mode


def test_a_damaged_small_file_stops_the_restore_or_is_left_out_when_asked(repo: Repo, tmp_path):
    from .test_integrity import _flip, _locate

    src = tmp_path / "src"
    src.mkdir()
    for i in range(300):
        (src / f"f{i:03d}").write_bytes(os.urandom(2000 + i))
    pid = repo.backup(src)["point_id"]
    pack, ref = _locate(repo, pid, "f150")
    _flip(pack, ref.offset + ref.length // 2)
    env = {"LIFELINE_RESTORE_WRITERS": "2"}

    r = repo.run("restore", pid, "--to", tmp_path / "out1", env=env)
    assert r.rc == 3 and "'f150'" in r.err and "--skip-damaged" in r.err and "Traceback" not in r.err
    assert not (tmp_path / "out1" / "f150").exists()

    out = tmp_path / "out2"
    r = repo.run("restore", pid, "--to", out, "--skip-damaged", "--json", env=env)
    assert r.rc == 3 and [d["path"] for d in r.json["damaged"]] == ["f150"]
    assert r.json["small_file_writers"] == 2 and r.json["files"] == 299
    assert not (out / "f150").exists()
    for i in range(300):
        if i != 150:
            assert (out / f"f{i:03d}").read_bytes() == (src / f"f{i:03d}").read_bytes()


def test_helpers_run_nothing_planted_where_the_agent_runs_and_get_no_credentials(tmp_path, monkeypatch):
    """The attack: a tenant's source (or a restore target) is the agent's working directory and holds
    a ``lifeline/`` package of its own. ``python -m`` would search it first; a helper must not."""
    from lifeline.agent import helper_process

    planted = tmp_path / "lifeline"
    (planted / "agent").mkdir(parents=True)
    (planted / "__init__.py").write_text("import pathlib; pathlib.Path('ran').write_text('planted')\n")
    (planted / "agent" / "__init__.py").write_text("")
    (planted / "agent" / "probe.py").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "storage-secret")
    monkeypatch.setenv("VAULT_TOKEN", "vault-secret")
    proc = helper_process.start("lifeline.agent.read_ahead", "0", "10")  # (fd 0: names from its stdin)
    proc.stdin.close()
    proc.wait(timeout=30)
    proc.stdout.close()
    assert not (tmp_path / "ran").exists() and not (tmp_path.parent / "ran").exists()
    env_probe = helper_process.start("lifeline.agent.read_ahead", "0", "10")
    try:
        environ = open(f"/proc/{env_probe.pid}/environ", "rb").read().split(b"\0")
    finally:
        env_probe.stdin.close()
        env_probe.wait(timeout=30)
        env_probe.stdout.close()
    assert not any(v.startswith((b"AWS_", b"VAULT_", b"LIFELINE_")) for v in environ)
