//! The HTTP surface over a real coalescing sink: queries equal the snapshot's, read-your-writes
//! waits, errors, status arithmetic, metrics, probes, and `pgroar query` as a user runs it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use pgroar::fixtures::schema;
use pgroar::index::{Index, Order, Query, Snapshot, Sort};
use pgroar::ops::{EntityOps, Op};
use pgroar::server::{ErrorBody, QueryResponse, ServerOptions, ServerState, StatusReport, serve};
use pgroar::sink::coalescing::{CoalescingSink, SinkOptions};
use pgroar::status::{COUNTERS, Counter, Group, Phase, Status};
use pgroar::{Lsn, WalKey};
use serde_json::{Value, json};

mod hostile;

/// Deterministic pseudo-random entities: 1..=n, a few deleted again.
fn entities(n: i64, seed: u64) -> Vec<EntityOps> {
    let mut x = seed;
    let mut next = move |m: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % m
    };
    let mut out = Vec::new();
    for id in 1..=n {
        let mut ops = vec![
            Op::set("nsfwLevel", [1i64, 2, 4, 8][next(4) as usize]),
            Op::set("type", if next(3) == 0 { "video" } else { "image" }),
            Op::set("existedAt", 1_700_000_000 + next(1000) as i64),
            Op::set("id", next(300) as i64),
        ];
        for _ in 0..next(4) {
            ops.push(Op::add("tagIds", next(12) as i64));
        }
        out.push(EntityOps::alive(id, ops));
        if next(10) == 0 {
            out.push(EntityOps::new(id, vec![Op::Delete]));
        }
    }
    out
}

/// A server on 127.0.0.1:0 over a filled sink, running on its own runtime thread.
struct TestServer {
    addr: SocketAddr,
    /// `None` once a test has shut the writer down.
    sink: Option<CoalescingSink>,
    status: Arc<Status>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    fn start(batches: Vec<(Vec<EntityOps>, WalKey)>) -> TestServer {
        TestServer::start_with(batches, ServerOptions::default())
    }

