//! Prometheus metrics, one registry per running system (tests run several in one process).

use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::domain::{Micros, Published};

pub struct Metrics {
    pub registry: Registry,
    pub ws_connections: IntGauge,
    pub ws_connections_total: IntCounter,
    pub ws_slow_disconnects: IntCounterVec,
    pub events_ingested: IntCounterVec,
    pub events_rejected: IntCounterVec,
    pub events_processed: IntCounterVec,
    pub events_duplicate: IntCounter,
    pub late_trades: IntCounter,
    pub db_rows_pruned: IntCounterVec,
    pub stale_quotes: IntCounter,
    pub updates_published: IntCounter,
    /// Calculated batches whose updates have not gone out yet (the processor's pipeline).
    pub processor_batches_in_flight: IntGauge,
    /// Batches calculated while an earlier batch was still on its way downstream.
    pub processor_batches_overlapped: IntCounter,
    pub updates_conflated: IntCounterVec,
    pub updates_sent: IntCounterVec,
    pub updates_dropped: IntCounterVec,
    pub end_to_end_seconds: Histogram,
    /// `hop_latency_seconds{hop}`, one series per hop, each observed in the process where the
    /// hop ends; the label's children are looked up once here, not on every update.
    pub hop_ingest_to_processed: Histogram,
    pub hop_processed_to_cached: Histogram,
    pub hop_cached_to_written: Histogram,
    pub db_write_seconds: Histogram,
    pub db_rows_written: IntCounter,
    pub db_write_errors: IntCounter,
    pub actor_restarts: IntCounterVec,
    pub refusals: IntCounterVec,
    pub kafka_produced: IntCounterVec,
    pub kafka_consumed: IntCounterVec,
    pub kafka_errors: IntCounterVec,
    pub kafka_consumer_lag: IntGaugeVec,
    pub dead_letters: IntCounter,
    pub redis_used_memory_bytes: IntGauge,
    pub redis_reconnects: IntCounter,
    pub redis_errors: IntCounter,
}

/// Registers a metric just built; a bad definition or a name taken twice is a programming
/// error, so both panic naming the metric.
fn registered<M: Collector + Clone + 'static>(registry: &Registry, name: &str, metric: prometheus::Result<M>) -> M {
    let metric = metric.unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry.register(Box::new(metric.clone())).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    registered(registry, name, IntCounter::new(name, help))
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(registry, name, IntCounterVec::new(Opts::new(name, help), labels))
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    registered(registry, name, IntGauge::new(name, help))
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    registered(registry, name, IntGaugeVec::new(Opts::new(name, help), labels))
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    registered(registry, name, Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)))
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>, labels: &[&str]) -> HistogramVec {
    registered(registry, name, HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels))
}

/// Records a hop that ended at `end` and started at `start` (nothing when `start` is unknown,
/// 0: restored state, or a hop this update did not take).
pub fn observe_hop(hop: &Histogram, start: Micros, end: Micros) {
    if start > 0 {
        hop.observe((end - start).max(0) as f64 / 1e6);
    }
}

