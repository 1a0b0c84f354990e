//! Hostile clients: filters past every size limit are refused with a 400 naming the limit
//! (one request of 50,000 ORs used to overflow the stack and abort the process), the largest
//! filters the limits allow answer like the snapshot, and random bytes or well-formed but huge
//! requests to every route never panic, never answer a 5xx, and leave the server serving.

use proptest::prelude::*;

use super::*;

/// `field eq v` for `n` values joined by `op`.
fn chain(field: &str, n: usize, op: &str) -> String {
    (0..n)
        .map(|i| format!("{field} eq {}", i % 50))
        .collect::<Vec<_>>()
        .join(op)
}

#[test]
fn filters_past_the_limits_are_400_naming_the_limit() {
    let server = TestServer::filled();
    let cases = [
        (chain("tagIds", 50_000, " OR "), "bytes long"),
        ("tagIds eq 1 OR ".repeat(3000) + "tagIds eq 2", "clauses"),
        (
            format!(
                "tagIds in [{}]",
                (0..10_001)
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            "in-lists",
        ),
        (
            format!("{}tagIds eq 1{}", "(".repeat(65), ")".repeat(65)),
            "nested deeper",
        ),
    ];
    for (filter, needle) in cases {
        let (status, got) = server.post(&json!({ "filter": filter, "limit": 10 }));
        assert_eq!(status, 400, "{got}");
        assert_eq!(got["code"], "filter_syntax", "{got}");
        assert!(got["error"].as_str().unwrap().contains(needle), "{got}");
    }
    // The largest filter allowed answers exactly like the snapshot.
    for filter in [
        chain("tagIds", pgroar::filter::MAX_CLAUSES, " OR "),
        chain("tagIds", pgroar::filter::MAX_CLAUSES, " AND NOT "),
    ] {
        let q = query(Some(&filter), None, 100_000);
        let (status, got) = server.post(&body(&q));
        assert_eq!(status, 200, "{got}");
        let got: QueryResponse = serde_json::from_value(got).unwrap();
        assert_eq!(got.ids, server.snapshot().query(&q).unwrap().ids);
    }
    assert_eq!(server.get("/healthz").0, 200);
}

/// A filter-shaped string: clauses, operators, parentheses, lists and junk, of any size.
fn filter_text() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("tagIds eq 4".to_owned()),
        Just("nsfwLevel in [1, 2, 'x', null, 9999999999999999999999]".to_owned()),
        Just("id gt -1.5e300".to_owned()),
        Just("NOT".to_owned()),
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just("OR".to_owned()),
        Just("AND".to_owned()),
        "[a-zA-Z0-9 '\"\\\\\\[\\](),.-]{0,12}",
    ];
    (prop::collection::vec(atom, 0..60), 0usize..3000).prop_map(|(parts, repeat)| {
        let unit = parts.join(" ");
        if repeat > 2000 {
            format!("{} ", unit).repeat(repeat / 20)
        } else {
            unit
        }
    })
}

/// A request: a route, a method and a body (random bytes, or JSON with huge or odd values).
fn request() -> impl Strategy<Value = (String, bool, Vec<u8>)> {
    let route = prop_oneof![
        Just("/query".to_owned()),
        Just("/status".to_owned()),
        Just("/readyz".to_owned()),
        Just("/metrics".to_owned()),
        Just("/check/state".to_owned()),
        Just("/check/pin".to_owned()),
        Just("/check/hold".to_owned()),
        Just("/ops".to_owned()),
        "/[a-z/%{}.]{0,20}",
    ];
    let json_body = (
        filter_text(),
        prop::option::of(any::<i64>()),
        prop::option::of("[0-9A-F/]{0,20}"),
        prop::option::of("[a-z]{0,8}"),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(filter, limit, lsn, sort, timeout)| {
            let mut b = json!({ "filter": filter });
            if let Some(l) = limit {
                b["limit"] = json!(l);
            }
            if let Some(l) = lsn {
                b["min_lsn"] = json!(l);
                b["timeout_ms"] = json!(1);
            }
            if let Some(s) = sort {
                b["sort"] = json!({ "field": s, "order": "desc" });
            }
            if let Some(t) = timeout {
                b["cursor"] = json!(format!("{t:x}"));
            }
            serde_json::to_vec(&b).unwrap()
        });
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        json_body,
        (1usize..400).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()),
    ];
    (route, any::<bool>(), body)
}

#[test]
fn random_and_huge_requests_never_panic_or_fail_the_server() {
    let server = TestServer::filled();
    server.status.set_phase(Phase::Streaming);
    let cases = std::env::var("PGROAR_HTTP_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&request(), |(route, post, bytes)| {
            let url = server.url(&route);
            let response = if post {
                agent()
                    .post(&url)
                    .header("content-type", "application/json")
                    .send(&bytes[..])
            } else {
                agent().get(&url).call()
            };
            let (code, body) = match response {
                Ok(mut r) => (
                    r.status().as_u16(),
                    r.body_mut().read_to_string().unwrap_or_default(),
                ),
                // A path the client itself refuses to send is no server answer.
                Err(ureq::Error::BadUri(_)) | Err(ureq::Error::Http(_)) => return Ok(()),
                // The server may answer a body it refuses (too large, wrong route) before
                // reading it and close: the client then fails writing the rest. The server
                // must still be serving.
                Err(ureq::Error::Io(e))
                    if post
                        && matches!(
                            e.kind(),
                            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                        ) =>
                {
                    prop_assert_eq!(server.get("/healthz").0, 200);
                    return Ok(());
                }
                Err(e) => panic!("{route}: {e}"),
            };
            // The one 5xx by design: a `min_lsn` wait that expired (504, `min_lsn_timeout`).
            let expired_wait = code == 504 && body.contains(r#""code":"min_lsn_timeout""#);
            prop_assert!(
                code < 500 || expired_wait,
                "{route} answered {code}: {body}"
            );
            Ok(())
        })
        .unwrap();
    assert_eq!(server.get("/healthz").0, 200);
    let (status, _) = server.post(&json!({ "filter": "tagIds eq 4" }));
    assert_eq!(status, 200);
}

#[test]
fn a_query_past_its_deadline_answers_503_naming_it() {
    // A deadline already passed when the query starts: the evaluator gives up at its first step.
    let options = ServerOptions {
        query_timeout: Some(Duration::ZERO),
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(
        vec![(entities(1200, 1), WalKey::end_of(Lsn(0x100)))],
        options,
    );
    let (status, body) =
        server.post(&json!({ "filter": chain("tagIds", 200, " OR "), "limit": 10 }));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "query_timeout", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("http.query_timeout_ms"),
        "{body}"
    );
    assert_eq!(server.get("/healthz").0, 200);
}

/// Whether the server closed `stream` (EOF or reset) rather than answering or leaving it open.
fn closed_by_server(stream: &mut std::net::TcpStream) -> bool {
    use std::io::{Read, Write};
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n");
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn connections_past_the_cap_are_closed_and_the_open_ones_keep_serving() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let options = ServerOptions {
        max_connections: 3,
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(
        vec![(entities(100, 1), WalKey::end_of(Lsn(0x100)))],
        options,
    );
    let mut open: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(server.addr).unwrap();
    assert!(closed_by_server(&mut extra), "a 4th connection was kept");
    // The three open ones still answer.
    let first = &mut open[0];
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    first.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Once they close, new connections are served again.
    drop(open);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = TcpStream::connect(server.addr).unwrap();
        if !closed_by_server(&mut again) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slots never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}
