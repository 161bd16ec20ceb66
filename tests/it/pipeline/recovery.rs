//! Recovery as an operator sees it: `/admin/health` names an actor that does not run, its state
//! and why.

use std::time::Duration;

use diesel::RunQueryDsl as _;
use serde_json::{Value, json};

use crate::common::TestServer;

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