/// Latency buckets from 50 µs to 10 s.
fn latency_buckets() -> Vec<f64> {
    vec![0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
}

impl Metrics {
    /// The processed → cached hop of the updates the first cache takes at `cached` (an update
    /// an earlier cache stamped already is not counted again).
    pub fn observe_cached<'a>(&self, updates: impl IntoIterator<Item = &'a Published>, cached: Micros) {
        for update in updates.into_iter().filter(|u| u.hops.cached == 0) {
            observe_hop(&self.hop_processed_to_cached, update.hops.processed, cached);
        }
    }

    /// Builds the metric set. The names are fixed and distinct, so registration cannot fail;
    /// a failure would be a programming error caught by the first test.
    pub fn new() -> Self {
        let r = Registry::new_custom(Some("ttpulse".into()), None).unwrap_or_default();
        let ws_connections =
            IntGauge::new("ws_connections", "Open WebSocket sessions").unwrap_or_else(|e| panic!("{e}"));
        r.register(Box::new(ws_connections.clone())).unwrap_or_else(|e| panic!("{e}"));
        let hop_latency = histogram_vec(
            &r,
            "hop_latency_seconds",
            "Time of one hop of an update: ingest_to_processed, processed_to_cached, cached_to_written",
            latency_buckets(),
            &["hop"],
        );
        Self {
            ws_connections,
            ws_connections_total: counter(&r, "ws_connections_total", "WebSocket sessions opened"),
            ws_slow_disconnects: counter_vec(
                &r,
                "ws_slow_disconnects_total",
                "Sessions closed for falling behind",
                &["reason"],
            ),
            events_ingested: counter_vec(
                &r,
                "events_ingested_total",
                "Raw events accepted by the ingester",
                &["source"],
            ),
            events_rejected: counter_vec(&r, "events_rejected_total", "Raw events refused as invalid", &["source"]),
            events_processed: counter_vec(
                &r,
                "events_processed_total",
                "Raw events applied by the processor",
                &["type"],
            ),
            events_duplicate: counter(&r, "events_duplicate_total", "Raw events skipped as already applied"),
            late_trades: counter(&r, "late_trades_total", "Trades older than their current candle"),
            db_rows_pruned: counter_vec(&r, "db_rows_pruned_total", "Rows deleted past their retention", &["table"]),
            stale_quotes: counter(&r, "stale_quotes_total", "Quotes older than the one their book shows (ignored)"),
            updates_published: counter(&r, "updates_published_total", "Processed updates published"),
            processor_batches_in_flight: gauge(
                &r,
                "processor_batches_in_flight",
                "Batches the processor calculated whose updates have not gone out yet",
            ),
            processor_batches_overlapped: counter(
                &r,
                "processor_batches_overlapped_total",
                "Batches calculated while an earlier batch was still on its way downstream",
            ),
            updates_conflated: counter_vec(
                &r,
                "updates_conflated_total",
                "Updates replaced by a newer one before a slow session sent them",
                &["lane"],
            ),
            updates_dropped: counter_vec(
                &r,
                "updates_dropped_total",
                "Queued updates discarded when a slow session was closed",
                &["lane"],
            ),
            updates_sent: counter_vec(&r, "updates_sent_total", "Updates written to WebSocket sessions", &["lane"]),
            end_to_end_seconds: histogram(
                &r,
                "end_to_end_latency_seconds",
                "From ingest of a raw event to its update being written to a WebSocket",
                latency_buckets(),
            ),
            hop_ingest_to_processed: hop_latency.with_label_values(&["ingest_to_processed"]),
            hop_processed_to_cached: hop_latency.with_label_values(&["processed_to_cached"]),
            hop_cached_to_written: hop_latency.with_label_values(&["cached_to_written"]),
            db_write_seconds: histogram(
                &r,
                "db_write_seconds",
                "Duration of one database write transaction",
                latency_buckets(),
            ),
            db_rows_written: counter(&r, "db_rows_written_total", "Rows written to the database"),
            db_write_errors: counter(&r, "db_write_errors_total", "Failed database write transactions"),
            actor_restarts: counter_vec(&r, "actor_restarts_total", "Actor restarts by supervisors", &["actor"]),
            refusals: counter_vec(
                &r,
                "refusals_total",
                "Requests and connections refused by a limit or an access rule",
                &["reason"],
            ),
            kafka_produced: counter_vec(
                &r,
                "kafka_produced_total",
                "Messages acknowledged by the Kafka broker",
                &["topic"],
            ),
            kafka_consumed: counter_vec(&r, "kafka_consumed_total", "Messages read from Kafka", &["topic"]),
            kafka_errors: counter_vec(
                &r,
                "kafka_errors_total",
                "Kafka produce, receive and delivery errors",
                &["topic"],
            ),
            kafka_consumer_lag: gauge_vec(
                &r,
                "kafka_consumer_lag",
                "Messages behind the partition's high watermark",
                &["topic", "partition"],
            ),
            dead_letters: counter(&r, "dead_letters_total", "Messages sent to tt_dead_letter"),
            redis_used_memory_bytes: gauge(
                &r,
                "redis_used_memory_bytes",
                "Redis used_memory, read every second by the cache role",
            ),
            redis_reconnects: counter(&r, "redis_reconnects_total", "Redis connections lost and made again"),
            redis_errors: counter(&r, "redis_errors_total", "Failed Redis commands"),
            registry: r,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        let encoder = prometheus::TextEncoder::new();
        if encoder.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
