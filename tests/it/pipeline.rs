//! The whole embedded pipeline through its public surface: HTTP ingest in, WebSocket and HTTP
//! snapshot out, rows in the database, admin endpoints, supervision.

mod abuse;
mod history;
mod recovery;

use std::collections::HashMap;
use std::time::Duration;

use crate::common::{TestServer, fill, holds_all, metric, quote, trade};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);

/// Per key, the seqs seen must grow by exactly one.
fn assert_gapless(updates: &[Value]) {
    let mut last: HashMap<String, u64> = HashMap::new();
    for u in updates {
        let key = u["key"].as_str().expect("key").to_owned();
        if key.starts_with("pnl:") {
            // P&L samples' seq is the sample second: it grows, and may skip a second.
            continue;
        }
        let seq = u["seq"].as_u64().expect("seq");
        assert_eq!(u["data"]["seq"].as_u64(), Some(seq), "update seq matches its state: {u}");
        if let Some(prev) = last.insert(key.clone(), seq) {
            assert_eq!(seq, prev + 1, "gap or reorder on {key}: {prev} then {seq}");
        }
    }
}

#[actix_rt::test]
async fn events_flow_to_websocket_snapshot_and_database() {
    let server = TestServer::start().await;
    let mut ws = server.ws().await;
    let snapshot = ws.subscribe(&["ESZ6"], &["ACC1"]).await;
    assert_eq!(snapshot["instruments"], json!([]), "nothing ingested yet");

    let events = json!([
        quote("t:1", "ESZ6", "6850.00", "6850.25"),
        trade("t:2", "ESZ6", "6850.25", 2, "buy"),
        trade("t:3", "ESZ6", "6850.00", 2, "sell"),
        fill("t:4", "ACC1", "F-1", "ESZ6", "buy", "6850.25", 3),
        quote("t:5", "ESZ6", "6851.00", "6851.25"),
        // Another instrument and another account: not subscribed, must not arrive.
        quote("t:6", "CLF7", "61.50", "61.51"),
        fill("t:7", "ACC2", "F-2", "ESZ6", "sell", "6851.00", 1),
    ]);
    let (status, receipt) = server.ingest(&events).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["accepted"], 7);
    assert_eq!(receipt["duplicates"], 0);
    assert_eq!(receipt["event_ids"][0], "t:1");

    // Every update of the subscribed keys, in order, with no gap.
    let updates: Vec<Value> = ws
        .updates_until(WAIT, |got| got.iter().any(|u| u["key"] == "pos:ACC1:ESZ6" && u["seq"] == 2))
        .await
        .into_iter()
        // The account's P&L samples (every second, caused by no event) are checked elsewhere.
        .filter(|u| u["kind"] != "pnl")
        .collect();
    assert_gapless(&updates);
    let keys: Vec<&str> = updates.iter().map(|u| u["key"].as_str().unwrap_or_default()).collect();
    assert!(keys.iter().all(|k| !k.contains("CLF7") && !k.contains("ACC2")), "{keys:?}");
    let instrument: Vec<&Value> = updates.iter().filter(|u| u["kind"] == "instrument").collect();
    assert_eq!(instrument.iter().map(|u| u["seq"].as_u64().unwrap_or(0)).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    for u in &updates {
        assert!(u["ingest_ts"].as_i64().unwrap_or(0) > 1_700_000_000_000_000, "ingest_ts in Unix micros: {u}");
        assert_eq!(u["v"], 1);
    }

    let last = &instrument[3]["data"];
    assert_eq!(last["bid"], "6851.00");
    assert_eq!(last["mid"], "6851.125");
    assert_eq!(last["spread"], "0.25");
    assert_eq!(last["last"], "6850.00");
    assert_eq!(last["open"], "6850.25");
    assert_eq!(last["high"], "6850.25");
    assert_eq!(last["low"], "6850.00");
    assert_eq!(last["change"], "-0.25");
    assert_eq!(last["volume"], 4);
    assert_eq!(last["trades"], 2);
    // (6850.25*2 + 6850*2) / 4
    assert_eq!(last["vwap"], "6850.125");

    let fill_update = updates.iter().find(|u| u["kind"] == "fill").expect("fill on the account lane");
    assert_eq!(fill_update["key"], "fills:ACC1:ESZ6");
    assert_eq!(fill_update["seq"], 1);
    assert_eq!(fill_update["data"]["fill_id"], "F-1");
    let position = &updates.iter().rfind(|u| u["kind"] == "position").expect("position")["data"];
    assert_eq!(position["net_qty"], 3);
    assert_eq!(position["avg_price"], "6850.25");
    // Marked to mid 6851.125: (6851.125 - 6850.25) * 3 * 50
    assert_eq!(position["unrealized_pnl"], "131.25");
    assert_eq!(position["realized_pnl"], "0");

    let candles: Vec<&Value> = updates.iter().filter(|u| u["kind"] == "candle").collect();
    assert_eq!(candles.len(), 4, "two trades, two intervals");

    // The HTTP snapshot holds the same state, with its seq.
    let (status, snap) = server.get_json("/api/snapshot?instruments=ESZ6&positions=ACC1").await;
    assert_eq!(status, 200);
    assert_eq!(snap["instruments"][0], *last);
    assert_eq!(snap["positions"][0], *position);
    assert_eq!(snap["accounts"], json!([{"account": "ACC1", "symbol": "ESZ6", "fill_seq": 1}]));
    let (_, all) = server.get_json("/api/snapshot").await;
    assert_eq!(all["instruments"].as_array().map(Vec::len), Some(2));
    assert_eq!(all["positions"].as_array().map(Vec::len), Some(2));

    // The database holds the trades, fills, candles, states and positions.
    let counts = server.table_counts();
    assert_eq!(counts["trades"], 2);
    assert_eq!(counts["fills"], 2);
    assert_eq!(counts["candles"], 2);
    assert_eq!(counts["instrument_states"], 2);
    assert_eq!(counts["positions"], 2);
    let (status, candles) = server.get_json("/api/candles?symbol=ESZ6&interval=1m&limit=10").await;
    assert_eq!(status, 200);
    assert_eq!(candles[0]["volume"], 4);
    assert_eq!(candles[0]["open"], "6850.25");
    assert_eq!(candles[0]["close"], "6850.00");

    let (_, positions) = server.get_json("/api/positions?account=ACC2").await;
    assert_eq!(positions[0]["net_qty"], -1);
    let (_, instruments) = server.get_json("/api/instruments").await;
    let es = instruments.as_array().and_then(|l| l.iter().find(|i| i["symbol"] == "ESZ6")).cloned();
    assert_eq!(es.map(|i| (i["tick_size"].clone(), i["multiplier"].clone())), Some((json!("0.25"), json!("50"))));
}

