//! The cache role's Redis writes, pipelined, against a real redis-server: several batches are
//! on the wire at once, and a write that fails is never overtaken by the ones sent after it.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde_json::json;
use ttpulse_actors::cache::redis::{RedisCacheActor, UPDATES_CHANNEL, client};
use ttpulse_actors::domain::{EngineSnapshot, FillReport, InstrumentCatalog, InstrumentState, Published, Update};
use ttpulse_actors::health::HealthRegistry;
use ttpulse_actors::messages::{Durable, HopError, LoadSnapshot, StoreUpdates};
use ttpulse_actors::metrics::Metrics;
use ttpulse_actors::store::StoreError;

/// Stands in for the database: Redis here holds its epoch, so a rebuild is never asked for.
struct NoRebuild;

impl Actor for NoRebuild {
    type Context = Context<Self>;
}

impl Handler<LoadSnapshot> for NoRebuild {
    type Result = Result<EngineSnapshot, StoreError>;

    fn handle(&mut self, _: LoadSnapshot, _: &mut Context<Self>) -> Self::Result {
        panic!("the test's Redis keeps its epoch: no rebuild")
    }
}

fn instrument(symbol: &str, seq: u64) -> Published {
    let mut state = InstrumentState::empty(symbol);
    state.seq = seq;
    Published::new(Update::Instrument(state), 1)
}

fn fill(seq: u64) -> Published {
    let report: FillReport = serde_json::from_value(json!({
        "account": "ACC1", "seq": seq, "fill_id": format!("F-{seq}"), "order_id": "o-1", "symbol": "ESZ6",
        "side": "buy", "price": "6850.25", "qty": 1, "ts": 1,
        "position": {"account": "ACC1", "symbol": "ESZ6", "seq": seq, "net_qty": seq, "avg_price": "6850.25",
                     "realized_pnl": "0", "unrealized_pnl": "0", "updated_at": 1}
    }))
    .expect("a fill report");
    Published::new(Update::Fill(report), 1)
}

/// A private redis-server, the cache actor on it, and a subscriber of `tt_updates`.
struct Cache {
    _redis: ttpulse_harness::Proc,
    _dir: tempfile::TempDir,
    redis: redis::Client,
    actor: Addr<RedisCacheActor>,
    published: std::sync::mpsc::Receiver<String>,
}

impl Cache {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("a folder");
        let port = ttpulse_harness::free_port();
        let proc = ttpulse_harness::start_redis(port, dir.path()).expect("redis-server");
        let url = format!("redis://127.0.0.1:{port}/");
        let redis = redis::Client::open(url.as_str()).expect("a Redis client");
        let mut conn = redis.get_connection().expect("a Redis connection");
        let () = redis::cmd("SET").arg("tt:epoch").arg(1).query(&mut conn).expect("SET tt:epoch");
        let published = subscribe(&redis);
        let db_load = NoRebuild.start().recipient();
        let health = HealthRegistry::new().register("redis-cache", "RedisCacheActor");
        let catalog = Arc::new(InstrumentCatalog::default_futures());
        let metrics = Arc::new(Metrics::new());
        let client = client(&url, None).expect("a client");
        let actor = RedisCacheActor::new(client, catalog, db_load, metrics, health).start();
        Self { _redis: proc, _dir: dir, redis, actor, published }
    }

    /// Hands a batch over (as the consumer does) and returns what resolves once it is stored.
    async fn store(&self, updates: Vec<Published>, run: u64) -> Durable {
        for _ in 0..100 {
            match self.actor.send(StoreUpdates { updates: updates.clone().into(), run }).await {
                Ok(Ok(durable)) => return durable,
                // Not connected yet.
                Ok(Err(HopError::Unavailable(_))) => actix_rt::time::sleep(Duration::from_millis(50)).await,
                other => panic!("the cache did not take the batch: {other:?}"),
            }
        }
        panic!("the cache never connected to Redis")
    }

    fn redis(&self, args: &[&str]) -> Option<String> {
        let mut conn = self.redis.get_connection().expect("a Redis connection");
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(&mut conn).expect("a Redis command")
    }

    /// The keys and seqs published since the last call, in order, once `count` have come (a
    /// publication reaches the subscriber a moment after the write's answer), or after 10 s;
    /// and for a moment longer, to see any that should not have come.
    fn published(&self, count: usize) -> Vec<(String, u64)> {
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while seen.len() < count && std::time::Instant::now() < deadline {
            if let Ok(text) = self.published.recv_timeout(Duration::from_millis(100)) {
                seen.push(text);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        seen.extend(self.published.try_iter());
        seen.iter()
            .map(|text| {
                let update = Published::from_json(text.as_bytes()).expect("a published update");
                let seq = update.seq();
                (update.key, seq)
            })
            .collect()
    }
}

/// Every message of `tt_updates` from now on, on a thread of its own.
fn subscribe(redis: &redis::Client) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut conn = redis.get_connection().expect("a Redis connection");
    let (subscribed_tx, subscribed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut pubsub = conn.as_pubsub();
        pubsub.subscribe(UPDATES_CHANNEL).expect("SUBSCRIBE");
        let _ = subscribed_tx.send(());
        while let Ok(message) = pubsub.get_message() {
            let Ok(text) = message.get_payload::<String>() else { continue };
            if tx.send(text).is_err() {
                return;
            }
        }
    });
    subscribed.recv_timeout(Duration::from_secs(10)).expect("subscribed to tt_updates");
    rx
}

