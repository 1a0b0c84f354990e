//! One replication session: events → translator → WAL, group commit, acknowledgements, and the
//! clean-up when the session ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pgwire_replication::{PgWireError, ReplicationClient, ReplicationEvent};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::{OpenTxn, Source, SourceError, Translate, from_wire, lock, to_wire};
use crate::Lsn;
use crate::decode::{Message, RelationChange, decode_message};
use crate::ops::EntityOps;
use crate::status::Counter;

/// How a session ended without a fatal error.
pub(super) enum SessionEnd {
    /// `stop` turned true.
    Stopped,
    /// The connection or the server ended it; reconnect.
    Lost(SourceError),
    /// The session asked for values in binary form and a table needs them in text: end it
    /// cleanly and open the next one at once ([`SourceError::TextValuesNeeded`]).
    Restart(SourceError),
}

type Received = Result<Option<ReplicationEvent>, PgWireError>;

/// What [`Source::wait`] found.
enum Waited {
    /// An event (or the stream's end or error) to handle.
    Event(Received),
    /// Something was done; look again.
    Again,
    /// The session ends.
    End(SessionEnd),
}

/// Which branch of [`Source::wait`]'s select fired.
enum Woke {
    Stop,
    Synced(crate::wal::SyncOutcome),
    Mark,
    Again,
    Event(Received),
    Silence,
}

