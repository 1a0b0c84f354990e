//! Scale-out over a real nats-server: a leader publishes, followers replay, a standby takes
//! over. Every process is the release-shaped binary (`pgroar run` / `pgroar follow`), each with
//! its own data directory and port; the database, slot, stream and NATS server are this test's
//! own. At the end every node answers every filter exactly as SQL does, `pgroar check` passes
//! against each, and the stream holds each transaction once, whole, in commit order.

mod failover;

use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use pgroar::Lsn;
use pgroar::replicate::{Body, Message};
use pgroar::schema::FieldIds;
use tokio_postgres::Client;

use super::support::feed::{Guard, PATIENCE, Runner, config_text, http};

/// One pgroar process of the test: its runner (config, log, port) and the running child.
pub struct Node {
    pub runner: Runner,
    pub child: Option<Guard>,
}

impl Node {
    /// A node named `name` under `dir`, configured for `db_url`/`slot` and the NATS server at
    /// `nats` (stream `stream`), with `extra` more `[replication]` keys.
    pub fn new(
        dir: &Path,
        name: &str,
        db_url: &str,
        slot: &str,
        nats: &str,
        stream: &str,
        extra: &str,
    ) -> Node {
        let home = dir.join(name);
        std::fs::create_dir_all(&home).unwrap();
        let data = home.join("data");
        let (runner, port) = Runner::in_dir(&home);
        let text = format!(
            "{}\n[replication]\nurl = \"{nats}\"\nstream = \"{stream}\"\nlease_ttl_ms = 3000\n{extra}\n",
            config_text(db_url, slot, &data, port, 256 << 10)
        );
        std::fs::write(&runner.config, text).unwrap();
        Node {
            runner,
            child: None,
        }
    }

    /// Starts `pgroar <command>`.
    pub fn start(&mut self, command: &str) {
        self.child = Some(self.runner.spawn(&[command]));
    }

    /// Waits until `/readyz` answers 200.
    pub async fn ready(&mut self) {
        let child = self.child.as_mut().expect("started");
        self.runner.wait_ready(child).await;
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.0.kill().unwrap();
            child.0.wait().unwrap();
        }
    }

    /// SIGTERM, and the exit status must be success.
    pub async fn stop(&mut self) {
        let Some(child) = self.child.as_ref() else {
            return;
        };
        // SAFETY: kill takes a pid and a signal number, no pointers.
        unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) };
        let exit = self.wait_exit().await;
        assert!(exit.success(), "{exit:?}\n{}", self.runner.log_tail());
    }

    /// Waits for the process to exit by itself (within [`PATIENCE`]); returns how it did.
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("started");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(exit) = child.0.try_wait().unwrap() {
                return exit;
            }
            assert!(
                Instant::now() < deadline,
                "still running:\n{}",
                self.runner.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (30 s at most) until `/status` reports `role`.
    pub async fn wait_role(&self, role: &str) {
        let since = Instant::now();
        while self.status().await["role"] != role {
            assert!(
                since.elapsed() < Duration::from_secs(30),
                "never {role}:\n{}",
                self.runner.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The `/status` body.
    pub async fn status(&self) -> serde_json::Value {
        self.runner.status().await
    }

    /// Waits until the node has applied `target`.
    pub async fn wait_applied(&self, target: Lsn) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some((200, status)) = http(format!("{}/status", self.runner.base), None).await {
                let applied: Lsn = status["lsn"]["applied"].as_str().unwrap().parse().unwrap();
                if applied >= target {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "applied {applied} never reached {target}: {status}\n{}",
                    self.runner.log_tail()
                );
            } else {
                assert!(
                    Instant::now() < deadline,
                    "no status\n{}",
                    self.runner.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits until the leader has published everything up to `target` (`lsn.published`).
pub async fn wait_published(leader: &Node, client: &Client, target: Lsn) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = leader.status().await;
        let published: Lsn = status["lsn"]["published"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        if published >= target {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "published {published} never reached {target}: {status}\n{}",
            leader.runner.log_tail()
        );
        super::support::follow::nudge(client).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads the whole stream and checks its cursors: each transaction's parts are contiguous from
/// its first record, end once, and transactions come in strictly increasing commit order — no
/// transaction is missing a part or present twice. Returns the commit LSNs still in the stream
/// and the stream's last sequence.
pub async fn assert_stream_cursors(nats: &str, stream: &str) -> (Vec<Lsn>, u64) {
    let client = async_nats::connect(nats).await.unwrap();
    let js = jetstream::new(client);
    let s = js.get_stream(stream).await.unwrap();
    let info = s.get_info().await.unwrap();
    let ids = FieldIds::default();
    let mut commits: Vec<Lsn> = Vec::new();
    // The open transaction: its LSN and the next record expected.
    let mut open: Option<(Lsn, u32)> = None;
    let mut last_position = Lsn::ZERO;
    let first = info.state.first_sequence.max(1);
    for seq in first..=info.state.last_sequence {
        let raw = s.get_raw_message(seq).await.unwrap();
        let m = Message::decode(
            |n| raw.headers.get(n).map(async_nats::HeaderValue::as_str),
            &raw.payload,
            &ids,
        )
        .unwrap();
        match m.body {
            Body::Ops {
                lsn,
                first: a,
                last: b,
                end,
                ..
            } => {
                match open {
                    Some((o, next)) if o == lsn => {
                        assert_eq!(a, next, "seq {seq}: part of {lsn} does not follow the last");
                    }
                    Some((o, _)) => {
                        // A transaction left open by a leader killed mid-way is not allowed:
                        // the next leader continues it after the stream's last cursor.
                        panic!("seq {seq}: transaction {o} never ended before {lsn}");
                    }
                    None => {
                        // The stream's first message may continue a transaction whose first
                        // parts were purged with the checkpoint before it.
                        if seq != first {
                            assert_eq!(a, 0, "seq {seq}: {lsn} starts mid-way");
                        }
                        assert!(
                            lsn > last_position,
                            "seq {seq}: {lsn} not after {last_position}"
                        );
                    }
                }
                assert!(b >= a);
                open = if end {
                    commits.push(lsn);
                    last_position = lsn;
                    None
                } else {
                    Some((lsn, b + 1))
                };
            }
            Body::Mark { lsn } => {
                assert!(open.is_none(), "seq {seq}: a mark inside a transaction");
                assert!(
                    lsn > last_position,
                    "seq {seq}: mark {lsn} not after {last_position}"
                );
                last_position = lsn;
            }
            Body::Leader => {}
        }
    }
    (commits, info.state.last_sequence)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_serve_what_sql_says_through_kills_and_a_late_start() {
    failover::leader_and_followers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_from_a_killed_leader_and_survives_a_nats_restart() {
    failover::standby_takes_over().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_resumed_after_a_takeover_publishes_nothing_and_exits() {
    failover::a_paused_leader_is_fenced().await;
}
