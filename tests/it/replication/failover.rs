//! The scenarios: followers under a live writer (one killed and restarted, one started late
//! from the checkpoint bucket), and a leader SIGKILLed with a standby taking over, then the
//! NATS server restarted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pgroar::Lsn;
use pgroar::cluster::TestDb;
use pgroar::cluster::nats::NatsServer;

use super::{Node, assert_stream_cursors, wait_published};
use crate::it::support::feed::{
    IDS, PATIENCE, SCHEMA, assert_check_passes, assert_server_matches, load_feed, workload,
};
use crate::it::support::follow::{current_lsn, slot_confirmed};

/// What every scenario starts from: a throwaway NATS server, a database with the feed's tables,
/// a temporary directory, and the slot's and stream's names; `extra` goes into every node's
/// `[replication]`.
struct Scene {
    nats: NatsServer,
    db: TestDb,
    client: tokio_postgres::Client,
    dir: tempfile::TempDir,
    slot: String,
    stream: String,
    extra: &'static str,
}

impl Scene {
    async fn new(topic: &str, extra: &'static str) -> Scene {
        let nats = NatsServer::start().unwrap();
        let db = TestDb::new(topic);
        db.execute(SCHEMA).unwrap();
        let client = db.client().await.unwrap();
        let (slot, stream) = (format!("s_{}", db.name()), format!("T_{}", db.name()));
        Scene {
            nats,
            db,
            client,
            dir: tempfile::tempdir().unwrap(),
            slot,
            stream,
            extra,
        }
    }

    fn node(&self, name: &str) -> Node {
        let (dir, url, nats) = (self.dir.path(), self.db.url(), self.nats.url());
        Node::new(dir, name, &url, &self.slot, &nats, &self.stream, self.extra)
    }

    /// The first leader (`env`: its extra environment), bootstrapped over empty tables, then
    /// the feed's images loaded.
    async fn leader(&self, name: &str, env: Vec<(String, String)>) -> Node {
        let mut leader = self.node(name);
        leader.runner.env = env;
        leader.start("bootstrap");
        leader.ready().await;
        load_feed(&self.client, IDS as u64).await;
        leader
    }

    /// The feed's random writer, seeded by `salt` and the process id (printed).
    async fn writer(&self, salt: u64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let seed = salt ^ u64::from(std::process::id());
        eprintln!("replication test seed {seed}");
        let client = self.db.client().await.unwrap();
        let work = tokio::spawn(workload(
            client,
            seed,
            Arc::clone(&stop),
            Arc::new(AtomicU64::new(0)),
        ));
        Writer { stop, work, seed }
    }
}

/// A running writer.
struct Writer {
    stop: Arc<AtomicBool>,
    work: tokio::task::JoinHandle<u64>,
    seed: u64,
}

impl Writer {
    /// Stops it; returns how many transactions it committed (at least 20).
    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let txns = self.work.await.unwrap();
        assert!(txns > 20, "the writer barely ran: {txns}");
        txns
    }
}