impl<T: Translate> Source<T> {
    /// Runs a started session to its end. `Ok(None)`: stopped on request (everything synced and
    /// acknowledged); `Ok(Some(e))`: the session was lost (reconnect); `Err`: fatal.
    pub(super) async fn stream(
        &mut self,
        mut client: ReplicationClient,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Option<SourceError>, SourceError> {
        if self.sessions > 0 {
            self.status.add(Counter::Reconnects, 1);
        }
        self.sessions += 1;
        self.phase.set_connected(&self.status, true);
        self.heard();
        let end = self.session(&mut client, stop).await;
        // Whatever ended the session: the open transaction is dropped (Postgres re-sends it
        // whole) and what was committed is made durable.
        let cleaned = self.end_transaction();
        let synced = match &cleaned {
            Ok(()) => self.sync_wal().await.map(Some),
            Err(_) => Ok(None),
        };
        self.pending_mark = None;
        self.last_commit_end = None;
        match end {
            Err(fatal) => {
                // What is durable is still consistent: acknowledge it before giving up.
                match synced {
                    Ok(Some(durable)) => self.finish(client, durable).await,
                    _ => client.abort(),
                }
                Err(fatal)
            }
            Ok(end @ (SessionEnd::Stopped | SessionEnd::Restart(_))) => {
                cleaned?;
                if let Some(durable) = synced? {
                    self.finish(client, durable).await;
                }
                Ok(match end {
                    SessionEnd::Restart(e) => Some(e),
                    _ => None,
                })
            }
            Ok(SessionEnd::Lost(e)) => {
                // A silent connection may never finish a clean goodbye: end the worker now, and
                // remember the server process, which may hold the slot for a while yet.
                client.abort();
                if let Some(pid) = self.session_pid.take() {
                    self.abandoned_pids.push(pid);
                    let keep = self.abandoned_pids.len().saturating_sub(8);
                    self.abandoned_pids.drain(..keep);
                }
                cleaned?;
                synced?;
                self.phase.set_connected(&self.status, false);
                Ok(Some(e))
            }
        }
    }

    async fn session(
        &mut self,
        client: &mut ReplicationClient,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<SessionEnd, SourceError> {
        let mut catalog = self.catalog.clone();
        loop {
            // Between transactions only: not a cost per row, and a pause never splits one.
            if self.txn.is_none() {
                if let Some(fault) = self.catalog_fault() {
                    return Err(fault);
                }
                if self.backlog() > self.options.max_backlog_bytes {
                    if self.unsynced_since.is_some() || self.in_flight.is_some() {
                        self.mark_commit_end()?;
                        self.sync_and_ack(client).await?;
                    }
                    if let Some(end) = self.pause_for_backlog(stop).await {
                        return Ok(end);
                    }
                }
            }
            let received = if self.unsynced_since.is_some() && self.in_flight.is_none() {
                match try_recv(client).await {
                    Some(r) => r,
                    None => {
                        // Nothing more right now: this is the group commit point. Its fsync runs
                        // in the background while the stream goes on.
                        self.mark_commit_end()?;
                        self.start_sync()?;
                        continue;
                    }
                }
            } else {
                // Everything written is durable or being made so. A query waiting for a position
                // that only a Mark can prove gets that Mark now (the loop comes back here to sync
                // it).
                if self.mark_for_readers()? {
                    continue;
                }
                match self.wait(client, stop, &mut catalog).await? {
                    Waited::Event(r) => r,
                    Waited::Again => continue,
                    Waited::End(end) => return Ok(end),
                }
            };
            match received {
                Err(e) => return Ok(SessionEnd::Lost(SourceError::Stream(e))),
                Ok(None) => return Ok(SessionEnd::Lost(SourceError::StreamEnded)),
                Ok(Some(event)) => {
                    self.heard();
                    match self.handle(event) {
                        Err(e @ SourceError::TextValuesNeeded { .. }) => {
                            return Ok(SessionEnd::Restart(e));
                        }
                        handled => handled?,
                    }
                }
            }
            self.maybe_sync(client).await?;
        }
    }

    /// Waits for the next thing to do: an event, the background fsync's end (published and
    /// acknowledged here), a Mark falling due, a reader's demand, a catalog fault, the stop
    /// request or the stream's silence.
    async fn wait(
        &mut self,
        client: &mut ReplicationClient,
        stop: &mut watch::Receiver<bool>,
        catalog: &mut Option<watch::Receiver<Option<String>>>,
    ) -> Result<Waited, SourceError> {
        let mark_due = self.last_mark + self.options.keepalive_mark_interval;
        let may_mark = self.pending_mark.is_some() && self.txn.is_none();
        let status = Arc::clone(&self.status);
        let silence = self.silence_deadline();
        let mut flight = self.in_flight.take();
        let woke = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => Woke::Stop,
            synced = async { flight.as_mut().expect("guarded").await }, if flight.is_some() => {
                flight = None;
                Woke::Synced(synced.map_err(|e| SourceError::Task(e.to_string()))?)
            }
            _ = tokio::time::sleep_until(mark_due.into()), if may_mark => Woke::Mark,
            _ = status.read_demand().changed() => Woke::Again,
            () = catalog_changed(catalog) => Woke::Again,
            r = client.recv() => Woke::Event(r),
            // Last, so an event already waiting always wins over the deadline.
            _ = tokio::time::sleep_until(silence.into()) => Woke::Silence,
        };
        self.in_flight = flight;
        Ok(match woke {
            Woke::Stop => Waited::End(SessionEnd::Stopped),
            Woke::Synced(outcome) => {
                let durable = self.publish_synced(outcome)?;
                self.acknowledge(client, durable);
                Waited::Again
            }
            Woke::Mark => {
                if let Some(lsn) = self.pending_mark {
                    self.mark(lsn)?;
                }
                Waited::Again
            }
            Woke::Again => Waited::Again,
            Woke::Event(r) => Waited::Event(r),
            Woke::Silence => match self.silence() {
                Some(e) => Waited::End(SessionEnd::Lost(e)),
                None => Waited::Again,
            },
        })
    }

    /// After an event: starts the group commit's fsync once the oldest unsynced commit has
    /// waited `group_commit_max_delay` (between transactions, when none is running), and waits
    /// for the running one first when `group_commit_max_bytes` are pending.
    async fn maybe_sync(&mut self, client: &ReplicationClient) -> Result<(), SourceError> {
        let Some(since) = self.unsynced_since else {
            return Ok(());
        };
        let pending = lock(&self.wal).pending_bytes();
        if pending >= self.options.group_commit_max_bytes {
            if let Some(durable) = self.finish_in_flight().await? {
                self.acknowledge(client, durable);
            }
            return self.start_sync();
        }
        if self.in_flight.is_none()
            && self.txn.is_none()
            && since.elapsed() >= self.options.group_commit_max_delay
        {
            self.start_sync()?;
        }
        Ok(())
    }

    /// Tells the server everything up to `durable` is flushed.
    fn acknowledge(&mut self, client: &ReplicationClient, durable: Lsn) {
        client.update_applied_lsn(to_wire(self.ack_of(durable)));
        // Our own time does not count as the stream's silence.
        self.silent_since = Instant::now();
    }

    async fn sync_and_ack(&mut self, client: &ReplicationClient) -> Result<(), SourceError> {
        let durable = self.sync_wal().await?;
        self.acknowledge(client, durable);
        Ok(())
    }

    /// Source WAL bytes durable in our WAL but not yet applied to the index.
    fn backlog(&self) -> u64 {
        let Some(applied) = &self.applied else {
            return 0;
        };
        let applied = applied.borrow().lsn;
        self.status.durable().0.saturating_sub(applied.0)
    }

    /// Stops reading while the backlog is above its bound: the replication client's buffer
    /// fills, TCP pushes back, and Postgres keeps the changes in the slot (the client keeps
    /// acknowledging, so the server does not time the session out). Returns how the session
    /// ends if it is stopped meanwhile.
    async fn pause_for_backlog(&mut self, stop: &mut watch::Receiver<bool>) -> Option<SessionEnd> {
        let bound = self.options.max_backlog_bytes;
        info!(
            backlog_bytes = self.backlog(),
            bound,
            "the index is behind the WAL by more than wal.max_backlog_bytes; pausing the stream"
        );
        self.status.add(Counter::BacklogPauses, 1);
        let started = Instant::now();
        let mut applied = self.applied.clone()?;
        while self.backlog() > bound / 2 {
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return Some(SessionEnd::Stopped),
                // The index writer publishes every batch it applies.
                changed = applied.changed() => if changed.is_err() { break },
            }
        }
        info!(
            paused_ms = started.elapsed().as_millis() as u64,
            "the index caught up; streaming again"
        );
        // The pause was ours: it is not the stream's silence.
        self.heard();
        None
    }

