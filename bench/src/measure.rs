//! The measurements: end-to-end latency seen by a WebSocket client, the raw round trips of the
//! broker and of Redis Pub/Sub at a fixed rate, and a legacy-style 1 s polling baseline.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures_util::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;
use ttpulse_actors::kafka::KafkaSettings;

pub fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

pub fn histogram() -> Histogram<u64> {
    // 1 µs to 100 s, 3 significant figures.
    Histogram::new_with_bounds(1, 100_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Latency percentiles in milliseconds, and what they were measured over.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub samples: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn from(hist: &Histogram<u64>, seconds: f64) -> Self {
        let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
        Self {
            samples: hist.len(),
            seconds,
            per_second: if seconds > 0.0 { hist.len() as f64 / seconds } else { 0.0 },
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: hist.max() as f64 / 1000.0,
        }
    }
}

/// The fields of a server message the measurements read.
#[derive(Deserialize)]
pub struct Frame {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub ingest_ts: i64,
    /// An update's key (`inst:ESZ6`) and kind (`instrument`, `fill`...).
    #[serde(default)]
    pub key: String,
    #[serde(default, rename = "kind")]
    pub update_kind: String,
    /// A `batch` frame's updates (wire version 2).
    #[serde(default)]
    pub updates: Vec<Frame>,
}

impl Frame {
    /// The updates a frame carries (one, or a batch's) that have an ingest time to measure from.
    pub fn into_updates(self) -> impl Iterator<Item = Frame> {
        let updates = if self.kind == "batch" { self.updates } else { vec![self] };
        updates.into_iter().filter(|u| u.kind == "update" && u.ingest_ts > 0)
    }
}

/// Subscribes to everything and records `now - ingest_ts` of every update after `warmup`.
/// Returns the measured window and what the warm-up saw (reported apart).
pub async fn ws_latency(url: &str, warmup: Duration, duration: Duration) -> anyhow::Result<(Latency, Latency)> {
    ws_latency_on(url, false, warmup, duration).await
}

/// [`ws_latency`], offering wire version 2 (batched frames) when `batched`.
pub async fn ws_latency_on(
    url: &str,
    batched: bool,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<(Latency, Latency)> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = url.into_client_request()?;
    if batched {
        request.headers_mut().insert("sec-websocket-protocol", ttpulse_actors::session::BATCH_PROTOCOL.parse()?);
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.with_context(|| format!("connect {url}"))?;
    ws.send(Message::text(r#"{"op":"subscribe","instruments":["*"],"positions":["*"]}"#)).await?;
    let (mut warm, mut hist) = (histogram(), histogram());
    let start = Instant::now();
    let end = start + warmup + duration;
    while let Ok(Some(frame)) = tokio::time::timeout_at(end.into(), ws.next()).await {
        let Message::Text(text) = frame? else { continue };
        let Ok(frame) = serde_json::from_str::<Frame>(&text) else { continue };
        let now = now_micros();
        let target = if start.elapsed() < warmup { &mut warm } else { &mut hist };
        for update in frame.into_updates() {
            target.saturating_record((now - update.ingest_ts).max(1) as u64);
        }
    }
    Ok((Latency::from(&hist, duration.as_secs_f64()), Latency::from(&warm, warmup.as_secs_f64())))
}

/// A fresh one-partition topic, and a producer and a consumer on it with the settings ttpulse
/// itself uses (`KafkaSettings`: idempotent, `acks=all`, `fetch.wait.max.ms=5`), so the raw trip
/// is measured on the same terms as ttpulse's hops. `linger_ms` is the producer's batching wait.
async fn topic_pair(brokers: &str, topic: &str, linger_ms: &str) -> anyhow::Result<(FutureProducer, StreamConsumer)> {
    let settings = KafkaSettings {
        brokers: brokers.to_owned(),
        extra: Vec::new(),
        partitions: 1,
        replication: 1,
        group: topic.to_owned(),
    };
    let producer: FutureProducer = settings.producer_config().set("linger.ms", linger_ms).create()?;
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> = settings.admin_config().create()?;
    let new = rdkafka::admin::NewTopic::new(topic, 1, rdkafka::admin::TopicReplication::Fixed(1));
    admin.create_topics(&[new], &rdkafka::admin::AdminOptions::new()).await?;
    let consumer: StreamConsumer = settings.consumer_config("bench").create()?;
    consumer.subscribe(&[topic])?;
    Ok((producer, consumer))
}

/// Sends `rate` messages per second for `warmup + duration`, each carrying its send time, and
/// hands every message to `send`. Pacing is per millisecond.
async fn paced(rate: u32, total: Duration, mut send: impl FnMut(i64)) {
    let mut pacer = Pacer::new(rate, total);
    while let Some(due) = pacer.next_tick().await {
        for _ in 0..due {
            send(now_micros());
        }
    }
}

/// `rate` messages per second for `total`, counted at each millisecond tick.
struct Pacer {
    tick: tokio::time::Interval,
    start: Instant,
    rate: u32,
    total: Duration,
    sent: u64,
}

impl Pacer {
    fn new(rate: u32, total: Duration) -> Self {
        Self { tick: tokio::time::interval(Duration::from_millis(1)), start: Instant::now(), rate, total, sent: 0 }
    }

    /// Waits for the next tick and counts the messages due by then as sent: how many to send
    /// now (`None` once `total` has passed).
    async fn next_tick(&mut self) -> Option<u64> {
        if self.start.elapsed() >= self.total {
            return None;
        }
        self.tick.tick().await;
        let due = (self.start.elapsed().as_secs_f64() * self.rate as f64) as u64;
        let now_due = due.saturating_sub(self.sent);
        self.sent += now_due;
        Some(now_due)
    }
}

/// rdkafka produce -> consume through the broker alone, at `rate`, with the producer and
/// consumer settings ttpulse uses (idempotent, acks=all, fetch.wait.max.ms=5).
pub async fn kafka_round_trip(
    brokers: &str,
    rate: u32,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<(Latency, Latency)> {
    let topic = format!("bench_rt_{}", now_micros());
    let (producer, consumer) = topic_pair(brokers, &topic, "1").await?;
    // Let the group join before timing.
    let _ = producer.send(FutureRecord::to(&topic).key("k").payload("0"), Duration::from_secs(10)).await;
    let _ = tokio::time::timeout(Duration::from_secs(15), consumer.recv()).await;

    let total = warmup + duration;
    let reader = tokio::spawn(async move {
        let (mut warm, mut hist) = (histogram(), histogram());
        let start = Instant::now();
        let end = start + total + Duration::from_secs(2);
        while let Ok(Ok(message)) = tokio::time::timeout_at(end.into(), consumer.recv()).await {
            let sent: i64 =
                message.payload().and_then(|p| std::str::from_utf8(p).ok()).and_then(|p| p.parse().ok()).unwrap_or(0);
            if sent == 0 {
                continue;
            }
            let target = if start.elapsed() < warmup { &mut warm } else { &mut hist };
            target.saturating_record((now_micros() - sent).max(1) as u64);
        }
        (hist, warm)
    });
    let topic_for_send = topic.clone();
    paced(rate, total, |ts| {
        let payload = ts.to_string();
        let _ = producer.send_result(FutureRecord::to(&topic_for_send).key("k").payload(&payload));
    })
    .await;
    let _ = producer.flush(Duration::from_secs(10));
    let (hist, warm) = reader.await?;
    Ok((Latency::from(&hist, duration.as_secs_f64()), Latency::from(&warm, warmup.as_secs_f64())))
}

/// The broker's raw produce -> consume rate: as fast as one producer and one consumer go.
pub async fn kafka_max_rate(brokers: &str, seconds: u64) -> anyhow::Result<f64> {
    let topic = format!("bench_max_{}", now_micros());
    let (producer, consumer) = topic_pair(brokers, &topic, "5").await?;
    let payload = "x".repeat(200);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let reader = tokio::spawn(async move {
        let mut count = 0u64;
        let mut first: Option<Instant> = None;
        let mut last = Instant::now();
        while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(3), consumer.recv()).await {
            first.get_or_insert_with(Instant::now);
            count += 1;
            last = Instant::now();
        }
        let seconds = first.map_or(1.0, |f| last.duration_since(f).as_secs_f64().max(0.001));
        count as f64 / seconds
    });
    while Instant::now() < deadline {
        match producer.send_result(FutureRecord::to(&topic).key("k").payload(&payload)) {
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    let _ = producer.flush(Duration::from_secs(30));
    Ok(reader.await?)
}

/// PUBLISH -> subscriber through Redis alone, at `rate`.
pub async fn redis_round_trip(
    url: &str,
    rate: u32,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<(Latency, Latency)> {
    let client = redis::Client::open(url)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe("bench_rt").await?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let total = warmup + duration;
    let reader = tokio::spawn(async move {
        let (mut warm, mut hist) = (histogram(), histogram());
        let mut messages = pubsub.into_on_message();
        let start = Instant::now();
        let end = start + total + Duration::from_secs(1);
        while let Ok(Some(message)) = tokio::time::timeout_at(end.into(), messages.next()).await {
            let sent: i64 =
                std::str::from_utf8(message.get_payload_bytes()).ok().and_then(|p| p.parse().ok()).unwrap_or(0);
            let target = if start.elapsed() < warmup { &mut warm } else { &mut hist };
            target.saturating_record((now_micros() - sent).max(1) as u64);
        }
        (hist, warm)
    });
    // One pipeline per millisecond tick: the publisher keeps up at any rate Redis can take.
    let mut pacer = Pacer::new(rate, total);
    while let Some(due) = pacer.next_tick().await {
        if due == 0 {
            continue;
        }
        let mut pipe = redis::pipe();
        for _ in 0..due {
            pipe.cmd("PUBLISH").arg("bench_rt").arg(now_micros()).ignore();
        }
        let _: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
    }
    let (hist, warm) = reader.await?;
    Ok((Latency::from(&hist, duration.as_secs_f64()), Latency::from(&warm, warmup.as_secs_f64())))
}

/// The legacy way: poll the snapshot every second. A change becomes visible at the first poll
/// that holds it, so its latency is that poll's time minus the change's ingest time (taken from
/// the WebSocket stream, which is read only to know when each change happened).
pub async fn polling_baseline(api: &str, duration: Duration) -> anyhow::Result<Latency> {
    let ws_url = api.replacen("http", "ws", 1) + "/ws";
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await?;
    ws.send(Message::text(r#"{"op":"subscribe","instruments":["*"]}"#)).await?;
    #[derive(Deserialize)]
    struct Change {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        key: String,
        #[serde(default)]
        seq: u64,
        #[serde(default)]
        ingest_ts: i64,
    }
    // Per instrument, the changes not yet seen by a poll: (seq, ingest_ts).
    type Pending = std::collections::HashMap<String, Vec<(u64, i64)>>;
    let pending: std::sync::Arc<std::sync::Mutex<Pending>> = Default::default();
    let collector = {
        let pending = pending.clone();
        tokio::spawn(async move {
            while let Some(Ok(Message::Text(text))) = ws.next().await {
                if let Ok(c) = serde_json::from_str::<Change>(&text)
                    && c.kind == "update"
                    && c.ingest_ts > 0
                    && let Some(symbol) = c.key.strip_prefix("inst:")
                    && let Ok(mut map) = pending.lock()
                {
                    map.entry(symbol.to_owned()).or_default().push((c.seq, c.ingest_ts));
                }
            }
        })
    };
    let mut hist = histogram();
    let url = format!("{api}/api/snapshot");
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while start.elapsed() < duration {
        tick.tick().await;
        let url = url.clone();
        let body = tokio::task::spawn_blocking(move || crate::procs::http_get(&url)).await??;
        let now = now_micros();
        let snapshot: serde_json::Value = serde_json::from_str(&body)?;
        let Ok(mut map) = pending.lock() else { continue };
        for inst in snapshot["instruments"].as_array().into_iter().flatten() {
            let (Some(symbol), Some(seq)) = (inst["symbol"].as_str(), inst["seq"].as_u64()) else { continue };
            if let Some(changes) = map.get_mut(symbol) {
                changes.retain(|&(change_seq, at)| {
                    let visible = change_seq <= seq;
                    if visible {
                        hist.saturating_record((now - at).max(1) as u64);
                    }
                    !visible
                });
            }
        }
    }
    collector.abort();
    Ok(Latency::from(&hist, duration.as_secs_f64()))
}
