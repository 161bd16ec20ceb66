//! Fan-out: many WebSocket sessions at once. The load generator runs in its own process
//! (`ttpulse-bench fanout-client`); `broadcast-server` is the minimal WebSocket broadcast
//! server that ttpulse is compared with.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;
use ttpulse_actors::ingest::simulator::SIM_ACCOUNTS;
use ttpulse_actors::session::BATCH_PROTOCOL;

use crate::measure::{Frame, Latency, histogram, now_micros};

pub const SYMBOLS: [&str; 12] =
    ["ESZ6", "NQZ6", "YMZ6", "RTYZ6", "CLF7", "NGF7", "GCG7", "SIH7", "HGH7", "ZNH7", "6EZ6", "ZCH7"];

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FanoutResult {
    pub sessions_wanted: usize,
    pub sessions_connected: usize,
    /// Connection attempts that failed and were retried (a session gives up after 12).
    #[serde(default)]
    pub connect_retries: u64,
    pub delivery: Latency,
    pub messages_per_second: f64,
    /// WebSocket text frames received per second, all sessions together (with wire version 2
    /// one frame carries many updates).
    #[serde(default)]
    pub frames_per_second: f64,
    /// Sessions besides the measured ones that subscribed to everything and never read.
    #[serde(default)]
    pub stalled: usize,
    /// With `--reconnect`: every session dropped at once after the window, then reconnected.
    #[serde(default)]
    pub reconnect: Option<Reconnect>,
    #[serde(default)]
    pub profile: Profile,
    /// Under a rate cap (`max_rate`), market states only: the delay the server added beyond what
    /// the cap requires, i.e. arrival minus the later of `ingest_ts` and the moment the cap
    /// allowed the key's next update. That moment is taken as the key's previous arrival plus
    /// `1/max_rate`; the previous frame's own transit makes this an underestimate by at most
    /// that transit, which `delivery` shows.
    #[serde(default)]
    pub added_delay: Option<Latency>,
    /// Fills only (the account lane, never resampled): arrival minus `ingest_ts`.
    #[serde(default)]
    pub fills: Option<Latency>,
    /// The load generator's open-file limit, raised to its hard limit (0: unknown).
    #[serde(default)]
    pub open_files_limit: u64,
}

/// What each measured session subscribes to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Three instruments each (the fan-out rows).
    #[default]
    Watch3,
    /// Connected and subscribed to nothing: what a session costs by itself.
    Idle,
    /// One instrument each (many quiet sessions).
    Quiet,
    /// A 12-instrument watchlist at 1 update per key per second, and one account's positions
    /// and fills (a realistic dashboard).
    Dashboard,
    /// Every instrument, account and print at full rate.
    Firehose,
}

impl Profile {
    /// The name `--profile` takes and the report shows.
    pub fn name(self) -> String {
        use clap::ValueEnum as _;
        self.to_possible_value().map(|value| value.get_name().to_owned()).unwrap_or_default()
    }

    /// The `max_rate` the profile's subscribe asks for (0: every update as it comes).
    pub fn max_rate(self) -> u32 {
        if self == Profile::Dashboard { 1 } else { 0 }
    }

    /// Session `i`'s subscribe, if the profile subscribes at all.
    fn subscription(self, i: usize) -> Option<Message> {
        use serde_json::json;
        let body = match self {
            Profile::Idle => return None,
            Profile::Watch3 => return Some(subscription(i)),
            Profile::Quiet => json!({"op": "subscribe", "instruments": [SYMBOLS[i % SYMBOLS.len()]]}),
            Profile::Dashboard => json!({
                "op": "subscribe",
                "instruments": SYMBOLS,
                "positions": [SIM_ACCOUNTS[i % SIM_ACCOUNTS.len()]],
                "max_rate": self.max_rate(),
            }),
            Profile::Firehose => json!({"op": "subscribe", "instruments": ["*"], "positions": ["*"], "trades": ["*"]}),
        };
        Some(Message::text(body.to_string()))
    }
}

