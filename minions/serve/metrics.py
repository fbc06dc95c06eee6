"""Prometheus metrics, one registry per server instance (no process-global collectors, so two
servers in one process — tests, benchmarks — never share counts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from minions.serve.deps import require

require("prometheus_client", "prometheus-client")

from prometheus_client import (  # noqa: E402  (after the dependency check)
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)


class Metrics:
    def __init__(self, *, queue_depth: Callable[[], float], running: Callable[[], float]):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("minions_requests", "Requests answered, by endpoint and status code.",
                                ["endpoint", "status"], registry=r)
        self.errors = Counter("minions_errors", "Requests that ended in an error, by error type.",
                              ["type"], registry=r)
        self.runs = Counter("minions_runs", "Protocol runs, by protocol and outcome "
                            "(answered, failed, timeout, cancelled).", ["protocol", "outcome"], registry=r)
        self.remote_usd = Counter("minions_remote_cost_usd", "Dollars spent on the remote model.", registry=r)
        self.local_tokens = Counter("minions_local_tokens", "Tokens the local model read and wrote.",
                                    ["kind"], registry=r)
        self.remote_tokens = Counter("minions_remote_tokens", "Tokens sent to and received from the remote.",
                                     ["kind"], registry=r)
        # What left this machine (issue 22), counted per request as it leaves: a run that times out
        # or is cancelled still counts what it had sent.
        self.egress_requests = Counter("minions_egress_requests", "Requests sent to remote models, by host.",
                                       ["host"], registry=r)
        self.egress_bytes = Counter("minions_egress_bytes", "Bytes of request bodies sent to remote models, by host.",
                                    ["host"], registry=r)
        self.egress_verbatim = Counter("minions_egress_verbatim_chars", "Characters of the documents that left "
                                       "verbatim (spans of 40+ characters), summed over finished runs.", registry=r)
        self.latency = Histogram("minions_request_seconds", "Time from request to last byte, by endpoint.",
                                 ["endpoint"], registry=r,
                                 buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800))
        Gauge("minions_queue_depth", "Runs waiting for a free slot.", registry=r).set_function(queue_depth)
        Gauge("minions_runs_active", "Runs in progress.", registry=r).set_function(running)

    # An egress sink (`minions.egress.record.capture`): the service opens one around each run.
    def add(self, record: Any) -> None:
        self.egress_requests.labels(record.host).inc()
        self.egress_bytes.labels(record.host).inc(record.bytes)

    def end_run(self, run_id: str, summary: Any) -> None:
        self.egress_verbatim.inc(summary.verbatim_chars)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
