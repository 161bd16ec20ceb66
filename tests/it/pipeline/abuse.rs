//! Abuse: input that is well-formed but extreme, hostile or unlucky, sent to a real server as a
//! client would. Each case asserts the refusal (a 400 naming the field), that nothing was stored
//! or published, and that the next normal event is applied with the right values.

use std::time::Duration;

use diesel::RunQueryDsl as _;
use serde_json::{Value, json};

use crate::common::{TestServer, WsClient, fill, quote, trade};

/// How long a client waits to be sure nothing was published.
const QUIET: Duration = Duration::from_millis(300);

/// The largest value `Decimal` holds: accepted once, its mid overflowed and stopped the processor.
const DECIMAL_MAX: &str = "79228162514264337593543950335";

/// Sends `event` alone and asserts it is refused naming `field`, with nothing stored or published.
async fn assert_refused(server: &TestServer, ws: &mut WsClient, event: Value, field: &str) {
    let before = server.table_counts();
    let (status, body) = server.ingest(&json!([event])).await;
    assert_eq!(status, 400, "{event} -> {body}");
    assert_eq!(body["error"], "invalid_event", "{body}");
    assert_eq!(body["field"], field, "{event} -> {body}");
    assert_eq!(body["index"], 0);
    assert_eq!(server.table_counts(), before, "nothing stored for {event}");
    assert_eq!(ws.next_json(QUIET).await, None, "nothing published for {event}");
}

/// A fill without an event id (ttpulse gives it one).
fn fill_with(account: &str, fill_id: &str, qty: i64) -> Value {
    json!({"type": "fill", "account": account, "order_id": "O-1", "fill_id": fill_id, "instrument": "ESZ6",
           "side": "buy", "price": "6850.25", "qty": qty})
}

