"""The two PostgreSQL hooks: ``wal-push`` (archive_command) and ``wal-fetch`` (restore_command).

Both fan out over several repositories (``--repo`` repeated): a push succeeds only when every
destination holds the segment — otherwise the database keeps the file and calls again, and
an identical re-push is a no-op — and a fetch tries the destinations in order. S3 settings
of the i-th repository may come from ``LIFELINE_S3_<i>_ACCESS_KEY_ID`` /
``_SECRET_ACCESS_KEY`` / ``_ENDPOINT`` / ``_REGION`` (the same convention as backup Jobs),
else from the usual ``AWS_*`` variables.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from lifeline.errors import LifelineError, UsageError
from lifeline.keys import provider_from_ref
from lifeline.keys.choice import provider_for
from lifeline.repository.backend import S3Options, open_backend
from lifeline.repository.errors import CipherUnavailable, DamagedData, RepositoryNotFound
from lifeline.repository.repo import Repository
from lifeline.repository.segments import SegmentNotFound, SegmentStore


@dataclass
class Destination:
    index: int
    url: str
    s3: S3Options

    @property
    def label(self) -> str:
        return self.url


def destinations(urls: list[str], base: S3Options | None = None, env: dict | None = None) -> list[Destination]:
    env = os.environ if env is None else env
    if not urls:
        raise UsageError("no repository given: pass --repo URL (repeatable) or set LIFELINE_REPOSITORY")
    out = []
    for i, url in enumerate(urls):
        p = f"LIFELINE_S3_{i}_"
        b = base or S3Options()
        out.append(Destination(i, url, S3Options(
            endpoint=env.get(p + "ENDPOINT") or b.endpoint, region=env.get(p + "REGION") or b.region,
            access_key_id=env.get(p + "ACCESS_KEY_ID") or b.access_key_id,
            secret_access_key=env.get(p + "SECRET_ACCESS_KEY") or b.secret_access_key,
            allow_http=b.allow_http)))
    return out


def open_store(dest: Destination, key_ref: str | None, *, create: bool = False,
               cipher: str = "aes-256-gcm") -> SegmentStore:
    """The segment store of one destination (creating the repository, of ``cipher``, when asked and missing)."""
    try:
        repo = Repository.open(open_backend(dest.url, dest.s3))
    except RepositoryNotFound:
        if not create:
            raise
        provider = provider_from_ref(key_ref or "")
        try:
            repo = Repository.init(open_backend(dest.url, dest.s3, create=True), provider, cipher=cipher)
        except CipherUnavailable:
            raise
        except LifelineError:
            repo = Repository.open(open_backend(dest.url, dest.s3))
        return SegmentStore(repo, provider)
    return SegmentStore(repo, provider_for(repo, key_ref))


def push(stores: list[SegmentStore], path: str, name: str | None = None) -> list[dict]:
    """Push to every store; raise the first error after trying all (so each gets its copy)."""
    if not os.path.isfile(path):
        raise UsageError(f"{path} is not a file (archive_command passes %p, the segment's path)")
    results, errors = [], []
    for store in stores:
        try:
            r = store.push(path, name)
            r["repository"] = store.repo.url
            results.append(r)
        except LifelineError as exc:
            errors.append(exc)
    if errors:
        raise max(errors, key=lambda e: e.exit_code)
    return results


def fetch(stores: list[SegmentStore], name: str, dest_path: str) -> dict:
    """Fetch, verify and write atomically; the first destination that has a good copy wins."""
    missing, damaged = [], []
    for store in stores:
        try:
            header, data = store.fetch(name)
        except SegmentNotFound as exc:
            missing.append(str(exc))
            continue
        except DamagedData as exc:
            damaged.append(exc)
            continue
        directory = os.path.dirname(os.path.abspath(dest_path)) or "."
        fd, tmp = tempfile.mkstemp(prefix=".lifeline-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, dest_path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return {"name": name, "size": len(data), "repository": store.repo.url, "closed_at": header.get("closed_at")}
    if damaged:
        raise damaged[0]
    raise SegmentNotFound(missing[0] if len(missing) == 1 else f"log segment {name} is in none of "
                          f"{len(stores)} repositories")