    /// Something arrived: the stream is alive.
    fn heard(&mut self) {
        self.silent_since = Instant::now();
        self.heartbeat_sent = false;
    }

    /// When the current silence next needs attention: half the receive timeout (heartbeat),
    /// then the whole of it (presumed dead).
    fn silence_deadline(&self) -> Instant {
        let after = if self.heartbeat_sent {
            self.receive_timeout
        } else {
            self.receive_timeout / 2
        };
        self.silent_since + after
    }

    /// The stream has been silent until [`Source::silence_deadline`]. Half-way, a heartbeat
    /// asks the server for traffic (an idle server sends nothing while our acknowledgements
    /// keep arriving); at the full timeout the connection is presumed dead.
    fn silence(&mut self) -> Option<SourceError> {
        if self.silent_since.elapsed() >= self.receive_timeout {
            return Some(SourceError::ReceiveTimeout {
                after: self.receive_timeout,
            });
        }
        if !self.heartbeat_sent {
            self.heartbeat_sent = true;
            super::heartbeat::send(self.conn.clone(), self.receive_timeout / 2);
        }
        None
    }

    fn handle(&mut self, event: ReplicationEvent) -> Result<(), SourceError> {
        match event {
            ReplicationEvent::Begin { final_lsn, .. } => self.begin(from_wire(final_lsn)),
            ReplicationEvent::XLogData {
                wal_start, data, ..
            } => self.data(from_wire(wal_start), &data),
            ReplicationEvent::Commit { lsn, end_lsn, .. } => {
                self.commit(from_wire(lsn), from_wire(end_lsn))
            }
            ReplicationEvent::KeepAlive { wal_end, .. } => self.keepalive(from_wire(wal_end)),
            ReplicationEvent::Message {
                transactional: true,
                lsn,
                prefix,
                content,
            } if prefix == super::ops_message_prefix(&self.slot) => {
                self.ops_message(from_wire(lsn), &content)
            }
            ReplicationEvent::Message { .. } | ReplicationEvent::StoppedAt { .. } => Ok(()),
        }
    }

