//! Fan-out: many WebSocket sessions at once. The load generator runs in its own process
//! (`ttpulse-bench fanout-client`); `broadcast-server` is the minimal WebSocket broadcast
//! server that ttpulse is compared with.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;
use ttpulse_actors::session::BATCH_PROTOCOL;

use crate::measure::{Frame, Latency, histogram, now_micros};

pub const SYMBOLS: [&str; 12] =
    ["ESZ6", "NQZ6", "YMZ6", "RTYZ6", "CLF7", "NGF7", "GCG7", "SIH7", "HGH7", "ZNH7", "6EZ6", "ZCH7"];

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FanoutResult {
    pub sessions_wanted: usize,
    pub sessions_connected: usize,
    pub delivery: Latency,
    pub messages_per_second: f64,
    /// WebSocket text frames received per second, all sessions together (with wire version 2
    /// one frame carries many updates).
    #[serde(default)]
    pub frames_per_second: f64,
}

/// Opens `sessions` WebSockets, each subscribed to 3 instruments, and measures delivery latency
/// (`now - ingest_ts`) of every update for `duration` once all are connected. `batched`: offer
/// wire version 2 (ttpulse's `batch` frames; a server that does not speak it sends version 1).
pub async fn client(url: &str, sessions: usize, duration: Duration, batched: bool) -> anyhow::Result<FanoutResult> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let frames = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let limit = Arc::new(tokio::sync::Semaphore::new(200));
    let mut tasks = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let (url, tx, connected, measuring, limit, frames) =
            (url.to_owned(), tx.clone(), connected.clone(), measuring.clone(), limit.clone(), frames.clone());
        tasks.push(tokio::spawn(async move {
            let permit = limit.acquire_owned().await;
            let Ok(mut request) = url.as_str().into_client_request() else { return };
            if batched {
                request.headers_mut().insert("sec-websocket-protocol", BATCH_PROTOCOL.parse().expect("a header value"));
            }
            let Ok((mut ws, _)) = tokio_tungstenite::connect_async(request).await else { return };
            let wanted: Vec<&str> = (0..3).map(|k| SYMBOLS[(i * 3 + k) % SYMBOLS.len()]).collect();
            let subscribe = serde_json::json!({"op": "subscribe", "instruments": wanted}).to_string();
            if ws.send(Message::text(subscribe)).await.is_err() {
                return;
            }
            drop(permit);
            connected.fetch_add(1, Ordering::Relaxed);
            while let Some(Ok(frame)) = ws.next().await {
                let Message::Text(text) = frame else { continue };
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                frames.fetch_add(1, Ordering::Relaxed);
                let Ok(frame) = serde_json::from_str::<Frame>(&text) else { continue };
                let now = now_micros();
                let updates = if frame.kind == "batch" { frame.updates } else { vec![frame] };
                for update in updates.iter().filter(|u| u.kind == "update" && u.ingest_ts > 0) {
                    let _ = tx.send((now - update.ingest_ts).max(1) as u64);
                }
            }
        }));
    }
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(120);
    while (connected.load(Ordering::Relaxed) as usize) < sessions && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Settle, then measure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let mut hist = histogram();
    let end = Instant::now() + duration;
    while let Ok(Some(latency)) = tokio::time::timeout_at(end.into(), rx.recv()).await {
        hist.saturating_record(latency);
    }
    measuring.store(false, Ordering::Relaxed);
    let frames_per_second = frames.load(Ordering::Relaxed) as f64 / duration.as_secs_f64();
    for task in &tasks {
        task.abort();
    }
    let delivery = Latency::from(&hist, duration.as_secs_f64());
    Ok(FanoutResult {
        sessions_wanted: sessions,
        sessions_connected: connected.load(Ordering::Relaxed) as usize,
        messages_per_second: delivery.per_second,
        frames_per_second,
        delivery,
    })
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
