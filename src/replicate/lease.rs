//! The leader's lease: one key in a key-value bucket whose entries expire after the lease's
//! time-to-live. A process becomes leader by creating the key (refused while it exists); the
//! revision of that create is its epoch, larger than every earlier leader's. The leader renews
//! the key every quarter of the TTL with a compare-and-set on the revision it last wrote.
//!
//! Guarantees: at most one process believes it leads at any time, given clocks that run at
//! the same rate: a leader stops believing it once `ttl - margin` has passed since its last
//! successful renewal began, which is before the key can expire on the server and a standby's
//! create can succeed. A renewal refused because the revision moved (another process holds the
//! key) ends leadership at once. The stream's expected-last-sequence check backs this up: a
//! leader that still published after losing its lease would be refused.

use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use tokio::sync::watch;
use tracing::{info, warn};

use super::{Link, ReplicationError, js_err};

/// The key the lease is held under.
const KEY: &str = "leader";

/// A held lease.
pub struct Lease {
    store: kv::Store,
    revision: u64,
    /// The epoch: the revision of the create that took the lease.
    pub epoch: u64,
    ttl: Duration,
    holder: String,
    /// When the lease was taken (the renewal clock starts there).
    taken: Instant,
}

/// The lease bucket, created when missing (history 1, entries expiring after the TTL). The
/// bucket's stream is created with a plain JetStream API request: the client's own call does
/// not read a 2.9 server's answer.
async fn bucket(link: &Link) -> Result<kv::Store, ReplicationError> {
    let name = &link.names.lease;
    if let Ok(store) = link.js.get_key_value(name).await {
        return Ok(store);
    }
    let config = serde_json::json!({
        "name": format!("KV_{name}"),
        "subjects": [format!("$KV.{name}.>")],
        "max_msgs_per_subject": 1,
        "max_age": link.config.lease_ttl_ms * 1_000_000,
        "allow_rollup_hdrs": true,
        "deny_delete": true,
        "allow_direct": true,
        "discard": "new",
        "num_replicas": link.config.replicas,
        "storage": "file",
    });
    let answer: serde_json::Value = link
        .js
        .request(format!("STREAM.CREATE.KV_{name}"), &config)
        .await
        .map_err(|e| js_err("creating the lease bucket")(&e))?;
    if let Some(error) = answer.get("error")
        && !error.to_string().contains("already in use")
    {
        return Err(ReplicationError::JetStream {
            what: "creating the lease bucket",
            reason: error.to_string(),
        });
    }
    link.js
        .get_key_value(name)
        .await
        .map_err(|e| js_err("opening the lease bucket")(&e))
}

/// Who holds the lease now (`None`: nobody).
pub async fn holder(link: &Link) -> Result<Option<String>, ReplicationError> {
    let store = bucket(link).await?;
    let value = store
        .get(KEY)
        .await
        .map_err(|e| js_err("reading the lease")(&e))?;
    Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
}

impl Lease {
    /// Takes the lease once it is free, trying every eighth of the TTL; `None` when `stop`
    /// turns true first.
    pub async fn acquire(
        link: &Link,
        holder: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Option<Lease>, ReplicationError> {
        let ttl = Duration::from_millis(link.config.lease_ttl_ms);
        let mut store = bucket(link).await?;
        let mut logged = false;
        loop {
            if *stop.borrow() {
                return Ok(None);
            }
            let attempt = Instant::now();
            match store.create(KEY, holder.to_owned().into()).await {
                Ok(revision) => {
                    info!(epoch = revision, holder, "lease taken: this process leads");
                    return Ok(Some(Lease {
                        store,
                        revision,
                        epoch: revision,
                        ttl,
                        holder: holder.to_owned(),
                        taken: attempt,
                    }));
                }
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    if !logged {
                        let current = holder_of(&store).await;
                        info!(leader = %current, "the lease is held: standing by");
                        logged = true;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "taking the lease failed; retrying");
                    if let Ok(s) = bucket(link).await {
                        store = s;
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(ttl / 8) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Renews until the lease is lost (`leading` turns false) or `stop` turns true; then,
    /// once `released` turns true (the publisher has stopped), the key is deleted so a standby
    /// takes over without waiting for the TTL. Leadership ends by this process's clock
    /// `ttl − margin` after the last renewal began, before the key can expire on the server.
    pub async fn keep(
        mut self,
        leading: std::sync::Arc<watch::Sender<bool>>,
        mut stop: watch::Receiver<bool>,
        released: watch::Receiver<bool>,
    ) {
        let margin = (self.ttl / 4).max(Duration::from_millis(500));
        let mut renewed = self.taken;
        loop {
            let deadline = renewed + self.ttl.saturating_sub(margin);
            let next = (Instant::now() + self.ttl / 4).min(deadline);
            tokio::select! {
                () = tokio::time::sleep_until(next.into()) => {}
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        leading.send_replace(false);
                        self.release(released).await;
                        return;
                    }
                    continue;
                }
            }
            let attempt = Instant::now();
            if attempt >= deadline {
                warn!(
                    epoch = self.epoch,
                    "the lease could not be renewed in time: stepping down"
                );
                leading.send_replace(false);
                return;
            }
            let renew = tokio::time::timeout(
                (deadline - attempt).min(self.ttl / 4),
                self.store
                    .update(KEY, self.holder.clone().into(), self.revision),
            )
            .await;
            match renew {
                Ok(Ok(revision)) => {
                    self.revision = revision;
                    renewed = attempt;
                }
                Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    warn!(
                        epoch = self.epoch,
                        "the lease was taken by another process: stepping down"
                    );
                    leading.send_replace(false);
                    return;
                }
                Ok(Err(e)) => warn!(error = %e, "renewing the lease failed"),
                Err(_) => warn!("renewing the lease timed out"),
            }
        }
    }

    /// Deletes the key once the publisher has stopped (at most 30 s of waiting).
    async fn release(self, mut released: watch::Receiver<bool>) {
        let _ = tokio::time::timeout(Duration::from_secs(30), released.wait_for(|r| *r)).await;
        let _ = self
            .store
            .delete_expect_revision(KEY, Some(self.revision))
            .await;
        info!(epoch = self.epoch, "lease released");
    }
}

async fn holder_of(store: &kv::Store) -> String {
    match store.get(KEY).await {
        Ok(Some(v)) => String::from_utf8_lossy(&v).into_owned(),
        _ => "unknown".into(),
    }
}
