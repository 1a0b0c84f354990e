//! The trigger pipeline's wire, both ways, between two `pgroar` processes: the ops the triggers
//! wrote on the source database, POSTed batch by batch to a second pgroar (`POST /ops`, behind a
//! bearer token, killed and restarted halfway), build the index the first pgroar streamed —
//! identical, and equal to SQL — and `pgroar ops tail` prints the same ops per transaction.

use std::time::{Duration, Instant};

use pgroar::Lsn;
use pgroar::cluster::TestDb;
use pgroar::index::IndexState;
use pgroar::ops::{EntityOps, OpsBatch};
use pgroar::oracle::{Oracle, diff};
use serde_json::{Value, json};
use tokio_postgres::Client;

use super::workload::{fixed, run};
use super::{feed_config, feed_config_text, prepare, prepare_with};
use crate::it::support::feed::{Runner, assert_check_passes};
use crate::it::support::follow::{current_lsn, nudge};

pub const TOKEN: &str = "t0ps3cret-for-tests";

/// A runner for a pgroar over `db`, its files under `dir/name`, its config ending with `extra`.
pub fn runner(
    db: &TestDb,
    dir: &std::path::Path,
    name: &str,
    token: Option<&str>,
    extra: &str,
) -> Runner {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut text = feed_config_text(db, &dir.join(name), &format!("127.0.0.1:{port}"));
    if let Some(t) = token {
        text = text.replace("[http]\n", &format!("[http]\ntoken = \"{t}\"\n"));
    }
    text.push_str(extra);
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, text).unwrap();
    Runner {
        config,
        log: dir.join(format!("{name}.log")),
        base: format!("http://127.0.0.1:{port}"),
        env: Vec::new(),
    }
}

/// One HTTP call with an optional bearer token; the status and the JSON (or text) answer.
pub async fn call(
    method: &str,
    url: String,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, Value) {
    let (method, token) = (method.to_string(), token.map(str::to_string));
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut response = match (method.as_str(), body) {
            ("GET", _) => {
                let r = agent.get(&url);
                match &auth {
                    Some(a) => r.header("Authorization", a).call(),
                    None => r.call(),
                }
            }
            ("DELETE", _) => {
                let r = agent.delete(&url);
                match &auth {
                    Some(a) => r.header("Authorization", a).call(),
                    None => r.call(),
                }
            }
            (_, body) => {
                let r = agent.post(&url);
                let r = match &auth {
                    Some(a) => r.header("Authorization", a),
                    None => r,
                };
                r.send_json(body.unwrap_or(json!({})))
            }
        }
        .expect("the server answers");
        let code = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    })
    .await
    .unwrap()
}

/// The whole index of a quiet server, pinned at its database's current position (what the live
/// check reads).
pub async fn dump(base: &str, token: Option<&str>, client: &Client) -> IndexState {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, answer) = call("POST", format!("{base}/check/hold"), None, token).await;
        assert!((200..300).contains(&code), "{answer}");
        let lsn = current_lsn(client).await;
        nudge(client).await;
        let (code, answer) = call(
            "POST",
            format!("{base}/check/pin"),
            Some(json!({ "lsn": lsn.to_string() })),
            token,
        )
        .await;
        if code == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never pinned: {answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, state) = call(
        "GET",
        format!("{base}/check/state?from=0&to=4294967295"),
        None,
        token,
    )
    .await;
    assert_eq!(code, 200, "{state}");
    call("DELETE", format!("{base}/check/pin"), None, token).await;
    serde_json::from_value(state).expect("an index state")
}

