//! Wire version 2 (`Sec-WebSocket-Protocol: ttpulse.v2`): the updates due at one wake share one
//! `batch` frame; a version 1 session on the same server still gets one frame per update.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{TestServer, WsClient, quote};

/// Frames until `count` updates have arrived (flattening batches), with how many frames and
/// of which types carried them.
async fn updates_and_frames(client: &mut WsClient, count: usize) -> (Vec<Value>, Vec<usize>) {
    let (mut updates, mut per_frame) = (Vec::new(), Vec::new());
    while updates.len() < count {
        let frame = client.next_json(Duration::from_secs(10)).await.expect("a frame before the timeout");
        match frame["type"].as_str() {
            Some("update") => {
                assert_eq!(frame["v"], 1);
                updates.push(frame);
                per_frame.push(1);
            }
            Some("batch") => {
                assert_eq!(frame["v"], 2, "{frame}");
                let batch = frame["updates"].as_array().expect("updates").clone();
                assert!(!batch.is_empty(), "an empty batch was sent");
                per_frame.push(batch.len());
                updates.extend(batch);
            }
            other => panic!("unexpected {other:?}: {frame}"),
        }
    }
    (updates, per_frame)
}

#[actix_rt::test]
async fn a_version_2_session_gets_the_updates_of_a_wake_in_one_batch_frame() {
    const QUOTES: u64 = 60;
    let server = TestServer::start().await;
    let url = format!("ws://{}/ws", server.addr);
    let mut batched = WsClient::connect_batched(&url).await;
    let mut plain = WsClient::connect(&url).await;
    // Snapshots and other answers stay single frames in version 2.
    let snapshot = batched.subscribe(&["ESZ6"], &[]).await;
    assert_eq!(snapshot["v"], 1);
    plain.subscribe(&["ESZ6"], &[]).await;

    let events: Vec<Value> = (1..=QUOTES)
        .map(|n| quote(&format!("b:{n}"), "ESZ6", &format!("{}.{:02}", 6800 + n / 4, (n % 4) * 25), "6900.00"))
        .collect();
    let (status, answer) = server.ingest(&json!(events)).await;
    assert_eq!(status, 200, "{answer}");

    let (from_batches, per_frame) = updates_and_frames(&mut batched, QUOTES as usize).await;
    let (from_plain, plain_frames) = updates_and_frames(&mut plain, QUOTES as usize).await;
    // The same updates, in the same order, each as version 1 writes it alone.
    assert_eq!(from_batches, from_plain);
    let seqs: Vec<u64> = from_batches.iter().map(|u| u["seq"].as_u64().expect("seq")).collect();
    let first = seqs[0];
    assert_eq!(seqs, (first..first + QUOTES).collect::<Vec<_>>(), "every update, in order");
    assert!(plain_frames.iter().all(|&n| n == 1), "version 1 got a batch: {plain_frames:?}");
    // One ingest is one hub push of 60 updates: on an idle machine the session drains them in
    // one frame; when the hub thread is preempted while it pushes, the session drains between
    // (measured with both cores busy: 2 to 26 frames). Fewer frames than updates either way.
    eprintln!("{} frames for {QUOTES} updates: {per_frame:?}", per_frame.len());
    assert!(per_frame.iter().any(|&n| n > 1), "no frame held more than one update: {per_frame:?}");

    // Both sessions are still live and in step: the next update arrives on both.
    let next = quote(&format!("b:{}", QUOTES + 1), "ESZ6", "6750.00", "6900.00");
    let (status, answer) = server.ingest(&json!([next])).await;
    assert_eq!(status, 200, "{answer}");
    let (next_batched, _) = updates_and_frames(&mut batched, 1).await;
    let (next_plain, _) = updates_and_frames(&mut plain, 1).await;
    assert_eq!(next_batched, next_plain);
    assert_eq!(next_batched[0]["seq"].as_u64(), Some(first + QUOTES));
}
