//! Distributed mode against real services: a Kafka-protocol broker (nisshi), Redis and
//! PostgreSQL, each ttpulse role its own process. Needs `nisshi` (scripts/ensure-nisshi.sh),
//! `redis-server` and a local PostgreSQL; .ci/run provides all three.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::common::stack::{Role, Services};
use crate::common::{WsClient, eventually, fill, get_json, get_text, holds_all, post, quote, trade};
use serde_json::{Value, json};
use ttpulse_actors::domain::{Changes, Engine, InstrumentCatalog, Update};
use ttpulse_actors::ingest::simulator::Simulator;

const WAIT: Duration = Duration::from_secs(30);

mod cache_writes;
mod scale_out;

async fn healthy(role: &Role) -> bool {
    eventually(WAIT, async || get_json(&format!("{}/admin/health", role.admin)).await.0 == 200).await
}

/// Every role in one process, once it reports healthy.
async fn all_roles_healthy(services: &Services) -> Role {
    let all = services.role("ingester,processor,cache,api", &[]);
    assert!(healthy(&all).await, "{}", all.log_text());
    all
}

/// One process per role, with two api processes, each healthy.
struct TwoApis {
    processor: Role,
    cache: Role,
    api: [Role; 2],
    ingester: Role,
}

impl TwoApis {
    async fn start(services: &Services) -> Self {
        let processor = services.role("processor", &[]);
        let cache = services.role("cache", &[]);
        let api = [services.role("api", &[]), services.role("api", &[])];
        let ingester = services.role("ingester", &[]);
        for role in [&processor, &cache, &api[0], &api[1], &ingester] {
            assert!(healthy(role).await, "not healthy: {}\n{}", role.url, role.log_text());
        }
        Self { processor, cache, api, ingester }
    }
}

/// Messages of `tt_raw_data` a processor has consumed so far.
async fn consumed(role: &Role) -> u64 {
    let (_, metrics) = get_text(&format!("{}/metrics", role.admin)).await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"ttpulse_kafka_consumed_total{topic="tt_raw_data"} "#))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn ingest(ingester: &Role, events: &[Value]) -> Value {
    let (status, receipt) = post(&format!("{}/api/ingest", ingester.url), json!(events).to_string()).await;
    assert_eq!(status, 200, "{receipt}");
    receipt
}

fn assert_gapless(updates: &[Value]) {
    let mut last: HashMap<String, u64> = HashMap::new();
    for u in updates {
        let key = u["key"].as_str().unwrap_or_default().to_owned();
        if key.starts_with("pnl:") {
            // P&L samples' seq is the sample second: it grows, and may skip a second.
            continue;
        }
        let seq = u["seq"].as_u64().unwrap_or_default();
        if let Some(prev) = last.insert(key.clone(), seq) {
            assert_eq!(seq, prev + 1, "gap or reorder on {key}: {prev} then {seq}");
        }
    }
}