/// The rows the triggers wrote, one batch per transaction (id order: the workload is serial).
async fn trigger_batches(client: &Client) -> Vec<Vec<EntityOps>> {
    let rows = client
        .query(
            "SELECT xmin::text, entity_id, ops::text, creates_slot FROM pgroar_ops ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let mut out: Vec<(String, Vec<EntityOps>)> = Vec::new();
    for row in rows {
        let xid: String = row.get(0);
        let ops: String = row.get(2);
        let entity = EntityOps {
            entity_id: row.get(1),
            ops: serde_json::from_str(&ops).unwrap(),
            creates_slot: row.get(3),
        };
        match out.last_mut() {
            Some((x, batch)) if *x == xid => batch.push(entity),
            _ => out.push((xid, vec![entity])),
        }
    }
    out.into_iter().map(|(_, b)| b).collect()
}

fn sorted(batch: &[EntityOps]) -> Vec<String> {
    let mut v: Vec<String> = batch
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_ops_posted_to_a_second_pgroar_build_the_streamed_index() {
    let (src, twin) = (TestDb::new("ops_src"), TestDb::new("ops_twin"));
    let dir = tempfile::tempdir().unwrap();
    let (stream, fed) = (
        runner(&src, dir.path(), "stream", None, ""),
        runner(&twin, dir.path(), "fed", Some(TOKEN), ""),
    );
    let (sc, tc) = (src.client().await.unwrap(), twin.client().await.unwrap());
    prepare(&sc, &feed_config(&src)).await;
    prepare(&tc, &feed_config(&twin)).await;
    let mut s_child = stream.spawn(&["bootstrap"]);
    stream.wait_ready(&mut s_child).await;
    let mut t_child = fed.spawn(&["bootstrap"]);
    fed.wait_ready(&mut t_child).await;

    run(&sc, &fixed(400)).await;
    stream.wait_caught_up(&sc).await;
    let batches = trigger_batches(&sc).await;
    assert!(batches.len() > 100, "{}", batches.len());

    let ops_url = format!("{}/ops", fed.base);
    let body = |b: &[EntityOps]| {
        serde_json::to_value(OpsBatch {
            ops: b.to_vec(),
            meta: None,
        })
        .unwrap()
    };
    // Without the token: 401, and the token is not in the log.
    let (code, _) = call("POST", ops_url.clone(), Some(body(&batches[0])), None).await;
    assert_eq!(code, 401);
    let (code, _) = call(
        "POST",
        ops_url.clone(),
        Some(body(&batches[0])),
        Some("wrong"),
    )
    .await;
    assert_eq!(code, 401);
    // A malformed batch: 400 naming the first bad entry; its good entries are not written.
    let bad = json!({"ops": [
        {"entity_id": 999, "ops": [{"op": "set", "field": "nsfwLevel", "value": 1}], "creates_slot": true},
        {"entity_id": 998, "ops": [{"op": "set", "field": "noSuchField", "value": 1}]}
    ]});
    let (code, answer) = call("POST", ops_url.clone(), Some(bad), Some(TOKEN)).await;
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("ops[1].ops[0]"),
        "{answer}"
    );

    // The first half, each batch answered 200 with its LSN; then the fed server dies at once.
    let half = batches.len() / 2;
    for (i, b) in batches[..half].iter().enumerate() {
        // Half of them through the trigger pipeline's path, in its `alive` form.
        let (url, payload) = if i % 2 == 0 {
            (ops_url.clone(), body(b))
        } else {
            (format!("{}/api/indexes/feed/ops", fed.base), alive_form(b))
        };
        let (code, answer) = call("POST", url, Some(payload), Some(TOKEN)).await;
        assert_eq!(code, 200, "{answer}");
        assert!(
            answer["lsn"].as_str().unwrap().parse::<Lsn>().is_ok(),
            "{answer}"
        );
    }
    t_child.0.kill().unwrap();
    t_child.0.wait().unwrap();
    let mut t_child = fed.spawn(&["run"]);
    fed.wait_ready(&mut t_child).await;
    for b in &batches[half..] {
        let (code, answer) = call("POST", ops_url.clone(), Some(body(b)), Some(TOKEN)).await;
        assert_eq!(code, 200, "{answer}");
    }

    // The two indexes are identical, and equal to SQL over the source tables.
    let streamed = dump(&stream.base, None, &sc).await;
    let posted = dump(&fed.base, Some(TOKEN), &tc).await;
    assert!(!streamed.alive.is_empty());
    let oracle = Oracle::new(&feed_config(&src));
    let expected = oracle.expected(&sc, 0..=u32::MAX).await.unwrap();
    let d = diff(&expected, &streamed, oracle.skipped());
    assert!(d.is_empty(), "the streamed index differs from SQL:\n{d}");
    let d = diff(&streamed, &posted, &[]);
    assert!(
        d.is_empty(),
        "the index fed by the trigger ops differs from the streamed one:\n{d}"
    );
    // Identical but for the applied position, which counts in each database's own WAL.
    let mut posted = posted;
    posted.applied = streamed.applied;
    assert_eq!(posted, streamed);
    assert!(!posted.alive.contains(&999), "a rejected batch wrote");
    assert_memory_matches(&stream.base, None, &streamed).await;
    let memory_url = format!("{}/status/memory", fed.base);
    assert_eq!(call("GET", memory_url, None, None).await.0, 401);
    assert_memory_matches(&fed.base, Some(TOKEN), &streamed).await;
    let log = std::fs::read_to_string(&fed.log).unwrap();
    assert!(!log.contains(TOKEN), "the token leaked into the log");
    // And the streaming server passes `pgroar check` as a user runs it.
    assert_check_passes(&stream.config);

    // `pgroar ops tail` of the streaming server: the triggers' transactions, in commit order.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgroar"))
        .args(["ops", "tail", "--dir"])
        .arg(dir.path().join("stream"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tailed: Vec<Vec<String>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let batch: OpsBatch = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            assert_eq!(batch.meta.as_ref().unwrap().source, "pgroar");
            sorted(&batch.ops)
        })
        .filter(|b| !b.is_empty())
        .collect();
    let written: Vec<Vec<String>> = batches.iter().map(|b| sorted(b)).collect();
    assert_eq!(tailed.len(), written.len());
    assert!(tailed == written, "ops tail differs from the trigger table");
    drop((s_child, t_child));
}

/// `GET /status/memory` of the server at `base` reports the dumped index's live slots, and
/// each single-value or bool field's distinct keys, with the fields' bytes adding up.
async fn assert_memory_matches(base: &str, token: Option<&str>, state: &IndexState) {
    let (code, report) = call("GET", format!("{base}/status/memory"), None, token).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["slots"], state.alive.len(), "{report}");
    let fields = report["fields"].as_array().unwrap();
    let sum: u64 = fields
        .iter()
        .map(|f| {
            ["bitmaps", "columns", "other"]
                .map(|k| f[k].as_u64().unwrap())
                .iter()
                .sum::<u64>()
        })
        .sum();
    assert_eq!(report["total"].as_u64(), Some(sum), "{report}");
    for (name, dump) in &state.filters {
        let field = fields.iter().find(|f| f["name"] == name.as_str()).unwrap();
        assert!(field["bitmaps"].as_u64().unwrap() > 0, "{field}");
        if field["kind"] != "multi" {
            assert_eq!(field["keys"], dump.values.len(), "{name}: {field}");
        }
    }
}

