//! Traces across processes: a sampled event's journey as OpenTelemetry spans, received by a
//! real OTLP/HTTP endpoint (a collector in this test, decoding the protobuf the exporter sends),
//! and its `traceparent` in the Kafka headers, the Redis message and the WebSocket frame.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use serde_json::{Value, json};

use crate::common::{Running, WsClient, eventually, quote, run_embedded, trade};

const WAIT: Duration = Duration::from_secs(30);
/// A client's trace: the events it ingests continue it whatever the sampling ratio.
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// One span as the collector received it.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    start_ns: u64,
    end_ns: u64,
    attributes: HashMap<String, String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        other => format!("{other:?}"),
    }
}

/// An OTLP/HTTP (protobuf) trace endpoint that keeps what it receives.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    server: actix_web::dev::ServerHandle,
}

impl Collector {
    fn start() -> Self {
        let spans: Arc<Mutex<Vec<ReceivedSpan>>> = Arc::default();
        let kept = spans.clone();
        let server = HttpServer::new(move || {
            let kept = kept.clone();
            App::new().route(
                "/v1/traces",
                web::post().to(move |body: web::Bytes| {
                    let kept = kept.clone();
                    async move {
                        let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                            return HttpResponse::BadRequest().finish();
                        };
                        let mut kept = kept.lock().expect("spans");
                        for resource_spans in request.resource_spans {
                            let service = resource_spans
                                .resource
                                .iter()
                                .flat_map(|r| &r.attributes)
                                .find(|a| a.key == "service.name")
                                .map(|a| text(&a.value))
                                .unwrap_or_default();
                            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                                kept.push(ReceivedSpan {
                                    service: service.clone(),
                                    name: span.name,
                                    trace_id: hex(&span.trace_id),
                                    span_id: hex(&span.span_id),
                                    parent_span_id: hex(&span.parent_span_id),
                                    start_ns: span.start_time_unix_nano,
                                    end_ns: span.end_time_unix_nano,
                                    attributes: span
                                        .attributes
                                        .iter()
                                        .map(|a| (a.key.clone(), text(&a.value)))
                                        .collect(),
                                });
                            }
                        }
                        HttpResponse::Ok().content_type("application/x-protobuf").finish()
                    }
                }),
            )
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .expect("bind");
        let url = format!("http://{}", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Collector { url, spans, server: handle }
    }

    fn of_trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("spans").iter().filter(|s| s.trace_id == trace_id).cloned().collect()
    }

    /// The trace's spans once it holds each of `names`.
    async fn trace_with(&self, trace_id: &str, names: &[&str]) -> Vec<ReceivedSpan> {
        let complete = eventually(WAIT, async || {
            let spans = self.of_trace(trace_id);
            names.iter().all(|name| spans.iter().any(|s| s.name == *name))
        })
        .await;
        let spans = self.of_trace(trace_id);
        assert!(complete, "the trace lacks one of {names:?}: {spans:#?}");
        spans
    }
}

/// The one span named `name` in `spans`.
fn span<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one {name} span expected: {spans:#?}");
    found[0]
}

/// Each hop's span is a child of the one before, and they follow each other in time on the
/// hop clocks (a hop starts where the one before ended).
fn assert_one_journey(spans: &[ReceivedSpan]) -> [ReceivedSpan; 4] {
    let ingest = span(spans, "ttpulse.ingest");
    let process = span(spans, "ttpulse.process");
    let cache = span(spans, "ttpulse.cache");
    let write = span(spans, "ttpulse.ws_write");
    assert_eq!(process.parent_span_id, ingest.span_id, "{spans:#?}");
    assert_eq!(cache.parent_span_id, process.span_id, "{spans:#?}");
    assert_eq!(write.parent_span_id, cache.span_id, "{spans:#?}");
    assert_eq!(ingest.start_ns, ingest.end_ns, "ingest is a point in time");
    assert_eq!(process.start_ns, ingest.end_ns, "process starts at the ingest time");
    assert_eq!(cache.start_ns, process.end_ns, "cache starts when the update left the processor");
    assert_eq!(write.start_ns, cache.end_ns, "the write starts when the cache took the update");
    for s in [process, cache, write] {
        assert!(s.end_ns >= s.start_ns, "{s:#?}");
    }
    [ingest.clone(), process.clone(), cache.clone(), write.clone()]
}

/// `POST /api/ingest` with a `traceparent` header; the answer's status.
async fn ingest_traced(url: &str, traceparent: Option<&str>, events: &[Value]) -> u16 {
    let mut request =
        awc::Client::new().post(format!("{url}/api/ingest")).insert_header(("content-type", "application/json"));
    if let Some(traceparent) = traceparent {
        request = request.insert_header(("traceparent", traceparent));
    }
    request.send_body(json!(events).to_string()).await.expect("POST").status().as_u16()
}

