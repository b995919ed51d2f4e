"""The emulator picks the reaction for a request without re-reading its request log (kmock's own
dispatch filtered the whole log per request: quadratic over a test or a long demo), and answers
exactly as before: user reactions first, newest first, the API semantics as the fallback."""
from __future__ import annotations

import aiohttp

from lifeline.devstack.emulator import make_emulator, serve


class CountingLog(list):
    """A request log that counts how often something reads it through."""

    reads = 0

    def __iter__(self):
        CountingLog.reads += 1
        return super().__iter__()


async def test_dispatch_never_walks_the_request_log_and_keeps_kmocks_answers():
    emulator = make_emulator()
    emulator._requests = CountingLog()
    emulator["get", "/api/v1/namespaces/default/configmaps/broken"] << 503
    async with serve(emulator) as url, aiohttp.ClientSession() as http:
        for i in range(200):
            body = {"metadata": {"name": f"cm-{i}"}, "data": {"i": str(i)}}
            async with http.post(f"{url}/api/v1/namespaces/default/configmaps", json=body) as r:
                assert r.status == 201
        CountingLog.reads = 0
        async with http.get(f"{url}/api/v1/namespaces/default/configmaps/cm-7") as r:
            assert r.status == 200 and (await r.json())["data"] == {"i": "7"}
        async with http.get(f"{url}/api/v1/namespaces/default/configmaps/broken") as r:
            assert r.status == 503, "a user reaction still comes before the API semantics"
        async with http.get(f"{url}/api/v1/namespaces/default/configmaps/missing") as r:
            assert r.status == 404
        assert CountingLog.reads == 0, "serving a request read the whole request log"
    assert len(emulator._requests) == 203 and emulator.count_writes("configmaps") == 200