#[actix_rt::test]
async fn events_cross_the_broker_redis_and_postgres_to_two_api_processes() {
    let services = Services::start(false);
    let TwoApis { processor, cache, api, ingester } = TwoApis::start(&services).await;
    let mut clients = Vec::new();
    for a in &api {
        let mut ws = WsClient::connect(&a.ws_url()).await;
        ws.subscribe(&["ESZ6"], &["ACC1"]).await;
        clients.push(ws);
    }
    let receipt = ingest(
        &ingester,
        &[
            quote("d:1", "ESZ6", "6850.00", "6850.25"),
            trade("d:2", "ESZ6", "6850.25", 2, "buy"),
            trade("d:3", "ESZ6", "6850.00", 2, "sell"),
            fill("d:4", "ACC1", "F-1", "ESZ6", "buy", "6850.25", 3),
            quote("d:5", "ESZ6", "6851.00", "6851.25"),
        ],
    )
    .await;
    assert_eq!(receipt["accepted"], 5);

    for ws in &mut clients {
        let updates = ws
            .updates_until(WAIT, |got| {
                holds_all(got, &[("pos:ACC1:ESZ6", 2), ("inst:ESZ6", 4), ("fills:ACC1:ESZ6", 1)])
            })
            .await;
        assert_gapless(&updates);
        let last = &updates.iter().rfind(|u| u["key"] == "inst:ESZ6").expect("instrument")["data"];
        assert_eq!(
            (last["seq"].clone(), last["mid"].clone(), last["vwap"].clone()),
            (json!(4), json!("6851.125"), json!("6850.125"))
        );
        assert_eq!(last["volume"], 4);
        let position = &updates.iter().rfind(|u| u["key"] == "pos:ACC1:ESZ6").expect("position")["data"];
        assert_eq!((position["net_qty"].clone(), position["unrealized_pnl"].clone()), (json!(3), json!("131.25")));
        let candles = updates.iter().filter(|u| u["kind"] == "candle").count();
        assert_eq!(candles, 4);
        // The hop times crossed Kafka and Redis: ingest (ingester) <= processed <= cached.
        for u in updates.iter().filter(|u| u["ingest_ts"].as_i64() > Some(0)) {
            let (i, p, c) = (u["ingest_ts"].as_i64(), u["hops"]["processed"].as_i64(), u["hops"]["cached"].as_i64());
            assert!(matches!((i, p, c), (Some(i), Some(p), Some(c)) if i <= p && p <= c), "{u}");
        }
    }
    // Each process measures the hop that ends in it.
    for (role, hop) in [
        (&processor, "ingest_to_processed"),
        (&cache, "processed_to_cached"),
        (&api[0], "cached_to_written"),
        (&api[1], "cached_to_written"),
    ] {
        let (_, metrics) = get_text(&format!("{}/metrics", role.admin)).await;
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("ttpulse_hop_latency_seconds_count{{hop=\"{hop}\"}}")))
            .unwrap_or_else(|| panic!("no {hop} in\n{metrics}"));
        let count: u64 = line.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        assert!(count > 0, "{line}");
    }

    // Redis holds the latest state of each key; PostgreSQL the rows (the processor publishes
    // before its batched write commits, so the rows may land a few milliseconds later).
    assert_eq!(services.redis_cli(&["HGET", "tt:inst:ESZ6", "seq"]), "4");
    assert_eq!(services.redis_cli(&["HGET", "tt:pos:ACC1:ESZ6", "seq"]), "2");
    assert!(eventually(WAIT, async || services.sql("SELECT count(*) FROM trades") == "2").await);
    assert_eq!(services.sql("SELECT count(*) FROM fills"), "1");
    assert_eq!(services.sql("SELECT volume || ' ' || seq FROM instrument_states WHERE symbol = 'ESZ6'"), "4 4");
    let (_, snapshot) = get_json(&format!("{}/api/snapshot?instruments=ESZ6", api[1].url)).await;
    assert_eq!(snapshot["instruments"][0]["seq"], 4);
    let (_, candles) = get_json(&format!("{}/api/candles?symbol=ESZ6&interval=1m", api[0].url)).await;
    assert_eq!(candles[0]["volume"], 4);
    // The trader's record reads back from PostgreSQL on an api process: fills and prints.
    let (status, fills) = get_json(&format!("{}/api/fills?account=ACC1", api[1].url)).await;
    assert_eq!(status, 200, "{fills}");
    assert_eq!((fills["fills"][0]["fill_id"].as_str(), fills["fills"][0]["seq"].as_u64()), (Some("F-1"), Some(1)));
    let (_, lane) = get_json(&format!("{}/api/fills?account=ACC1&symbol=ESZ6&since_seq=0", api[0].url)).await;
    assert_eq!(lane["fills"].as_array().map(Vec::len), Some(1), "{lane}");
    // P&L over time is sampled by the processor, stored in PostgreSQL and pushed through Kafka and
    // Redis to the api processes' sessions.
    let sampled = eventually(WAIT, async || {
        let (_, points) = get_json(&format!("{}/api/pnl?account=ACC1&interval=1s", api[0].url)).await;
        points.as_array().is_some_and(|p| !p.is_empty())
    })
    .await;
    assert!(sampled, "no P&L samples stored");
    let pushed =
        clients[0].updates_until(WAIT, |got| got.iter().any(|u| u["kind"] == "pnl" && u["key"] == "pnl:ACC1:1s")).await;
    assert!(pushed.iter().any(|u| u["kind"] == "pnl"), "no pnl update reached the api's session");
    // A client that held nothing of the lane recovers its fill over the WebSocket, from PostgreSQL.
    let mut back = WsClient::connect(&api[1].ws_url()).await;
    back.send(json!({"op": "subscribe", "positions": ["ACC1"], "recover": {"fills:ACC1:ESZ6": 0}})).await;
    back.next_of_type("snapshot", WAIT).await.expect("snapshot");
    let recovered = back.next_of_type("recovered", WAIT).await.expect("recovered");
    assert_eq!(recovered["lanes"][0]["recovered"], true, "{recovered}");
    assert_eq!(recovered["lanes"][0]["fills"][0]["fill_id"], "F-1", "{recovered}");
    let (_, prints) = get_json(&format!("{}/api/trades?symbol=ESZ6", api[0].url)).await;
    let ids: Vec<&str> = prints.as_array().expect("prints").iter().filter_map(|t| t["event_id"].as_str()).collect();
    assert_eq!(ids, ["d:3", "d:2"], "newest first");

    // Each process reports its Kafka and Redis actors, and the metrics of its hops.
    let (_, actors) = get_json(&format!("{}/admin/actors", processor.admin)).await;
    let names: Vec<&str> =
        actors.as_array().map(|l| l.iter().filter_map(|a| a["name"].as_str()).collect()).unwrap_or_default();
    assert!(names.contains(&"kafka-consumer-raw") && names.contains(&"kafka-producer-processed"), "{names:?}");
    let (_, metrics) = get_text(&format!("{}/metrics", processor.admin)).await;
    assert!(metrics.contains(r#"ttpulse_kafka_consumed_total{topic="tt_raw_data"} 5"#), "{metrics}");
    let (_, metrics) = get_text(&format!("{}/metrics", cache.admin)).await;
    assert!(metrics.contains("ttpulse_redis_used_memory_bytes"), "{metrics}");
    let (_, health) = get_json(&format!("{}/admin/health", api[0].admin)).await;
    assert_eq!((health["mode"].clone(), health["roles"].clone()), (json!("distributed"), json!(["api"])));
    // Replaying tt_raw_data from offset 0 (a new consumer group) leaves the database as it was.
    let before = services.sql("SELECT count(*) || ' ' || sum(volume) || ' ' || sum(seq) FROM instrument_states");
    let replayer = services.role("processor", &[("TTPULSE_KAFKA_GROUP", "replay-from-zero")]);
    let replayed = eventually(WAIT, async || {
        let (_, metrics) = get_text(&format!("{}/metrics", replayer.admin)).await;
        metrics.contains("ttpulse_events_duplicate_total 5")
    })
    .await;
    assert!(replayed, "the replay did not see the 5 events as applied:\n{}", replayer.log_text());
    assert_eq!(services.sql("SELECT count(*) || ' ' || sum(volume) || ' ' || sum(seq) FROM instrument_states"), before);
    assert_eq!(services.sql("SELECT count(*) FROM trades"), "2");
    assert_eq!(services.redis_cli(&["HGET", "tt:inst:ESZ6", "seq"]), "4");

    // The api role serves no ingest, the ingester no reads.
    assert_eq!(post(&format!("{}/api/ingest", api[0].url), "[]").await.0, 404);
    assert_eq!(get_json(&format!("{}/api/snapshot", ingester.url)).await.0, 404);
}

/// The state an engine reaches on `events`: the latest update of every key, and every candle
/// (`symbol period start` -> `volume trades close seq`).
fn recompute(
    catalog: &Arc<InstrumentCatalog>,
    events: &[ttpulse_actors::domain::ValidEvent],
) -> (BTreeMap<String, Update>, BTreeMap<String, String>) {
    let mut engine = Engine::new(catalog.clone());
    let (mut out, mut changes) = (Vec::new(), Changes::default());
    for event in events {
        engine.apply(event, &mut out, &mut changes).expect("simulated events apply");
    }
    let candles = changes
        .candles
        .values()
        .map(|c| {
            (
                format!("{} {} {}", c.symbol, c.interval, c.start),
                format!("{} {} {} {}", c.volume, c.trades, c.close, c.seq),
            )
        })
        .collect();
    (engine.current_state().into_iter().map(|p| (p.key, p.update)).collect(), candles)
}

/// Kills one of two processors mid-stream and forces some 20 rebalances (a third processor joins
/// and leaves the group between chunks) while batches are in flight: the database, Redis and a
/// recomputation from the raw events still agree exactly.
#[actix_rt::test]
async fn a_processor_killed_mid_stream_loses_nothing_and_counts_nothing_twice() {
    let services = Services::start(false);
    // Two processors share the partitions of tt_raw_data through their consumer group.
    let mut processor = services.role("processor", &[]);
    let other = services.role("processor", &[]);
    let cache = services.role("cache", &[]);
    let api = services.role("api", &[]);
    let ingester = services.role("ingester", &[]);
    for role in [&processor, &other, &cache, &api, &ingester] {
        assert!(healthy(role).await, "{}", role.log_text());
    }
    let catalog = Arc::new(InstrumentCatalog::default_futures());
    const TOTAL: usize = 100_000;
    // Dated now (pushed events must lie within the ingest time window), under a source of
    // their own (`sim` is ttpulse's).
    let mut events = Simulator::new(&catalog, 42).generate(TOTAL, ttpulse_actors::health::now_micros());
    for event in &mut events {
        event.id.source = "load".into();
    }
    let wire: Vec<Value> = events.iter().map(|e| serde_json::to_value(e.to_raw()).expect("json")).collect();
    let trades = events.iter().filter(|e| e.body.kind() == "trade").count();
    let fills = events.iter().filter(|e| e.body.kind() == "fill").count();

    let mut churn: Option<Role> = None;
    let mut rebalances = 0;
    for (i, chunk) in wire.chunks(4_000).enumerate() {
        if i == 10 {
            // Both processors had a share of the stream so far.
            let (a, b) = (consumed(&processor).await, consumed(&other).await);
            assert!(a > 0 && b > 0, "partitions not shared: {a} and {b} messages");
            // In the middle of the stream, with batches in flight.
            processor.proc.kill9();
            rebalances += 1;
            ingest(&ingester, chunk).await;
            continue;
        }
        // A member joins or leaves: the group rebalances while this chunk is in flight, and the
        // next change waits until the long-lived member has been given its new share.
        let assigned = || other.log_text().matches("Kafka partitions assigned").count();
        let before = assigned();
        match churn.take() {
            Some(mut leaving) => leaving.proc.stop(),
            None => churn = Some(services.role("processor", &[])),
        }
        ingest(&ingester, chunk).await;
        if eventually(Duration::from_secs(15), async || assigned() > before).await {
            rebalances += 1;
        }
    }
    drop(churn);
    eprintln!("{rebalances} rebalances while the stream was in flight");
    assert!(rebalances >= 20, "only {rebalances} rebalances:\n{}", other.log_text());
    let processor = services.role("processor", &[]);
    // Every event applied: the trades, the fills and every instrument's seq (quotes too) as a
    // recomputation has them. A partition's last events may be fills or quotes after its last
    // trade, so one count alone can be complete while a lagging partition is still on its way.
    let (expected, candles) = recompute(&catalog, &events);
    let seqs: u64 = expected.values().map(|u| if let Update::Instrument(s) = u { s.seq } else { 0 }).sum();
    let stored = || {
        services.sql(
            "SELECT (SELECT count(*) FROM trades) || ' ' || (SELECT count(*) FROM fills) || ' ' || \
             (SELECT coalesce(sum(seq), 0) FROM instrument_states)",
        )
    };
    let done = eventually(Duration::from_secs(240), async || stored() == format!("{trades} {fills} {seqs}")).await;
    assert!(
        done,
        "trades, fills and instrument seqs stored: {} of {trades} {fills} {seqs}\n{}",
        stored(),
        processor.log_text()
    );
    // Each account's fill lane per instrument is gapless: seqs 1..n, none twice, even though
    // the instruments were spread over two processors.
    let broken = "SELECT count(*) FROM (SELECT account, symbol FROM fills GROUP BY account, symbol \
                  HAVING count(*) <> max(account_seq) OR count(DISTINCT account_seq) <> count(*)) lanes";
    assert_eq!(services.sql(broken), "0");

    // Every instrument and position equals a recomputation from the raw events, seqs included:
    // an event applied twice would show as a higher seq, volume or position.
    let stored_candles: BTreeMap<String, String> = services
        .sql(
            "SELECT symbol || ' ' || period || ' ' || start_ts || '|' || volume || ' ' || trades || ' ' || close || ' ' || seq \
             FROM candles",
        )
        .lines()
        .filter_map(|l| l.split_once('|').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    assert_eq!(stored_candles.len(), candles.len(), "every candle stored once");
    for (key, value) in &candles {
        assert_eq!(stored_candles.get(key), Some(value), "candle {key}");
    }
    let mut checked = 0;
    for (key, update) in &expected {
        match update {
            Update::Instrument(s) => {
                let row = services.sql(&format!(
                    "SELECT seq || ' ' || volume || ' ' || trades FROM instrument_states WHERE symbol = '{}'",
                    s.symbol
                ));
                assert_eq!(row, format!("{} {} {}", s.seq, s.volume, s.trades), "{key}");
                checked += 1;
            }
            Update::Position(p) => {
                let row = services.sql(&format!(
                    "SELECT seq || ' ' || net_qty || ' ' || avg_price || ' ' || realized_pnl FROM positions WHERE account = '{}' AND symbol = '{}'",
                    p.account, p.symbol
                ));
                assert_eq!(row, format!("{} {} {} {}", p.seq, p.net_qty, p.avg_price, p.realized_pnl), "{key}");
                checked += 1;
            }
            _ => {}
        }
    }
    assert!(checked > 20, "checked {checked} keys");
    // The cache and the api converge on the same state through Kafka and Redis.
    let converged = eventually(Duration::from_secs(60), async || {
        let (_, snapshot) = get_json(&format!("{}/api/snapshot", api.url)).await;
        expected.values().all(|update| match update {
            Update::Instrument(s) => snapshot["instruments"].as_array().is_some_and(|l| {
                l.iter().any(|i| i["symbol"] == s.symbol.as_str() && i["seq"] == s.seq && i["volume"] == s.volume)
            }),
            _ => true,
        })
    })
    .await;
    assert!(converged, "the api's snapshot did not converge");
}

#[actix_rt::test]
async fn redis_restarted_empty_is_rebuilt_and_clients_get_a_fresh_snapshot() {
    let mut services = Services::start(false);
    let all = all_roles_healthy(&services).await;
    let mut ws = WsClient::connect(&all.ws_url()).await;
    ws.subscribe(&["*"], &["*"]).await;
    ingest(&all, &[quote("r:1", "GCG7", "4050.0", "4050.1"), fill("r:2", "ACC2", "F-r", "GCG7", "buy", "4050.1", 2)])
        .await;
    assert!(eventually(WAIT, async || services.redis_cli(&["HGET", "tt:pos:ACC2:GCG7", "seq"]) == "1").await);
    // The state keys (P&L samples come back by themselves every second; they are not state to
    // rebuild).
    let state_keys = |services: &Services| {
        let mut keys: Vec<String> = services
            .redis_cli(&["SMEMBERS", "tt:keys"])
            .lines()
            .filter(|k| !k.is_empty() && !k.starts_with("tt:pnl:"))
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    };
    let keys_before = state_keys(&services);
    assert_eq!(keys_before.len(), 3, "inst, pos and fills: {keys_before:?}");

    services.stop_redis();
    services.start_redis();
    assert_eq!(services.redis_cli(&["SCARD", "tt:keys"]), "0", "a new, empty Redis");
    // The cache updater rebuilds it from the database...
    let rebuilt = eventually(WAIT, async || state_keys(&services) == keys_before).await;
    assert!(rebuilt, "Redis not rebuilt; log:\n{}", all.log_text());
    assert_eq!(services.redis_cli(&["HGET", "tt:inst:GCG7", "seq"]), "1");
    // ...and the client gets a fresh snapshot holding the state (skipping any snapshot sent
    // before the restart, e.g. after the first, empty rebuild at start).
    let mut fresh = None;
    while let Some(snapshot) = ws.next_of_type("snapshot", WAIT).await {
        if snapshot["positions"].as_array().is_some_and(|p| !p.is_empty()) {
            fresh = Some(snapshot);
            break;
        }
    }
    let snapshot = fresh.expect("a fresh snapshot with the state after the Redis restart");
    assert_eq!(snapshot["positions"][0]["net_qty"], 2, "{snapshot}");
    assert_eq!(snapshot["instruments"][0]["seq"], 1, "{snapshot}");
    // The stream goes on over the new connections.
    ingest(&all, &[quote("r:3", "GCG7", "4050.1", "4050.2")]).await;
    let updates = ws.updates_until(WAIT, |got| got.iter().any(|u| u["key"] == "inst:GCG7" && u["seq"] == 2)).await;
    assert!(updates.iter().any(|u| u["key"] == "inst:GCG7" && u["seq"] == 2), "{updates:?}");
    let (_, metrics) = get_text(&format!("{}/metrics", all.admin)).await;
    assert!(!metrics.contains("ttpulse_redis_reconnects_total 0"), "{metrics}");
}

#[actix_rt::test]
async fn a_broker_outage_delays_events_and_loses_none() {
    let mut services = Services::start(true);
    let all = all_roles_healthy(&services).await;
    let batch = |from: usize| -> Vec<Value> {
        (from..from + 200)
            .map(|i| trade(&format!("b:{i}"), "CLF7", "61.50", 1, if i % 2 == 0 { "buy" } else { "sell" }))
            .collect()
    };
    ingest(&all, &batch(1)).await;
    assert!(eventually(WAIT, async || services.sql("SELECT count(*) FROM trades") == "200").await);

    services.stop_broker();
    let url = format!("{}/api/ingest", all.url);
    let during = actix_rt::spawn(async move { post(&url, json!(batch(201)).to_string()).await });
    actix_rt::time::sleep(Duration::from_secs(3)).await;
    services.start_broker();
    let (status, receipt) = during.await.expect("task");
    assert_eq!(status, 200, "the ingest waited for the broker: {receipt}");
    let all_stored =
        eventually(Duration::from_secs(90), async || services.sql("SELECT count(*) FROM trades") == "400").await;
    assert!(all_stored, "stored {} of 400\n{}", services.sql("SELECT count(*) FROM trades"), all.log_text());
    assert_eq!(services.sql("SELECT volume FROM instrument_states WHERE symbol = 'CLF7'"), "400");
}

#[actix_rt::test]
async fn poison_messages_go_to_the_dead_letter_topic_and_the_stream_goes_on() {
    use rdkafka::ClientConfig;
    use rdkafka::message::{Headers, Message};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let services = Services::start(false);
    let all = all_roles_healthy(&services).await;
    // Topics exist once the first event went through.
    ingest(&all, &[quote("p:1", "ESZ6", "6850.00", "6850.25")]).await;
    assert!(eventually(WAIT, async || services.sql("SELECT count(*) FROM instrument_states") == "1").await);

    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", services.brokers()).create().expect("producer");
    let valid = json!({"type":"quote","event_id":"p:2","instrument":"ESZ6","bid":"6851.00","bid_qty":1,"ask":"6851.25","ask_qty":1});
    let poison = [
        ("ESZ6", "{not json".to_owned()),
        (
            "NOPE",
            json!({"type":"trade","event_id":"p:9","instrument":"NOPE","price":"1","qty":1,"aggressor":"buy"})
                .to_string(),
        ),
        ("ESZ6", valid.to_string()),
    ];
    for (key, payload) in &poison {
        producer
            .send(FutureRecord::to("tt_raw_data").key(*key).payload(payload), Duration::from_secs(10))
            .await
            .expect("produce");
    }

    let consumer = services.reader("tt_dead_letter");
    let mut reasons = Vec::new();
    while reasons.len() < 2 {
        let message =
            actix_rt::time::timeout(WAIT, consumer.recv()).await.expect("dead letters within 30 s").expect("recv");
        let headers = message.headers().expect("headers");
        let reason = headers.iter().find(|h| h.key == "ttpulse-error").and_then(|h| h.value).expect("reason header");
        reasons.push(String::from_utf8_lossy(reason).into_owned());
    }
    assert!(reasons[0].contains("malformed JSON"), "{reasons:?}");
    assert!(reasons[1].contains("unknown instrument `NOPE`"), "{reasons:?}");
    // The valid event after the poison ones was applied.
    assert!(
        eventually(WAIT, async || services.sql("SELECT seq FROM instrument_states WHERE symbol = 'ESZ6'") == "2").await
    );
    let (_, metrics) = get_text(&format!("{}/metrics", all.admin)).await;
    assert!(metrics.contains("ttpulse_dead_letters_total 2"), "{metrics}");
}

/// An event that decodes and validates but that the processor refuses (here: another fill under
/// a fill id already applied) goes to the dead-letter topic with the processor's reason, nothing
/// of it is stored, and the next event is applied.
#[actix_rt::test]
async fn an_event_the_processor_refuses_is_dead_lettered_with_its_reason() {
    use rdkafka::message::{Headers, Message};

    let services = Services::start(false);
    let all = all_roles_healthy(&services).await;
    ingest(&all, &[fill("r:1", "ACC1", "F-1", "ESZ6", "buy", "6850.25", 3)]).await;
    assert!(eventually(WAIT, async || services.sql("SELECT count(*) FROM fills") == "1").await);
    // Accepted by the broker (the processor refuses it later, asynchronously).
    ingest(&all, &[fill("r:2", "ACC1", "F-1", "ESZ6", "sell", "6851.00", 5)]).await;
    ingest(&all, &[fill("r:3", "ACC1", "F-2", "ESZ6", "buy", "6850.50", 1)]).await;

    let consumer = services.reader("tt_dead_letter");
    let message =
        actix_rt::time::timeout(WAIT, consumer.recv()).await.expect("a dead letter within 30 s").expect("recv");
    let reason = message.headers().and_then(|h| h.iter().find(|h| h.key == "ttpulse-error").and_then(|h| h.value));
    let reason = String::from_utf8_lossy(reason.expect("reason header")).into_owned();
    assert!(reason.contains("refused by the processor") && reason.contains("fill_id"), "{reason}");
    assert!(String::from_utf8_lossy(message.payload().unwrap_or_default()).contains("r:2"));
    // Nothing of it was stored; the next fill was.
    assert!(eventually(WAIT, async || services.sql("SELECT count(*) FROM fills") == "2").await);
    assert_eq!(services.sql("SELECT fill_id FROM fills ORDER BY account_seq"), "F-1\nF-2");
    assert_eq!(services.sql("SELECT net_qty FROM positions WHERE account = 'ACC1'"), "4");
}

/// A poison message in a batch that is offered again (a later write failed, here Redis refusing
/// a key of the wrong type, again and again with backoff) goes to the dead-letter topic once,
/// not once per attempt; when the cause is mended the stream goes on.
#[actix_rt::test]
async fn a_poison_message_offered_again_is_dead_lettered_once() {
    use rdkafka::ClientConfig;
    use rdkafka::message::Message;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let services = Services::start(false);
    let all = all_roles_healthy(&services).await;
    ingest(&all, &[quote("d:1", "ESZ6", "6850.00", "6850.25")]).await;
    let cached = |seq: &'static str| {
        let services = &services;
        async move || services.redis_cli(&["HGET", "tt:inst:ESZ6", "seq"]) == seq
    };
    assert!(eventually(WAIT, cached("1")).await, "{}", all.log_text());

    // Not a hash: every write of NQZ6's state fails, and its batch and those behind it are
    // offered again with growing pauses.
    services.redis_cli(&["SET", "tt:inst:NQZ6", "not a hash"]);
    ingest(&all, &[quote("d:2", "NQZ6", "24500.00", "24500.25")]).await;
    // NQZ6's write is the one refused (the log is every role's).
    let failing = eventually(WAIT, async || all.log_text().contains("WRONGTYPE")).await;
    assert!(failing, "{}", all.log_text());
    let redos = || all.log_text().matches("a batch was not stored").count();
    let redos_before = redos();
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", services.brokers()).create().expect("producer");
    let poison = "{not an update";
    producer
        .send(FutureRecord::to("tt_processed_data").key("NQZ6").payload(poison), Duration::from_secs(10))
        .await
        .expect("produce");
    // Several more attempts while the poison message is in the batches offered again.
    actix_rt::time::sleep(Duration::from_secs(6)).await;
    let attempts = redos() - redos_before;
    assert!(attempts >= 2, "offered again only {attempts} times since the poison message:\n{}", all.log_text());

    services.redis_cli(&["DEL", "tt:inst:NQZ6"]);
    assert!(
        eventually(WAIT, async || services.redis_cli(&["HGET", "tt:inst:NQZ6", "seq"]) == "1").await,
        "NQZ6 never stored once mended:\n{}",
        all.log_text()
    );
    ingest(&all, &[quote("d:3", "ESZ6", "6851.00", "6851.25")]).await;
    assert!(eventually(WAIT, cached("2")).await, "the next event after the mend:\n{}", all.log_text());

    // Every dead letter there is: the poison message, once.
    let consumer = services.reader("tt_dead_letter");
    let mut letters = Vec::new();
    // The first within the usual wait (the reader joins its group first), then 5 s of quiet.
    let mut wait = WAIT;
    while let Ok(message) = actix_rt::time::timeout(wait, consumer.recv()).await {
        let message = message.expect("read the dead-letter topic");
        letters.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
        wait = Duration::from_secs(5);
    }
    assert_eq!(letters, vec![poison.to_owned()]);
    let (_, metrics) = get_text(&format!("{}/metrics", all.admin)).await;
    assert_eq!(crate::common::metric(&metrics, "ttpulse_dead_letters_total"), 1.0, "{metrics}");
}

#[actix_rt::test]
async fn unreachable_broker_and_redis_at_start_are_retried_not_fatal() {
    let mut services = Services::start(false);
    services.stop_broker();
    services.stop_redis();
    let mut all = services.role("ingester,processor,cache,api", &[]);
    actix_rt::time::sleep(Duration::from_secs(3)).await;
    assert!(all.proc.alive(), "the process gave up:\n{}", all.log_text());
    let (status, health) = get_json(&format!("{}/admin/health", all.admin)).await;
    assert_eq!(status, 503, "{health}");
    let said = eventually(WAIT, async || {
        let log = all.log_text();
        log.contains("cannot create the Kafka topics") && log.contains("cannot reach Redis")
    })
    .await;
    let log = all.log_text();
    assert!(said, "no clear error in the log:\n{log}");
    assert!(!log.contains("panicked"), "{log}");

    services.start_broker();
    services.start_redis();
    assert!(healthy(&all).await, "did not recover:\n{}", all.log_text());
    // The first produce to a broker that has just come up can still time out; the 503 then
    // names the event ids, and a client resends them as they were (seq 1 below: counted once).
    let body = json!([quote("u:1", "ZNH7", "112.5", "112.515625")]).to_string();
    let url = format!("{}/api/ingest", all.url);
    let mut refused = Vec::new();
    let taken = eventually(WAIT, async || {
        let (status, receipt) = post(&url, body.clone()).await;
        if status != 200 {
            refused.push((status, receipt));
        }
        status == 200
    })
    .await;
    assert!(taken, "the ingest was not taken once the services were back: {refused:?}");
    for (status, receipt) in &refused {
        assert_eq!((*status, &receipt["event_ids"]), (503, &json!(["u:1"])), "{receipt}");
    }
    let flowed = eventually(WAIT, async || {
        let (_, snapshot) = get_json(&format!("{}/api/snapshot?instruments=ZNH7", all.url)).await;
        snapshot["instruments"][0]["seq"] == 1
    })
    .await;
    assert!(flowed, "{}", all.log_text());
}

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

/// A user token granting `accounts`, valid for 10 minutes.
fn token(accounts: &[&str]) -> String {
    use jsonwebtoken::{EncodingKey, Header, encode};
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let claims = json!({"sub": "trader-1", "exp": now + 600, "accounts": accounts});
    encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).expect("token")
}

