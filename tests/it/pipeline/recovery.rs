//! Recovery as a client and an operator see it: a batch the pipeline could not take is resent
//! with the ids the 503 named and applied once (also with the database paused), and
//! `/admin/health` names an actor that does not run, its state and why.

use std::time::{Duration, Instant};

use diesel::RunQueryDsl as _;
use serde_json::{Value, json};

use crate::common::private_pg::PrivatePostgres;
use crate::common::{TestServer, trade};

const WAIT: Duration = Duration::from_secs(10);

/// Runs one SQL statement on the server's (SQLite) database.
fn sql(server: &TestServer, statement: &str) {
    let mut conn = server.pipeline.db_pool.as_ref().expect("a database").get().expect("connection");
    let ttpulse_actors::store::DbConn::Sqlite(conn) = &mut conn else { panic!("embedded SQLite") };
    diesel::sql_query(statement).execute(&mut **conn).expect(statement);
}

/// A stored position in an instrument the catalog does not know: the processor cannot load its
/// state, so after a restart it keeps restoring (and refusing batches) until the row is gone.
const UNKNOWN_POSITION: &str = "INSERT INTO positions (account, symbol, seq, net_qty, avg_price, realized_pnl, \
                                updated_at) VALUES ('ACC0', 'NOPE9', 1, 1, '1', '0', 1)";

/// Restarts the processor with its state unreadable; returns once the health shows it.
async fn stall_processor_restore(server: &TestServer) -> Value {
    sql(server, UNKNOWN_POSITION);
    let (status, _) = server.post_raw("/admin/actors/processor/restart", "").await;
    assert_eq!(status, 202);
    let mut last = Value::Null;
    let stalled = TestServer::eventually(WAIT, async || {
        let (status, body) = server.get_json("/admin/health").await;
        let stalled = status == 503
            && body["not_running_actors"].as_array().is_some_and(|actors| {
                actors.iter().any(|a| {
                    a["name"] == "processor"
                        && a["detail"].as_str().is_some_and(|d| d.contains("`NOPE9`, which is not in the catalog"))
                })
            });
        last = body;
        stalled
    })
    .await;
    assert!(stalled, "the processor's failed restore shows in health: {last}");
    last
}

async fn mend_processor_restore(server: &TestServer) {
    sql(server, "DELETE FROM positions WHERE symbol = 'NOPE9'");
    let ready = TestServer::eventually(WAIT, async || server.get_json("/admin/health").await.0 == 200).await;
    assert!(ready, "the processor restores once its state is readable: {:?}", server.get_json("/admin/health").await);
}

/// `events` with the ids a 503 named.
fn with_ids(events: &Value, ids: &Value) -> Value {
    let ids = ids.as_array().expect("event_ids");
    let events = events.as_array().expect("events");
    assert_eq!(ids.len(), events.len(), "one id per event: {ids:?}");
    let mut resent = events.clone();
    for (event, id) in resent.iter_mut().zip(ids) {
        event["event_id"] = id.clone();
    }
    Value::Array(resent)
}

/// Resends until the pipeline takes the batch (a client keeps resending the same ids while it
/// gets 503, as the message says); returns the receipt.
async fn resend_until_taken(server: &TestServer, events: &Value) -> Value {
    let mut attempts = Vec::new();
    let receipt = loop {
        let (status, receipt) = server.ingest(events).await;
        attempts.push(status);
        if status != 503 || attempts.len() == 40 {
            break receipt;
        }
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(attempts.last(), Some(&200), "{attempts:?} {receipt}");
    receipt
}

fn fill_without_id(account: &str, fill_id: &str, symbol: &str, price: &str, qty: i64) -> Value {
    json!({"type": "fill", "account": account, "order_id": "O-1", "fill_id": fill_id, "instrument": symbol,
           "side": "buy", "price": price, "qty": qty})
}

/// The next hop (here the processor, restoring) refused the batch: the 503 names the ids the
/// events got, and resending with them applies the batch once.
#[actix_rt::test]
async fn a_resend_after_the_processor_refused_a_batch_is_applied_once() {
    let server = TestServer::start().await;
    stall_processor_restore(&server).await;

    let events =
        json!([fill_without_id("ACC7", "F-7", "ESZ6", "6850.25", 3), trade("feed-h:1", "ESZ6", "6850.25", 2, "buy")]);
    let (status, body) = server.ingest(&events).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "unavailable", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("nothing was applied: resend the events with the same event ids"), "{body}");
    let ids = body["event_ids"].clone();
    assert!(ids[0].as_str().is_some_and(|id| id.starts_with("api:")) && ids[1] == "feed-h:1", "{body}");
    let counts = server.table_counts();
    assert_eq!((counts["fills"], counts["trades"]), (0, 0), "nothing stored");

    mend_processor_restore(&server).await;
    let resent = with_ids(&events, &ids);
    let receipt = resend_until_taken(&server, &resent).await;
    assert_eq!((receipt["accepted"].as_u64(), receipt["duplicates"].as_u64()), (Some(2), Some(0)), "{receipt}");
    assert_eq!(receipt["event_ids"], ids, "the events keep the ids they were given");
    // Resent once more (the client missed the 200): nothing counts twice.
    let (status, receipt) = server.ingest(&resent).await;
    assert_eq!((status, receipt["duplicates"].as_u64()), (200, Some(2)), "{receipt}");

    server.assert_applied_once((1, 1), "ACC7", 3, "ESZ6", 2).await;
}

