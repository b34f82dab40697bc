"""The web app's own Prometheus metrics (``/metrics`` of ``hub web``), in a registry of its own.

Labels are bounded: the route template (``/inbox/{receiver}/{code}``), never the raw path; the receiver
id; never a user name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class WebMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("hub_web_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=r)  # fmt: skip
        self.latency = Histogram(
            "hub_web_request_seconds", "Time to answer a request (live streams excluded)", ["route"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )  # fmt: skip
        self.sse_clients = Gauge("hub_web_sse_clients", "Live inbox streams open now", registry=r)
        self.items_pushed = Counter("hub_web_items_pushed", "Inbox items pushed to live streams, per receiver",
                                    ["receiver"], registry=r)  # fmt: skip
        self.login_failures = Counter("hub_web_login_failures", "Failed logins (wrong name or password, or throttled)",
                                      ["reason"], registry=r)  # fmt: skip
        self.logins = Counter("hub_web_logins", "Successful logins", registry=r)
        self.forbidden = Counter("hub_web_forbidden", "Requests refused because they were outside the user's scope",
                                 ["route"], registry=r)  # fmt: skip
        # The operators' health checks (every HUB_WEB__HEALTH_CHECK_S), for the alerting rules:
        self.audit_intact = Gauge("hub_audit_chain_intact", "1 when the audit trail's hash chains were intact at "
                                  "the last check, 0 when a break was found (hub audit verify names it)",
                                  registry=r)  # fmt: skip
        self.audit_records = Gauge("hub_audit_records_checked", "Audit records read by the last chain check",
                                   registry=r)  # fmt: skip
        self.under_replicated = Gauge("hub_under_replicated_partitions", "Partitions of the hub's topics with "
                                      "fewer in-sync replicas than replicas at the last check", registry=r)
        self.checked_at = Gauge("hub_health_checked_timestamp_seconds", "When a health check last completed",
                                ["check"], registry=r)  # fmt: skip
