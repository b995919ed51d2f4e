"""values.schema.json refuses bad values with a message that names the value and the rule."""
from __future__ import annotations

import pytest

from .render import helm_template, sets

BAD = [
    ("replicaCount=-1", "/replicaCount", "minimum"),
    ("watchNamespaces={pacs-*}", "/watchNamespaces/0", "does not match pattern"),
    ("webhook.certificates=vault", "/webhook/certificates", "value must be one of 'auto', 'certManager', 'helm'"),
    ("webhook.port=443", "/webhook/port", "minimum"),
    ("logFormat=xml", "/logFormat", "value must be one of"),
    ("image.pullPolicy=Sometimes", "/image/pullPolicy", "value must be one of"),
    ("prometheusRule.failoverStuckAfter=soon", "/prometheusRule/failoverStuckAfter", "does not match pattern"),
    ("resources.requests.memory=lots", "/resources/requests/memory", "does not match pattern"),
    ("audit.url=ftp://x", "/audit/url", "does not match pattern"),
    ("replicaCoutn=3", "", "additional properties 'replicaCoutn' not allowed"),
]


@pytest.mark.parametrize("value,path,message", BAD, ids=[b[0] for b in BAD])
def test_bad_values_are_refused_by_helm(helm_bin, value, path, message):
    result = helm_template(helm_bin, *sets(value))
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert f"at '{path}'" in result.stderr and message in result.stderr, result.stderr


def test_replicas_without_peering_are_refused_with_the_reason(helm_bin):
    result = helm_template(helm_bin, *sets("peering=", "replicaCount=2"))
    assert result.returncode != 0
    assert "replicaCount > 1 needs peering" in result.stderr


def test_good_values_pass(helm_bin):
    result = helm_template(helm_bin, *sets("watchNamespaces={his,pacs-prod}", "webhook.certificates=helm",
                                           "resources.requests.cpu=0.5", "audit.url=s3://audit/lifeline",
                                           "dashboard.annotations.grafana_folder=DR"))
    assert result.returncode == 0, result.stderr
