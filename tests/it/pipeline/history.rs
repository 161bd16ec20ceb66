//! The trader's record read back from the database: fills (paged, by lane), time and sales, and
//! candles since a time, scoped by entitlements where they are account data.

use serde_json::{Value, json};

use crate::common::{TestServer, fill, quote, trade};

/// Every page of `GET /api/fills` for `account`, following `next`.
async fn all_pages(server: &TestServer, query: &str) -> Vec<Value> {
    let mut fills = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let path = match &cursor {
            None => format!("/api/fills?{query}"),
            Some(c) => format!("/api/fills?{query}&cursor={c}"),
        };
        let (status, page) = server.get_json(&path).await;
        assert_eq!(status, 200, "{page}");
        fills.extend(page["fills"].as_array().expect("fills").iter().cloned());
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return fills,
        }
    }
    panic!("more than 100 pages")
}

#[actix_rt::test]
async fn the_fills_blotter_survives_a_reload_every_fill_once_newest_first() {
    let server = TestServer::start().await;
    let mut events = vec![quote("h:0", "ESZ6", "6850.00", "6850.25")];
    for i in 1..=23 {
        let symbol = if i % 3 == 0 { "NQZ6" } else { "ESZ6" };
        let price = if symbol == "NQZ6" { "24500.00" } else { "6850.25" };
        events.push(fill(&format!("h:{i}"), "ACC1", &format!("F-{i}"), symbol, "buy", price, i));
    }
    events.push(fill("h:99", "ACC2", "F-x", "ESZ6", "sell", "6850.25", 1));
    let (status, _) = server.ingest(&json!(events)).await;
    assert_eq!(status, 200);

    // A reload reads the whole day's blotter back: 23 fills, each once, newest first, in pages.
    let fills = all_pages(&server, "account=ACC1&limit=5").await;
    assert_eq!(fills.len(), 23, "every fill once");
    let ids: std::collections::HashSet<&str> = fills.iter().filter_map(|f| f["fill_id"].as_str()).collect();
    assert_eq!(ids.len(), 23);
    let times: Vec<i64> = fills.iter().filter_map(|f| f["ts"].as_i64()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    assert!(fills.iter().all(|f| f["account"] == "ACC1"));
    let f = fills.iter().find(|f| f["fill_id"] == "F-3").expect("F-3");
    assert_eq!(
        (f["symbol"].as_str(), f["qty"].as_i64(), f["price"].as_str()),
        (Some("NQZ6"), Some(3), Some("24500.00"))
    );
    assert_eq!((f["seq"].as_u64(), f["event_id"].as_str()), (Some(1), Some("h:3")), "{f}");

    // Recovering a lane: every fill after the seq the client holds, oldest first.
    let (status, lane) = server.get_json("/api/fills?account=ACC1&symbol=ESZ6&since_seq=10").await;
    assert_eq!(status, 200, "{lane}");
    let seqs: Vec<u64> = lane["fills"].as_array().expect("fills").iter().filter_map(|f| f["seq"].as_u64()).collect();
    assert_eq!(seqs, (11..=16).collect::<Vec<u64>>(), "ESZ6 holds 16 fills of ACC1");
    assert_eq!(lane["next"], Value::Null);

    // A window in time: nothing before today's fills, nothing after.
    let (_, none) = server.get_json("/api/fills?account=ACC1&to=1").await;
    assert_eq!(none["fills"], json!([]));

    // Bad queries are refused with a reason.
    for (query, code) in [
        ("", "bad_query"),
        ("account=%3Cb%3E", "invalid_account"),
        ("account=ACC1&since_seq=3", "bad_query"),
        ("account=ACC1&symbol=NOPE", "unknown_instrument"),
        ("account=ACC1&cursor=garbage", "bad_query"),
        ("account=ACC1&limit=0", "bad_query"),
        ("account=ACC1,ACC2", "bad_query"),
    ] {
        let (status, body) = server.get_json(&format!("/api/fills?{query}")).await;
        assert_eq!((status, body["error"].as_str()), (400, Some(code)), "{query}: {body}");
    }
}

#[actix_rt::test]
async fn time_and_sales_and_candles_since_read_back_from_the_database() {
    let server = TestServer::start().await;
    let mut events = Vec::new();
    for i in 1..=12 {
        events.push(trade(&format!("p:{i}"), "CLF7", "61.50", i, if i % 2 == 0 { "buy" } else { "sell" }));
    }
    events.push(trade("p:1", "GCG7", "4050.0", 1, "buy"));
    assert_eq!(server.ingest(&json!(events)).await.0, 200);

    let (status, prints) = server.get_json("/api/trades?symbol=CLF7&limit=5").await;
    assert_eq!(status, 200, "{prints}");
    let ids: Vec<&str> = prints.as_array().expect("prints").iter().filter_map(|t| t["event_id"].as_str()).collect();
    assert_eq!(ids.len(), 5);
    assert!(prints.as_array().expect("prints").iter().all(|t| t["symbol"] == "CLF7" && t["price"] == "61.50"));
    let (_, all) = server.get_json("/api/trades?symbol=CLF7&limit=100").await;
    let volume: i64 = all.as_array().expect("prints").iter().filter_map(|t| t["qty"].as_i64()).sum();
    assert_eq!(volume, 78, "every print stored once: 1 + 2 + ... + 12");
    assert_eq!(server.get_json("/api/trades?symbol=NOPE").await.0, 400);

    // Candles since a time: a client refills a gap from the first bucket it missed.
    let (_, latest) = server.get_json("/api/candles?symbol=CLF7&interval=1s").await;
    let start = latest[0]["start"].as_i64().expect("a candle");
    let (status, since) = server.get_json(&format!("/api/candles?symbol=CLF7&interval=1s&since={start}")).await;
    assert_eq!(status, 200);
    assert_eq!(since[0]["start"].as_i64(), Some(start));
    let (_, later) =
        server.get_json(&format!("/api/candles?symbol=CLF7&interval=1s&since={}", start + 60_000_000)).await;
    assert_eq!(later, json!([]), "nothing starts a minute later");
}

/// Rows past their retention are deleted in the background; fills never are.
#[actix_rt::test]
async fn retention_prunes_old_trades_and_1s_candles_and_keeps_fills() {
    let server = TestServer::start_with(|c| {
        c.storage.retain_trades_hours = 1;
        c.storage.retain_candles_1s_hours = 1;
        c.storage.retain_pnl_1s_hours = 1;
        c.storage.prune_interval_secs = 1;
        c.intake.event_time_behind_secs = 86_400;
    })
    .await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_micros() as i64;
    let hour = 3_600_000_000_i64;
    // P&L samples of an account without positions (the sampler leaves it alone): an old 1 s
    // sample and an old 1 min one, written as the sampler writes them.
    {
        use diesel::RunQueryDsl as _;
        let mut conn = server.pipeline.db_pool.as_ref().expect("a database").get().expect("connection");
        let ttpulse_actors::store::DbConn::Sqlite(conn) = &mut conn else { panic!("the embedded mode runs SQLite") };
        let old = now - 2 * hour;
        for period in ["1s", "1m"] {
            diesel::sql_query(format!(
                "INSERT INTO pnl_samples (account, period, start_ts, realized, unrealized, sampled_at) \
                 VALUES ('ACC9', '{period}', {old}, '5', '1', {})",
                old / 1_000_000
            ))
            .execute(&mut **conn)
            .expect("insert an old P&L sample");
        }
    }
    let events = json!([
        {"type": "trade", "event_id": "old:1", "ts": now - 3 * hour, "instrument": "CLF7", "price": "61.50", "qty": 1, "aggressor": "buy"},
        {"type": "trade", "event_id": "old:2", "ts": now - 2 * hour, "instrument": "CLF7", "price": "61.51", "qty": 2, "aggressor": "buy"},
        {"type": "fill", "event_id": "old:3", "ts": now - 2 * hour, "account": "ACC1", "order_id": "o", "fill_id": "F-old",
         "instrument": "CLF7", "side": "buy", "price": "61.51", "qty": 2},
        {"type": "trade", "event_id": "old:4", "ts": now, "instrument": "CLF7", "price": "61.52", "qty": 3, "aggressor": "buy"},
    ]);
    let (status, receipt) = server.ingest(&events).await;
    assert_eq!(status, 200, "{receipt}");
    let pruned =
        TestServer::eventually(std::time::Duration::from_secs(10), async || server.table_counts()["trades"] == 1).await;
    assert!(pruned, "old trades not pruned: {:?}", server.table_counts());
    let (_, prints) = server.get_json("/api/trades?symbol=CLF7").await;
    assert_eq!(prints[0]["event_id"], "old:4");
    let (_, seconds) = server.get_json("/api/candles?symbol=CLF7&interval=1s").await;
    assert_eq!(seconds.as_array().map(Vec::len), Some(1), "only the recent 1 s candle: {seconds}");
    let (_, minutes) = server.get_json("/api/candles?symbol=CLF7&interval=1m").await;
    assert_eq!(minutes.as_array().map(Vec::len), Some(3), "1 min candles are kept: {minutes}");
    assert_eq!(server.table_counts()["fills"], 1, "fills are the trader's record: never pruned");
    // The old 1 s P&L sample is pruned and counted; 1 min samples are kept.
    let pnl_pruned = TestServer::eventually(std::time::Duration::from_secs(10), async || {
        server.get_json("/api/pnl?account=ACC9&interval=1s").await.1 == json!([])
    })
    .await;
    assert!(pnl_pruned, "old 1 s P&L sample not pruned");
    let (_, pnl_minutes) = server.get_json("/api/pnl?account=ACC9&interval=1m").await;
    assert_eq!(pnl_minutes.as_array().map(Vec::len), Some(1), "1 min P&L samples are kept: {pnl_minutes}");
    let (_, metrics) = server.get_text("/metrics").await;
    assert!(metrics.contains(r#"ttpulse_db_rows_pruned_total{table="trades"} 2"#), "{metrics}");
    assert!(metrics.contains(r#"ttpulse_db_rows_pruned_total{table="pnl_1s"} 1"#), "{metrics}");
}

/// A client that disconnects while fills flow, and resumes with the last seq it held, gets every
/// missed fill once, in order, right after the snapshot, then the live stream; a lane that
/// missed more than the bound answers `recovered: false`.
#[actix_rt::test]
async fn a_client_that_reconnects_recovers_the_fills_it_missed_once_and_in_order() {
    let server = TestServer::start_with(|c| c.sessions.ws_max_recover = 50).await;
    let fills = |from: i64, to: i64| {
        json!(
            (from..=to)
                .map(|i| fill(&format!("r:{i}"), "ACC1", &format!("F-{i}"), "ESZ6", "buy", "6850.25", 1))
                .collect::<Vec<_>>()
        )
    };
    let mut ws = server.ws().await;
    ws.subscribe(&[], &["ACC1"]).await;
    assert_eq!(server.ingest(&fills(1, 5)).await.0, 200);
    let seen = ws
        .updates_until(std::time::Duration::from_secs(5), |got| got.iter().filter(|u| u["kind"] == "fill").count() == 5)
        .await;
    let held = seen.iter().filter(|u| u["kind"] == "fill").filter_map(|u| u["seq"].as_u64()).max().expect("fills");
    assert_eq!(held, 5);
    drop(ws);

    // Fills flow while the client is away.
    assert_eq!(server.ingest(&fills(6, 12)).await.0, 200);
    let mut back = server.ws().await;
    back.send(
        json!({"op": "subscribe", "positions": ["ACC1"], "recover": {"fills:ACC1:ESZ6": held, "fills:ACC1:NQZ6": 0}}),
    )
    .await;
    let snapshot = back.next_of_type("snapshot", std::time::Duration::from_secs(5)).await.expect("snapshot");
    assert_eq!(snapshot["accounts"][0]["fill_seq"], 12);
    let recovered = back.next_json(std::time::Duration::from_secs(5)).await.expect("the recovered fills come next");
    assert_eq!(recovered["type"], "recovered", "{recovered}");
    let lane = &recovered["lanes"]
        .as_array()
        .expect("lanes")
        .iter()
        .find(|l| l["key"] == "fills:ACC1:ESZ6")
        .cloned()
        .expect("lane");
    assert_eq!(
        (lane["recovered"].as_bool(), lane["from"].as_u64(), lane["to"].as_u64()),
        (Some(true), Some(5), Some(12)),
        "{lane}"
    );
    let seqs: Vec<u64> = lane["fills"].as_array().expect("fills").iter().filter_map(|f| f["seq"].as_u64()).collect();
    assert_eq!(seqs, (6..=12).collect::<Vec<u64>>(), "every missed fill once, in order");
    let other = recovered["lanes"]
        .as_array()
        .expect("lanes")
        .iter()
        .find(|l| l["key"] == "fills:ACC1:NQZ6")
        .cloned()
        .expect("lane");
    assert_eq!(other["recovered"], false, "a lane the snapshot does not hold: {other}");

    // Then the live stream, with no gap and no duplicate.
    assert_eq!(server.ingest(&fills(13, 14)).await.0, 200);
    let live = back
        .updates_until(std::time::Duration::from_secs(5), |got| got.iter().filter(|u| u["kind"] == "fill").count() == 2)
        .await;
    let seqs: Vec<u64> = live.iter().filter(|u| u["kind"] == "fill").filter_map(|u| u["seq"].as_u64()).collect();
    assert_eq!(seqs, [13, 14]);

    // Beyond the bound: the client is told, and takes the snapshot (or pages /api/fills).
    assert_eq!(server.ingest(&fills(15, 60)).await.0, 200);
    let mut later = server.ws().await;
    later.send(json!({"op": "subscribe", "positions": ["ACC1"], "recover": {"fills:ACC1:ESZ6": 2}})).await;
    later.next_of_type("snapshot", std::time::Duration::from_secs(5)).await.expect("snapshot");
    let recovered = later.next_of_type("recovered", std::time::Duration::from_secs(5)).await.expect("recovered");
    let lane = &recovered["lanes"][0];
    assert_eq!((lane["recovered"].as_bool(), lane["fills"].as_array().map(Vec::len)), (Some(false), Some(0)), "{lane}");
    assert!(lane["reason"].as_str().is_some_and(|r| r.contains("more than 50")), "{lane}");

    // The bound is for the whole answer: two lanes of 30 missed fills each, 60 in all, over 50.
    let nq = (1..=30)
        .map(|i| fill(&format!("rn:{i}"), "ACC1", &format!("N-{i}"), "NQZ6", "buy", "24500.00", 1))
        .collect::<Vec<_>>();
    assert_eq!(server.ingest(&json!(nq)).await.0, 200);
    let mut both = server.ws().await;
    both.send(
        json!({"op": "subscribe", "positions": ["ACC1"], "recover": {"fills:ACC1:ESZ6": 30, "fills:ACC1:NQZ6": 0}}),
    )
    .await;
    both.next_of_type("snapshot", std::time::Duration::from_secs(5)).await.expect("snapshot");
    let recovered = both.next_of_type("recovered", std::time::Duration::from_secs(5)).await.expect("recovered");
    let lanes: Vec<(Option<bool>, usize)> = recovered["lanes"]
        .as_array()
        .expect("lanes")
        .iter()
        .map(|l| (l["recovered"].as_bool(), l["fills"].as_array().map_or(0, Vec::len)))
        .collect();
    assert_eq!(lanes, [(Some(true), 30), (Some(false), 0)], "{recovered}");
    assert!(recovered["lanes"][1]["reason"].as_str().is_some_and(|r| r.contains("more than 20")), "{recovered}");
}

/// Time and sales live: a session that asks for an instrument's prints gets each print with its
/// seq (the instrument's trade count); sessions that did not ask get none.
/// `TTPULSE_PUBLISH_PRINTS=false`: trades still count and are stored (time and sales reads
/// them from the database), but no `trade` update is built or sent.
#[actix_rt::test]
async fn without_published_prints_trades_are_stored_and_not_streamed() {
    let server = TestServer::start_with(|c| c.intake.publish_prints = false).await;
    let mut tape = server.ws().await;
    tape.send(json!({"op": "subscribe", "trades": ["ESZ6"], "instruments": ["ESZ6"]})).await;
    tape.next_of_type("snapshot", std::time::Duration::from_secs(5)).await.expect("snapshot");
    assert_eq!(server.ingest(&json!([trade("np:1", "ESZ6", "6850.25", 2, "buy")])).await.0, 200);
    let got = tape
        .updates_until(std::time::Duration::from_secs(5), |got| got.iter().any(|u| u["kind"] == "instrument"))
        .await;
    // The instrument's update came; give a print (published before it, if at all) time to show.
    let later = tape.updates_until(std::time::Duration::from_millis(300), |_| false).await;
    assert!(got.iter().chain(&later).all(|u| u["kind"] != "trade"), "{got:?} {later:?}");
    let (_, tape_rows) = server.get_json("/api/trades?symbol=ESZ6").await;
    assert_eq!(tape_rows[0]["event_id"], "np:1", "{tape_rows}");
}

#[actix_rt::test]
async fn prints_stream_to_the_sessions_that_ask_for_them() {
    let server = TestServer::start().await;
    let mut tape = server.ws().await;
    tape.send(json!({"op": "subscribe", "trades": ["ESZ6"]})).await;
    tape.next_of_type("snapshot", std::time::Duration::from_secs(5)).await.expect("snapshot");
    let mut board = server.ws().await;
    board.subscribe(&["*"], &[]).await;
    let events = json!([
        trade("t:1", "ESZ6", "6850.25", 2, "buy"),
        trade("t:2", "NQZ6", "24500.00", 1, "sell"),
        trade("t:3", "ESZ6", "6850.00", 5, "sell"),
        trade("t:4", "ESZ6", "6850.50", 1, "buy"),
    ]);
    assert_eq!(server.ingest(&events).await.0, 200);
    let prints = tape.updates_until(std::time::Duration::from_secs(5), |got| got.len() == 3).await;
    let seen: Vec<(String, u64, String)> = prints
        .iter()
        .map(|u| {
            (
                u["key"].as_str().unwrap_or("").to_owned(),
                u["seq"].as_u64().unwrap_or(0),
                u["data"]["event_id"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("trades:ESZ6".into(), 1, "t:1".into()),
            ("trades:ESZ6".into(), 2, "t:3".into()),
            ("trades:ESZ6".into(), 3, "t:4".into())
        ]
    );
    assert!(prints.iter().all(|u| u["kind"] == "trade"));
    assert_eq!((prints[1]["data"]["price"].as_str(), prints[1]["data"]["qty"].as_i64()), (Some("6850.00"), Some(5)));
    assert_eq!(prints[1]["data"]["aggressor"], "sell");
    // The board, subscribed to every instrument's state, gets no prints.
    let board_updates = board.updates_until(std::time::Duration::from_millis(500), |_| false).await;
    assert!(!board_updates.is_empty() && board_updates.iter().all(|u| u["kind"] != "trade"));
    // Unsubscribed: no more prints.
    tape.send(json!({"op": "unsubscribe", "trades": ["ESZ6"]})).await;
    tokio_sleep().await;
    assert_eq!(server.ingest(&json!([trade("t:5", "ESZ6", "6850.25", 1, "buy")])).await.0, 200);
    assert_eq!(tape.next_json(std::time::Duration::from_millis(300)).await, None);
}

async fn tokio_sleep() {
    actix_rt::time::sleep(std::time::Duration::from_millis(100)).await;
}

/// P&L over time: every account's realized and unrealized P&L, sampled every second, stored in
/// 1 s and 1 min buckets, read back by `GET /api/pnl` and pushed as `pnl` updates.
#[actix_rt::test]
async fn pnl_is_sampled_every_second_stored_and_pushed() {
    let server = TestServer::start().await;
    let mut ws = server.ws().await;
    ws.subscribe(&[], &["ACC1"]).await;
    let events = json!([
        quote("p:1", "ESZ6", "6850.00", "6850.25"),
        fill("p:2", "ACC1", "F-1", "ESZ6", "buy", "6850.00", 2),
        fill("p:3", "ACC1", "F-2", "ESZ6", "sell", "6851.00", 1),
        fill("p:4", "ACC2", "F-3", "ESZ6", "buy", "6850.25", 1),
    ]);
    assert_eq!(server.ingest(&events).await.0, 200);
    // Realized (6851 - 6850) x 1 x 50 = 50; unrealized (6850.125 - 6850) x 1 x 50 = 6.25.
    let pushed = ws
        .updates_until(std::time::Duration::from_secs(5), |got| {
            got.iter().any(|u| u["kind"] == "pnl" && u["key"] == "pnl:ACC1:1s" && u["data"]["total"] == "56.25")
        })
        .await;
    let point = pushed.iter().rfind(|u| u["key"] == "pnl:ACC1:1s").expect("a pnl update for ACC1");
    assert_eq!((point["data"]["realized"].as_str(), point["data"]["unrealized"].as_str()), (Some("50"), Some("6.25")));
    assert!(pushed.iter().all(|u| u["kind"] != "pnl" || u["data"]["account"] == "ACC1"), "only the subscribed account");

    let (status, seconds) = server.get_json("/api/pnl?account=ACC1&interval=1s").await;
    assert_eq!(status, 200, "{seconds}");
    let last = seconds.as_array().and_then(|s| s.last()).cloned().expect("1 s samples");
    assert_eq!((last["total"].as_str(), last["interval"].as_str()), (Some("56.25"), Some("1s")), "{seconds}");
    let starts: Vec<i64> = seconds.as_array().expect("samples").iter().filter_map(|p| p["start"].as_i64()).collect();
    assert!(starts.windows(2).all(|w| w[1] - w[0] >= 1_000_000), "one per second, oldest first: {starts:?}");
    let (_, minutes) = server.get_json("/api/pnl?account=ACC1&interval=1m").await;
    assert!(minutes.as_array().is_some_and(|m| !m.is_empty() && m.len() <= 2), "{minutes}");
    let (_, other) = server.get_json("/api/pnl?account=ACC2&interval=1s").await;
    // (6850.125 - 6850.25) x 1 x 50 = -6.25
    assert_eq!(other.as_array().and_then(|s| s.last()).map(|p| p["total"].clone()), Some(json!("-6.25")));
    assert_eq!(server.get_json("/api/pnl?account=ACC1&interval=5m").await.0, 400);
}

/// `GET /api/fills` by time and by instrument: the day default leaves yesterday's fills out,
/// `from` brings them in (inclusive), and `symbol` alone narrows the day to one instrument.
#[actix_rt::test]
async fn the_fills_blotter_reads_the_day_by_default_and_a_window_or_an_instrument_when_asked() {
    let server = TestServer::start_with(|c| c.intake.event_time_behind_secs = 2 * 86_400).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_micros() as i64;
    const DAY: i64 = 86_400_000_000;
    let today = now - now.rem_euclid(DAY);
    let yesterday = today - 3_600_000_000;
    let dated = |id: &str, fill_id: &str, symbol: &str, ts: i64| {
        let price = if symbol == "NQZ6" { "24500.00" } else { "6850.25" };
        let mut event = fill(id, "ACC1", fill_id, symbol, "buy", price, 1);
        event["ts"] = json!(ts);
        event
    };
    let events = json!([
        dated("d:1", "F-y1", "ESZ6", yesterday),
        dated("d:2", "F-y2", "NQZ6", yesterday + 1),
        dated("d:3", "F-a", "ESZ6", now - 3_000),
        dated("d:4", "F-b", "NQZ6", now - 2_000),
        dated("d:5", "F-c", "ESZ6", now - 1_000),
    ]);
    let (status, receipt) = server.ingest(&events).await;
    assert_eq!(status, 200, "{receipt}");
    let ids = async |query: &str| -> Vec<String> {
        let (status, page) = server.get_json(&format!("/api/fills?account=ACC1&{query}")).await;
        assert_eq!(status, 200, "{query}: {page}");
        page["fills"]
            .as_array()
            .expect("fills")
            .iter()
            .filter_map(|f| f["fill_id"].as_str())
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(ids("").await, ["F-c", "F-b", "F-a"], "the trading day, newest first");
    assert_eq!(ids(&format!("from={}", today - DAY)).await, ["F-c", "F-b", "F-a", "F-y2", "F-y1"]);
    assert_eq!(ids(&format!("from={}", now - 2_000)).await, ["F-c", "F-b"], "`from` is inclusive");
    assert_eq!(ids(&format!("from={}&to={}", today - DAY, today - 1)).await, ["F-y2", "F-y1"], "yesterday");
    // `to` alone reads the trading day that holds it, up to it.
    assert_eq!(ids(&format!("to={yesterday}")).await, ["F-y1"]);
    assert_eq!(ids("symbol=ESZ6").await, ["F-c", "F-a"], "one instrument, the day");
    assert_eq!(ids(&format!("symbol=ESZ6&from={}", today - DAY)).await, ["F-c", "F-a", "F-y1"]);
}

/// Prints that share a time are not lost at a page edge: a page goes on from the last print's
/// `ts` and `event_id`; `before` alone goes on from the next older time.
#[actix_rt::test]
async fn time_and_sales_pages_through_prints_that_share_a_time() {
    let server = TestServer::start().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_micros() as i64;
    let shared = now - 2_000_000;
    let dated = |id: &str, ts: i64| {
        let mut event = trade(id, "CLF7", "61.50", 1, "buy");
        event["ts"] = json!(ts);
        event
    };
    let mut events = vec![dated("s:1", shared - 1_000), dated("s:2", shared - 500)];
    events.extend((3..=9).map(|i| dated(&format!("s:{i}"), shared)));
    events.push(dated("s:10", shared + 1_000));
    assert_eq!(server.ingest(&json!(events)).await.0, 200);

    let page = async |query: &str| -> Vec<(String, i64)> {
        let (status, prints) = server.get_json(&format!("/api/trades?symbol=CLF7&limit=4{query}")).await;
        assert_eq!(status, 200, "{query}: {prints}");
        prints
            .as_array()
            .expect("prints")
            .iter()
            .filter_map(|t| Some((t["event_id"].as_str()?.to_owned(), t["ts"].as_i64()?)))
            .collect()
    };
    // Newest first, by time then event id; each page edge falls among the shared time.
    let mut seen = Vec::new();
    let mut query = String::new();
    for _ in 0..10 {
        let rows = page(&query).await;
        let Some((last_id, last_ts)) = rows.last().cloned() else { break };
        seen.extend(rows.into_iter().map(|(id, _)| id));
        query = format!("&before={last_ts}&before_id={last_id}");
    }
    assert_eq!(seen, ["s:10", "s:9", "s:8", "s:7", "s:6", "s:5", "s:4", "s:3", "s:2", "s:1"], "every print once");
    // `before` alone: strictly older times, so the shared time's prints are all left out.
    let older: Vec<String> = page(&format!("&before={shared}")).await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(older, ["s:2", "s:1"]);
    let (status, body) = server.get_json("/api/trades?symbol=CLF7&before_id=s:5").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_query")), "{body}");
}