/// The `fill` updates' seqs of one lane, in the order they came.
fn fill_seqs(updates: &[Value], key: &str) -> Vec<u64> {
    updates.iter().filter(|u| u["kind"] == "fill" && u["key"] == key).filter_map(|u| u["seq"].as_u64()).collect()
}

/// ACC1's fills `from..=to` in ESZ6 (source `fl`: its sequences grow with the fills).
fn acc1_fills(from: u64, to: u64) -> Vec<Value> {
    (from..=to).map(|i| fill(&format!("fl:{i}"), "ACC1", &format!("F-{i}"), "ESZ6", "buy", "6850.25", 1)).collect()
}

/// A print dated `ts` (Unix micros).
fn dated_trade(id: &str, ts: i64) -> Value {
    let mut print = trade(id, "ESZ6", "6850.50", 1, "sell");
    print["ts"] = json!(ts);
    print
}

/// The account's record on an api process with user tokens, read from PostgreSQL and Redis: a
/// client that drops its socket while fills flow resumes with the last seq it held and gets
/// every missed fill once, in order, then the live stream; beyond `TTPULSE_WS_MAX_RECOVER` it
/// is told `recovered: false`. Another account's fills and P&L are refused (403), the blotter
/// pages, prints stream as `trade` updates and page back through a shared time, and candles
/// answer `since`.
#[actix_rt::test]
async fn a_client_resumes_its_fills_lane_and_reads_only_its_accounts_record() {
    const LANE: &str = "fills:ACC1:ESZ6";
    let started = ttpulse_actors::health::now_micros();
    let services = Services::start(false);
    let backend = services.role("ingester,processor,cache", &[]);
    let api = services.role("api", &[("TTPULSE_AUTH_HS256_SECRET", SECRET), ("TTPULSE_WS_MAX_RECOVER", "20")]);
    for role in [&backend, &api] {
        assert!(healthy(role).await, "not healthy: {}\n{}", role.url, role.log_text());
    }
    let acc1 = token(&["ACC1"]);
    let ws_url = format!("{}?access_token={acc1}", api.ws_url());
    let read = async |path: &str| get_json(&format!("{}{path}&access_token={acc1}", api.url)).await;

    let mut ws = WsClient::connect(&ws_url).await;
    ws.send(json!({"op": "subscribe", "positions": ["ACC1"], "trades": ["ESZ6"]})).await;
    ws.next_of_type("snapshot", WAIT).await.expect("snapshot");
    // Another account's lane is refused on the WebSocket too.
    ws.send(json!({"op": "subscribe", "positions": ["ACC2"]})).await;
    let refused = ws.next_of_type("error", WAIT).await.expect("an error");
    assert_eq!(refused["code"], "forbidden", "{refused}");
    let mut first = vec![quote("rc:1", "ESZ6", "6850.00", "6850.25")];
    first.extend(acc1_fills(1, 5));
    first.push(dated_trade("rc:2", started - 10_000_000));
    ingest(&backend, &first).await;
    let seen =
        ws.updates_until(WAIT, |got| fill_seqs(got, LANE).len() == 5 && got.iter().any(|u| u["kind"] == "trade")).await;
    assert_eq!(fill_seqs(&seen, LANE), [1, 2, 3, 4, 5]);
    let print = seen.iter().find(|u| u["kind"] == "trade").expect("a trade update");
    assert_eq!(
        (print["key"].as_str(), print["seq"].as_u64(), print["data"]["event_id"].as_str()),
        (Some("trades:ESZ6"), Some(1), Some("rc:2")),
        "{print}"
    );

    // Fills flow; the client drops its socket in the middle of them.
    let url = format!("{}/api/ingest", backend.url);
    let flowing = actix_rt::spawn(async move {
        for f in acc1_fills(6, 15) {
            assert_eq!(post(&url, json!([f]).to_string()).await.0, 200);
            actix_rt::time::sleep(Duration::from_millis(30)).await;
        }
    });
    let during = ws.updates_until(WAIT, |got| !fill_seqs(got, LANE).is_empty()).await;
    drop(ws);
    let held_seqs: Vec<u64> = fill_seqs(&seen, LANE).into_iter().chain(fill_seqs(&during, LANE)).collect();
    let held = *held_seqs.last().expect("fills");
    assert_eq!(held_seqs, (1..=held).collect::<Vec<u64>>(), "gapless before the drop");
    flowing.await.expect("the ingest task");
    ingest(&backend, &acc1_fills(16, 18)).await;
    assert!(held < 18, "the client missed fills");

    // It resumes with the last seq it held.
    let mut back = WsClient::connect(&ws_url).await;
    back.send(json!({"op": "subscribe", "positions": ["ACC1"], "recover": {"fills:ACC1:ESZ6": held}})).await;
    let snapshot = back.next_of_type("snapshot", WAIT).await.expect("snapshot");
    let to = snapshot["accounts"]
        .as_array()
        .and_then(|a| a.iter().find(|l| l["symbol"] == "ESZ6"))
        .and_then(|l| l["fill_seq"].as_u64())
        .expect("the lane in the snapshot");
    let recovered = back.next_json(WAIT).await.expect("the recovered fills come next");
    assert_eq!(recovered["type"], "recovered", "{recovered}");
    let lane = &recovered["lanes"][0];
    assert_eq!(
        (lane["key"].as_str(), lane["recovered"].as_bool(), lane["from"].as_u64(), lane["to"].as_u64()),
        (Some(LANE), Some(true), Some(held), Some(to)),
        "{lane}"
    );
    let mut resumed: Vec<u64> =
        lane["fills"].as_array().expect("fills").iter().filter_map(|f| f["seq"].as_u64()).collect();
    assert_eq!(resumed, (held + 1..=to).collect::<Vec<u64>>(), "the missed fills once, in order");
    // Then the live stream (what the snapshot did not reach yet, and new fills): no gap, no
    // duplicate.
    ingest(&backend, &acc1_fills(19, 20)).await;
    let live = back.updates_until(WAIT, |got| fill_seqs(got, LANE).last() == Some(&20)).await;
    resumed.extend(fill_seqs(&live, LANE));
    assert_eq!(resumed, (held + 1..=20).collect::<Vec<u64>>(), "recovered, then live");
    drop(back);

    // Beyond the bound: `recovered: false`, and the client takes the snapshot.
    ingest(&backend, &acc1_fills(21, 45)).await;
    let caught_up = eventually(WAIT, async || {
        let (_, snapshot) = read("/api/snapshot?positions=ACC1&instruments=ESZ6").await;
        snapshot["accounts"][0]["fill_seq"] == 45
    })
    .await;
    assert!(caught_up, "the api's snapshot did not reach fill 45");
    let mut late = WsClient::connect(&ws_url).await;
    late.send(json!({"op": "subscribe", "positions": ["ACC1"], "recover": {"fills:ACC1:ESZ6": 20}})).await;
    late.next_of_type("snapshot", WAIT).await.expect("snapshot");
    let recovered = late.next_of_type("recovered", WAIT).await.expect("recovered");
    let lane = &recovered["lanes"][0];
    assert_eq!((lane["recovered"].as_bool(), lane["fills"].as_array().map(Vec::len)), (Some(false), Some(0)), "{lane}");
    assert!(lane["reason"].as_str().is_some_and(|r| r.contains("more than 20")), "{lane}");

    // The blotter pages through the day from PostgreSQL: every fill once, newest first. The
    // processor commits a fill's write a few milliseconds after publishing it, so the database
    // may trail the snapshot just read: wait until it holds the newest fill.
    let stored = eventually(WAIT, async || {
        read("/api/fills?account=ACC1&limit=1").await.1["fills"][0]["seq"].as_u64() == Some(45)
    })
    .await;
    assert!(stored, "fill 45 never reached PostgreSQL");
    let mut blotter = Vec::new();
    let mut cursor = String::new();
    for _ in 0..10 {
        let (status, page) = read(&format!("/api/fills?account=ACC1&limit=20{cursor}")).await;
        assert_eq!(status, 200, "{page}");
        blotter.extend(page["fills"].as_array().expect("fills").iter().filter_map(|f| f["seq"].as_u64()));
        match page["next"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(blotter, (1..=45).rev().collect::<Vec<u64>>());
    // Another account's record is refused; account data needs a token.
    for path in ["/api/fills?account=ACC2", "/api/pnl?account=ACC2&interval=1s"] {
        let (status, body) = read(path).await;
        assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")), "{path}: {body}");
    }
    assert_eq!(get_json(&format!("{}/api/fills?account=ACC1", api.url)).await.0, 401);
    let sampled = eventually(WAIT, async || {
        let (status, points) = read("/api/pnl?account=ACC1&interval=1s").await;
        status == 200 && points.as_array().is_some_and(|p| !p.is_empty())
    })
    .await;
    assert!(sampled, "no P&L samples for ACC1");

    // Prints sharing a time page back from PostgreSQL without loss; candles answer `since`.
    let shared = ttpulse_actors::health::now_micros() - 1_000_000;
    ingest(&backend, &(3..=5).map(|i| dated_trade(&format!("rc:{i}"), shared)).collect::<Vec<_>>()).await;
    let tape = format!("{}/api/trades?symbol=ESZ6&limit=2", api.url);
    assert!(eventually(WAIT, async || get_json(&tape).await.1[0]["event_id"] == "rc:5").await);
    let (_, newest) = get_json(&tape).await;
    let edge = &newest[1];
    let (_, older) =
        get_json(&format!("{tape}&before={}&before_id={}", edge["ts"], edge["event_id"].as_str().unwrap_or(""))).await;
    let ids: Vec<&str> = [&newest, &older]
        .into_iter()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|t| t["event_id"].as_str())
        .collect();
    assert_eq!(ids, ["rc:5", "rc:4", "rc:3", "rc:2"]);
    // Two 1 s buckets (the first print's and the shared time's): `since` the newest is only it.
    let (_, latest) = get_json(&format!("{}/api/candles?symbol=ESZ6&interval=1s", api.url)).await;
    let starts: Vec<i64> = latest.as_array().into_iter().flatten().filter_map(|c| c["start"].as_i64()).collect();
    assert_eq!(starts.len(), 2, "{latest}");
    let candles_since = async |since: i64| {
        let (_, candles) = get_json(&format!("{}/api/candles?symbol=ESZ6&interval=1s&since={since}", api.url)).await;
        candles.as_array().into_iter().flatten().filter_map(|c| c["start"].as_i64()).collect::<Vec<i64>>()
    };
    assert_eq!(candles_since(starts[1]).await, [starts[1]]);
    assert_eq!(candles_since(starts[1] + 1).await, Vec::<i64>::new());
}