    fn begin(&mut self, lsn: Lsn) -> Result<(), SourceError> {
        if let Some(open) = self.txn {
            return Err(SourceError::Protocol {
                lsn,
                detail: format!("BEGIN inside the transaction committing at {}", open.lsn),
            });
        }
        let mut wal = lock(&self.wal);
        // Already in the WAL (the transaction at the start position is always re-sent).
        let skip = lsn <= wal.written_lsn();
        if skip {
            debug!(%lsn, "skipping a transaction the WAL already holds");
        } else {
            wal.begin(lsn)?;
        }
        self.txn = Some(OpenTxn { lsn, skip });
        Ok(())
    }

    fn data(&mut self, at: Lsn, bytes: &Bytes) -> Result<(), SourceError> {
        let msg =
            decode_message(bytes).map_err(|source| SourceError::Decode { lsn: at, source })?;
        let translate = |e: T::Error| SourceError::Translate {
            lsn: at,
            source: Box::new(e),
        };
        match msg {
            // Relations are described once per session, possibly inside a transaction we skip:
            // always keep them.
            Message::Relation(r) => {
                let change = self.relations.insert(r);
                self.translator.relation(&change).map_err(translate)?;
                self.relation_accepted(&change)?;
                self.check_binary(&change)
            }
            Message::Insert(_) | Message::Update(_) | Message::Delete(_) | Message::Truncate(_) => {
                let Some(txn) = self.txn else {
                    return Err(SourceError::Protocol {
                        lsn: at,
                        detail: format!("{} outside a transaction", msg.kind()),
                    });
                };
                if txn.skip {
                    return Ok(());
                }
                self.translator
                    .change(&msg, &self.relations, &mut self.scratch)
                    .map_err(translate)?;
                if !self.scratch.is_empty() {
                    let mut wal = lock(&self.wal);
                    for ops in self.scratch.drain(..) {
                        wal.append(&ops)?;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// In a session reading values in binary form, a relation with a column read here whose
    /// binary form is not decoded (numeric, a domain, an array, a type created since the session
    /// opened, …) switches the source to text form for good: this session ends before any of
    /// its rows is read, and the next one asks for text.
    fn check_binary(&mut self, change: &RelationChange) -> Result<(), SourceError> {
        let rel = &change.current;
        if !self.binary || self.translator.reads_binary(rel.oid, &self.enum_types) {
            return Ok(());
        }
        self.binary = false;
        let table = rel.qualified_name();
        info!(
            %table,
            "a column of {table} read by the index has no binary form pgroar decodes: the stream \
             restarts with values in text form"
        );
        Err(SourceError::TextValuesNeeded { table })
    }

    /// After the translator accepted a description: reports a changed replica identity (what
    /// UPDATEs and DELETEs carry changed; the start-up check explains what that means per
    /// source) and keeps the descriptions for the next start.
    fn relation_accepted(&mut self, change: &RelationChange) -> Result<(), SourceError> {
        if let Some(from) = change.replica_identity_from {
            let table = change.current.qualified_name();
            let to = change.current.replica_identity;
            let message = format!(
                "the replica identity of {table} changed from {from:?} to {to:?}: UPDATEs and DELETEs now carry other old values (pgroar check after the change proves the index)"
            );
            warn!(%table, ?from, ?to, "{message}");
            self.status.set_error(&message);
        }
        self.relations_written =
            super::relations::store(&self.data_dir, &self.relations, &self.relations_written)?;
        Ok(())
    }

    /// A batch of `POST /ops`, emitted into Postgres's WAL by the server: its entity ops join the
    /// open transaction like translated rows. One that does not decode (only another writer
    /// using our prefix could make one) is counted and skipped.
    fn ops_message(&mut self, at: Lsn, content: &[u8]) -> Result<(), SourceError> {
        let Some(txn) = self.txn else {
            return Err(SourceError::Protocol {
                lsn: at,
                detail: "an ops message outside a transaction".into(),
            });
        };
        if txn.skip {
            return Ok(());
        }
        match serde_json::from_slice::<Vec<EntityOps>>(content) {
            Ok(batch) => {
                let mut wal = lock(&self.wal);
                for ops in &batch {
                    wal.append(ops)?;
                }
                self.status.add(Counter::OpsBatches, 1);
            }
            Err(e) => {
                self.status.add(Counter::BadOpsMessages, 1);
                warn!(lsn = %at, error = %e, "an ops message does not decode; skipped");
            }
        }
        Ok(())
    }

    fn commit(&mut self, lsn: Lsn, end: Lsn) -> Result<(), SourceError> {
        let Some(txn) = self.txn.take() else {
            return Err(SourceError::Protocol {
                lsn,
                detail: "COMMIT outside a transaction".into(),
            });
        };
        if txn.lsn != lsn {
            return Err(SourceError::Protocol {
                lsn,
                detail: format!("COMMIT of {lsn} ends the transaction begun for {}", txn.lsn),
            });
        }
        if !txn.skip {
            lock(&self.wal).commit()?;
            self.unsynced_since.get_or_insert_with(Instant::now);
        }
        self.last_commit_end = Some(end);
        self.status.set_received(end);
        Ok(())
    }

    /// At an idle group commit: marks the position just before the last commit's end LSN.
    /// Commits arrive in LSN order and a commit record ends at `end`, so every transaction that
    /// committed before `end` has been received; the Mark lets a read-your-writes wait for
    /// `pg_current_wal_lsn()` (read after the commit) finish without waiting for a keepalive.
    /// It rides on the fsync that happens anyway. (A sync fired by the delay or size bound writes
    /// none; [`Source::mark_for_readers`] covers a query waiting after it.)
    fn mark_commit_end(&mut self) -> Result<(), SourceError> {
        if self.txn.is_some() || !self.options.mark_idle_commits {
            return Ok(());
        }
        if let Some(end) = self.last_commit_end.take() {
            let lsn = Lsn(end.0.saturating_sub(1));
            let mut wal = lock(&self.wal);
            if lsn > wal.written_lsn() {
                wal.mark(lsn)?;
            }
        }
        Ok(())
    }

    /// When a query waits for a position the WAL does not prove complete yet but a Mark would
    /// (a Mark or Commit at `m` proves every position up to `m + 1`, see
    /// [`WalKey::covers`](crate::WalKey::covers)), marks the highest position known to be complete: just below
    /// the last commit's end, or the last keepalive's (ahead of the keepalive Mark interval).
    /// Returns whether it wrote one.
    ///
    /// This is what ends a `min_lsn` wait when the last commit was synced because
    /// `group_commit_max_delay` or `group_commit_max_bytes` was reached, not at an idle point
    /// (where [`Source::mark_commit_end`] rides on the fsync anyway). A Mark no waiting query
    /// needs is not written: the WAL may then end exactly at a commit, and a restart there relies
    /// on skipping the transaction Postgres re-sends.
    fn mark_for_readers(&mut self) -> Result<bool, SourceError> {
        if self.txn.is_some() || !self.status.read_demand().any() {
            return Ok(false);
        }
        let written = lock(&self.wal).written_lsn();
        let commit_end = self.last_commit_end.map(|end| Lsn(end.0.saturating_sub(1)));
        let Some(lsn) = commit_end.max(self.pending_mark).filter(|&l| l > written) else {
            return Ok(false);
        };
        let (proved, proves) = (Lsn(written.0 + 1), Lsn(lsn.0.saturating_add(1)));
        if !self.status.read_demand().wanted_in(proved, proves) {
            return Ok(false);
        }
        debug!(%lsn, "marking a position a read-your-writes query waits for");
        self.last_commit_end = None;
        self.mark(lsn)?;
        Ok(true)
    }

    /// A keepalive's `wal_end` is where the server's decoding stands: every transaction that
    /// committed before it has been sent. One committing exactly there may still come (the
    /// position is the start of the next WAL record), so the Mark goes one byte below: a Mark
    /// or Commit at `m` always means "everything committed at or before `m` is here", which is
    /// what the skip of re-sent transactions relies on.
    fn keepalive(&mut self, wal_end: Lsn) -> Result<(), SourceError> {
        if wal_end == Lsn::ZERO {
            return Ok(());
        }
        self.status.set_server_lsn(wal_end);
        let at = Lsn(wal_end.0 - 1);
        if self.txn.is_some() || at <= lock(&self.wal).written_lsn() {
            return Ok(());
        }
        // Nothing committed before the keepalive's position can still arrive: once marked
        // durable, `at` may be acknowledged.
        self.status.set_received(wal_end);
        if self.last_mark.elapsed() >= self.options.keepalive_mark_interval {
            self.mark(at)
        } else {
            self.pending_mark = Some(self.pending_mark.map_or(at, |p| p.max(at)));
            Ok(())
        }
    }

    /// Appends a Mark at `lsn` while idle (it becomes durable at the next sync).
    fn mark(&mut self, lsn: Lsn) -> Result<(), SourceError> {
        self.pending_mark = None;
        if self.txn.is_some() {
            return Ok(());
        }
        let mut wal = lock(&self.wal);
        if lsn > wal.written_lsn() {
            wal.mark(lsn)?;
            self.unsynced_since.get_or_insert_with(Instant::now);
            self.last_mark = Instant::now();
        }
        Ok(())
    }

    /// Aborts the open transaction in the WAL, if any.
    fn end_transaction(&mut self) -> Result<(), SourceError> {
        if let Some(txn) = self.txn.take()
            && !txn.skip
        {
            lock(&self.wal).abort()?;
        }
        Ok(())
    }

    /// After a requested stop: make sure the last acknowledgement reached the server, then end
    /// the session cleanly.
    async fn finish(&mut self, mut client: ReplicationClient, durable: Lsn) {
        let durable = self.ack_of(durable);
        client.update_applied_lsn(to_wire(durable));
        let deadline = Instant::now() + self.options.status_interval + Duration::from_secs(1);
        let metrics = client.metrics();
        while from_wire(metrics.last_applied_lsn()) < durable && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let acked = from_wire(metrics.last_applied_lsn());
        match tokio::time::timeout(Duration::from_secs(5), client.shutdown()).await {
            Ok(Ok(())) => info!(%durable, %acked, "replication stream stopped"),
            Ok(Err(e)) => {
                debug!(error = %e, "replication stream ended with an error while stopping");
            }
            Err(_) => {
                client.abort();
                debug!("replication stream did not stop in time; aborted");
            }
        }
    }
}

/// Returns when the catalog watcher reports something; never without a watcher.
async fn catalog_changed(rx: &mut Option<watch::Receiver<Option<String>>>) {
    let changed = match rx {
        Some(r) => r.changed().await.is_ok(),
        None => false,
    };
    if !changed {
        std::future::pending::<()>().await;
    }
}

/// The next event if one is available right now (after letting the client's worker run once).
async fn try_recv(client: &mut ReplicationClient) -> Option<Received> {
    if let Ok(r) = tokio::time::timeout(Duration::ZERO, client.recv()).await {
        return Some(r);
    }
    tokio::task::yield_now().await;
    tokio::time::timeout(Duration::ZERO, client.recv())
        .await
        .ok()
}
