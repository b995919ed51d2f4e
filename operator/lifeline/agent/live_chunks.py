"""The chunks the kept points name: what a prune, plain or on locked storage, must not collect."""
from __future__ import annotations

from collections.abc import Iterable

from lifeline.repository.errors import DamagedData
from lifeline.repository.index import IdSet, Index


def add_live_chunks(point_id: str, entries: Iterable[dict], index: Index, live: IdSet, refused) -> None:
    """Add each chunk a kept point's tree names to ``live``. A chunk no index names stops the prune
    (its pack would be taken for garbage), as does a tree that cannot be read: ``refused(message)``
    is the error raised, its message saying that nothing was deleted."""
    try:
        for e in entries:
            for c in e.get("chunks", ()):
                cid = bytes.fromhex(c)
                if cid not in index:
                    raise refused(f"prune stopped: point {point_id} file {e['path']!r} references chunk {c} "
                                  "which no index names; run `lifeline agent check`; nothing was deleted")
                live.add(cid)
    except DamagedData as exc:  # (a tree is decoded as it is read)
        raise refused(f"prune stopped: point {point_id} cannot be read ({exc}); nothing was deleted") from None