    fn start_with(batches: Vec<(Vec<EntityOps>, WalKey)>, options: ServerOptions) -> TestServer {
        let sink = CoalescingSink::spawn(Index::new(schema()), SinkOptions::default());
        for (batch, upto) in batches {
            sink.send(batch, upto).unwrap();
        }
        sink.sync().unwrap();
        let status = Arc::new(Status::new("pgroar_test", "pgroar"));
        let state = ServerState::from_sink(status.clone(), &sink, options);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            rt.block_on(serve(listener, state, async {
                let _ = stopped.await;
            }))
            .unwrap();
        });
        TestServer {
            addr,
            sink: Some(sink),
            status,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn filled() -> TestServer {
        TestServer::start(vec![
            (entities(1200, 1), WalKey::end_of(Lsn(0x100))),
            (entities(600, 2), WalKey::end_of(Lsn(0x180))),
        ])
    }

    fn sink(&self) -> &CoalescingSink {
        self.sink.as_ref().expect("the sink is running")
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.sink().snapshot()
    }

    /// Sends a `min_lsn` query from another thread; returns once the server counts it waiting.
    fn waiting_query(&self, min_lsn: &str) -> JoinHandle<(u16, Value)> {
        let url = self.url("/query");
        let body = json!({ "filter": "tagIds eq 4242", "min_lsn": min_lsn, "timeout_ms": 30000 });
        let waiter = std::thread::spawn(move || {
            let mut r = agent().post(url).send_json(body).unwrap();
            (
                r.status().as_u16(),
                r.body_mut().read_json::<Value>().unwrap(),
            )
        });
        while self.metrics()["pgroar_min_lsn_waits"] < 1.0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        waiter
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn post(&self, body: &Value) -> (u16, Value) {
        let mut r = agent().post(self.url("/query")).send_json(body).unwrap();
        let status = r.status().as_u16();
        (status, r.body_mut().read_json().unwrap())
    }

    fn post_raw(&self, body: &str) -> (u16, Value) {
        let mut r = agent()
            .post(self.url("/query"))
            .header("content-type", "application/json")
            .send(body)
            .unwrap();
        let status = r.status().as_u16();
        (status, r.body_mut().read_json().unwrap())
    }

    fn get(&self, path: &str) -> (u16, String) {
        let mut r = agent().get(self.url(path)).call().unwrap();
        let status = r.status().as_u16();
        (status, r.body_mut().read_to_string().unwrap())
    }

    fn metrics(&self) -> HashMap<String, f64> {
        let (code, text) = self.get("/metrics");
        assert_eq!(code, 200);
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let (name, value) = l.rsplit_once(' ').unwrap();
                (name.to_string(), value.parse::<f64>().unwrap())
            })
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn query(filter: Option<&str>, sort: Option<(&str, Order)>, limit: usize) -> Query {
    Query {
        filter: filter.map(String::from),
        sort: sort.map(|(f, order)| Sort {
            field: f.into(),
            order,
        }),
        limit,
        cursor: None,
    }
}

fn body(q: &Query) -> Value {
    let mut b = json!({ "filter": q.filter, "limit": q.limit, "cursor": q.cursor });
    if let Some(s) = &q.sort {
        b["sort"] = json!({ "field": s.field, "order": s.order });
    }
    b
}

#[test]
fn queries_page_exactly_like_the_snapshot() {
    let server = TestServer::filled();
    let snap = server.snapshot();
    let filters = [
        None,
        Some("nsfwLevel eq 1"),
        Some("nsfwLevel eq 1 AND tagIds in [4, 9]"),
        Some("NOT type eq video OR id gte 250"),
    ];
    let sorts = [
        None,
        Some(("existedAt", Order::Desc)),
        Some(("id", Order::Asc)),
    ];
    for filter in filters {
        for sort in sorts {
            let mut q = query(filter, sort, 97);
            let (mut seen, mut pages) = (Vec::new(), 0);
            loop {
                let want = snap.query(&q).unwrap();
                let (code, got) = server.post(&body(&q));
                assert_eq!(code, 200, "{got}");
                let got: QueryResponse = serde_json::from_value(got).unwrap();
                assert_eq!(got.ids, want.ids, "{filter:?} {sort:?} page {pages}");
                assert_eq!(got.total, want.total);
                assert_eq!(got.next_cursor, want.next_cursor);
                assert_eq!(got.lsn, Lsn(0x180));
                seen.extend(got.ids);
                pages += 1;
                match got.next_cursor {
                    Some(c) => q.cursor = Some(c),
                    None => break,
                }
            }
            let total = snap.count(filter).unwrap();
            assert_eq!(seen.len() as u64, total, "{filter:?} {sort:?}");
            assert!(total > 0 && pages as u64 == total.div_ceil(97));
        }
    }
    // Defaults: no filter, no sort, limit 50; a blank filter is no filter.
    let (code, got) = server.post(&json!({ "filter": "  " }));
    assert_eq!(code, 200);
    let got: QueryResponse = serde_json::from_value(got).unwrap();
    let want = snap.query(&query(None, None, 50)).unwrap();
    assert_eq!((got.ids, got.total), (want.ids, snap.alive_count()));
    // Order defaults to ascending; limit 0 returns only the total.
    let (_, got) = server.post(&json!({ "sort": { "field": "id" }, "limit": 3 }));
    let want = snap
        .query(&query(None, Some(("id", Order::Asc)), 3))
        .unwrap();
    assert_eq!(got["ids"], json!(want.ids));
    let (_, got) = server.post(&json!({ "filter": "nsfwLevel eq 2", "limit": 0 }));
    assert_eq!(got["ids"], json!([]));
    assert_eq!(
        got["total"],
        json!(snap.count(Some("nsfwLevel eq 2")).unwrap())
    );
}

#[test]
fn min_lsn_waits_for_the_write_and_times_out_when_never_reached() {
    let server = TestServer::filled();
    // Only write once the query is known to be waiting.
    let waiter = server.waiting_query("0/200");
    assert_eq!(server.snapshot().count(Some("tagIds eq 4242")).unwrap(), 0);
    server
        .sink()
        .send(
            vec![EntityOps::new(7, vec![Op::add("tagIds", 4242)])],
            WalKey::end_of(Lsn(0x200)),
        )
        .unwrap();
    let (code, got) = waiter.join().unwrap();
    assert_eq!(code, 200, "{got}");
    assert_eq!(got["lsn"], "0/200");
    let alive_7 = server.snapshot().count(Some("tagIds eq 4242")).unwrap();
    assert_eq!(got["total"], json!(alive_7));
    assert_eq!(
        got["ids"],
        json!(if alive_7 == 1 { vec![7] } else { vec![] })
    );
    assert_eq!(server.metrics()["pgroar_min_lsn_waits"], 0.0);

    // Already reached: no wait at all, even with a zero timeout.
    let (code, _) = server.post(&json!({ "min_lsn": "0/200", "timeout_ms": 0 }));
    assert_eq!(code, 200);

    let (code, got) = server.post(&json!({ "min_lsn": "1/0", "timeout_ms": 150 }));
    assert_eq!(code, 504, "{got}");
    let err: ErrorBody = serde_json::from_value(got).unwrap();
    assert_eq!(err.code, "min_lsn_timeout");
    assert_eq!(err.applied_lsn, Some(Lsn(0x200)));
    assert!(
        err.error.contains("0/200") && err.error.contains("1/0"),
        "{}",
        err.error
    );
    let m = server.metrics();
    assert_eq!(m[r#"pgroar_queries_total{outcome="timeout"}"#], 1.0);
}

#[test]
fn bad_queries_are_400_naming_what_is_wrong() {
    let server = TestServer::filled();
    let cases = [
        (
            json!({ "filter": "nsfwLevel eq" }),
            "filter_syntax",
            "unexpected end",
        ),
        (json!({ "filter": "bogus eq 1" }), "unknown_field", "bogus"),
        (json!({ "filter": "id gt 'x'" }), "bad_value", "id"),
        (
            json!({ "sort": { "field": "type", "order": "desc" } }),
            "unknown_sort_field",
            "type",
        ),
        (json!({ "limit": 1_000_001 }), "limit_too_large", "1000000"),
        (json!({ "cursor": "00ff" }), "bad_cursor", "malformed"),
        (json!({ "limt": 5 }), "bad_request", "limt"),
        (json!({ "min_lsn": "12345" }), "bad_request", "LSN"),
        (
            json!({ "min_lsn": "0/1", "timeout_ms": 3_600_000 }),
            "timeout_too_large",
            "60000",
        ),
    ];
    for (body, code, needle) in cases {
        let (status, got) = server.post(&body);
        assert_eq!(status, 400, "{body} -> {got}");
        let err: ErrorBody = serde_json::from_value(got).unwrap();
        assert_eq!(err.code, code, "{body}");
        assert!(err.error.contains(needle), "{body}: {}", err.error);
    }
    let (_, got) = server.post(&json!({ "filter": "nsfwLevel eq 1 AND (tagIds in [4 9])" }));
    assert_eq!(got["code"], "filter_syntax");
    assert_eq!(got["position"], 33, "{got}");
    // A cursor of another sort.
    let (_, page) = server.post(&json!({ "limit": 1 }));
    let (status, got) = server.post(&json!({
        "sort": { "field": "id", "order": "asc" }, "cursor": page["next_cursor"]
    }));
    assert_eq!((status, got["code"].as_str()), (400, Some("bad_cursor")));
    assert!(
        got["error"].as_str().unwrap().contains("sorted by"),
        "{got}"
    );
    let (status, got) = server.post_raw("{not json");
    assert_eq!((status, got["code"].as_str()), (400, Some("bad_request")));
    let m = server.metrics();
    assert_eq!(m[r#"pgroar_queries_total{outcome="bad_request"}"#], 12.0);
    assert_eq!(m[r#"pgroar_queries_total{outcome="ok"}"#], 1.0);
}

#[test]
fn status_reports_stages_lags_and_errors() {
    let server = TestServer::filled();
    let s = &server.status;
    s.set_phase(Phase::Streaming);
    s.set_received(Lsn(0x1_0000_0500));
    s.set_durable(Lsn(0x1_0000_0400));
    s.set_checkpointed(Lsn(0x100));
    s.set_server_lsn(Lsn(0x1_0000_0480));
    s.add(Counter::OpsApplied, 12_345);
    s.add(Counter::Transactions, 77);
    s.add(Counter::Reconnects, 1);
    s.set_error("replication connection lost: connection reset by peer");
    let (code, text) = server.get("/status");
    assert_eq!(code, 200, "{text}");
    let raw: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(raw["lsn"]["received"], "1/500");
    // Every declared counter is in the report: totals at the top, bad data in `bad_data`.
    for spec in &COUNTERS {
        let v = match spec.group {
            Group::Total => &raw[spec.key],
            Group::BadData => &raw["bad_data"][spec.key],
        };
        assert!(v.is_u64(), "{} missing from {raw}", spec.key);
    }
    assert_eq!(raw["lsn"]["applied"], "0/180");
    let r: StatusReport = serde_json::from_value(raw).unwrap();
    assert_eq!(
        (r.slot.as_str(), r.phase),
        ("pgroar_test", Phase::Streaming)
    );
    assert_eq!(r.lsn.server, Lsn(0x1_0000_0480));
    assert_eq!(r.lsn.checkpointed, Lsn(0x100));
    // Received is ahead of the last server read: its lag saturates at 0.
    assert_eq!(r.lag_bytes.received, 0);
    assert_eq!(r.lag_bytes.durable, 0x80);
    assert_eq!(r.lag_bytes.applied, 0x1_0000_0480 - 0x180);
    assert!(r.server_lsn_age_seconds.unwrap() >= 0.0);
    assert_eq!(
        (
            r.counts.get(Counter::OpsApplied),
            r.counts.get(Counter::Transactions),
            r.counts.get(Counter::Reconnects)
        ),
        (12_345, 77, 1)
    );
    assert_eq!(r.alive_slots, server.snapshot().alive_count());
    assert!(r.alive_slots > 1000);
    let e = r.last_error.unwrap();
    assert!(e.message.contains("connection reset"));
    assert!(r.ops_per_second.is_finite() && r.ops_per_second >= 0.0);
}

#[test]
fn metrics_expose_stage_positions_counters_and_query_latency() {
    let server = TestServer::filled();
    let s = &server.status;
    s.set_received(Lsn(0x900));
    s.set_durable(Lsn(0x800));
    s.set_checkpointed(Lsn(0x100));
    s.set_server_lsn(Lsn(0x1000));
    s.add(Counter::OpsApplied, 321);
    s.set_totals(
        pgroar::index::IndexStats {
            clamped_values: 4,
            skipped_ids: 2,
            ..Default::default()
        }
        .counts(),
    );
    for _ in 0..3 {
        assert_eq!(server.post(&json!({ "filter": "nsfwLevel eq 4" })).0, 200);
    }
    assert_eq!(server.post(&json!({ "filter": "(" })).0, 400);
    let m = server.metrics();
    let g = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in {m:?}"));
    assert_eq!(g(r#"pgroar_lsn{stage="received"}"#), 0x900 as f64);
    assert_eq!(g(r#"pgroar_lsn{stage="durable"}"#), 0x800 as f64);
    assert_eq!(g(r#"pgroar_lsn{stage="applied"}"#), 0x180 as f64);
    assert_eq!(g(r#"pgroar_lsn{stage="checkpointed"}"#), 0x100 as f64);
    assert_eq!(g(r#"pgroar_lsn{stage="server"}"#), 0x1000 as f64);
    assert_eq!(g("pgroar_lag_bytes"), (0x1000 - 0x180) as f64);
    assert_eq!(g("pgroar_ops_applied_total"), 321.0);
    assert_eq!(
        g("pgroar_alive_slots"),
        server.snapshot().alive_count() as f64
    );
    assert_eq!(g(r#"pgroar_phase{phase="starting"}"#), 1.0);
    assert_eq!(g(r#"pgroar_phase{phase="streaming"}"#), 0.0);
    assert_eq!(g(r#"pgroar_bad_data_total{kind="clamped_value"}"#), 4.0);
    assert_eq!(g(r#"pgroar_bad_data_total{kind="skipped_id"}"#), 2.0);
    // Every declared counter is exported.
    for spec in &COUNTERS {
        match spec.kind {
            Some(kind) => g(&format!(r#"{}{{kind="{kind}"}}"#, spec.metric)),
            None => g(spec.metric),
        };
    }
    assert_eq!(g(r#"pgroar_queries_total{outcome="ok"}"#), 3.0);
    assert_eq!(g(r#"pgroar_queries_total{outcome="bad_request"}"#), 1.0);
    assert_eq!(g("pgroar_query_duration_seconds_count"), 3.0);
    assert_eq!(g(r#"pgroar_query_duration_seconds_bucket{le="+Inf"}"#), 3.0);
}

#[test]
fn readyz_fails_while_the_index_lags_the_server_past_its_bound() {
    let options = ServerOptions {
        ready_max_lag: Some(Duration::from_millis(200)),
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(
        vec![(entities(100, 1), WalKey::end_of(Lsn(0x100)))],
        options,
    );
    server.status.set_phase(Phase::Streaming);
    assert_eq!(server.get("/readyz").0, 200);
    // The server is ahead of the index and stays so: after the bound, 503 naming it.
    server.status.set_server_lsn(Lsn(0x9000));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let (code, text) = server.get("/readyz");
        if code == 503 {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "still ready: {text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        text.contains("behind the server") && text.contains("ready_max_lag_secs"),
        "{text}"
    );
}

#[test]
fn probes_follow_the_phase() {
    let server = TestServer::filled();
    assert_eq!(server.get("/healthz"), (200, "ok".to_string()));
    let (code, text) = server.get("/readyz");
    assert_eq!((code, text.as_str()), (503, "not ready: starting"));
    server.status.set_phase(Phase::Streaming);
    assert_eq!(server.get("/readyz").0, 200);
    server.status.set_phase(Phase::Reconnecting);
    let (code, text) = server.get("/readyz");
    assert_eq!(code, 503);
    assert!(text.contains("reconnecting"), "{text}");
}

fn write_config(dir: &std::path::Path, listen: SocketAddr) -> std::path::PathBuf {
    let path = dir.join("pgroar.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[postgres]
url = "postgresql://x@127.0.0.1/x"
[http]
listen = "{listen}"
[index]
filters = [{{ name = "tagIds", kind = "multi" }}]
[[sources]]
table = "TagsOnImage"
slot_field = "imageId"
field = "tagIds"
value_field = "tagId"
"#
        ),
    )
    .unwrap();
    path
}

fn pgroar_query(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pgroar"))
        .arg("query")
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("PGROAR_HTTP_LISTEN")
        .output()
        .unwrap()
}

#[test]
fn the_query_command_prints_the_servers_answer() {
    let server = TestServer::filled();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), server.addr);
    let filter = "nsfwLevel eq 1 AND tagIds in [4, 9]";
    let out = pgroar_query(
        &config,
        &[
            "--filter",
            filter,
            "--sort",
            "existedAt:desc",
            "--limit",
            "5",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: QueryResponse = serde_json::from_slice(&out.stdout).unwrap();
    let mut q = query(Some(filter), Some(("existedAt", Order::Desc)), 5);
    let want = server.snapshot().query(&q).unwrap();
    assert_eq!((&got.ids, got.total), (&want.ids, want.total));
    // The next page through --cursor, with min_lsn already reached.
    q.cursor = got.next_cursor.clone();
    let cursor = got.next_cursor.unwrap();
    let out = pgroar_query(
        &config,
        &[
            "--filter",
            filter,
            "--sort",
            "existedAt:desc",
            "--limit",
            "5",
            "--cursor",
            &cursor,
            "--min-lsn",
            "0/180",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: QueryResponse = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got.ids, server.snapshot().query(&q).unwrap().ids);

    // A bad filter: non-zero exit, the server's error JSON on stderr.
    let out = pgroar_query(&config, &["--filter", "tagIds in [4"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"filter_syntax\"") && stderr.contains("400"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());

    // A bad --sort never reaches the server.
    let out = pgroar_query(&config, &["--sort", "existedAt:sideways"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sideways"));
}

#[test]
fn the_query_command_says_when_no_server_listens() {
    // A port that was free a moment ago and has no listener now.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), addr);
    let out = pgroar_query(&config, &["--filter", "tagIds eq 1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&addr.to_string()) && stderr.contains("is `pgroar run` running?"),
        "{stderr}"
    );
}

#[test]
fn waits_end_when_the_writer_stops_or_the_server_shuts_down() {
    let mut server = TestServer::filled();
    let waiter = server.waiting_query("0/300");
    // The writer applies what was queued, publishes, and stops: the wait ends with 503.
    server
        .sink()
        .send(
            vec![EntityOps::alive(5000, vec![Op::add("tagIds", 4242)])],
            WalKey::end_of(Lsn(0x250)),
        )
        .unwrap();
    server.sink.take().unwrap().shutdown().unwrap();
    let (code, got) = waiter.join().unwrap();
    assert_eq!(code, 503, "{got}");
    assert_eq!(
        (got["code"].as_str(), got["applied_lsn"].as_str()),
        (Some("unavailable"), Some("0/250"))
    );
    // What was published last still answers queries it covers.
    let (code, got) = server.post(&json!({ "filter": "tagIds eq 4242", "min_lsn": "0/250" }));
    assert_eq!((code, &got["ids"]), (200, &json!([5000])));

    // A wait in progress at shutdown ends at once instead of holding the server up.
    let server = TestServer::filled();
    let waiter = server.waiting_query("1/0");
    drop(server);
    let (code, got) = waiter.join().unwrap();
    assert_eq!(
        (code, got["code"].as_str()),
        (503, Some("unavailable")),
        "{got}"
    );
}

#[test]
fn the_status_command_prints_the_phase_and_every_counter() {
    let server = TestServer::filled();
    let s = &server.status;
    s.set_phase(Phase::Streaming);
    for (i, spec) in COUNTERS.iter().enumerate() {
        s.add(spec.counter, 1000 + i as u64);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), server.addr);
    let status = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pgroar"))
            .arg("status")
            .arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("PGROAR_HTTP_LISTEN")
            .output()
            .unwrap()
    };
    let out = status(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("phase") && text.contains("streaming"),
        "{text}"
    );
    for (i, spec) in COUNTERS.iter().enumerate() {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(spec.key))
            .unwrap_or_else(|| panic!("no {} in\n{text}", spec.key));
        assert!(line.contains(&(1000 + i).to_string()), "{line}");
    }
    // --json is the server's report as it is.
    let out = status(&["--json"]);
    let r: StatusReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r.counts.get(Counter::OpsApplied), 1000);
    // Nothing listening: the error says what to start.
    let dead = format!("127.0.0.1:{}", {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    });
    let out = Command::new(env!("CARGO_BIN_EXE_pgroar"))
        .args(["status", "--server", &dead])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is `pgroar run` running?"));
}

/// The files in `deploy/` parse, and every metric their alerts and dashboard name is one this
/// server exports. (`systemd-analyze verify` runs where it is installed; the image and the
/// manifests themselves are not run here: docs/operations.md says so.)
#[test]
fn the_deploy_files_parse_and_name_only_metrics_that_exist() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let server = TestServer::filled();
    let (_, metrics) = server.get("/metrics");
    let exported: std::collections::HashSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert!(
        exported.contains("pgroar_slot_retained_wal_bytes"),
        "{exported:?}"
    );
    let named = |text: &str| -> Vec<String> {
        let mut names = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find("pgroar_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.push(tail[..end].trim_end_matches("_bucket").to_string());
            rest = &tail[end..];
        }
        names
    };
    let mut yaml_exprs = String::new();
    for file in [
        "prometheus/alerts.yml",
        "prometheus/prometheus.yml",
        "kubernetes/pgroar.yaml",
        "kubernetes/pgroar-replicated.yaml",
    ] {
        let docs = yaml_rust2::YamlLoader::load_from_str(&read(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!docs.is_empty(), "{file}");
        if file.ends_with("alerts.yml") {
            for rule in docs[0]["groups"][0]["rules"].as_vec().unwrap() {
                yaml_exprs.push_str(rule["expr"].as_str().unwrap());
                yaml_exprs.push('\n');
            }
        }
        if file.starts_with("kubernetes") {
            let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
            let want: &[&str] = if file.contains("replicated") {
                &[
                    "ConfigMap",
                    "Service",
                    "Service",
                    "StatefulSet",
                    "Deployment",
                ]
            } else {
                &["ConfigMap", "Service", "StatefulSet"]
            };
            assert_eq!(kinds, want, "{file}");
            let config = docs[0]["data"]["pgroar.toml"].as_str().unwrap();
            let config = config.replace("[postgres]", "[postgres]\nurl = \"postgres://x@h/db\"");
            pgroar::config::Config::from_toml_str(&config, std::iter::empty())
                .expect("the ConfigMap's config is valid");
        }
    }
    let dashboard: Value = serde_json::from_str(&read("grafana/pgroar.json")).unwrap();
    let mut dash_exprs = String::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            dash_exprs.push_str(t["expr"].as_str().unwrap());
            dash_exprs.push('\n');
        }
    }
    for (what, text) in [("alerts", &yaml_exprs), ("dashboard", &dash_exprs)] {
        let names = named(text);
        assert!(names.len() >= 8, "{what}: {names:?}");
        for n in names {
            assert!(
                exported.contains(&n),
                "{what} names {n}, which /metrics does not export"
            );
        }
    }
    // The systemd unit, with ExecStart pointed at the built binary.
    if std::path::Path::new("/usr/bin/systemd-analyze").exists() {
        let dir = tempfile::tempdir().unwrap();
        let unit = dir.path().join("pgroar.service");
        let text = read("systemd/pgroar.service")
            .replace("/usr/local/bin/pgroar", env!("CARGO_BIN_EXE_pgroar"));
        std::fs::write(&unit, text).unwrap();
        let out = Command::new("/usr/bin/systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success() && said.trim().is_empty(), "{said}");
    }
}