/// Waits until the leader's WAL is durable past what the stream has acknowledged; returns by
/// how many bytes.
async fn wait_behind(leader: &Node) -> u64 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let s = leader.status().await;
        let lsn = |k: &str| s["lsn"][k].as_str().unwrap().parse::<Lsn>().unwrap();
        let (durable, published) = (lsn("durable"), lsn("published"));
        if durable > published {
            return durable.0 - published.0;
        }
        assert!(
            Instant::now() < deadline,
            "publishing never fell behind: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Everything at or below this LSN is in the stream.
async fn stream_covered(nats: &str, stream: &str) -> Lsn {
    let link = pgroar::replicate::Link::open(
        &pgroar::config::ReplicationConfig {
            url: nats.into(),
            stream: stream.into(),
            credentials: None,
            tls_ca: None,
            tls_required: false,
            replicas: 1,
            lease_ttl_ms: 3000,
            keep_checkpoints: 2,
        },
        pgroar::schema::FieldIds::default(),
    )
    .await
    .unwrap();
    link.tail().await.unwrap().covered()
}

/// Every node has applied everything committed so far, and answers as SQL does; `pgroar check`
/// passes against each.
async fn assert_all_match(db: &TestDb, leader: &Node, nodes: &[&Node], context: &str) {
    let client = db.client().await.unwrap();
    let target = current_lsn(&client).await;
    wait_published(leader, &client, target).await;
    for node in nodes.iter().chain([&leader]) {
        node.wait_applied(target).await;
        assert_server_matches(&client, &node.runner.base, context).await;
        assert_check_passes(&node.runner.config);
    }
}

/// An application's write, then a `min_lsn` read on a follower with the position read after
/// its commit: the follower waits until it has the write, and answers with it (✗ publishing
/// marks at most once a second after a commit: 30 s and a 504).
async fn read_your_write_on(client: &tokio_postgres::Client, follower: &Node) {
    client
        .batch_execute(r#"INSERT INTO "Image"(id, "nsfwLevel") VALUES (900001, 977)"#)
        .await
        .unwrap();
    let lsn = current_lsn(client).await;
    let asked = Instant::now();
    let (code, answer) = crate::it::support::feed::http(
        format!("{}/query", follower.runner.base),
        Some(serde_json::json!({
            "filter": "nsfwLevel eq 977", "min_lsn": lsn.to_string(), "timeout_ms": 30000
        })),
    )
    .await
    .unwrap();
    let took = asked.elapsed();
    eprintln!("min_lsn on a follower answered after {took:?}");
    assert_eq!(code, 200, "{answer}");
    // Within the leader's next mark (its status interval, 1 s), not its next keepalive.
    assert!(took < Duration::from_secs(5), "min_lsn took {took:?}");
    let ids: Vec<u32> = serde_json::from_value(answer["ids"].clone()).unwrap();
    assert!(ids.contains(&900_001), "{answer}");
}

/// A leader bootstraps and publishes; two followers start from its checkpoint; a random writer
/// runs; one follower is SIGKILLed and restarted, a third starts late (the stream purged behind
/// the bucket's checkpoints by then); all end equal to SQL.
pub async fn leader_and_followers() {
    let scene = Scene::new("replicas", "").await;
    let (client, node) = (&scene.client, |name: &str| scene.node(name));
    let mut leader = scene.leader("leader", Vec::new()).await;

    let (mut a, mut b) = (node("a"), node("b"));
    a.start("follow");
    b.start("follow");
    a.ready().await;
    b.ready().await;
    assert_eq!(a.status().await["role"], "follower");
    assert_eq!(leader.status().await["role"], "leader");

    let writer = scene.writer(0x5EED).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.start("follow");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut late = node("late");
    // A follower's config needs no Postgres URL: it never connects.
    let text = std::fs::read_to_string(&late.runner.config).unwrap();
    let without: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("url = \"postgres"))
        .collect();
    assert_eq!(without.len() + 1, text.lines().count(), "{text}");
    std::fs::write(&late.runner.config, without.join("\n")).unwrap();
    late.start("follow");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seed = writer.seed;
    writer.finish().await;
    a.ready().await;
    late.ready().await;
    // `pgroar check` compares with the database: it reads the URL from the same file.
    std::fs::write(&late.runner.config, &text).unwrap();
    let late_log = std::fs::read_to_string(&late.runner.log).unwrap();
    assert!(
        late_log.contains("starting from the bucket's checkpoint"),
        "{late_log}"
    );

    assert_all_match(
        &scene.db,
        &leader,
        &[&a, &b, &late],
        &format!("seed {seed}"),
    )
    .await;
    read_your_write_on(client, &b).await;
    // Followers write checkpoints of their own (what a restart loads when the bucket's is
    // not newer).
    for f in [&a, &b, &late] {
        let status = f.status().await;
        let checkpointed: Lsn = status["lsn"]["checkpointed"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(checkpointed > Lsn::ZERO, "{status}");
        let files = std::fs::read_dir(f.runner.config.with_file_name("data").join("index"));
        assert!(
            files.is_ok_and(|mut d| d.next().is_some()),
            "no local checkpoint"
        );
    }
    // Purged behind the bucket's two checkpoints: what is left still reads whole and in order.
    let (_, published) = assert_stream_cursors(&scene.nats.url(), &scene.stream).await;
    assert!(published > 20, "{published} messages published");
    for n in [&mut a, &mut b, &mut late, &mut leader] {
        n.stop().await;
    }
    // A new bootstrap onto the same stream would start a second history: refused, naming why.
    let mut again = node("again");
    again.start("bootstrap");
    let exit = again.child.as_mut().unwrap().0.wait().unwrap();
    let log = std::fs::read_to_string(&again.runner.log).unwrap();
    assert!(!exit.success(), "{log}");
    assert!(
        log.contains("already holds an earlier index's history"),
        "{log}"
    );
}

/// A leader and a standby (`pgroar run` twice, one slot) with a follower: the leader is
/// SIGKILLed under the writer, the standby takes over within the lease's time and goes on from
/// the stream's last cursor; the old leader comes back as the standby; the NATS server is
/// restarted; everything ends equal to SQL and the stream holds every transaction once.
pub async fn standby_takes_over() {
    // Nothing purged: the whole history, takeover included, is checked.
    let scene = Scene::new("standby", "keep_checkpoints = 100000").await;
    let client = &scene.client;
    // Publishing slowed: the leader's WAL runs ahead of the stream, and the slot must not.
    let slow = vec![("FAILPOINTS".into(), "publish-send=sleep(100)".into())];
    let mut first = scene.leader("first", slow).await;
    let mut second = scene.node("second");
    second.start("run");
    let mut follower = scene.node("follower");
    follower.start("follow");
    second.ready().await;
    follower.ready().await;
    assert_eq!(second.status().await["role"], "standby");

    let writer = scene.writer(0xFA11).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let behind = wait_behind(&first).await;
    first.kill();
    let killed = Instant::now();
    first.runner.env.clear();
    // Postgres keeps everything the stream lacks: the slot is not past the stream's end.
    let confirmed = slot_confirmed(client, &scene.slot).await.unwrap();
    let covered = stream_covered(&scene.nats.url(), &scene.stream).await;
    assert!(
        confirmed.0 <= covered.0 + 1,
        "slot confirmed {confirmed}, the stream ends at {covered} (durable ran {behind} bytes ahead)"
    );
    second.wait_role("leader").await;
    let took_over = killed.elapsed();
    eprintln!("takeover after {took_over:?}");
    assert!(
        took_over < Duration::from_secs(10),
        "takeover took {took_over:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    first.start("run");
    tokio::time::sleep(Duration::from_secs(2)).await;
    scene.nats.restart().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seed = writer.seed;
    let txns = writer.finish().await;
    first.ready().await;
    assert_eq!(first.status().await["role"], "standby");

    let target: Lsn = current_lsn(client).await;
    wait_published(&second, client, target).await;
    let context = format!("seed {seed}");
    assert_all_match(&scene.db, &second, &[&follower, &first], &context).await;
    let (commits, _) = assert_stream_cursors(&scene.nats.url(), &scene.stream).await;
    assert!(
        commits.len() as u64 > txns / 2,
        "{} of {txns} transactions in the stream",
        commits.len()
    );
    for n in [&mut follower, &mut first, &mut second] {
        n.stop().await;
    }
}

/// A leader paused (SIGSTOP) past its lease: the standby takes over; resumed, the old leader
/// must not publish another part — its renewal or its next publish is refused — and it exits
/// with an error saying so. The stream stays one history and every node equals SQL.
pub async fn a_paused_leader_is_fenced() {
    let scene = Scene::new("fenced", "keep_checkpoints = 100000").await;
    let mut first = scene.leader("first", Vec::new()).await;
    let mut second = scene.node("second");
    second.start("run");
    second.ready().await;

    let writer = scene.writer(0xF3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = first.child.as_ref().unwrap().0.id() as libc::pid_t;
    // SAFETY: kill takes a pid and a signal number, no pointers.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    second.wait_role("leader").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let exit = first.wait_exit().await;
    let log = std::fs::read_to_string(&first.runner.log).unwrap();
    assert!(!exit.success(), "{log}");
    assert!(
        log.contains("another leader took over")
            || log.contains("stepping down")
            || log.contains("taken by another process"),
        "{log}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seed = writer.seed;
    writer.finish().await;
    assert_all_match(&scene.db, &second, &[], &format!("seed {seed}")).await;
    assert_stream_cursors(&scene.nats.url(), &scene.stream).await;
    second.stop().await;
}
