//! Traces across processes: one span per hop for a sampled event, exported by OTLP/HTTP.
//!
//! A sampled event carries its [`TraceContext`] through every hop (see
//! [`crate::domain::trace_context`]), and each hop records one span on the clocks of
//! `ttpulse_hop_latency_seconds`, so a trace shows the same split as the metrics:
//!
//! | span               | kind     | from → to                    | recorded by            |
//! |--------------------|----------|------------------------------|------------------------|
//! | `ttpulse.ingest`   | producer | the ingest time (a point)    | the ingester           |
//! | `ttpulse.process`  | consumer | ingest → processed           | the processor          |
//! | `ttpulse.cache`    | consumer | processed → cached           | the first cache        |
//! | `ttpulse.ws_write` | consumer | cached → written to a socket | the first 16 sessions  |
//!
//! Each span is the parent of the next, so one event is one trace from ingest to every
//! WebSocket write, across all roles. Sampling is decided once, at ingest (a ratio, or the
//! `traceparent` a client sent with `POST /api/ingest`); later hops follow the context they
//! receive. Without [`init`] (tests, benchmarks) no span is recorded and contexts pass through.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider};

use crate::domain::Micros;
pub use crate::domain::trace_context::TraceContext;

/// The tracer, once [`init`] ran with an endpoint, and whether ingest starts traces itself.
static TRACER: OnceLock<(SdkTracer, bool)> = OnceLock::new();

/// Where and how much to trace.
#[derive(Debug, Clone)]
pub struct TraceSettings {
    /// OTLP/HTTP base URL (`http://collector:4318`); spans go to `<endpoint>/v1/traces`.
    pub endpoint: String,
    /// Share of ingested events that start a trace (0 to 1). Events that arrive with a sampled
    /// `traceparent` are traced whatever the ratio.
    pub ratio: f64,
    /// `service.name` of this process's spans (e.g. `ttpulse-processor`).
    pub service: String,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot set up the OTLP exporter: {0}")]
pub struct TraceInitError(#[from] opentelemetry_otlp::ExporterBuildError);

/// Keeps the exporter alive; [`TraceExport::shutdown`] sends what is still queued.
pub struct TraceExport(SdkTracerProvider);

impl TraceExport {
    /// Exports the spans still queued (at most a few seconds), then stops the exporter.
    pub fn shutdown(self) {
        if let Err(e) = self.0.shutdown_with_timeout(Duration::from_secs(5)) {
            tracing::warn!(error = %e, "spans not exported at exit");
        }
    }
}

/// Sets up span export for this process (once; a second call keeps the first set-up).
pub fn init(settings: &TraceSettings) -> Result<TraceExport, TraceInitError> {
    let endpoint = format!("{}/v1/traces", settings.endpoint.trim_end_matches('/').trim_end_matches("/v1/traces"));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(10))
        .build()?;
    // The batch processor's queue is bounded (2,048 spans): a burst beyond it is dropped, never
    // waited for.
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.ratio))))
        .with_resource(Resource::builder().with_service_name(settings.service.clone()).build())
        .build();
    let _ = TRACER.set((provider.tracer("ttpulse"), settings.ratio > 0.0));
    Ok(TraceExport(provider))
}

fn system_time(micros: Micros) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

/// The `ttpulse.ingest` span of an event entering at `at`: a new trace when the ratio samples
/// it, or a child of `parent` (a client's `traceparent`). `None`: not traced.
pub fn ingest(
    parent: Option<&TraceContext>,
    at: Micros,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) -> Option<TraceContext> {
    let Some((tracer, starts_traces)) = TRACER.get() else { return parent.cloned() };
    if parent.is_none() && !*starts_traces {
        return None;
    }
    let context = match parent {
        Some(parent) => Context::new().with_remote_span_context(parent.clone()),
        None => Context::new(),
    };
    let mut span = tracer
        .span_builder("ttpulse.ingest")
        .with_kind(SpanKind::Producer)
        .with_start_time(system_time(at))
        .start_with_context(tracer, &context);
    if !span.is_recording() {
        return None;
    }
    span.set_attributes(attributes());
    let traced = span.span_context().clone();
    span.end_with_timestamp(system_time(at));
    Some(traced)
}

/// A hop's span, child of `parent`, from `start` to `end` (Unix µs; a start of 0 is taken as
/// `end`). Returns the context the next hop carries (`parent` itself when spans are not
/// recorded here).
pub fn hop(
    name: &'static str,
    parent: &TraceContext,
    start: Micros,
    end: Micros,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) -> TraceContext {
    let Some((tracer, _)) = TRACER.get() else { return parent.clone() };
    let start = if start > 0 && start <= end { start } else { end };
    let mut span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Consumer)
        .with_start_time(system_time(start))
        .with_attributes(attributes())
        .start_with_context(tracer, &Context::new().with_remote_span_context(parent.clone()));
    let traced = span.span_context().clone();
    span.end_with_timestamp(system_time(end));
    if traced.is_valid() { traced } else { parent.clone() }
}
