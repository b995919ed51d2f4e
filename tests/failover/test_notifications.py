"""Switchover notices: the admin's targets, the formats, retries, signed DingTalk robots, and a real
failover telling a local receiver in the generic and DingTalk formats without waiting for it."""
from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp import web

from lifeline.clock import FrozenClock
from lifeline.devstack.notice_receiver import NoticeReceiver
from lifeline.observability.metrics import OperatorMetrics
from lifeline.observability.notifier import Notifier
from lifeline.planning.notices import Notice, TargetError, failover_notice, load_targets, render, secret_env

from .conftest import operator, phase, tick


class Receiver:
    """An HTTP server on loopback that keeps what is posted to it, per path; ``/held`` answers only once
    released, ``/flaky`` fails the first two tries, and ``/refuses`` answers as a robot refusing does."""

    def __init__(self):
        self.got: dict[str, list[dict]] = {}
        self.release = asyncio.Event()
        self.tries = 0
        self.arrived = 0  # notices that reached /held (answered only once released)
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        if path == "held":
            self.arrived += 1
            await self.release.wait()
        if path == "refuses":  # as DingTalk and WeCom refuse: HTTP 200 and a non-zero errcode
            return web.json_response({"errcode": 310000, "errmsg": "sign not match"})
        if path == "flaky":
            self.tries += 1
            if self.tries <= 2:
                return web.Response(status=503)
        self.got.setdefault(path, []).append(json.loads(await request.read()))
        return web.Response(text="ok")

    async def __aenter__(self) -> "Receiver":
        app = web.Application()
        app.router.add_post("/{path}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc) -> None:
        self.release.set()
        await self.runner.cleanup()


NOTICE = Notice("FailoverComplete", "FailoverPlan", "icu", "monitoring", "FailoverPlan icu/monitoring: done",
                "site-b serves", "critical", "2026-12-02T03:00:00Z")


@pytest.mark.parametrize("targets, says", [
    ([{"name": "w", "url": "http://notices.example/x"}], "https only"),
    ([{"name": "w", "url": "ftp://x"}], "an https:// address"),
    ([{"name": "w", "url": "https://x", "format": "sms"}], "one of generic, dingtalk, wecom"),
    ([{"name": "w", "url": "https://x", "format": "dingtalk", "template": {}}], "for the generic format only"),
    ([{"name": "w", "url": "https://x"}, {"name": "w", "url": "https://y"}], "named twice"),
    ([{"name": "w", "url": "https://x", "headers": {}}], "unknown field"),
])
def test_targets_the_operator_cannot_use_are_refused_with_the_field(targets, says):
    with pytest.raises(TargetError, match=says):
        load_targets(json.dumps(targets))


def test_each_format_says_what_happened_with_alertmanager_labels():
    targets = load_targets(json.dumps([
        {"name": "plain", "url": "https://n.example/x", "labels": {"team": "icu"}},
        {"name": "mine", "url": "https://n.example/y", "template": {"text": "{summary} ({severity}) {unknown}",
                                                                     "at": ["{time}"]}},
        {"name": "ding", "url": "https://oapi.dingtalk.com/robot/send?access_token=t", "format": "dingtalk"},
        {"name": "wecom", "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k", "format": "wecom"}]))
    plain = json.loads(render(targets["plain"], NOTICE))
    assert plain["event"] == "FailoverComplete" and plain["object"] == {
        "kind": "FailoverPlan", "namespace": "icu", "name": "monitoring"}
    assert plain["labels"] == {"alertname": "LifelineFailoverComplete", "severity": "critical", "kind": "FailoverPlan",
                               "namespace": "icu", "name": "monitoring", "team": "icu"}
    assert json.loads(render(targets["mine"], NOTICE)) == {
        "text": "FailoverPlan icu/monitoring: done (critical) {unknown}", "at": ["2026-12-02T03:00:00Z"]}
    ding = json.loads(render(targets["ding"], NOTICE))
    assert ding["msgtype"] == "markdown" and ding["markdown"]["title"] == NOTICE.summary
    assert "site-b serves" in ding["markdown"]["text"]
    assert json.loads(render(targets["wecom"], NOTICE))["markdown"]["content"].startswith(f"**{NOTICE.summary}**")
    assert failover_notice("Fenced", "icu", "m", "x", "t") is None  # people hear of transitions, not each step


async def test_a_failing_target_is_retried_then_given_up_and_an_unknown_one_is_counted():
    metrics = OperatorMetrics()
    async with Receiver() as receiver:
        targets = load_targets(json.dumps([{"name": "flaky", "url": f"{receiver.url}/flaky"},
                                           {"name": "gone", "url": "http://127.0.0.1:9/none"},
                                           {"name": "refuses", "url": f"{receiver.url}/refuses", "format": "wecom"}]))
        notifier = Notifier(targets, metrics, delays=(0.01, 0.01), timeout=2)
        notifier.send(["flaky", "gone", "refuses", "nobody"], NOTICE)
        await notifier.drain()
        await notifier.close(grace=0)  # and its connection pool
    assert receiver.tries == 3 and len(receiver.got["flaky"]) == 1
    sample = metrics.registry.get_sample_value
    assert sample("lifeline_notifications_total", {"target": "flaky", "outcome": "sent"}) == 1
    assert sample("lifeline_notifications_total", {"target": "gone", "outcome": "failed"}) == 1
    assert sample("lifeline_notifications_total", {"target": "refuses", "outcome": "failed"}) == 1  # 200, errcode
    assert sample("lifeline_notifications_total", {"target": "nobody", "outcome": "unknown-target"}) == 1


class Ticking:
    """Real now, a second later each time it is read: each attempt signs with a timestamp of its own."""

    def __init__(self, start: datetime):
        self.moment = start

    def now(self) -> datetime:
        self.moment += timedelta(seconds=1)
        return self.moment


async def test_a_signed_dingtalk_robot_gets_each_attempt_signed_and_a_wrong_secret_is_not_delivered(tmp_path, caplog):
    right, wrong = "SECthe-robots-own-signing-secret", "SECanother-robots-signing-secret"
    # the receiver checks every path's requests as a robot with signing does, with the robot's secret
    receiver = await NoticeReceiver(tmp_path / "notices.jsonl",
                                    secrets={p: right for p in ("signed", "wrong", "unsigned")}).start()
    metrics = OperatorMetrics()
    ref = {"name": "dingtalk-robot", "key": "secret"}
    try:
        targets = load_targets(json.dumps([
            {"name": "signed", "url": f"{receiver.url}/signed?access_token=t", "format": "dingtalk", "secret": ref},
            {"name": "wrong", "url": f"{receiver.url}/wrong?access_token=t", "format": "dingtalk", "secret": ref},
            {"name": "unsigned", "url": f"{receiver.url}/unsigned", "format": "dingtalk"}]),
            {secret_env("signed"): right, secret_env("wrong"): wrong})
        notifier = Notifier(targets, metrics, delays=(0.01, 0.01, 0.01), timeout=2,
                            clock=Ticking(datetime.now(timezone.utc)))
        late = Notifier(targets, metrics, delays=(), clock=FrozenClock(datetime.now(timezone.utc) - timedelta(hours=2)))
        with caplog.at_level(logging.INFO, logger="lifeline.observability.notifier"):
            notifier.send(["signed", "wrong", "unsigned"], NOTICE)
            late.send(["signed"], NOTICE)  # DingTalk refuses a timestamp more than an hour off
            for each in (notifier, late):
                await each.drain()
                await each.close(grace=0)
    finally:
        await receiver.stop()
    assert receiver.titles("signed") == [NOTICE.summary]
    assert sorted((path, why) for path, why, _ in receiver.refused if path != "wrong") == [
        ("signed", "invalid timestamp")] + [("unsigned", "sign not match")] * 4
    stamps = [stamp for path, why, stamp in receiver.refused if path == "wrong" and why == "sign not match"]
    assert len(stamps) == len(set(stamps)) == 4, "tried again, each time signed afresh"
    sample = metrics.registry.get_sample_value
    assert sample("lifeline_notifications_total", {"target": "signed", "outcome": "sent"}) == 1
    assert sample("lifeline_notifications_total", {"target": "signed", "outcome": "failed"}) == 1  # the late one
    assert sample("lifeline_notifications_total", {"target": "wrong", "outcome": "failed"}) == 1
    assert "not delivered to wrong after 4 attempts: HTTP 403, errcode 310000: sign not match" in caplog.text
    for hidden in (right, wrong, "sign=", "timestamp="):
        assert hidden not in caplog.text


def test_the_operator_signs_with_the_secret_the_chart_puts_in_its_environment_at_its_clock(monkeypatch):
    from lifeline.runtime import Options, make_context

    monkeypatch.setenv("LIFELINE_NOTIFICATION_TARGETS", json.dumps([
        {"name": "oncall-ding", "url": "https://oapi.dingtalk.com/robot/send?access_token=t", "format": "dingtalk",
         "secret": {"name": "dingtalk-robot", "key": "secret"}}]))
    monkeypatch.setenv("LIFELINE_NOTIFICATION_SECRET_ONCALL_DING", "SECfrom-the-secret")
    clock = FrozenClock(datetime(2026, 12, 2, 3, 0, tzinfo=timezone.utc))
    ctx = make_context(Options(), clock=clock, kube=object())
    assert ctx.notifier.targets["oncall-ding"].secret == "SECfrom-the-secret" and ctx.notifier.clock is clock
    assert "SECfrom-the-secret" not in repr(ctx.options) + repr(ctx.notifier.targets)


async def test_a_failover_tells_the_wards_and_the_on_call_chat_without_waiting_for_them(world):
    async with Receiver() as receiver:
        targets = json.dumps([{"name": "ward-screens", "url": f"{receiver.url}/generic"},
                              {"name": "oncall", "url": f"{receiver.url}/dingtalk", "format": "dingtalk"},
                              {"name": "slow-pager", "url": f"{receiver.url}/held"}])
        async with operator(world, notification_targets=targets) as ctx:
            await world.create(world.plan(notify=["ward-screens", "oncall", "slow-pager"]))
            await phase(world, "Monitoring")
            world.node_down()
            await tick(world, ctx, times=7)  # past the 60 s breach window
            await phase(world, "FailedOver")
            await world.kube.wait_for(lambda: receiver.arrived >= 1, timeout=30)  # the pager got a notice ...
            assert "held" not in receiver.got, "... and the failover completed while it was still unanswered"

            def told(path: str) -> list[str]:
                return [n.get("event") or n["markdown"]["title"] for n in receiver.got.get(path, [])]
            await world.kube.wait_for(lambda: len(told("generic")) == 2 and len(told("dingtalk")) == 2, timeout=30)
            assert told("generic") == ["FailingOver", "FailoverComplete"]
            assert told("dingtalk") == [f"FailoverPlan {world.ns}/icu: a failover to the standby site started",
                                        f"FailoverPlan {world.ns}/icu: the failover is complete: the standby site serves"]
            generic = receiver.got["generic"][-1]
            assert generic["object"]["namespace"] == world.ns and generic["labels"]["alertname"] == \
                "LifelineFailoverComplete"
            receiver.release.set()
            await world.kube.wait_for(lambda: len(receiver.got.get("held", [])) == 2, timeout=30)
