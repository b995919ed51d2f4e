"""Pick the reaction that serves a request in constant time, not in the size of the request log.

kmock decides which reaction answers a request by asking each reaction's view "is this
request in you?", and a view answers by filtering the *whole* request log. Every request
then costs O(requests so far): a test or the long-running demo slows down quadratically
(1,000 BackupPolicies, about 10,000 requests, took hours).

Every view the emulator registers, and the user reactions tests add
(``emulator[...] << 500``), is a chain of plain filters over the emulator itself, and
for such a chain "is the request in the view" is "does it pass every filter". That is
decided here without touching the log; any other view (slices, groups, exclusions,
another root) falls back to kmock's own check, so the answers are kmock's answers.
"""
from __future__ import annotations

import aiohttp.web
from kmock._internal import dsl, rendering


def sees(view: dsl.View, root: dsl.Root, request: rendering.Request) -> bool:
    """Whether ``request`` (just logged by ``root``) is in ``view``: fast for filter chains."""
    found = _chain(view, root, request)
    return (request in view) if found is None else found


def _chain(view: dsl.View, root: dsl.Root, request: rendering.Request) -> bool | None:
    """True/False for a chain of filters and priorities over ``root``; None when not such a chain."""
    if view is root:
        return True
    if type(view) is dsl.Filter:
        inner = _chain(view._source, root, request)
        return None if inner is None else (inner and bool(view.criteria(request)))
    if type(view) is dsl.Priority:
        return _chain(view._source, root, request)
    return None


async def dispatch(root, request: rendering.Request) -> aiohttp.web.StreamResponse:
    """kmock's ``RawHandler._handle``: the highest-priority matching reaction answers, newest first."""
    payloads = list(root._payloads)
    depth = max((len(p.priorities) for p in payloads), default=0)

    def order(payload) -> tuple:  # highest first; shorter priorities padded with zeroes, as kmock does
        return tuple(-p for p in payload.priorities) + (0,) * (depth - len(payload.priorities))

    for payload in sorted(payloads, key=order):
        if payload._disabled.is_set() or not sees(payload._source, root, request):
            continue
        try:
            return await payload(request)
        except rendering.ReactionMismatchError:  # a mismatch or a depleted reaction
            payload._disabled.set()
        except NotImplementedError:  # matched, but nothing to answer with
            pass
    raise NotImplementedError("no reaction matches the request; add a fallback, e.g. `emulator.fallback << 404`")


__all__ = ["dispatch", "sees"]
