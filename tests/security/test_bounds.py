"""Finding 9 of the security review (its model and `lifeline validate` parts), as the attacks: input
built to hide, to overflow or to crash. Each is refused with the field named, never a traceback."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from lifeline.api.validation import problems_in_manifest
from tests.backup.conftest import policy


def manifest(**changes) -> dict:
    body = policy()
    body["metadata"]["name"] = "pacs"
    for path, value in changes.items():
        node = body
        keys = path.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return body


@pytest.mark.parametrize("path,value,field,words", [
    ("metadata.name", "a" * 100_000, "metadata.name", "not a Kubernetes object name"),
    ("spec.source.pvc.claimName", "b" * 100_000, "spec.source.pvc.claimName", "253"),
    ("spec.schedule.timeZone", "../../../etc/passwd", "spec.schedule.timeZone", "not an IANA time zone"),
    ("spec.retention.keepLast", 10 ** 400, "spec.retention.keepLast", "less than or equal to 100000"),
    ("spec.objectives.rpo", "3000000d", "spec.objectives.rpo", "longer than ten years"),
    ("spec.destinations", [{"name": "local", "filesystem": {"claimName": "backup-local", "path": "/r\x00x"}}],
     "spec.destinations", "U+0000"),
    ("spec.encryption.keyRef", "secret://pacs-key/key\u202etxt.exe", "spec.encryption.keyRef", "U+202E"),
])
def test_the_models_refuse_input_built_to_overflow_or_hide(path, value, field, words):
    _, _, problems = problems_in_manifest(manifest(**{path: value}))
    assert problems, f"{path} was accepted"
    text = "; ".join(str(p) for p in problems)
    assert field in text and words in text, text
    assert len(text) < 2000, "the message does not echo the whole input back"


def validate(tmp_path, content: bytes) -> subprocess.CompletedProcess:
    path = tmp_path / "doc.yaml"
    path.write_bytes(content)
    return subprocess.run([sys.executable, "-m", "lifeline.cli", "validate", str(path)], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("content,words", [
    (b"- a\n- b\n", "document 1 is a list"),
    (b"just a string\n", "document 1 is a str"),
    (b"\xff\xfe\x00bad", "not UTF-8"),
    (b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
    (b"kind: [unclosed\n", "not YAML"),
])
def test_validate_answers_malformed_files_with_a_line_not_a_traceback(tmp_path, content, words):
    run = validate(tmp_path, content)
    assert run.returncode == 1 and words in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


def test_validate_still_says_valid_for_a_good_manifest(tmp_path):
    run = validate(tmp_path, yaml.safe_dump(manifest()).encode())
    assert run.returncode == 0 and "BackupPolicy/pacs: valid" in run.stdout, run.stderr


# ---- the agent's half: a forged manifest and bad options end with a message, not a traceback -----

from tests.security.test_restore_escape import (_genuine, base_point, empty_or_missing, forge, outside,  # noqa: E402,F401
                                                repo, restore)


@pytest.mark.parametrize("chunks", [["zz" * 32], ["ab"], "not-a-list", [None]])
def test_a_manifest_with_chunk_ids_that_are_not_ids_is_refused_before_anything_is_written(
        chunks, repo, base_point, restore, tmp_path):
    forge(repo, base_point, lambda by: [by[""], {**by["x"], "chunks": chunks}])
    target = tmp_path / "target"
    r = restore(base_point, target)
    assert r.rc == 3 and "chunk ids" in r.err and "Traceback" not in r.err, r.err
    assert empty_or_missing(target)


@pytest.mark.parametrize("option", [["--workers", "-3"], ["--workers", "many"], ["--compression-level", "99"]])
def test_agent_options_out_of_range_are_usage_errors(option, tmp_path):
    verb = "init" if option[0] == "--compression-level" else "backup"
    run = subprocess.run([sys.executable, "-m", "lifeline.cli", "agent", verb, "--repo", f"file://{tmp_path}/r",
                          "--key", f"file://{tmp_path}/k", *option, *([str(tmp_path)] if verb == "backup" else [])],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and option[0] in run.stderr and "Traceback" not in run.stderr, run.stderr


@pytest.mark.parametrize("declared", [True, False])
def test_an_index_segment_that_decompresses_into_a_bomb_is_refused(monkeypatch, declared):
    """Index segments are authenticated before they are decompressed, but a key holder can still write
    one: a frame of zeros that grows far past what an index can be is refused instead of filling memory."""
    import os

    import zstandard

    from lifeline.repository import index
    from lifeline.repository.crypto import EpochKeys
    from lifeline.repository.errors import DamagedData
    from lifeline.repository.layout import INDEX_MAGIC

    monkeypatch.setattr(index, "MAX_SEGMENT_BYTES", 1 << 20)
    zeros = bytes(8 << 20)
    if declared:
        frame = zstandard.ZstdCompressor(write_content_size=True).compress(zeros)
    else:
        compressor = zstandard.ZstdCompressor().compressobj()
        frame = compressor.compress(zeros) + compressor.flush()
    assert len(frame) < 4096, "a few KiB that would grow to 8 MiB"
    keys = EpochKeys(os.urandom(16).hex(), os.urandom(32))
    body = INDEX_MAGIC + keys.epoch_raw + frame
    with pytest.raises(DamagedData) as err:
        index.decode_segment("index/bomb", body + keys.macs.mac("index", body), keys)
    assert "index segment index/bomb" in str(err.value) and "authentication" not in str(err.value)


def test_text_from_storage_reaches_the_terminal_escaped(repo, base_point, capsys):
    """Untrusted storage (or a key holder) can put an escape sequence that clears the screen, or a
    right-to-left override, into a point's tags: `agent points` prints them escaped."""
    from lifeline.agent.__main__ import main
    from lifeline.keys import provider_from_ref
    from lifeline.repository.backend import open_backend
    from lifeline.repository.repo import Repository

    r = Repository.open(open_backend(repo.url))
    header, entries, keys = r.load_point(base_point, provider_from_ref(repo.key))
    r.write_point(keys, {**header, "tags": ["\x1b[2J\x1b[31mall good\u202etxt.exe"]}, entries)
    code = main(["points", "--repo", repo.url, "--key", repo.key])
    out = capsys.readouterr().out
    assert code == 0 and "\x1b" not in out and "\u202e" not in out
    assert "\\x1b[2J" in out and "\\u202e" in out
