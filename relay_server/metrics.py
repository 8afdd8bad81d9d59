"""Prometheus metrics of one relay, in a registry of its own (no process-wide globals)."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from relay_server.core import CallRecord, LogEvent, RelayCore
from relay_server.store import DurableCallLog

RING_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120)
DURATION_BUCKETS = (30, 60, 120, 300, 600, 900, 1200, 1800, 3600)


class RelayMetrics:
    """Counts what the core reports; gauges are read from the core at scrape time."""

    def __init__(self, core: RelayCore, calllog: DurableCallLog | None = None) -> None:
        self.core = core
        self.calllog = calllog
        self.registry = CollectorRegistry(auto_describe=True)
        self.terminals = Gauge(
            "relay_terminals_connected",
            "Terminals connected now, by role and department",
            ["role", "department"],
            registry=self.registry,
        )
        self.calls_now = Gauge(
            "relay_calls_in_progress", "Calls now, by state", ["state"], registry=self.registry
        )
        self.calls = Counter(
            "relay_calls_total",
            "Finished calls by department and outcome",
            ["department", "outcome"],
            registry=self.registry,
        )
        self.ring = Histogram(
            "relay_ring_seconds",
            "Time from call to answer",
            ["department"],
            buckets=RING_BUCKETS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "relay_call_duration_seconds",
            "Time from answer to end",
            ["department"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "relay_errors_total", "Error replies sent, by code", ["code"], registry=self.registry
        )
        self.messages = Counter(
            "relay_messages_total",
            "Messages received from terminals, by type",
            ["type"],
            registry=self.registry,
        )
        self.tasks = Gauge(
            "relay_tasks",
            "asyncio tasks in the relay process (a leak shows as growth)",
            registry=self.registry,
        )
        self.refused_connections = Counter(
            "relay_connections_refused_total",
            "Websocket connections refused by the connection caps",
            registry=self.registry,
        )
        self.calllog_ok = Gauge(
            "relay_calllog_ok",
            "1 while the call log is written normally, 0 while degraded",
            registry=self.registry,
        )
        self.calllog_pending = Gauge(
            "relay_calllog_pending_records",
            "Call-log records kept in memory until the file can be written",
            registry=self.registry,
        )
        self.calllog_errors = Gauge(
            "relay_calllog_write_errors", "Failed call-log opens and writes so far", registry=self.registry
        )
        self.calllog_dropped = Gauge(
            "relay_calllog_dropped_records",
            "Call-log records dropped because too many were waiting",
            registry=self.registry,
        )

    def on_record(self, r: CallRecord) -> None:
        if r.ended_at is None:
            return  # a call still in progress (recorded at its start and its answer)
        self.calls.labels(r.department, r.outcome).inc()
        if r.answered_at is not None:
            self.ring.labels(r.department).observe(r.answered_at - r.created_at)
            self.duration.labels(r.department).observe(r.ended_at - r.answered_at)

    def on_event(self, e: LogEvent) -> None:
        pass

    def on_error(self, code: str) -> None:
        self.errors.labels(code).inc()

    def on_refused_connection(self) -> None:
        self.refused_connections.inc()

    def on_message(self, kind: str) -> None:
        self.messages.labels(kind).inc()

    def render(self) -> bytes:
        self.terminals.clear()
        cfg = self.core.config
        for dept in cfg.departments:
            for role in ("counter", "office", "lamp"):
                self.terminals.labels(role, dept).set(self.core.online_in(role, dept))
        stats = self.core.stats()
        self.calls_now.labels("ringing").set(stats["calls_ringing"])
        self.calls_now.labels("active").set(stats["calls_active"])
        try:
            self.tasks.set(len(asyncio.all_tasks()))
        except RuntimeError:  # rendered outside the event loop (tests)
            pass
        if self.calllog is not None:
            status = self.calllog.status()
            self.calllog_ok.set(1 if status["state"] == "ok" else 0)
            self.calllog_pending.set(status["pending"])
            self.calllog_errors.set(status["write_errors"])
            self.calllog_dropped.set(status["dropped"])
        return generate_latest(self.registry)