#[actix_rt::test]
async fn extreme_hostile_and_far_away_events_are_refused_and_the_pipeline_goes_on() {
    let server = TestServer::start().await;
    let mut ws = server.ws().await;
    ws.subscribe(&["*"], &["*"]).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_micros() as i64;

    let cases: Vec<(Value, &str)> = vec![
        (quote("x:1", "ESZ6", DECIMAL_MAX, DECIMAL_MAX), "bid"),
        (quote("x:1", "ESZ6", "6850.00", "68500.25"), "ask"),
        (
            json!({"type": "quote", "instrument": "ESZ6", "bid": "6850", "bid_qty": i64::MAX, "ask": "6851", "ask_qty": 1}),
            "bid_qty",
        ),
        (trade("x:1", "ESZ6", "6850.25", i64::MAX, "buy"), "qty"),
        (trade("x:1", "ESZ6", "0.0000000000000000000000000001", 1, "buy"), "price"),
        (fill("x:1", "ACC1", "F-big", "ESZ6", "buy", "6850.25", i64::MAX), "qty"),
        // Poisoned ids: these once made every later event of the source a "duplicate".
        (trade("api:18446744073709551615", "ESZ6", "6850.25", 1, "buy"), "event_id"),
        (trade("feed-x:9007199254740992", "ESZ6", "6850.25", 1, "buy"), "event_id"),
        (trade(&format!("api:{}", now + 60_000_000), "ESZ6", "6850.25", 1, "buy"), "event_id"),
        (trade("sim:5", "ESZ6", "6850.25", 1, "buy"), "event_id"),
        (trade("replay-day1.jsonl:5", "ESZ6", "6850.25", 1, "buy"), "event_id"),
        // Far-away times: a trade dated 2100 once froze the candles for good.
        (
            json!({"type": "trade", "ts": 4_102_444_800_000_000_i64, "instrument": "ESZ6", "price": "6850.25", "qty": 1, "aggressor": "buy"}),
            "ts",
        ),
        (
            json!({"type": "trade", "ts": now + 60_000_000, "instrument": "ESZ6", "price": "6850.25", "qty": 1, "aggressor": "buy"}),
            "ts",
        ),
        (
            json!({"type": "trade", "ts": 1, "instrument": "ESZ6", "price": "6850.25", "qty": 1, "aggressor": "buy"}),
            "ts",
        ),
        (
            json!({"type": "trade", "ts": i64::MAX, "instrument": "ESZ6", "price": "6850.25", "qty": 1, "aggressor": "buy"}),
            "ts",
        ),
        // Markup and control characters in names.
        (fill_with("<img src=x onerror=alert(1)>", "F-1", 1), "account"),
        (fill_with("ACC\u{0}1", "F-1", 1), "account"),
        (fill_with(&"A".repeat(65), "F-1", 1), "account"),
        (fill_with("ACC1", "F 1\n", 1), "fill_id"),
    ];
    for (event, field) in cases {
        assert_refused(&server, &mut ws, event, field).await;
    }

    // The next normal events are applied with the right values.
    let before = server.table_counts();
    let events = json!([
        json!({"type": "quote", "instrument": "ESZ6", "bid": "6850.00", "bid_qty": 100_000, "ask": "6850.25", "ask_qty": 1}),
        {"type": "trade", "instrument": "ESZ6", "price": "6850.25", "qty": 100_000, "aggressor": "buy", "ts": now - 1_000_000},
        fill_with("desk-1.ACC_2", "F-1", 3),
    ]);
    let (status, receipt) = server.ingest(&events).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!((receipt["accepted"].as_u64(), receipt["duplicates"].as_u64()), (Some(3), Some(0)), "{receipt}");
    assert!(receipt["event_ids"][0].as_str().is_some_and(|id| id.starts_with("api:")), "{receipt}");
    let updates = ws
        .updates_until(Duration::from_secs(5), |got| {
            ["fill", "candle", "instrument"].iter().all(|kind| got.iter().any(|u| u["kind"] == *kind))
                && got.iter().any(|u| u["kind"] == "instrument" && u["data"]["volume"] == 100_000)
        })
        .await;
    let last_state = updates.iter().rfind(|u| u["kind"] == "instrument").expect("instrument update");
    assert_eq!(last_state["data"]["volume"], 100_000);
    assert_eq!(last_state["data"]["mid"], "6850.125");
    let fill_update = updates.iter().find(|u| u["kind"] == "fill").expect("fill update");
    assert_eq!(fill_update["key"], "fills:desk-1.ACC_2:ESZ6");
    assert_eq!(fill_update["data"]["position"]["net_qty"], 3);
    let candle = updates.iter().find(|u| u["kind"] == "candle").expect("the candle moves with the trade");
    assert!(candle["data"]["start"].as_i64().is_some_and(|start| start <= now), "{candle}");
    let after = server.table_counts();
    assert_eq!((after["trades"] - before["trades"], after["fills"] - before["fills"]), (1, 1));

    // Nothing of the refused events was counted anywhere.
    let (_, snapshot) = server.get_json("/api/snapshot").await;
    let es = snapshot["instruments"].as_array().expect("instruments").iter().find(|s| s["symbol"] == "ESZ6").cloned();
    assert_eq!(es.expect("ESZ6")["trades"], 1);
    let accounts: Vec<&str> =
        snapshot["positions"].as_array().expect("positions").iter().filter_map(|p| p["account"].as_str()).collect();
    assert_eq!(accounts, ["desk-1.ACC_2"]);

    // The built-in page writes every value as text, never as markup.
    let (status, page) = server.get_text("/").await;
    assert_eq!(status, 200);
    assert!(!page.contains("innerHTML") && page.contains("textContent"), "the / page must not insert markup");
}