/// `/admin/health` says which actor does not run, in what state and why, until it runs again.
#[actix_rt::test]
async fn health_names_each_actor_that_does_not_run_with_its_state_and_error() {
    let server = TestServer::start().await;
    let (status, body) = server.get_json("/admin/health").await;
    assert_eq!((status, &body["not_running"], &body["not_running_actors"]), (200, &json!([]), &json!([])), "{body}");

    // A processor that cannot load its state: restarting, and the load error as its detail.
    let body = stall_processor_restore(&server).await;
    assert_eq!(body["status"], "degraded");
    assert!(body["not_running"].as_array().is_some_and(|names| names.contains(&json!("processor"))), "{body}");
    let processor = body["not_running_actors"]
        .as_array()
        .and_then(|actors| actors.iter().find(|a| a["name"] == "processor"))
        .expect("the processor's entry");
    assert_eq!(processor["state"], "restarting", "{processor}");
    assert!(processor["restarts"].as_u64().is_some_and(|n| n >= 1), "{processor}");
    mend_processor_restore(&server).await;

    // A contained panic, as the actor records it (no release build can be made to panic on
    // purpose): crashed, counted, with its message, until the supervisor has it running again.
    let hub = server.pipeline.health.get("hub").expect("the hub's health");
    hub.crashed("panicked: index out of bounds");
    let (status, body) = server.get_json("/admin/health").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["not_running"], json!(["hub"]), "{body}");
    let entry = &body["not_running_actors"][0];
    assert_eq!((&entry["name"], &entry["state"], &entry["panics"]), (&json!("hub"), &json!("crashed"), &json!(1)));
    assert_eq!(entry["last_error"]["message"], "panicked: index out of bounds", "{entry}");
    assert!(entry["last_error"]["at"].as_i64().is_some_and(|at| at > 0), "{entry}");
    let (status, _) = server.post_raw("/admin/actors/hub/restart", "").await;
    assert_eq!(status, 202);
    let healthy = TestServer::eventually(WAIT, async || server.get_json("/admin/health").await.0 == 200).await;
    assert!(healthy, "{:?}", server.get_json("/admin/health").await);
}

/// The test of idempotent retries: the database paused (SIGSTOP on a PostgreSQL of the
/// test's own), an ingest answers 503 naming the ids within the confirm timeout; once the
/// database runs again, the resend with those ids is applied once.
#[actix_rt::test]
async fn a_resend_after_the_database_was_paused_is_applied_once() {
    let Some(mut postgres) = PrivatePostgres::start() else {
        eprintln!("skipped: PostgreSQL's initdb is not installed (the Debian `postgresql` package)");
        return;
    };
    let url = postgres.url.clone();
    let confirm_timeout = Duration::from_millis(500);
    let server = TestServer::start_with(|c| {
        c.carriers.database_url = Some(url);
        c.intake.ingest_confirm_timeout_ms = confirm_timeout.as_millis() as u64;
    })
    .await;
    let (status, body) = server.ingest(&json!([trade("feed-p:1", "CLF7", "61.50", 1, "buy")])).await;
    assert_eq!(status, 200, "the database works before the pause: {body}");

    postgres.pause();
    let events =
        json!([fill_without_id("ACC5", "F-5", "CLF7", "61.50", 2), trade("feed-p:2", "CLF7", "61.50", 5, "buy")]);
    let sent = Instant::now();
    let (status, body) = server.ingest(&events).await;
    let waited = sent.elapsed();
    assert_eq!(status, 503, "{body}");
    assert!(waited < confirm_timeout + Duration::from_secs(5), "answered after {waited:?}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("resend with the same event ids")), "{body}");
    let ids = body["event_ids"].clone();
    assert!(ids[0].as_str().is_some_and(|id| id.starts_with("api:")) && ids[1] == "feed-p:2", "{body}");

    postgres.resume();
    let resent = with_ids(&events, &ids);
    let receipt = resend_until_taken(&server, &resent).await;
    assert_eq!((receipt["accepted"].as_u64(), receipt["duplicates"].as_u64()), (Some(0), Some(2)), "{receipt}");

    server.assert_applied_once((1, 2), "ACC5", 2, "CLF7", 6).await;
    server.stop().await;
}