#[actix_rt::test]
async fn processing_the_same_events_twice_changes_nothing() {
    let server = TestServer::start().await;
    let events = json!([
        quote("feed:1", "GCG7", "4050.0", "4050.1"),
        trade("feed:2", "GCG7", "4050.1", 3, "buy"),
        fill("feed:3", "ACC1", "F-9", "GCG7", "buy", "4050.1", 2),
    ]);
    let (status, first) = server.ingest(&events).await;
    assert_eq!((status, first["accepted"].clone()), (200, json!(3)));
    let (_, before) = server.get_json("/api/snapshot").await;
    let counts_before = server.table_counts();

    let (status, second) = server.ingest(&events).await;
    assert_eq!(status, 200);
    assert_eq!((second["accepted"].clone(), second["duplicates"].clone()), (json!(0), json!(3)));
    assert_eq!(counts_before, server.table_counts());

    // The same fill under a new event id is refused by its fill_id (only the new source's
    // stream position is recorded).
    let (_, third) = server.ingest(&json!([fill("other:1", "ACC1", "F-9", "GCG7", "buy", "4050.1", 2)])).await;
    assert_eq!(third["duplicates"], 1);
    let mut counts_after = server.table_counts();
    assert_eq!(counts_after.remove("event_watermarks"), Some(counts_before["event_watermarks"] + 1));
    counts_after.insert("event_watermarks", counts_before["event_watermarks"]);
    assert_eq!(counts_before, counts_after);

    let (_, after) = server.get_json("/api/snapshot").await;
    assert_eq!(before, after);
}

