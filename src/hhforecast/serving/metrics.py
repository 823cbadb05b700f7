"""Prometheus metrics of one app, kept in the app's own registry so apps never clash.

With several worker processes (`hhforecast serve --workers N`) a scrape reaches one worker
chosen by the kernel, so each worker's own counters would jump between workers' values and look
like resets. `run_server` then sets PROMETHEUS_MULTIPROC_DIR before the workers start:
prometheus_client keeps every worker's values in files there, and `/metrics` adds them up
(counters and histograms summed, gauges the maximum over live workers).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["METRIC_NAMES", "MULTIPROCESS_ENV", "MetricsMiddleware", "ServiceMetrics"]

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's own switch: set, every process writes its values to files there."""

METRIC_NAMES = (
    "hhforecast_http_requests_total",
    "hhforecast_http_request_duration_seconds",
    "hhforecast_predictions_total",
    "hhforecast_model_info",
    "hhforecast_model_reloads_total",
    "hhforecast_model_reload_failures_total",
    "hhforecast_model_reload_failing",
    "hhforecast_prediction_log_rows_written_total",
    "hhforecast_prediction_log_rows_dropped_total",
    "hhforecast_prediction_log_queue_depth",
)

# Latency buckets from 100 µs: the prediction path answers in well under a millisecond.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class ServiceMetrics:
    """The service's counters, histogram and gauges, in a private CollectorRegistry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "hhforecast_http_requests_total",
            "HTTP requests answered, by route, method and status code.",
            ["path", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "hhforecast_http_request_duration_seconds",
            "Time from request start to the end of the response, by route.",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "hhforecast_predictions_total",
            "Weeks predicted (a batch counts each row), by model version and variant.",
            ["version", "variant"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "hhforecast_model_info",
            "1 for the version and variant being served.",
            ["version", "variant"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.reloads = Counter(
            "hhforecast_model_reloads_total",
            "Successful swaps to a newly loaded production version.",
            registry=self.registry,
        )
        self.reload_failures = Counter(
            "hhforecast_model_reload_failures_total",
            "Attempts to load a production version that failed (the old one kept serving).",
            registry=self.registry,
        )
        self.reload_failing = Gauge(
            "hhforecast_model_reload_failing",
            "1 while the configured production version could not be loaded, else 0.",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.log_written = Counter(
            "hhforecast_prediction_log_rows_written",
            "Forecasts written to the prediction log.",
            registry=self.registry,
        )
        self.log_dropped = Counter(
            "hhforecast_prediction_log_rows_dropped",
            "Forecasts answered but not logged: the log's bounded queue was full.",
            registry=self.registry,
        )
        self.log_queue = Gauge(
            "hhforecast_prediction_log_queue_depth",
            "Forecasts answered and waiting to be written to the prediction log.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        # labels() takes a lock and builds a key on every call; the request path reuses children.
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._latency_children: dict[str, Any] = {}
        self._prediction_children: dict[tuple[str, str], Any] = {}
        self._served: tuple[str, str] | None = None
        self.before_render: Callable[[], None] | None = None
        """Brings values kept elsewhere (the prediction log's counts) up to date for a scrape."""

    def observe_request(self, path: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and record its latency."""
        key = (path, method, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(path, method, str(status))
        counter.inc()
        histogram = self._latency_children.get(path)
        if histogram is None:
            histogram = self._latency_children[path] = self.latency.labels(path)
        histogram.observe(seconds)

    def count_predictions(self, version: str, variant: str, rows: int) -> None:
        """Count predicted weeks for the version that answered."""
        key = (version, variant)
        counter = self._prediction_children.get(key)
        if counter is None:
            counter = self._prediction_children[key] = self.predictions.labels(version, variant)
        counter.inc(rows)

    def prediction_log_progress(self, written: int, dropped: int, queued: int) -> None:
        """What the prediction log's writer did since its last report, and what waits."""
        if written:
            self.log_written.inc(written)
        if dropped:
            self.log_dropped.inc(dropped)
        self.log_queue.set(queued)

    def serving(self, version: str, variant: str) -> None:
        """Mark `version` as the one being served."""
        if self._served is not None:
            # Zero first: with several workers the old value lives on in this worker's file,
            # which clear() does not touch.
            self.model_info.labels(*self._served).set(0)
        self.model_info.clear()
        self.model_info.labels(version, variant).set(1)
        self._served = (version, variant)

    def render(self) -> bytes:
        """The Prometheus text of this app, or of every worker added up when there are several."""
        if self.before_render is not None:
            self.before_render()
        directory = os.environ.get(MULTIPROCESS_ENV)
        if not directory:
            return bytes(generate_latest(self.registry))
        from prometheus_client.multiprocess import MultiProcessCollector

        workers = CollectorRegistry()
        MultiProcessCollector(workers, path=directory)
        return bytes(generate_latest(workers))


class MetricsMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware task overhead) timing every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, paths: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            # A known route's path, never an arbitrary URL, so scanners cannot grow the label set.
            path = scope["path"] if scope["path"] in self.paths else "unmatched"
            self.metrics.observe_request(path, scope["method"], status, time.perf_counter() - start)