#[actix_rt::test]
async fn identifiers_that_once_collided_are_kept_apart() {
    let server = TestServer::start().await;
    // The same event id on two instruments is two prints: both counted, both stored.
    let (status, body) = server
        .ingest(&json!([
            trade("feed-x:1", "ESZ6", "6850.25", 2, "buy"),
            trade("feed-x:1", "NQZ6", "24500.00", 3, "sell")
        ]))
        .await;
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(2)), "{body}");
    assert_eq!(server.table_counts()["trades"], 2, "the NQZ6 print once vanished from the database");

    // A fill id guessed and sent first under another account no longer hides the real fill.
    let forged = fill("evil:1", "ACC1", "F-100", "ESZ6", "buy", "6850.25", 1);
    let real = fill("desk:1", "ACC2", "F-100", "ESZ6", "sell", "6850.25", 4);
    let (status, body) = server.ingest(&json!([forged, real])).await;
    assert_eq!((status, body["accepted"].as_u64(), body["duplicates"].as_u64()), (200, Some(2), Some(0)), "{body}");
    assert_eq!(server.table_counts()["fills"], 2);
    let (_, positions) = server.get_json("/api/positions?account=ACC2").await;
    assert_eq!(positions[0]["net_qty"], -4, "{positions}");
    // The same account's fill id again, under another event id, is still one fill.
    let (status, body) = server.ingest(&json!([fill("desk:2", "ACC2", "F-100", "ESZ6", "sell", "6850.25", 4)])).await;
    assert_eq!((status, body["duplicates"].as_u64()), (200, Some(1)), "{body}");
    let (_, positions) = server.get_json("/api/positions?account=ACC2").await;
    assert_eq!(positions[0]["net_qty"], -4, "{positions}");

    // Another fill under a used id is refused by the processor, naming it; the rest applies.
    let before = server.table_counts();
    let batch = json!([
        fill("desk:3", "ACC2", "F-100", "ESZ6", "buy", "6850.25", 9),
        fill("desk:4", "ACC2", "F-101", "ESZ6", "buy", "6850.25", 1),
    ]);
    let (status, body) = server.ingest(&batch).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        (body["error"].as_str(), body["field"].as_str(), body["index"].as_u64()),
        (Some("invalid_event"), Some("fill_id"), Some(0)),
        "{body}"
    );
    assert!(body["message"].as_str().is_some_and(|m| m.contains("sell 4 at 6850.25")), "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["refused"][0]["event_id"].as_str()),
        (Some(1), Some("desk:3")),
        "{body}"
    );
    assert_eq!(server.table_counts()["fills"], before["fills"] + 1, "only the other fill is stored");
    let (_, positions) = server.get_json("/api/positions?account=ACC2").await;
    assert_eq!(positions[0]["net_qty"], -3, "{positions}");
}

/// A client whose ingest times out resends with the ids the 503 named: applied exactly once.
#[actix_rt::test]
async fn a_resend_after_an_unconfirmed_ingest_is_applied_once() {
    let server = TestServer::start_with(|c| c.intake.ingest_confirm_timeout_ms = 300).await;
    let pool = server.pipeline.db_pool.clone().expect("a database");
    // Another writer holds the database (as a paused or overloaded database would).
    let mut blocker = pool.get().expect("connection");
    let ttpulse_actors::store::DbConn::Sqlite(conn) = &mut blocker else { panic!("embedded SQLite") };
    diesel::sql_query("BEGIN IMMEDIATE").execute(&mut **conn).expect("lock");

    let events = json!([fill_with("ACC9", "F-9", 2), trade("feed-r:1", "CLF7", "61.50", 5, "buy")]);
    let (status, body) = server.ingest(&events).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("resend with the same event ids")), "{body}");
    let ids: Vec<String> =
        body["event_ids"].as_array().expect("the ids the events got").iter().map(|v| v.to_string()).collect();
    assert_eq!(ids.len(), 2, "{body}");
    assert!(ids[0].starts_with("\"api:") && ids[1] == "\"feed-r:1\"", "{ids:?}");

    // The database comes back; the client resends the same events with the ids it was given.
    diesel::sql_query("ROLLBACK").execute(&mut **conn).expect("unlock");
    drop(blocker);
    let mut resent = events.clone();
    for (event, id) in
        resent.as_array_mut().expect("array").iter_mut().zip(&body["event_ids"].as_array().expect("ids").clone())
    {
        event["event_id"] = id.clone();
    }
    // The writer may still be in its retry pause when the resend arrives (seen on a busy CI
    // machine): a client keeps resending the same ids while it gets 503, as the message says.
    let mut attempts = Vec::new();
    let receipt = loop {
        let (status, receipt) = server.ingest(&resent).await;
        attempts.push(status);
        if status != 503 || attempts.len() == 20 {
            break receipt;
        }
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(attempts.last(), Some(&200), "{attempts:?} {receipt}");
    assert_eq!((receipt["accepted"].as_u64(), receipt["duplicates"].as_u64()), (Some(0), Some(2)), "{receipt}");

    server.assert_applied_once((1, 1), "ACC9", 2, "CLF7", 5).await;
}