#[actix_rt::test]
async fn bad_input_is_refused_with_a_reason_and_nothing_is_written() {
    let server = TestServer::start_with(|c| c.intake.ingest_max_bytes = 64 * 1024).await;
    let good = quote("x:1", "ESZ6", "6850.00", "6850.25");
    let cases: Vec<(String, &str, &str)> = vec![
        ("{not json".into(), "malformed_json", ""),
        (json!({"type": "quote"}).to_string(), "bad_request", ""),
        ("[]".into(), "bad_request", ""),
        (json!([good, trade("x:2", "NOPE", "1", 1, "buy")]).to_string(), "invalid_event", "instrument"),
        (json!([good, trade("x:2", "ESZ6", "6850.25", -3, "buy")]).to_string(), "invalid_event", "qty"),
        (
            json!([good, {"type": "trade", "instrument": "ESZ6", "qty": 1, "aggressor": "buy"}]).to_string(),
            "invalid_event",
            "price",
        ),
        (
            json!([good, {"type": "trade", "instrument": "ESZ6", "price": "6850.10", "qty": 1, "aggressor": "buy"}])
                .to_string(),
            "invalid_event",
            "price",
        ),
        (json!([good, {"type": "swap", "instrument": "ESZ6"}]).to_string(), "invalid_event", "type"),
    ];
    for (body, code, field) in cases {
        let (status, error) = server.post_raw("/api/ingest", body.clone()).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["error"], code, "{body}: {error}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{error}");
        if !field.is_empty() {
            assert_eq!(error["field"], field, "{body}: {error}");
            assert_eq!(error["index"], 1, "{body}: {error}");
        }
    }
    let huge = json!(vec![good.clone(); 1_000]).to_string();
    let (status, error) = server.post_raw("/api/ingest", huge).await;
    assert_eq!((status, error["error"].clone()), (413, json!("payload_too_large")));

    // All or nothing: the valid first events of the refused requests were not applied.
    let (_, snap) = server.get_json("/api/snapshot").await;
    assert_eq!(snap["instruments"], json!([]));
    assert_eq!(server.table_counts()["instrument_states"], 0);

    let (status, error) = server.get_json("/api/candles?symbol=ESZ6&interval=5m").await;
    assert_eq!((status, error["error"].clone()), (400, json!("bad_query")));
    let (status, error) = server.get_json("/api/candles?symbol=NOPE").await;
    assert_eq!((status, error["error"].clone()), (400, json!("unknown_instrument")));
    let (status, error) = server.get_json("/api/candles?symbol=ESZ6&limit=abc").await;
    assert_eq!((status, error["error"].clone()), (400, json!("bad_query")));
    let (status, _) = server.get_json("/api/snapshot?instruments=NOPE").await;
    assert_eq!(status, 400);
    let (status, error) = server.get_json("/api/snapshot?positions=A:B").await;
    assert_eq!((status, error["error"].clone()), (400, json!("invalid_account")));
    let (status, error) = server.get_json("/api/nothing-here").await;
    assert_eq!((status, error["error"].clone()), (404, json!("not_found")));
    let (_, metrics) = server.get_text("/metrics").await;
    // Every refused ingest request above counted its event: 5 invalid, 1 malformed.
    assert!(metrics.contains(r#"ttpulse_events_rejected_total{source="api"} 6"#), "{metrics}");
}

#[actix_rt::test]
async fn bad_websocket_messages_get_an_error_and_the_session_stays_open() {
    let server = TestServer::start().await;
    let mut ws = server.ws().await;
    for (message, code) in [
        (json!("not an object"), "bad_request"),
        (json!({"op": "dance"}), "bad_request"),
        (json!({"op": "subscribe"}), "bad_request"),
        (json!({"op": "subscribe", "instruments": ["NOPE"]}), "bad_subscription"),
        (json!({"op": "subscribe", "positions": ["A:B"]}), "bad_subscription"),
    ] {
        ws.send(message.clone()).await;
        let reply = ws.next_of_type("error", WAIT).await.unwrap_or_else(|| panic!("no error for {message}"));
        assert_eq!(reply["code"], code, "{message}: {reply}");
    }
    ws.send(json!({"op": "ping"})).await;
    let pong = ws.next_of_type("pong", WAIT).await.expect("a pong");
    // The pong carries the server's clock (the dashboard marks staleness against it).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_micros() as i64;
    let server_ts = pong["server_ts"].as_i64().unwrap_or_default();
    assert!((server_ts - now).abs() < 5_000_000, "{pong}");
    // Still subscribes and streams after all that.
    ws.subscribe(&["*"], &[]).await;
    server.ingest(&json!([quote("w:1", "ZCH7", "445.00", "445.25")])).await;
    let updates = ws.updates_until(WAIT, |got| !got.is_empty()).await;
    assert_eq!(updates[0]["key"], "inst:ZCH7");
}

#[actix_rt::test]
async fn a_snapshot_joins_the_stream_without_gap_or_duplicate() {
    let server = TestServer::start().await;
    let batch = |from: usize| {
        json!(
            (from..from + 50)
                .map(|i| quote(&format!("s:{i}"), "NQZ6", &format!("{}.00", 24_000 + i), &format!("{}.25", 24_000 + i)))
                .collect::<Vec<_>>()
        )
    };
    server.ingest(&batch(1)).await;
    let mut ws = server.ws().await;
    let snapshot = ws.subscribe(&["NQZ6"], &[]).await;
    let base = snapshot["instruments"][0]["seq"].as_u64().expect("snapshot seq");
    assert_eq!(base, 50);
    server.ingest(&batch(51)).await;
    let updates = ws.updates_until(WAIT, |got| got.last().is_some_and(|u| u["seq"] == 100)).await;
    let seqs: Vec<u64> = updates.iter().filter_map(|u| u["seq"].as_u64()).collect();
    assert_eq!(seqs, (51..=100).collect::<Vec<_>>());
}

#[actix_rt::test]
async fn a_stopped_actor_is_restarted_by_its_supervisor_and_the_pipeline_goes_on() {
    let server = TestServer::start().await;
    let mut ws = server.ws().await;
    ws.subscribe(&["CLF7"], &["ACC3"]).await;
    server
        .ingest(&json!([
            quote("r:1", "CLF7", "61.50", "61.51"),
            fill("r:2", "ACC3", "F-r", "CLF7", "sell", "61.50", 1)
        ]))
        .await;

    for actor in ["processor", "cache", "ingester", "hub"] {
        let (status, _) = server.post_raw(&format!("/admin/actors/{actor}/restart"), "").await;
        assert_eq!(status, 202, "{actor}");
        let restarted = TestServer::eventually(WAIT, async || {
            let (_, actors) = server.get_json("/admin/actors").await;
            actors.as_array().is_some_and(|list| {
                list.iter().any(|a| a["name"] == actor && a["restarts"] == 1 && a["state"] == "running")
            })
        })
        .await;
        assert!(restarted, "{actor} was not restarted");
    }
    let (status, _) = server.post_raw("/admin/actors/nobody/restart", "").await;
    assert_eq!(status, 404);

    // The processor rebuilt its state from the database: seqs and positions continue.
    server
        .ingest(&json!([
            quote("r:3", "CLF7", "61.52", "61.53"),
            fill("r:4", "ACC3", "F-s", "CLF7", "sell", "61.52", 1)
        ]))
        .await;
    // The account lane is drained before the market lane: wait for both.
    let updates = ws
        .updates_until(WAIT, |got| holds_all(got, &[("fills:ACC3:CLF7", 2), ("inst:CLF7", 2), ("pos:ACC3:CLF7", 3)]))
        .await;
    assert_gapless(&updates);
    let inst = updates.iter().rfind(|u| u["key"] == "inst:CLF7").expect("instrument update");
    assert_eq!(inst["seq"], 2);
    let position = &updates.iter().rfind(|u| u["kind"] == "position").expect("position")["data"];
    assert_eq!(position["seq"], 3, "fill, re-mark by the new quote, fill");
    assert_eq!(position["net_qty"], -2);
    // (61.50 + 61.52) / 2
    assert_eq!(position["avg_price"], "61.51");
    let (_, metrics) = server.get_text("/metrics").await;
    assert!(metrics.contains(r#"ttpulse_actor_restarts_total{actor="processor"} 1"#), "{metrics}");
}

#[actix_rt::test]
async fn admin_endpoints_report_health_actors_and_metrics() {
    let server = TestServer::start().await;
    let (status, health) = server.get_json("/admin/health").await;
    assert_eq!((status, health["status"].clone()), (200, json!("ok")));
    assert_eq!(health["database"], "sqlite");

    let mut ws = server.ws().await;
    ws.subscribe(&["ESZ6"], &[]).await;
    server.ingest(&json!([quote("m:1", "ESZ6", "6850.00", "6850.25")])).await;
    let updates = ws.updates_until(WAIT, |got| !got.is_empty()).await;
    // The update says when it passed each hop: ingest <= processed <= cached.
    let hops = &updates[0]["hops"];
    let (ingest, processed, cached) =
        (updates[0]["ingest_ts"].as_i64(), hops["processed"].as_i64(), hops["cached"].as_i64());
    assert!(
        matches!((ingest, processed, cached), (Some(i), Some(p), Some(c)) if i > 0 && i <= p && p <= c),
        "{}",
        updates[0]
    );

    let (_, actors) = server.get_json("/admin/actors").await;
    let list = actors.as_array().expect("list");
    let names: Vec<&str> = list.iter().filter_map(|a| a["name"].as_str()).collect();
    assert_eq!(names, vec!["cache", "db-reader", "db-writer", "hub", "ingester", "processor"]);
    for actor in list {
        for field in ["kind", "state", "restarts", "messages_handled", "queue_depth", "last_message_at"] {
            assert!(actor.get(field).is_some(), "{field} missing in {actor}");
        }
    }
    let processor = list.iter().find(|a| a["name"] == "processor").expect("processor");
    assert_eq!(processor["messages_handled"], 1);
    assert!(processor["last_message_at"].as_i64().is_some());
    let hub = list.iter().find(|a| a["name"] == "hub").expect("hub");
    assert_eq!(hub["queue_depth"], 1, "one connected session");

    let (status, metrics) = server.get_text("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "ttpulse_ws_connections 1",
        r#"ttpulse_events_ingested_total{source="api"} 1"#,
        r#"ttpulse_events_processed_total{type="quote"} 1"#,
        "ttpulse_end_to_end_latency_seconds_count 1",
        // Each hop is measured where it ends; the three add up to the end-to-end time.
        r#"ttpulse_hop_latency_seconds_count{hop="ingest_to_processed"} 1"#,
        r#"ttpulse_hop_latency_seconds_count{hop="processed_to_cached"} 1"#,
        r#"ttpulse_hop_latency_seconds_count{hop="cached_to_written"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing `{line}` in\n{metrics}");
    }
    assert!(metrics.contains("ttpulse_db_write_seconds_count"), "{metrics}");
}

#[actix_rt::test]
async fn state_survives_a_restart_of_the_whole_server() {
    let server = TestServer::start().await;
    let events = json!([
        quote("k:1", "ESZ6", "6850.00", "6850.25"),
        trade("k:2", "ESZ6", "6850.25", 4, "buy"),
        fill("k:3", "ACC1", "F-k", "ESZ6", "buy", "6850.25", 2),
    ]);
    server.ingest(&events).await;
    let (_, before) = server.get_json("/api/snapshot").await;
    let data_dir = server.stop().await;

    let server = TestServer::start_in(data_dir, |_| {}).await;
    // The cache was rebuilt from the database: the same state, the same seqs.
    let (_, after) = server.get_json("/api/snapshot").await;
    assert_eq!(before, after);
    // The quote's sizes (5 x 7) are stored and restored with the rest of the instrument's state.
    let es = &after["instruments"][0];
    assert_eq!((&es["symbol"], &es["bid_qty"], &es["ask_qty"]), (&json!("ESZ6"), &json!(5), &json!(7)));
    assert_eq!(after["accounts"], json!([{"account": "ACC1", "symbol": "ESZ6", "fill_seq": 1}]));
    // Old events are still recognised; new ones continue the seqs.
    let (_, again) = server.ingest(&events).await;
    assert_eq!(again["duplicates"], 3);
    let mut ws = server.ws().await;
    ws.subscribe(&["ESZ6"], &["ACC1"]).await;
    server.ingest(&json!([fill("k:4", "ACC1", "F-l", "ESZ6", "sell", "6850.00", 1)])).await;
    let updates = ws
        .updates_until(WAIT, |got| {
            got.iter().any(|u| u["key"] == "pos:ACC1:ESZ6") && got.iter().any(|u| u["key"] == "fills:ACC1:ESZ6")
        })
        .await;
    let fill_update = updates.iter().find(|u| u["key"] == "fills:ACC1:ESZ6").expect("fill");
    assert_eq!(fill_update["seq"], 2);
    let position = &updates.iter().find(|u| u["key"] == "pos:ACC1:ESZ6").expect("position")["data"];
    assert_eq!(position["net_qty"], 1);
    // Sold 1 at 6850.00 against an average of 6850.25: -0.25 * 50
    assert_eq!(position["realized_pnl"], "-12.5");
}

/// Quotes of ESZ6 numbered `numbers` (event ids `<source>:<n>`), each moving the bid.
fn es_quotes(source: &str, numbers: std::ops::RangeInclusive<usize>) -> Vec<Value> {
    numbers
        .map(|n| {
            let bid = 6_000 + (n % 400);
            quote(&format!("{source}:{n}"), "ESZ6", &format!("{bid}.00"), &format!("{bid}.25"))
        })
        .collect()
}

#[actix_rt::test]
async fn a_slow_client_is_conflated_and_never_holds_up_the_others() {
    let server = TestServer::start_with(|c| c.sessions.ws_max_behind_secs = 120).await;
    let mut slow = server.ws().await;
    slow.subscribe(&["ESZ6"], &[]).await;
    let mut fast = server.ws().await;
    fast.subscribe(&["ESZ6"], &[]).await;

    // Far more updates than the slow client's socket buffers hold; it reads nothing meanwhile.
    const TOTAL: usize = 60_000;
    for chunk in 0..TOTAL / 5_000 {
        let (status, _) = server.ingest(&json!(es_quotes("slow", chunk * 5_000 + 1..=(chunk + 1) * 5_000))).await;
        assert_eq!(status, 200);
        // The fast client keeps up meanwhile.
        let want = (chunk + 1) * 5_000;
        let got = fast.updates_until(Duration::from_secs(20), |got| got.last().is_some_and(|u| u["seq"] == want)).await;
        assert_eq!(got.last().map(|u| u["seq"].clone()), Some(json!(want)), "the fast client fell behind");
    }

    // The slow client ends on the latest state, having skipped intermediate ones.
    let got = slow.updates_until(Duration::from_secs(30), |got| got.last().is_some_and(|u| u["seq"] == TOTAL)).await;
    assert_eq!(got.last().map(|u| u["seq"].clone()), Some(json!(TOTAL)));
    assert!(got.len() < TOTAL, "the slow client was sent every update ({}), nothing conflated", got.len());
    let seqs: Vec<u64> = got.iter().filter_map(|u| u["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs only grow");
    let (_, metrics) = server.get_text("/metrics").await;
    assert!(metrics.contains(r#"ttpulse_updates_conflated_total{lane="market"}"#), "{metrics}");
}

/// A client that cannot take the feed gets the newest state of each key soon after it reads
/// again, not the backlog: its queue conflates once it has waited `ws_conflate_after_ms`, long
/// before any count of waiting updates would (the capacity is out of reach here).
#[actix_rt::test]
async fn a_client_that_falls_behind_gets_the_latest_states_not_the_backlog() {
    let server = TestServer::start_with(|c| {
        c.sessions.ws_max_behind_secs = 120;
        c.sessions.ws_market_queue = 1_000_000;
        c.sessions.ws_conflate_after_ms = 100;
    })
    .await;
    let mut slow = server.ws().await;
    slow.subscribe(&["ESZ6"], &[]).await;
    // Few enough that the client's silence stays under the server's 15 s heartbeat timeout.
    const TOTAL: usize = 30_000;
    for chunk in 0..TOTAL / 5_000 {
        let (status, _) = server.ingest(&json!(es_quotes("behind", chunk * 5_000 + 1..=(chunk + 1) * 5_000))).await;
        assert_eq!(status, 200);
        if chunk == 0 {
            // The first 5,000 (1.6 MB) fill the socket's buffers and actix's write buffer;
            // what comes after waits in the session's queue.
            actix_rt::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let got = slow.updates_until(Duration::from_secs(30), |got| got.last().is_some_and(|u| u["seq"] == TOTAL)).await;
    assert_eq!(got.last().map(|u| u["seq"].clone()), Some(json!(TOTAL)), "the latest state arrived");
    // What the buffers held when the client stopped reading (at most the first 5,000 and what
    // the kernel took), then the newest state: where a backlog would be all 30,000.
    assert!(got.len() < 10_000, "the slow client was sent the backlog: {} updates", got.len());
    let (_, metrics) = server.get_text("/metrics").await;
    assert!(metric(&metrics, r#"ttpulse_updates_conflated_total{lane="market"}"#) > 15_000.0, "{metrics}");
    let seqs: Vec<u64> = got.iter().filter_map(|u| u["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs only grow");
    // The next normal update still arrives, and a session that keeps up sees it.
    let (status, _) =
        server.ingest(&json!([quote(&format!("behind:{}", TOTAL + 1), "ESZ6", "6500.00", "6500.25")])).await;
    assert_eq!(status, 200);
    let next = slow.updates_until(WAIT, |got| got.iter().any(|u| u["seq"] == TOTAL + 1)).await;
    assert_eq!(next.len(), 1, "{next:?}");
}

#[actix_rt::test]
async fn a_replay_file_is_ingested_and_bad_lines_are_reported() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("session.jsonl");
    let lines = [
        quote("", "RTYZ6", "2450.0", "2450.1").to_string(),
        "not json".to_owned(),
        trade("", "RTYZ6", "2450.1", 7, "buy").to_string(),
    ];
    // Events without ids get `replay-<file>:<line>`.
    std::fs::write(&path, lines.join("\n").replace(r#""event_id":"","#, "")).expect("write");
    let server = TestServer::start_with(|c| {
        c.source.kind = ttpulse::config::SourceKind::Replay;
        c.source.replay_file = Some(path.clone());
    })
    .await;
    let done = TestServer::eventually(WAIT, async || {
        let (_, snap) = server.get_json("/api/snapshot?instruments=RTYZ6").await;
        snap["instruments"][0]["volume"] == 7
    })
    .await;
    assert!(done, "replayed trade not applied");
    let (_, metrics) = server.get_text("/metrics").await;
    assert!(metrics.contains(r#"ttpulse_events_rejected_total{source="replay"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"ttpulse_events_ingested_total{source="replay"} 2"#), "{metrics}");
    let (_, actors) = server.get_json("/admin/actors").await;
    let ingester =
        actors.as_array().and_then(|l| l.iter().find(|a| a["name"] == "ingester")).cloned().expect("ingester");
    let detail = ingester["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("2 events read, 1 rejected, finished"), "{detail}");
}

#[actix_rt::test]
async fn the_openapi_document_describes_every_route() {
    let server = TestServer::start().await;
    let (status, doc) = server.get_json("/api/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    // Every route the server mounts is described, with the method it answers.
    for (path, method) in [
        ("/api/snapshot", "get"),
        ("/api/instruments", "get"),
        ("/api/positions", "get"),
        ("/api/candles", "get"),
        ("/api/fills", "get"),
        ("/api/trades", "get"),
        ("/api/pnl", "get"),
        ("/api/ingest", "post"),
        ("/api/openapi.json", "get"),
        ("/ws", "get"),
        ("/admin/health", "get"),
        ("/admin/actors", "get"),
        ("/admin/actors/{name}/restart", "post"),
        ("/metrics", "get"),
    ] {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} is not described");
        let live = path.replace("{name}", "nobody");
        let (code, _) =
            if method == "get" && path != "/ws" { server.get_text(&live).await } else { (200, String::new()) };
        assert_ne!(code, 404, "{path} is described but not served");
    }
    // And nothing is described that the server does not serve.
    assert_eq!(paths.len(), 14, "{:?}", paths.keys().collect::<Vec<_>>());
}

/// A subscribe's `max_rate` (Lightstreamer's maxFrequency): each market key reaches the client at
/// most that often, the newest state at most 1/rate after the last one sent, never an older one
/// after a newer; fills are never held back; the snapshot says what was granted (at most the
/// server's cap).
#[actix_rt::test]
async fn a_maximum_rate_resamples_the_market_lane_and_never_holds_back_fills() {
    const RATE: u64 = 4;
    let server = TestServer::start_with(|c| c.sessions.ws_max_rate = 20).await;
    let mut ws = server.ws().await;
    ws.send(json!({"op": "subscribe", "instruments": ["ESZ6"], "positions": ["ACC1"], "max_rate": RATE})).await;
    let snapshot = ws.next_of_type("snapshot", Duration::from_secs(5)).await.expect("snapshot");
    assert_eq!(snapshot["max_rate"], RATE);

    // 40 quotes, one every 25 ms: 40 states of inst:ESZ6 at 40/s.
    let started = std::time::Instant::now();
    for seq in 1..=40u64 {
        let bid = format!("{}.{:02}", 6850 + seq / 4, (seq % 4) * 25);
        assert_eq!(server.ingest(&json!([quote(&format!("mr:{seq}"), "ESZ6", &bid, "6900.00")])).await.0, 200);
        actix_rt::time::sleep(Duration::from_millis(25)).await;
    }
    let ingested = std::time::Instant::now();
    let updates = ws
        .updates_until(Duration::from_secs(5), |got| got.iter().any(|u| u["key"] == "inst:ESZ6" && u["seq"] == 40))
        .await;
    let newest_after = ingested.elapsed();
    let states: Vec<u64> =
        updates.iter().filter(|u| u["key"] == "inst:ESZ6").filter_map(|u| u["seq"].as_u64()).collect();
    let window = started.elapsed().as_secs_f64();
    assert_eq!(states.last(), Some(&40), "the newest state arrives: {states:?}");
    assert!(states.windows(2).all(|w| w[0] < w[1]), "never an older state after a newer: {states:?}");
    let most = (window * RATE as f64).ceil() as usize + 1;
    assert!(states.len() <= most, "{} states in {window:.2} s at {RATE}/s: {states:?}", states.len());
    // Within the interval (250 ms) after the last one sent, plus the time to process one event on
    // a shared machine.
    assert!(
        newest_after < Duration::from_millis(250 + 500),
        "the newest state came {newest_after:?} after the last quote"
    );

    // A quote right after one was sent waits for its turn; a fill after it does not.
    assert_eq!(server.ingest(&json!([quote("mr:41", "ESZ6", "6860.00", "6900.00")])).await.0, 200);
    assert_eq!(server.ingest(&json!([fill("mr:42", "ACC1", "F-1", "ESZ6", "buy", "6860.00", 1)])).await.0, 200);
    let later = ws
        .updates_until(Duration::from_secs(5), |got| {
            got.iter().any(|u| u["key"] == "inst:ESZ6" && u["seq"] == 41) && got.iter().any(|u| u["kind"] == "fill")
        })
        .await;
    let at = |pred: &dyn Fn(&Value) -> bool| later.iter().position(pred).expect("arrived");
    assert!(
        at(&|u| u["kind"] == "fill") < at(&|u| u["key"] == "inst:ESZ6" && u["seq"] == 41),
        "the fill went ahead of the held quote: {later:?}"
    );

    // Asking more than the server's cap gets the cap; asking nothing, the default (here none).
    let mut greedy = server.ws().await;
    greedy.send(json!({"op": "subscribe", "instruments": ["ESZ6"], "max_rate": 1000})).await;
    let granted = greedy.next_of_type("snapshot", Duration::from_secs(5)).await.expect("snapshot");
    assert_eq!(granted["max_rate"], 20);
    let mut plain = server.ws().await;
    assert_eq!(plain.subscribe(&["ESZ6"], &[]).await["max_rate"], 20, "0 (every update) is capped too");
}
