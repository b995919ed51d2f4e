"""Run the operator: kopf with Lifeline's handlers, probes, metrics, logs and scope.

:func:`run` is what ``lifeline operator`` calls and what tests start inside
their own event loop, so the two never drift apart.
"""
from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field

import kopf

from lifeline import __version__, webhooks
from lifeline.clock import Clock, SystemClock
from lifeline.controllers import readiness
from lifeline.kube import Kube
from lifeline.observability import audit
from lifeline.observability.audit_follower import AuditFollower
from lifeline.observability.callers import KubeCallers
from lifeline.observability.health import HealthServer
from lifeline.observability.metrics import OperatorMetrics
from lifeline.observability.notifier import Notifier
from lifeline.observability.report import operator_report
from lifeline.planning import approval_policy
from lifeline.planning.notices import SECRET_ENV_PREFIX, load_targets
from lifeline.webhooks import server

log = logging.getLogger(__name__)

# Objects per page when kopf lists a kind before watching it.
LIST_PAGE = 500


@dataclass
class Options:
    namespaces: list[str] = field(default_factory=list)  # empty: every namespace
    kubeconfig: str | None = None
    context: str | None = None
    health_host: str = "0.0.0.0"
    health_port: int = 8080
    # Who may read /metrics and /report: "kubernetes" (a bearer token the API server knows, allowed to get
    # the path) or "none" (loopback only).
    metrics_auth: str = field(default_factory=lambda: os.environ.get("LIFELINE_METRICS_AUTH") or "kubernetes")
    peering: str | None = None  # kopf peering name; None runs standalone
    priority: int = 0
    # Image of the backup Jobs' agent container (the same image as the operator's by default).
    agent_image: str = field(default_factory=lambda: os.environ.get("LIFELINE_AGENT_IMAGE") or _default_agent_image())
    # How often each BackupPolicy's RPO is re-evaluated (seconds), and how long a looked-up
    # PVC/Secret fact is trusted before it is read again.
    rpo_check_interval: float = field(
        default_factory=lambda: float(os.environ.get("LIFELINE_RPO_CHECK_INTERVAL") or 10))
    facts_ttl: float = field(default_factory=lambda: float(os.environ.get("LIFELINE_FACTS_TTL") or 300))
    # The hash-chained audit log kept with the backups (file:///path or s3://bucket/prefix); None: log lines only.
    audit_url: str | None = field(default_factory=lambda: os.environ.get("LIFELINE_AUDIT_URL") or None)
    # Admission webhooks (lifeline.webhooks): HTTPS port (0: off), tls.crt/tls.key directory (None: a
    # self-signed dev certificate), and the host name clients reach it by (the certificate's SAN).
    webhook_port: int = field(default_factory=lambda: int(os.environ.get("LIFELINE_WEBHOOK_PORT") or 0))
    webhook_cert_dir: str | None = field(default_factory=lambda: os.environ.get("LIFELINE_WEBHOOK_CERT_DIR") or None)
    webhook_host: str | None = field(default_factory=lambda: os.environ.get("LIFELINE_WEBHOOK_HOST") or None)
    webhook_addr: str = field(default_factory=lambda: os.environ.get("LIFELINE_WEBHOOK_ADDR") or "0.0.0.0")
    # The admin's approval policies (JSON, lifeline.planning.approval_policy); None: two distinct approvers.
    approval_policies: str | None = field(default_factory=lambda: os.environ.get("LIFELINE_APPROVAL_POLICIES") or None)
    # The admin's notification targets (JSON, lifeline.planning.notices); objects name them in spec.notify.
    notification_targets: str | None = field(
        default_factory=lambda: os.environ.get("LIFELINE_NOTIFICATION_TARGETS") or None)
    # Their signing secrets (LIFELINE_NOTIFICATION_SECRET_<TARGET>, set by the chart from Secrets); never shown.
    notification_secrets: dict[str, str] = field(repr=False, default_factory=lambda: {
        k: v for k, v in os.environ.items() if k.startswith(SECRET_ENV_PREFIX)})
    # The CA of the API server's client certificate towards webhooks: then no other caller gets through
    # the TLS handshake (None: any caller; refusals are then logged, not audited).
    webhook_client_ca: str | None = field(default_factory=lambda: os.environ.get("LIFELINE_WEBHOOK_CLIENT_CA") or None)


def _default_agent_image() -> str:
    return f"ghcr.io/lifeline-dr/lifeline:{__version__}"


@dataclass
class Context:
    """What handlers need, handed to them instead of read from globals."""

    kube: Kube
    clock: Clock
    metrics: OperatorMetrics
    options: Options
    health_port: int | None = None  # known once the health server listens
    notifier: Notifier | None = None  # notices to people (spec.notify), sent in the background
    approval_policies: tuple = ()  # the admin's (lifeline.planning.approval_policy), read once from options