/// What one received update adds to the measurements.
#[derive(Clone, Copy)]
enum Sample {
    /// Arrival minus `ingest_ts`, every update.
    Delivery(u64),
    /// The delay added beyond the rate cap (market states under a cap).
    Added(u64),
    /// Arrival minus `ingest_ts`, fills.
    Fill(u64),
}

/// Turns one session's received updates into samples, remembering when each key last arrived
/// (to know when the rate cap allowed its next update).
struct SessionMeter {
    interval_micros: Option<i64>,
    last_arrival: std::collections::HashMap<String, i64>,
}

impl SessionMeter {
    fn new(max_rate: u32) -> Self {
        Self {
            interval_micros: (max_rate > 0).then(|| 1_000_000 / i64::from(max_rate)),
            last_arrival: Default::default(),
        }
    }

    fn record(&mut self, update: &Frame, now: i64, measuring: bool, out: &tokio::sync::mpsc::UnboundedSender<Sample>) {
        let delay = |since: i64| (now - since).max(1) as u64;
        if update.update_kind == "fill" {
            if measuring {
                let _ = out.send(Sample::Fill(delay(update.ingest_ts)));
            }
        } else if let Some(interval) = self.interval_micros
            && update.update_kind != "trade"
        {
            let allowed = self.last_arrival.get(&update.key).map_or(update.ingest_ts, |last| last + interval);
            if measuring {
                let _ = out.send(Sample::Added(delay(allowed.max(update.ingest_ts))));
            }
            self.last_arrival.insert(update.key.clone(), now);
        }
        if measuring {
            let _ = out.send(Sample::Delivery(delay(update.ingest_ts)));
        }
    }
}

/// A mass reconnect: every measured session's socket dropped at once (no close frame, as when a
/// network path fails), then all of them connecting and subscribing again at the same moment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reconnect {
    pub sessions: usize,
    /// Sessions that had their snapshot again within 30 s of the drop.
    pub resynced_within_30s: usize,
    /// From the drop to each resynced session's snapshot.
    pub resync: Latency,
    /// The longest a probe session, connected throughout, waited for the answer to a
    /// subscribe sent every 250 ms during the storm (the hub answering), and how many such
    /// subscribes went unanswered for 5 s.
    pub probe_max_ms: f64,
    pub probe_unanswered: u64,
    /// Subscribes the probe sent in all.
    #[serde(default)]
    pub probes: u64,
}

/// How the load generator behaves besides opening `sessions` measured sessions.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientOptions {
    /// Offer wire version 2 (ttpulse's `batch` frames; a server that does not speak it sends
    /// version 1).
    pub batched: bool,
    /// Extra sessions that subscribe to every instrument and print and then never read.
    pub stalled: usize,
    /// After the window, drop every measured session at once and reconnect them all.
    pub reconnect: bool,
    pub profile: Profile,
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long the load generator waits for all its sessions to connect: on a loaded machine a
/// connect can take 10 ms of the server's time, so tens of thousands take minutes.
pub fn connect_window(sessions: usize) -> Duration {
    Duration::from_secs(120 + sessions as u64 / 100)
}

