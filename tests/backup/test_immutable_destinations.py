"""Immutable destinations and bandwidth limits at the API server's door (issue 18): the CRD's own rules
refuse what the operator's validation refuses, before any operator sees it."""
from __future__ import annotations

import urllib.error

import pytest

from .conftest import policy


async def test_the_api_server_refuses_immutable_off_s3_and_a_bandwidth_that_is_no_rate(kube):
    async with kube.operator():  # its webhooks answer; the schema's rules come first
        _refused_and_taken(kube)


def _refused_and_taken(kube) -> None:
    for dest, said in (
            ({"filesystem": {"claimName": "backup-local"}, "immutable": {"days": 30}},
             "immutable needs an s3 destination on a bucket with S3 Object Lock"),
            ({"filesystem": {"claimName": "backup-local"}, "bandwidth": {"upload": "50 Mbit"}},
             "spec.destinations[0].bandwidth.upload: Invalid value"),
            ({"s3": {"bucket": "pacs-dr", "credentialsSecret": "s3"}, "immutable": {"mode": "Forever", "days": 30}},
             "spec.destinations[0].immutable.mode: Unsupported value")):
        with pytest.raises(urllib.error.HTTPError) as refused:
            kube.create(policy("refused", destinations=[{"name": "dr", **dest}]))
        text = str(refused.value)
        assert refused.value.code == 422 and said in text, text
    kube.create(policy("locked", destinations=[
        {"name": "dr", "offSite": True, "s3": {"bucket": "pacs-dr", "credentialsSecret": "s3"},
         "immutable": {"mode": "Governance", "days": 1}, "bandwidth": {"upload": "1.5MiB/s", "download": "12MB"}}],
        objectives={"rpo": "1h", "requireImmutableOffSite": True}))