/// The next update of `key` with `seq`.
async fn update_of(ws: &mut WsClient, key: &str, seq: u64) -> Value {
    let updates = ws.updates_until(WAIT, |got| got.iter().any(|u| u["key"] == key && u["seq"] == seq)).await;
    updates.into_iter().find(|u| u["key"] == key && u["seq"] == seq).unwrap_or_else(|| panic!("no {key} {seq}"))
}

/// `ttpulse run` exporting to a fresh collector at the sampling `ratio`, and a client subscribed
/// to `symbol` (the server's URL is in the third's `.1`).
async fn traced_embedded(ratio: &str, symbol: &str) -> (Collector, tempfile::TempDir, Running, WsClient) {
    let collector = Collector::start();
    let dir = tempfile::tempdir().expect("dir");
    let server =
        run_embedded(dir.path(), &[("TTPULSE_OTLP_ENDPOINT", &collector.url), ("TTPULSE_TRACE_SAMPLE_RATIO", ratio)]);
    let mut ws = WsClient::connect(&format!("{}/ws", server.1.replacen("http", "ws", 1))).await;
    ws.subscribe(&[symbol], &[]).await;
    (collector, dir, server, ws)
}

#[actix_rt::test]
async fn a_client_trace_is_followed_hop_by_hop_to_the_websocket_write() {
    // Ratio 0: only the client's own trace is followed.
    let (collector, _dir, server, mut ws) = traced_embedded("0", "ESZ6").await;
    let url = server.1.clone();

    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    assert_eq!(ingest_traced(&url, Some(&traceparent), &[quote("t:1", "ESZ6", "6850.00", "6850.25")]).await, 200);
    let update = update_of(&mut ws, "inst:ESZ6", 1).await;
    let carried = update["traceparent"].as_str().unwrap_or_else(|| panic!("the frame carries the trace: {update}"));
    assert!(carried.starts_with(&format!("00-{CLIENT_TRACE}-")) && carried.ends_with("-01"), "{carried}");

    let spans = collector
        .trace_with(CLIENT_TRACE, &["ttpulse.ingest", "ttpulse.process", "ttpulse.cache", "ttpulse.ws_write"])
        .await;
    let [ingest, process, cache, _] = assert_one_journey(&spans);
    assert_eq!(ingest.parent_span_id, CLIENT_SPAN, "the ingest continues the client's span");
    assert_eq!(ingest.attributes["ttpulse.event_id"], "t:1");
    assert_eq!(process.attributes["ttpulse.instrument"], "ESZ6");
    assert_eq!(cache.attributes["ttpulse.key"], "inst:ESZ6");
    // The frame names the cache's span, under which the session wrote it.
    assert_eq!(carried, format!("00-{CLIENT_TRACE}-{}-01", cache.span_id));
    assert!(spans.iter().all(|s| s.service == "ttpulse-ingester-processor-cache-api"), "{spans:#?}");
    // ingest_ts in the frame is the ingest span's time.
    assert_eq!(update["ingest_ts"].as_u64().expect("ingest_ts") * 1_000, ingest.start_ns);

    // Not sampled (ratio 0, no header), a bad header, an unsampled header: applied, untraced.
    let before = collector.spans.lock().expect("spans").len();
    for (seq, header) in [
        (2, None),
        (3, Some("00-zzzz-<script>-01")),
        (4, Some("00-11111111111111111111111111111111-2222222222222222-00")),
    ] {
        let id = format!("t:{seq}");
        assert_eq!(ingest_traced(&url, header, &[trade(&id, "ESZ6", "6850.25", 1, "buy")]).await, 200, "{header:?}");
        let update = update_of(&mut ws, "inst:ESZ6", seq).await;
        assert!(update.get("traceparent").is_none(), "{header:?}: {update}");
    }
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(collector.spans.lock().expect("spans").len(), before, "no span for an untraced event");
    collector.server.stop(false).await;
}

#[actix_rt::test]
async fn the_sampling_ratio_starts_traces_at_ingest() {
    let (collector, _dir, server, mut ws) = traced_embedded("1", "NQZ6").await;
    let url = server.1.clone();
    assert_eq!(ingest_traced(&url, None, &[quote("s:1", "NQZ6", "25000.00", "25000.25")]).await, 200);
    let update = update_of(&mut ws, "inst:NQZ6", 1).await;
    let trace_id = update["traceparent"].as_str().expect("sampled at ratio 1")[3..35].to_owned();
    let spans = collector.trace_with(&trace_id, &["ttpulse.ingest", "ttpulse.ws_write"]).await;
    let [ingest, ..] = assert_one_journey(&spans);
    assert_eq!(ingest.parent_span_id, "", "a new trace starts at ingest");
    collector.server.stop(false).await;
}