/// Connects, retrying a failed attempt up to 11 times (100 ms doubling, at most 2 s): a burst of
/// thousands of connects can overflow the server's accept backlog, and a saturated server can
/// take seconds to answer a handshake. Counts the failed attempts in `retries`.
async fn connect(url: &str, batched: bool, retries: &AtomicU64) -> Option<Ws> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut delay = Duration::from_millis(100);
    for _ in 0..12 {
        let mut request = url.into_client_request().ok()?;
        if batched {
            request.headers_mut().insert("sec-websocket-protocol", BATCH_PROTOCOL.parse().ok()?);
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => return Some(ws),
            Err(_) => {
                retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
    None
}

/// Session `i`'s three-instrument subscribe (the fan-out rows', the reconnect storm's and the
/// probe's).
fn subscription(i: usize) -> Message {
    let wanted: Vec<&str> = (0..3).map(|k| SYMBOLS[(i * 3 + k) % SYMBOLS.len()]).collect();
    Message::text(serde_json::json!({"op": "subscribe", "instruments": wanted}).to_string())
}

/// Opens `sessions` WebSockets, each subscribed as `options.profile` says, and measures delivery
/// latency (`now - ingest_ts`) of every update for `duration` once all are connected. Prints
/// `{"phase":"measuring"}` and `{"phase":"measured"}` lines around the window, so that the
/// caller can read the server's CPU over exactly that window.
pub async fn client(
    url: &str,
    sessions: usize,
    duration: Duration,
    options: ClientOptions,
) -> anyhow::Result<FanoutResult> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Sample>();
    let frames = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let limit = Arc::new(tokio::sync::Semaphore::new(200));
    let mut stalled = Vec::with_capacity(options.stalled);
    for _ in 0..options.stalled {
        let (url, retries) = (url.to_owned(), retries.clone());
        stalled.push(tokio::spawn(async move {
            let Some(mut ws) = connect(&url, options.batched, &retries).await else { return };
            let everything = r#"{"op":"subscribe","instruments":["*"],"trades":["*"]}"#;
            if ws.send(Message::text(everything)).await.is_ok() {
                // Holds the socket and never reads: the server's writes fill the kernel buffers.
                std::future::pending::<()>().await;
            }
        }));
    }
    let mut tasks = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let (url, tx, connected, measuring, limit, frames, retries) = (
            url.to_owned(),
            tx.clone(),
            connected.clone(),
            measuring.clone(),
            limit.clone(),
            frames.clone(),
            retries.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let permit = limit.acquire_owned().await;
            let Some(mut ws) = connect(&url, options.batched, &retries).await else { return };
            if let Some(subscribe) = options.profile.subscription(i)
                && ws.send(subscribe).await.is_err()
            {
                return;
            }
            drop(permit);
            connected.fetch_add(1, Ordering::Relaxed);
            let mut meter = SessionMeter::new(options.profile.max_rate());
            while let Some(Ok(frame)) = ws.next().await {
                let Message::Text(text) = frame else { continue };
                let measuring = measuring.load(Ordering::Relaxed);
                // Under a rate cap every arrival counts, so that the cap's timing is known when
                // the window opens; otherwise nothing is parsed outside the window.
                if !measuring && meter.interval_micros.is_none() {
                    continue;
                }
                if measuring {
                    frames.fetch_add(1, Ordering::Relaxed);
                }
                let Ok(frame) = serde_json::from_str::<Frame>(&text) else { continue };
                let now = now_micros();
                for update in frame.into_updates() {
                    meter.record(&update, now, measuring, &tx);
                }
            }
        }));
    }
    drop(tx);
    let deadline = Instant::now() + connect_window(sessions);
    while (connected.load(Ordering::Relaxed) as usize) < sessions && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Settle, then measure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(r#"{{"phase":"measuring"}}"#);
    measuring.store(true, Ordering::Relaxed);
    let (mut hist, mut added, mut fills) = (histogram(), histogram(), histogram());
    let end = Instant::now() + duration;
    while let Ok(Some(sample)) = tokio::time::timeout_at(end.into(), rx.recv()).await {
        match sample {
            Sample::Delivery(micros) => hist.saturating_record(micros),
            Sample::Added(micros) => added.saturating_record(micros),
            Sample::Fill(micros) => fills.saturating_record(micros),
        }
    }
    measuring.store(false, Ordering::Relaxed);
    println!(r#"{{"phase":"measured"}}"#);
    let frames_per_second = frames.load(Ordering::Relaxed) as f64 / duration.as_secs_f64();
    let sessions_connected = connected.load(Ordering::Relaxed) as usize;
    for task in tasks.iter().chain(&stalled) {
        task.abort();
    }
    let reconnect =
        if options.reconnect { Some(reconnect(url, sessions, options.batched, &retries).await) } else { None };
    let seconds = duration.as_secs_f64();
    let delivery = Latency::from(&hist, seconds);
    let capped = options.profile.max_rate() > 0;
    Ok(FanoutResult {
        sessions_wanted: sessions,
        sessions_connected,
        connect_retries: retries.load(Ordering::Relaxed),
        messages_per_second: delivery.per_second,
        frames_per_second,
        delivery,
        stalled: options.stalled,
        reconnect,
        profile: options.profile,
        added_delay: capped.then(|| Latency::from(&added, seconds)),
        fills: (!fills.is_empty()).then(|| Latency::from(&fills, seconds)),
        open_files_limit: 0,
    })
}

/// The storm: `sessions` connect and subscribe at once (the previous ones were just dropped);
/// measures each one's time to its snapshot, and a probe session's subscribe answers meanwhile.
async fn reconnect(url: &str, sessions: usize, batched: bool, retries: &Arc<AtomicU64>) -> Reconnect {
    const WITHIN: Duration = Duration::from_secs(30);
    let probe = connect(url, batched, retries).await;
    let start = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let mut tasks = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let (url, tx, retries) = (url.to_owned(), tx.clone(), retries.clone());
        tasks.push(tokio::spawn(async move {
            let Some(mut ws) = connect(&url, batched, &retries).await else { return };
            if ws.send(subscription(i)).await.is_err() {
                return;
            }
            let mut resynced = false;
            while let Some(Ok(frame)) = ws.next().await {
                let Message::Text(text) = frame else { continue };
                if !resynced && text.starts_with(r#"{"type":"snapshot""#) {
                    resynced = true;
                    let _ = tx.send(start.elapsed().as_micros().max(1) as u64);
                }
            }
        }));
    }
    drop(tx);
    let probing = async {
        let (mut longest, mut unanswered, mut sent) = (Duration::ZERO, 0, 0);
        let Some(mut probe) = probe else { return (f64::NAN, 0, 0) };
        while start.elapsed() < WITHIN {
            let asked = Instant::now();
            if probe.send(subscription(0)).await.is_err() {
                break;
            }
            sent += 1;
            let answer = tokio::time::timeout(Duration::from_secs(5), async {
                // Updates and the server's heartbeat pings come in between: read past them.
                while let Some(Ok(frame)) = probe.next().await {
                    if let Message::Text(text) = frame
                        && text.starts_with(r#"{"type":"snapshot""#)
                    {
                        return true;
                    }
                }
                false
            });
            match answer.await {
                Ok(true) => longest = longest.max(asked.elapsed()),
                _ => unanswered += 1,
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        (longest.as_secs_f64() * 1000.0, unanswered, sent)
    };
    let collecting = async {
        let mut hist = histogram();
        while let Ok(Some(micros)) = tokio::time::timeout_at((start + WITHIN).into(), rx.recv()).await {
            hist.saturating_record(micros);
            if hist.len() as usize == sessions {
                break;
            }
        }
        hist
    };
    let ((probe_max_ms, probe_unanswered, probes), hist) = futures_util::future::join(probing, collecting).await;
    for task in &tasks {
        task.abort();
    }
    Reconnect {
        sessions,
        resynced_within_30s: hist.len() as usize,
        resync: Latency::from(&hist, WITHIN.as_secs_f64()),
        probe_max_ms,
        probe_unanswered,
        probes,
    }
}

/// A minimal WebSocket broadcast server: every connection gets every message, sent `rate`
/// times a second, each a ~300-byte JSON update carrying its creation time.
pub async fn broadcast_server(addr: &str, rate: u32) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let (tx, _) = tokio::sync::broadcast::channel::<Arc<str>>(1024);
    let sender = tx.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        let start = Instant::now();
        let mut sent = 0u64;
        let padding = "0".repeat(200);
        loop {
            tick.tick().await;
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            while sent < due {
                let text = format!(
                    r#"{{"type":"update","v":1,"key":"inst:ESZ6","seq":{sent},"ingest_ts":{},"data":"{padding}"}}"#,
                    now_micros()
                );
                let _ = sender.send(text.into());
                sent += 1;
            }
        }
    });
    loop {
        let (stream, _) = listener.accept().await?;
        let mut rx = tx.subscribe();
        tokio::spawn(async move {
            let Ok(ws) = tokio_tungstenite::accept_async(stream).await else { return };
            let (mut write, mut read) = ws.split();
            tokio::spawn(async move { while let Some(Ok(_)) = read.next().await {} });
            loop {
                match rx.recv().await {
                    Ok(text) => {
                        if write.send(Message::text(text.to_string())).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(kind: &str, key: &str, ingest_ts: i64) -> Frame {
        serde_json::from_value(serde_json::json!({"type": "update", "key": key, "kind": kind, "ingest_ts": ingest_ts}))
            .unwrap()
    }

    fn samples(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Sample>) -> Vec<(char, u64)> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|s| match s {
                Sample::Delivery(m) => ('d', m),
                Sample::Added(m) => ('a', m),
                Sample::Fill(m) => ('f', m),
            })
            .collect()
    }

    #[test]
    fn under_a_cap_the_added_delay_starts_when_the_cap_allowed_the_keys_next_update() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut meter = SessionMeter::new(1);
        // Before the window: nothing is recorded, but the key's arrival is remembered.
        meter.record(&update("instrument", "inst:ESZ6", 1_000), 1_500, false, &tx);
        assert!(samples(&mut rx).is_empty());
        // Ingested long before and held back by the cap: the cap allowed it at 1_001_500.
        meter.record(&update("instrument", "inst:ESZ6", 2_000), 1_201_500, true, &tx);
        assert_eq!(samples(&mut rx), [('a', 200_000), ('d', 1_199_500)]);
        // Ingested after the cap allowed it: the delay starts at ingest.
        meter.record(&update("instrument", "inst:ESZ6", 2_500_000), 2_500_300, true, &tx);
        assert_eq!(samples(&mut rx), [('a', 300), ('d', 300)]);
        // A key seen for the first time starts at its ingest.
        meter.record(&update("candle", "candle:ESZ6:1s", 2_500_000), 2_500_050, true, &tx);
        assert_eq!(samples(&mut rx), [('a', 50), ('d', 50)]);
    }

    #[test]
    fn fills_and_prints_are_not_counted_as_held_back_by_the_cap() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut meter = SessionMeter::new(1);
        meter.record(&update("fill", "fills:ACC1:ESZ6", 1_000), 4_000, true, &tx);
        meter.record(&update("trade", "trades:ESZ6", 1_000), 2_000, true, &tx);
        assert_eq!(samples(&mut rx), [('f', 3_000), ('d', 3_000), ('d', 1_000)]);
    }

    #[test]
    fn without_a_cap_only_delivery_and_fills_are_measured() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut meter = SessionMeter::new(0);
        meter.record(&update("instrument", "inst:ESZ6", 1_000), 1_200, true, &tx);
        meter.record(&update("instrument", "inst:ESZ6", 1_300), 1_300, true, &tx);
        assert_eq!(samples(&mut rx), [('d', 200), ('d', 1)]);
    }

    #[test]
    fn a_profile_is_named_alike_on_the_command_line_and_in_the_result() {
        for profile in [Profile::Watch3, Profile::Idle, Profile::Quiet, Profile::Dashboard, Profile::Firehose] {
            assert_eq!(serde_json::to_value(profile).unwrap(), profile.name(), "{profile:?}");
        }
        assert_eq!(Profile::Watch3.name(), "watch3");
    }

    #[test]
    fn each_profile_subscribes_as_documented() {
        let text = |p: Profile, i| p.subscription(i).map(|m| m.into_text().unwrap().to_string());
        assert_eq!(text(Profile::Idle, 0), None);
        assert_eq!(text(Profile::Quiet, 13).unwrap(), r#"{"instruments":["NQZ6"],"op":"subscribe"}"#);
        let dashboard: serde_json::Value = serde_json::from_str(&text(Profile::Dashboard, 4).unwrap()).unwrap();
        assert_eq!(dashboard["instruments"].as_array().unwrap().len(), 12);
        assert_eq!(dashboard["positions"], serde_json::json!(["ACC2"]));
        assert_eq!(dashboard["max_rate"], 1);
    }
}
