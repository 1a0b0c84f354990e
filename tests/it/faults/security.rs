//! Connection security, against an own cluster whose `pg_hba.conf` asks for passwords: the
//! replication connection (and every other) over TLS with SCRAM-SHA-256, the server verified
//! by its certificate (`verify-full`); a cleartext password refused on an unencrypted connection
//! unless `require_auth=password` allows it; `channel_binding=require` refused for the
//! replication connection (it cannot be honoured there). The password appears in no log line,
//! no `/status`, no error.

use std::time::Duration;

use pgroar::cluster::{Cluster, ClusterOptions};

use super::{Served, assert_equals_sql, connect, seed, serve, wait_failed};
use crate::it::support::feed::{SCHEMA, http, insert_sql};

const SCRAM_PASSWORD: &str = "Scr4m-s3cret-Pw";
const CLEAR_PASSWORD: &str = "Cl34r-s3cret-Pw";

/// A TLS cluster where `scram_user` must use SCRAM over TLS and `clear_user` is asked for a
/// cleartext password; `postgres` keeps trust (the harness). Returns it with a database.
fn cluster() -> (Cluster, String) {
    let cluster = Cluster::start(ClusterOptions::fast().tls()).expect("a TLS cluster");
    let db = cluster.create_database("security").unwrap();
    cluster.execute(&db, SCHEMA).unwrap();
    cluster
        .execute(
            &db,
            &format!(
                "SET password_encryption = 'scram-sha-256';
                 CREATE ROLE scram_user LOGIN SUPERUSER REPLICATION PASSWORD '{SCRAM_PASSWORD}';
                 CREATE ROLE clear_user LOGIN SUPERUSER REPLICATION PASSWORD '{CLEAR_PASSWORD}';"
            ),
        )
        .unwrap();
    let hba = cluster.data_dir().join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    let ours = "hostssl all scram_user 127.0.0.1/32 scram-sha-256\n\
                hostssl replication scram_user 127.0.0.1/32 scram-sha-256\n\
                host all scram_user 127.0.0.1/32 reject\n\
                host replication scram_user 127.0.0.1/32 reject\n\
                host all clear_user 127.0.0.1/32 password\n\
                host replication clear_user 127.0.0.1/32 password\n";
    std::fs::write(&hba, format!("{ours}{old}")).unwrap();
    cluster.execute(&db, "SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    (cluster, db)
}

/// Asserts `secret` appears nowhere in the child's log or its `/status`.
async fn assert_never_shown(served: &Served, secret: &str) {
    let log = super::log_text(served.dir.path());
    assert!(!log.contains(secret), "the password is in the log:\n{log}");
    if let Some((_, status)) = http(format!("{}/status", served.runner.base), None).await {
        assert!(!status.to_string().contains(secret), "in /status: {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_runs_over_tls_with_scram_and_cleartext_is_refused() {
    let (cluster, db) = cluster();
    let ca = cluster.tls_certificate().unwrap().display().to_string();
    let client = connect(&cluster.url(&db)).await.unwrap();
    let port = cluster.port();

    // SCRAM over TLS, the server verified by name: bootstrap, stream, equal to SQL.
    let url = format!(
        "postgresql://scram_user:{SCRAM_PASSWORD}@localhost:{port}/{db}\
         ?sslmode=verify-full&sslrootcert={ca}"
    );
    let mut served = serve(&url, "sec_scram", "").await;
    seed(&client).await;
    client
        .batch_execute(&insert_sql(4001, 4100, 3))
        .await
        .unwrap();
    assert_equals_sql(&served, &client, "over TLS with SCRAM").await;
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)
             WHERE r.usename = 'scram_user' AND s.ssl",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0),
        1,
        "the replication connection is not TLS"
    );
    assert_never_shown(&served, SCRAM_PASSWORD).await;
    super::stop(&mut served);

    // The same user with a wrong password: the error names no password.
    let wrong = url.replace(SCRAM_PASSWORD, "Wr0ng-guess-Pw");
    let mut refused = serve_failing(&wrong, "sec_wrong").await;
    let log = wait_failed(&mut refused, Duration::from_secs(60)).await;
    assert!(!log.contains("Wr0ng-guess-Pw"), "{log}");
    assert!(log.contains("password") || log.contains("auth"), "{log}");

    // Cleartext asked on an unencrypted connection: refused before the password is sent.
    let clear =
        format!("postgresql://clear_user:{CLEAR_PASSWORD}@127.0.0.1:{port}/{db}?sslmode=disable");
    let mut refused = serve_failing(&clear, "sec_clear").await;
    let log = wait_failed(&mut refused, Duration::from_secs(60)).await;
    assert!(
        log.contains("in clear text") && log.contains("require_auth=password"),
        "{log}"
    );
    assert!(!log.contains(CLEAR_PASSWORD), "{log}");
    // ... and allowed when the connection string says so.
    let allowed = format!("{clear}&require_auth=password");
    let served = serve(&allowed, "sec_clear_ok", "").await;
    assert_equals_sql(&served, &client, "cleartext allowed explicitly").await;
    assert_never_shown(&served, CLEAR_PASSWORD).await;

    // channel_binding=require cannot be honoured by the replication connection: refused.
    let bound = format!("{url}&channel_binding=require");
    let mut refused = serve_failing(&bound, "sec_binding").await;
    let log = wait_failed(&mut refused, Duration::from_secs(60)).await;
    assert!(log.contains("channel_binding"), "{log}");
    assert!(!log.contains(SCRAM_PASSWORD), "{log}");
}

/// Starts `pgroar bootstrap` on `url` without waiting for it to be ready (it is expected to
/// fail).
async fn serve_failing(url: &str, slot: &str) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let (runner, port) = crate::it::support::feed::Runner::in_dir(dir.path());
    let text =
        crate::it::support::feed::config_text(url, slot, &dir.path().join("data"), port, 1 << 20);
    std::fs::write(&runner.config, text).unwrap();
    let child = runner.spawn(&["bootstrap"]);
    Served { dir, runner, child }
}