/// Batches sent back to back, each before the one before it is answered, are all applied, in
/// order: every key's seqs are published in ascending order, none missing.
#[actix_rt::test]
async fn pipelined_writes_are_applied_and_published_in_order() {
    let cache = Cache::start().await;
    // 1,200 updates make three script calls each: numbered writes across batches and calls.
    let batches: Vec<Vec<Published>> = (0..8u64)
        .map(|b| {
            (0..1_200u64)
                .map(|i| {
                    let seq = b * 1_200 + i + 1;
                    if i % 3 == 0 { fill(seq) } else { instrument("ESZ6", seq) }
                })
                .collect()
        })
        .collect();
    let mut durables = Vec::new();
    for batch in batches {
        durables.push(cache.store(batch, 0).await);
    }
    for durable in durables {
        durable.wait().await.expect("stored");
    }
    let published = cache.published(9_600);
    let fills: Vec<u64> = published.iter().filter(|(k, _)| k == "fills:ACC1:ESZ6").map(|(_, s)| *s).collect();
    let states: Vec<u64> = published.iter().filter(|(k, _)| k == "inst:ESZ6").map(|(_, s)| *s).collect();
    assert_eq!(fills.len(), 3_200, "every fill published once");
    assert!(fills.windows(2).all(|w| w[0] < w[1]), "fills published in seq order");
    assert_eq!(states.len(), 6_400, "every state published once");
    assert!(states.windows(2).all(|w| w[0] < w[1]), "states published in seq order");
    assert_eq!(cache.redis(&["HGET", "tt:fills:ACC1:ESZ6", "seq"]).as_deref(), Some("9598"));
}

/// A write that fails (here: one of its keys holds a value of the wrong type) makes every write
/// sent after it refused, so that none is applied and published before it: without that, the
/// fill behind it would be applied first and the failed one, offered again, found stale and
/// never published: a fill lost to every client. Offered again in order under the next run,
/// both are applied, and the next normal batch goes through.
#[actix_rt::test]
async fn a_failed_write_is_not_overtaken_by_the_writes_behind_it() {
    let cache = Cache::start().await;
    cache.store(vec![fill(1)], 0).await.wait().await.expect("the first fill stored");
    assert_eq!(cache.published(1), vec![("fills:ACC1:ESZ6".to_owned(), 1)]);

    // Not a hash: the script's HGET of this key fails, before it applies anything.
    let _: Option<String> = cache.redis(&["SET", "tt:inst:NQZ6", "not a hash"]);
    let failing = vec![instrument("NQZ6", 1), fill(2)];
    let behind = vec![fill(3)];
    let first = cache.store(failing.clone(), 0).await;
    let second = cache.store(behind.clone(), 0).await;
    let failed = first.wait().await.expect_err("a write into a key of the wrong type fails");
    assert!(failed.to_string().contains("WRONGTYPE"), "{failed}");
    let refused = second.wait().await.expect_err("the write behind a failed one is refused");
    assert!(refused.to_string().contains("TTORDER"), "{refused}");
    assert_eq!(cache.published(0), vec![], "nothing published past the failed write");
    assert_eq!(cache.redis(&["HGET", "tt:fills:ACC1:ESZ6", "seq"]).as_deref(), Some("1"), "nothing applied");

    // Offered again in the same run (the consumer would not, but a late retry might): refused.
    let late = cache.store(behind.clone(), 0).await.wait().await;
    assert!(late.is_err(), "a write of the old run behind the failed one is still refused");

    // The cause is mended; the consumer offers both again, in order, under its next run.
    let _: Option<String> = cache.redis(&["DEL", "tt:inst:NQZ6"]);
    let first = cache.store(failing, 1).await;
    let second = cache.store(behind, 1).await;
    first.wait().await.expect("offered again, the first write is applied");
    second.wait().await.expect("and the one behind it");
    let expected = |keys: &[(&str, u64)]| keys.iter().map(|(k, s)| (k.to_string(), *s)).collect::<Vec<_>>();
    assert_eq!(cache.published(3), expected(&[("inst:NQZ6", 1), ("fills:ACC1:ESZ6", 2), ("fills:ACC1:ESZ6", 3)]));

    cache.store(vec![fill(4)], 1).await.wait().await.expect("the next normal batch stored");
    assert_eq!(cache.published(1), expected(&[("fills:ACC1:ESZ6", 4)]));
}

/// Redis restarted empty lost the writer's last number: the writer's next write is refused (it
/// cannot tell what came before), nothing of it is applied, and the next run goes through.
#[actix_rt::test]
async fn a_writer_whose_number_redis_lost_is_refused_once_then_the_next_run_writes() {
    let cache = Cache::start().await;
    cache.store(vec![fill(1)], 0).await.wait().await.expect("the first fill stored");
    assert_eq!(cache.published(1).len(), 1);
    let _: Option<String> = cache.redis(&["FLUSHALL"]);
    let _: Option<String> = cache.redis(&["SET", "tt:epoch", "1"]);
    let refused = cache.store(vec![fill(2)], 0).await.wait().await.expect_err("its predecessor is unknown");
    assert!(refused.to_string().contains("TTORDER"), "{refused}");
    assert_eq!(cache.redis(&["HGET", "tt:fills:ACC1:ESZ6", "seq"]), None, "nothing applied");
    cache.store(vec![fill(2)], 1).await.wait().await.expect("offered again under the next run");
    assert_eq!(cache.published(1), vec![("fills:ACC1:ESZ6".to_owned(), 2)]);
}
