"""DingTalk's signed robots (加签): the signature of a request, and where the secret comes from."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse

import pytest

from lifeline.planning.notices import TargetError, dingtalk_sign, dingtalk_signed_url, load_targets, secret_env

SECRET = "SECthis-is-a-test-secret"
STAMP = 1700000000000  # ms since the epoch
# computed apart from Lifeline: printf '1700000000000\nSEC...' | openssl dgst -sha256 -hmac 'SEC...' -binary | base64
KNOWN = "IRZT287QybIa2F/xrEkTcyuBS3Hp0ycAceupV5IhA5s="


def test_the_signature_is_dingtalks_hmac_sha256_of_the_timestamp_and_the_secret():
    by_hand = base64.b64encode(hmac.new(SECRET.encode(), f"{STAMP}\n{SECRET}".encode(), hashlib.sha256).digest())
    assert dingtalk_sign(SECRET, STAMP) == by_hand.decode() == KNOWN
    assert dingtalk_sign(SECRET, STAMP + 1) != KNOWN  # a fresh timestamp, a fresh signature


def test_the_signed_url_carries_the_timestamp_and_the_url_encoded_signature():
    url = dingtalk_signed_url("https://oapi.dingtalk.com/robot/send?access_token=t", SECRET, STAMP)
    assert url == ("https://oapi.dingtalk.com/robot/send?access_token=t&timestamp=1700000000000"
                   "&sign=IRZT287QybIa2F%2FxrEkTcyuBS3Hp0ycAceupV5IhA5s%3D")
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(url).query) == {
        "access_token": ["t"], "timestamp": [str(STAMP)], "sign": [KNOWN]}
    assert dingtalk_signed_url("http://127.0.0.1:1/robot", SECRET, STAMP).startswith(
        "http://127.0.0.1:1/robot?timestamp=1700000000000&sign=")


def test_a_targets_secret_comes_from_its_variable_and_is_never_shown():
    text = json.dumps([{"name": "oncall-ding", "url": "https://oapi.dingtalk.com/robot/send?access_token=t",
                        "format": "dingtalk", "secret": {"name": "dingtalk-robot", "key": "secret"}}])
    assert secret_env("oncall-ding") == "LIFELINE_NOTIFICATION_SECRET_ONCALL_DING"
    [target] = load_targets(text, {"LIFELINE_NOTIFICATION_SECRET_ONCALL_DING": SECRET + "\n"}).values()
    assert target.secret == SECRET and SECRET not in repr(target)
    with pytest.raises(TargetError, match="LIFELINE_NOTIFICATION_SECRET_ONCALL_DING is not set .*'dingtalk-robot'"):
        load_targets(text, {})


@pytest.mark.parametrize("target, says", [
    ({"format": "wecom"}, "for the dingtalk format only .WeCom robots have no signing"),
    ({"format": "generic"}, "for the dingtalk format only"),
    ({"format": "dingtalk", "secret": "SECinline"}, r"\{name, key\} of a Secret"),
    ({"format": "dingtalk", "secret": {"name": "s"}}, r"\{name, key\} of a Secret"),
])
def test_a_secret_only_a_dingtalk_target_can_use_and_only_by_reference_is_refused(target, says):
    item = {"name": "w", "url": "https://x", "secret": {"name": "s", "key": "k"}, **target}
    with pytest.raises(TargetError, match=says):
        load_targets(json.dumps([item]), {secret_env("w"): SECRET})