/// The seed's form of a batch: `{"op":"alive"}` first in a created entity's ops instead of
/// `creates_slot`.
fn alive_form(batch: &[EntityOps]) -> Value {
    let entities: Vec<Value> = batch
        .iter()
        .map(|e| {
            let mut ops = serde_json::to_value(&e.ops).unwrap();
            if e.creates_slot {
                ops.as_array_mut()
                    .unwrap()
                    .insert(0, json!({"op": "alive"}));
            }
            json!({ "entity_id": e.entity_id, "ops": ops })
        })
        .collect();
    json!({ "ops": entities, "meta": { "source": "pg-sync-default", "cursor": 1 } })
}

/// With the default replica identity (updates carry no old row, deletes only the key), the
/// index streamed under a random workload and the generator's writer passes `pgroar check`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_default_identity_the_streamed_index_passes_check() {
    let src = TestDb::new("default_identity");
    let dir = tempfile::tempdir().unwrap();
    let stream = runner(&src, dir.path(), "stream", None, "");
    let sc = src.client().await.unwrap();
    prepare_with(&sc, &feed_config(&src), false).await;
    let mut child = stream.spawn(&["bootstrap"]);
    stream.wait_ready(&mut child).await;
    run(&sc, &fixed(800)).await;
    // Then the generator's writer over what the workload left.
    let conn = pgroar::source::ConnInfo::parse(&src.url()).unwrap();
    let stats = std::sync::Arc::new(pgroar::dataset::WriterStats::default());
    let mut writer = pgroar::dataset::Writer::connect(&conn, 9, stats)
        .await
        .unwrap();
    for _ in 0..300 {
        writer.step().await.expect("the writer's transaction");
    }
    stream.wait_caught_up(&sc).await;
    assert_check_passes(&stream.config);
    drop(child);
}
