//! Ordinary SQL sessions over TLS, as the connection string's `sslmode` asks: the start-up
//! replica identity check of `pgroar run` runs on a TLS-only connection string, and the
//! verifying modes accept the server's certificate only when `sslrootcert` vouches for it.

use std::path::Path;
use std::process::Command;

use pgroar::cluster::{Cluster, ClusterOptions, TestDb};
use pgroar::config::Config;
use pgroar::pipeline::PipelineError;
use pgroar::server::RunError;
use pgroar::source::{ConnInfo, SqlConnectError, connect_sql};
use pgroar::translate::IdentityError;

/// Whether the session `url` opens is encrypted.
async fn session_uses_tls(url: &str) -> Result<bool, SqlConnectError> {
    let client = connect_sql(&ConnInfo::parse(url).unwrap()).await?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    Ok(row.get(0))
}

/// A self-signed certificate nobody else uses, as a CA file that vouches for nothing.
fn unrelated_ca(dir: &Path) -> std::path::PathBuf {
    let (cert, key) = (dir.join("other.crt"), dir.join("other.key"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:prime256v1")
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "{out:?}");
    cert
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replica_identity_check_runs_over_tls() {
    let cluster = Cluster::start(ClusterOptions::fast().tls()).expect("a TLS cluster");
    let db = cluster.create_database("tls_identity").unwrap();
    cluster
        .execute(
            &db,
            "CREATE TABLE items (id int PRIMARY KEY, a int);
             CREATE TABLE item_tags (id serial PRIMARY KEY, item_id int, tag int);
             CREATE PUBLICATION pgroar_tls FOR TABLE items, item_tags;",
        )
        .unwrap();
    let url = format!("{}?sslmode=require", cluster.url(&db));
    assert!(session_uses_tls(&url).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml_str(
        &format!(
            r#"
[postgres]
url = "{url}"
publication = "pgroar_tls"
slot = "s_tls_identity"
[storage]
data_dir = "{dir}"
[http]
listen = "127.0.0.1:0"
[index]
filters = [{{ name = "a", kind = "single" }}, {{ name = "tags", kind = "multi" }}]
[[sources]]
table = "items"
track_fields = ["a"]
sets_alive = true
[[sources]]
table = "item_tags"
slot_field = "item_id"
field = "tags"
value_field = "tag"
"#,
            dir = dir.path().display()
        ),
        std::iter::empty(),
    )
    .unwrap();
    // item_tags' default identity (its primary key, id) leaves a DELETE without item_id and
    // tag: `run` refuses to start, naming the table and the fix.
    let err = pgroar::server::run(config, std::future::pending())
        .await
        .expect_err("the identity check refuses item_tags");
    match &err {
        RunError::Pipeline(PipelineError::Identity(IdentityError::Problems(problems))) => {
            let text = problems.join("\n");
            assert!(text.contains("item_tags"), "{text}");
            assert!(text.contains("REPLICA IDENTITY"), "{text}");
            assert!(!text.contains("\"items\""), "{text}");
        }
        other => panic!("expected the identity error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_sessions_honour_sslmode_and_sslrootcert() {
    let cluster = Cluster::start(ClusterOptions::fast().tls()).expect("a TLS cluster");
    let db = cluster.create_database("tls_modes").unwrap();
    let base = cluster.url(&db);
    let ca = cluster
        .tls_certificate()
        .expect("the cluster's certificate");
    let dir = tempfile::tempdir().unwrap();
    let other = unrelated_ca(dir.path());

    assert!(
        !session_uses_tls(&format!("{base}?sslmode=disable"))
            .await
            .unwrap()
    );
    assert!(
        session_uses_tls(&format!("{base}?sslmode=prefer"))
            .await
            .unwrap()
    );
    assert!(
        session_uses_tls(&format!("{base}?sslmode=require"))
            .await
            .unwrap()
    );
    // The certificate names 127.0.0.1, and sslrootcert vouches for it.
    for mode in ["verify-ca", "verify-full"] {
        let url = format!("{base}?sslmode={mode}&sslrootcert={}", ca.display());
        assert!(session_uses_tls(&url).await.unwrap(), "{mode}");
    }
    // A CA that did not sign it, or none at all (the public roots): refused.
    for root in [format!("&sslrootcert={}", other.display()), String::new()] {
        for mode in ["verify-ca", "verify-full"] {
            let url = format!("{base}?sslmode={mode}{root}");
            let err = session_uses_tls(&url).await.expect_err(&url);
            assert!(
                matches!(err, SqlConnectError::Connect { .. }),
                "{url}: {err:?}"
            );
            let text = pgroar::source::error_chain(&err);
            assert!(text.contains("certificate"), "{url}: {text}");
        }
    }

    // A server without TLS: prefer falls back to plain, require refuses.
    let plain = TestDb::new("tls_plain");
    assert!(
        !session_uses_tls(&format!("{}?sslmode=prefer", plain.url()))
            .await
            .unwrap()
    );
    let err = session_uses_tls(&format!("{}?sslmode=require", plain.url()))
        .await
        .expect_err("require needs TLS");
    assert!(matches!(err, SqlConnectError::Connect { .. }), "{err:?}");
}