/// Late events (up to the window's day behind) and events dated a little ahead are accepted,
/// but neither rewrites the present: a stale quote once re-marked every position from a day-old
/// price, and a trade dated 5 s ahead once hid the next trades from the candles.
#[actix_rt::test]
async fn late_and_early_events_do_not_rewrite_the_present() {
    let server = TestServer::start().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_micros() as i64;
    let events = json!([
        quote("q:1", "ZCH7", "445.00", "445.25"),
        fill("q:2", "D2", "F-1", "ZCH7", "buy", "445.00", 100),
        {"type": "quote", "event_id": "late:1", "ts": now - 86_000_000_000_i64, "instrument": "ZCH7",
         "bid": "4400.00", "bid_qty": 1, "ask": "4450.00", "ask_qty": 1},
        {"type": "trade", "event_id": "late:2", "ts": now - 86_000_000_000_i64, "instrument": "ZCH7",
         "price": "4000.00", "qty": 1, "aggressor": "buy"},
    ]);
    let (status, receipt) = server.ingest(&events).await;
    assert_eq!((status, receipt["accepted"].as_u64()), (200, Some(4)), "{receipt}");
    let (_, snapshot) = server.get_json("/api/snapshot?instruments=ZCH7&positions=D2").await;
    let zc = &snapshot["instruments"][0];
    assert_eq!((zc["bid"].as_str(), zc["ask"].as_str()), (Some("445.00"), Some("445.25")), "{zc}");
    assert_eq!((zc["last"].as_str(), zc["volume"].as_i64()), (Some("4000.00"), Some(1)), "the only trade is the last");
    // (445.125 - 445) * 100 * 50
    assert_eq!(snapshot["positions"][0]["unrealized_pnl"], "625", "{snapshot}");
    let (_, metrics) = server.get_text("/metrics").await;
    assert!(metrics.contains("ttpulse_stale_quotes_total 1"), "{metrics}");

    // A trade dated 4.9 s ahead, then trades dated now: every one lands in the candles.
    let early = json!([{"type": "trade", "event_id": "fast:1", "ts": now + 4_900_000, "instrument": "HGH7",
                        "price": "5.1000", "qty": 1, "aggressor": "buy"}]);
    assert_eq!(server.ingest(&early).await.0, 200);
    for seq in 2..5 {
        let trade = json!([{"type": "trade", "event_id": format!("fast:{seq}"), "instrument": "HGH7",
                            "price": "5.1000", "qty": 10, "aggressor": "buy"}]);
        assert_eq!(server.ingest(&trade).await.0, 200);
    }
    let (_, candles) = server.get_json("/api/candles?symbol=HGH7&interval=1s&limit=100").await;
    let volume: i64 = candles.as_array().expect("candles").iter().filter_map(|c| c["volume"].as_i64()).sum();
    assert_eq!(volume, 31, "every trade is in the 1 s candles: {candles}");
    let start = candles[0]["start"].as_i64().expect("start");
    assert!(start <= now + 1_000_000, "no candle opens in the future: {candles}");
}