# Controllers that own a kind's whole status (they fold readiness into their own plan).
# Each module has OWNS (kind names) and register(registry, ctx). Add a line to add one.
CONTROLLERS: tuple[str, ...] = ("lifeline.controllers.failover", "lifeline.controllers.backuppolicy",
                               "lifeline.controllers.shred", "lifeline.controllers.restoredrill",
                               "lifeline.controllers.restore")


def build_registry(ctx: Context) -> kopf.OperatorRegistry:
    """A fresh registry with every controller's handlers bound to ``ctx``.

    One writer per kind's status: a kind owned by a dedicated controller gets no
    generic readiness handler, so two handlers never race over ``conditions``.
    """
    import importlib

    registry = kopf.OperatorRegistry()
    owned: set[str] = set()
    for name in CONTROLLERS:
        module = importlib.import_module(name)
        module.register(registry, ctx)
        owned |= set(module.OWNS)

    @kopf.on.login(registry=registry)
    def login(**_):
        # kopf watches with the very credentials kube.py writes with: one source of truth.
        return kopf.ConnectionInfo(**ctx.kube.credentials())

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_):
        configure_settings(settings, ctx.options)

    readiness.register(registry, ctx, skip=owned)
    if ctx.options.webhook_port:  # kopf refuses admission handlers without a server
        webhooks.register(registry, ctx)
    return registry


def configure_settings(settings: kopf.OperatorSettings, options: Options) -> None:
    # Events are posted by Lifeline itself (kube.emit_event), on state changes only;
    # kopf's per-log-line Events would write on every resync.
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    # kopf lists each kind before watching it; in one response that is the whole list as bytes, as
    # text and parsed at once (3,000 CronJobs: ~130 MiB for a moment). In pages it is one page.
    settings.watching.chunk_size = LIST_PAGE
    # Only the kinds we serve: no cluster-wide CRD discovery needing extra RBAC.
    settings.scanning.disabled = True
    if options.webhook_port:
        settings.admission.server = server(options)
    if options.peering:
        settings.peering.name = options.peering
        settings.peering.mandatory = True
        settings.peering.priority = options.priority
    else:
        settings.peering.standalone = True


def make_context(options: Options, *, clock: Clock | None = None, kube: Kube | None = None) -> Context:
    """Connect to the API and gather what the handlers share."""
    kube = kube or Kube.connect(options.kubeconfig, options.context)
    metrics = OperatorMetrics()
    clock = clock or SystemClock()
    return Context(kube=kube, clock=clock, metrics=metrics, options=options,
                   notifier=Notifier(load_targets(options.notification_targets, options.notification_secrets),
                                     metrics, clock=clock),
                   approval_policies=approval_policy.load(options.approval_policies))


async def run(ctx: Context, *, stop=None, ready=None) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT when run from the CLI's main thread).

    ``stop`` and ``ready`` may be asyncio or threading events (or futures), as kopf takes them.
    """
    options = ctx.options
    ready = ready or asyncio.Event()
    audit_sink = audit.use_store(options.audit_url) if options.audit_url else None
    count_audited = ctx.metrics.count_audited  # one bound method: sinks are removed by identity
    audit.add_sink(count_audited)
    following = None
    if audit_sink is not None:  # what the CLI writes to the same log (key rotation, a key holder's shred)
        follower = AuditFollower(audit_sink.store, ctx.metrics, own_writer=audit_sink.store.writer)
        following = asyncio.get_running_loop().create_task(follower.run())
    callers = KubeCallers(ctx.kube) if options.metrics_auth == "kubernetes" else None
    health = HealthServer(ctx.metrics.registry, ready, options.health_host, options.health_port,
                          report=lambda: operator_report(ctx), callers=callers)
    await health.start()
    ctx.health_port = health.port
    log.info("health and metrics on %s:%s (/healthz /readyz /metrics; /metrics and /report: %s)", options.health_host,
             health.port, "callers the API server authorizes" if callers else "no authentication, loopback only")
    try:
        await kopf.operator(
            registry=build_registry(ctx),
            clusterwide=not options.namespaces,
            namespaces=options.namespaces,
            standalone=options.peering is None,
            peering_name=options.peering,
            priority=options.priority,
            stop_flag=stop,
            ready_flag=ready,
        )
    finally:
        audit.remove_sink(count_audited)
        if following is not None:
            following.cancel()
        if ctx.notifier is not None:  # what is in flight gets a few seconds to go out
            await ctx.notifier.close(grace=5)
        await health.stop()
        if audit_sink is not None:
            audit_sink.flush()
            audit.remove_sink(audit_sink)
        ctx.kube.close()