/// Every role its own process: one trace from the ingester through both Kafka hops and Redis to
/// the API node's WebSocket write, and the `traceparent` in the Kafka headers and in Redis.
mod distributed {
    use rdkafka::message::{Headers, Message};

    use super::*;
    use crate::common::stack::Services;

    /// The `traceparent` header of the first message on `topic` whose payload holds `needle`.
    async fn header_on(services: &Services, topic: &str, needle: &str) -> String {
        let consumer = services.reader(topic);
        loop {
            let message = actix_rt::time::timeout(WAIT, consumer.recv())
                .await
                .unwrap_or_else(|_| panic!("no message holding {needle} on {topic}"))
                .expect("recv");
            if !String::from_utf8_lossy(message.payload().unwrap_or_default()).contains(needle) {
                continue;
            }
            let headers = message.headers().unwrap_or_else(|| panic!("no headers on {topic}"));
            let traceparent = headers.iter().find(|h| h.key == "traceparent").and_then(|h| h.value);
            return String::from_utf8_lossy(traceparent.unwrap_or_else(|| panic!("no traceparent on {topic}")))
                .into_owned();
        }
    }

    #[actix_rt::test]
    async fn one_trace_crosses_kafka_and_redis_from_the_ingester_to_the_websocket() {
        let collector = Collector::start();
        let services = Services::start(false);
        let otlp = [("TTPULSE_OTLP_ENDPOINT", collector.url.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
        let processor = services.role("processor", &otlp);
        let cache = services.role("cache", &otlp);
        // The api node exports nothing itself here: it still carries the trace to its sessions.
        let api = services.role("api", &[("OTEL_BSP_SCHEDULE_DELAY", "100")]);
        let api_traced = services.role("api", &otlp);
        let ingester = services.role("ingester", &[("TTPULSE_TRACE_SAMPLE_RATIO", "0"), otlp[0], otlp[1]]);
        for role in [&processor, &cache, &api, &api_traced, &ingester] {
            assert!(
                eventually(WAIT, async || crate::common::get_json(&format!("{}/admin/health", role.admin)).await.0
                    == 200)
                .await,
                "{}",
                role.log_text()
            );
        }
        let mut plain = WsClient::connect(&api.ws_url()).await;
        plain.subscribe(&["ESZ6"], &[]).await;
        let mut traced = WsClient::connect(&api_traced.ws_url()).await;
        traced.subscribe(&["ESZ6"], &[]).await;

        let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
        let event = quote("dt:1", "ESZ6", "6850.00", "6850.25");
        assert_eq!(ingest_traced(&ingester.url, Some(&traceparent), &[event]).await, 200);
        let seen_plain = update_of(&mut plain, "inst:ESZ6", 1).await;
        let seen_traced = update_of(&mut traced, "inst:ESZ6", 1).await;
        assert_eq!(seen_plain["traceparent"], seen_traced["traceparent"], "both api nodes carry the cache's span");

        let spans = collector
            .trace_with(CLIENT_TRACE, &["ttpulse.ingest", "ttpulse.process", "ttpulse.cache", "ttpulse.ws_write"])
            .await;
        let [ingest, process, cache_span, write] = assert_one_journey(&spans);
        let services_of = |s: &ReceivedSpan| s.service.clone();
        assert_eq!(
            [&ingest, &process, &cache_span, &write].map(services_of),
            ["ttpulse-ingester", "ttpulse-processor", "ttpulse-cache", "ttpulse-api"].map(String::from),
            "each hop's span comes from its own role"
        );

        // The headers travel: hop 1 names the ingest span, hop 2 the process span; Redis holds
        // the cache span (in the stored update, which Pub/Sub carries too).
        let raw = header_on(&services, "tt_raw_data", "dt:1").await;
        assert_eq!(raw, format!("00-{CLIENT_TRACE}-{}-01", ingest.span_id));
        let processed = header_on(&services, "tt_processed_data", "inst:ESZ6").await;
        assert_eq!(processed, format!("00-{CLIENT_TRACE}-{}-01", process.span_id));
        let stored = services.redis_cli(&["HGET", "tt:inst:ESZ6", "json"]);
        assert!(
            stored.contains(&format!("\"traceparent\":\"00-{CLIENT_TRACE}-{}-01\"", cache_span.span_id)),
            "{stored}"
        );
        assert_eq!(seen_traced["traceparent"], format!("00-{CLIENT_TRACE}-{}-01", cache_span.span_id));
        collector.server.stop(false).await;
    }
}
