"""Prometheus metrics of one server, in a registry of its own (no process-global state).

>>> m = Metrics()
>>> m.requests.labels(endpoint="/v2/health/ready", status="200").inc()
>>> b"lmspec_requests_total" in m.render()
True

With several worker processes (``server.workers``), each worker records into prometheus_client's
multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, set by the supervisor before the workers start)
and ``Metrics(multiprocess=True).render()`` sums the files of all workers, so a scrape reads the
same totals whichever worker answers it. Gauges say how they combine: queue depth and requests in
flight add up over the live workers; ``lmspec_ready`` is the smallest value among them (1 only
when every live worker is ready).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Latencies from sub-millisecond forward passes to generations of many seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    def __init__(self, multiprocess: bool = False) -> None:
        self.multiprocess = multiprocess
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("lmspec_requests", "HTTP requests by endpoint and status code.",
                                ["endpoint", "status"], registry=r)
        self.request_latency = Histogram(
            "lmspec_request_duration_seconds", "End-to-end request latency (streams: until the "
            "last byte).", ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_latency = Histogram(
            "lmspec_queue_duration_seconds", "Time a unit of work waited for its forward pass.",
            ["queue"], buckets=LATENCY_BUCKETS, registry=r)
        self.compute_latency = Histogram(
            "lmspec_compute_duration_seconds", "Duration of one batched forward pass.", ["queue"],
            buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("lmspec_batch_size", "Rows per forward pass.", ["queue"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("lmspec_queue_depth", "Units of work waiting for a forward pass.",
                                 ["queue"], registry=r, multiprocess_mode="livesum")
        self.in_flight = Gauge("lmspec_requests_in_flight",
                               "Requests being handled (streams until they end).", registry=r,
                               multiprocess_mode="livesum")
        self.time_to_first_token = Histogram(
            "lmspec_time_to_first_token_seconds", "Time from request to first generated token.",
            buckets=LATENCY_BUCKETS, registry=r)
        self.generated_tokens = Counter("lmspec_generated_tokens", "Tokens generated.", registry=r)
        self.inter_token_latency = Histogram(
            "lmspec_inter_token_latency_seconds", "Time between two tokens of one generation.",
            buckets=LATENCY_BUCKETS, registry=r)
        self.running_sequences = Gauge("lmspec_running_sequences",
                                       "Sequences the generation engine is generating.", registry=r,
                                       multiprocess_mode="livesum")
        self.waiting_sequences = Gauge("lmspec_waiting_sequences",
                                       "Sequences waiting for a place in the engine's batch.",
                                       registry=r, multiprocess_mode="livesum")
        self.tokens_per_second = Gauge("lmspec_generation_tokens_per_second",
                                       "Tokens the engine generated per second over its last 5 s.",
                                       registry=r, multiprocess_mode="livesum")
        self.ready = Gauge("lmspec_ready", "1 when the server is ready to serve.", registry=r,
                           multiprocess_mode="livemin")
        for queue in ("infer", "generate"):  # export every series from the start
            for family in (self.queue_latency, self.compute_latency, self.batch_size, self.queue_depth):
                family.labels(queue=queue)

    def render(self) -> bytes:
        registry = self.registry
        if self.multiprocess:
            from prometheus_client.multiprocess import MultiProcessCollector

            # A fresh registry per scrape: the collector reads every worker's files as they are now.
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        data: bytes = generate_latest(registry)
        return data
