//! Scale-out over NATS JetStream (`[replication]`): the leader publishes, followers replay.
//!
//! The leader — the `pgroar run` holding the lease — reads its own durable WAL after the
//! stream's last cursor and publishes each transaction's ops, deduplicated, in parts keyed by
//! their cursor ([`message`]); the slot is acknowledged to Postgres only up to what the stream
//! has acknowledged ([`Publisher`]), so the stream never lacks what Postgres may discard. Its
//! checkpoints go to an object store bucket ([`checkpoints`]); the stream keeps everything
//! after the oldest one there. A follower ([`Follower`]) starts from the newest checkpoint
//! (the bucket's or its own), writes the stream's transactions into its own WAL and runs the
//! same apply path, checkpoints and HTTP surface as the leader, never touching Postgres.
//!
//! Guarantees: the stream is one ordered log of whole transactions by commit LSN. Every
//! publish names the stream sequence it expects to follow (`Nats-Expected-Last-Sequence`), so
//! two publishers never interleave: the second one's publish is refused and it stops. A
//! follower applies a transaction only once its last part is in its WAL, and skips what its
//! WAL already holds, so a part published twice is applied once.
//!
//! Crash windows: the leader killed between its WAL fsync and the stream's acknowledgement —
//! the slot was not acknowledged past the stream, so the next leader (or this one restarted)
//! receives those transactions again from Postgres and publishes them; one killed in the middle
//! of a large transaction leaves its first parts in the stream, and the next leader publishes
//! the parts after the stream's last cursor. A follower killed mid-transaction loses the open
//! part (its WAL recovery cuts it) and reads the transaction again from its first part.

pub mod checkpoints;
pub mod follow;
pub mod lease;
pub mod message;
pub mod publish;

use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream};
use tracing::info;

use crate::config::ReplicationConfig;
use crate::schema::FieldIds;
use crate::{Lsn, WalKey};

pub use follow::Follower;
pub use message::{Body, Message, MessageError};
pub use publish::Publisher;

/// Why replication could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The NATS server cannot be reached or refused us.
    #[error(
        "cannot connect to NATS at {url}: {reason}. Check [replication].url, credentials and TLS \
         settings, and that nats-server runs with JetStream on (-js)"
    )]
    Connect {
        /// The configured URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A JetStream request failed.
    #[error("JetStream {what}: {reason}")]
    JetStream {
        /// What was asked.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// A message in the stream cannot be read.
    #[error("message {seq} of stream {stream}")]
    Message {
        /// The stream.
        stream: String,
        /// Its sequence.
        seq: u64,
        /// Why.
        #[source]
        source: MessageError,
    },
    /// Another leader published to the stream: this one must stop.
    #[error(
        "another leader took over the stream {stream} (epoch {theirs}, ours {ours}): this \
         process stops publishing and acknowledging the slot"
    )]
    Fenced {
        /// The stream.
        stream: String,
        /// Our epoch.
        ours: u64,
        /// The newer leader's (0 when unknown).
        theirs: u64,
    },
    /// This process lost the leader's lease (it could not renew it in time, or another
    /// process holds it).
    #[error(
        "lost the lease of stream {stream} (epoch {epoch}): another process may lead now; this \
         one stops publishing and acknowledging the slot (restart it to stand by)"
    )]
    LeaseLost {
        /// The stream.
        stream: String,
        /// Our epoch.
        epoch: u64,
    },
    /// The stream holds nothing this process can continue from.
    #[error("{0}")]
    Gap(String),
    /// The local WAL failed.
    #[error(transparent)]
    Wal(#[from] crate::wal::WalError),
    /// A checkpoint could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] crate::index::CheckpointError),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A JetStream request's error, named.
pub(crate) fn js_err(what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> ReplicationError {
    move |e| ReplicationError::JetStream {
        what,
        reason: e.to_string(),
    }
}

/// The names one `[replication]` section uses in NATS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// The stream of ops.
    pub stream: String,
    /// Its one subject.
    pub subject: String,
    /// The object store bucket of checkpoints.
    pub checkpoints: String,
    /// The key-value bucket of the leader's lease.
    pub lease: String,
}

impl Names {
    /// The names for `config`.
    pub fn new(config: &ReplicationConfig) -> Names {
        Names {
            stream: config.stream.clone(),
            subject: format!("pgroar.{}.ops", config.stream),
            checkpoints: format!("{}_checkpoints", config.stream),
            lease: format!("{}_lease", config.stream),
        }
    }
}

/// A connection to the stream, with what reading it needs.
#[derive(Clone)]
pub struct Link {
    /// The JetStream context.
    pub js: jetstream::Context,
    /// The stream.
    pub stream: stream::Stream,
    /// The names.
    pub names: Names,
    /// The section.
    pub config: ReplicationConfig,
    /// The schema's fields (ops read from the stream resolve to them).
    pub ids: FieldIds,
}

/// Where the stream ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tail {
    /// The last sequence (0: the stream has never held a message).
    pub seq: u64,
    /// The key after which a publisher continues: the last part's last record, or the end of
    /// the last transaction or mark (`None`: no ops or mark in the stream).
    pub after: Option<WalKey>,
    /// The epoch of the last message (0 when empty).
    pub epoch: u64,
}

impl Tail {
    /// Everything at or below this LSN is in the stream.
    pub fn covered(&self) -> Lsn {
        self.after.map_or(Lsn::ZERO, WalKey::covered)
    }
}

/// Connects to NATS as `[replication]` says.
pub async fn connect(config: &ReplicationConfig) -> Result<async_nats::Client, ReplicationError> {
    let err = |reason: String| ReplicationError::Connect {
        url: config.url.clone(),
        reason,
    };
    let mut options = async_nats::ConnectOptions::new()
        .name("pgroar")
        .connection_timeout(Duration::from_secs(5))
        .require_tls(config.tls_required);
    if let Some(path) = &config.credentials {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| err(format!("credentials file {}: {e}", path.display())))?;
    }
    if let Some(ca) = &config.tls_ca {
        options = options.add_root_certificates(ca.clone());
    }
    options
        .connect(config.url.as_str())
        .await
        .map_err(|e| err(e.to_string()))
}

impl Link {
    /// Connects and opens the stream, creating it (file storage, the configured replicas, a
    /// two-minute duplicate window) when it does not exist.
    pub async fn open(config: &ReplicationConfig, ids: FieldIds) -> Result<Link, ReplicationError> {
        let client = connect(config).await?;
        let js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(10))
            .build(client);
        let names = Names::new(config);
        let stream = js
            .get_or_create_stream(stream::Config {
                name: names.stream.clone(),
                subjects: vec![names.subject.clone()],
                storage: stream::StorageType::File,
                num_replicas: config.replicas,
                duplicate_window: Duration::from_secs(120),
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(|e| js_err("opening the stream")(&e))?;
        info!(stream = %names.stream, url = %config.url, "JetStream stream open");
        Ok(Link {
            js,
            stream,
            names,
            config: config.clone(),
            ids,
        })
    }

    /// The stream's first and last sequence (`(0, 0)`: never written; `first > last`: emptied).
    pub async fn bounds(&self) -> Result<(u64, u64), ReplicationError> {
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| js_err("reading the stream's state")(&e))?;
        Ok((info.state.first_sequence, info.state.last_sequence))
    }

    /// The message at `seq`.
    pub async fn message(&self, seq: u64) -> Result<Message, ReplicationError> {
        let raw = self
            .stream
            .get_raw_message(seq)
            .await
            .map_err(|e| js_err("reading a message")(&e))?;
        self.decode(seq, &raw.headers, &raw.payload)
    }

    /// Reads a message from its headers and payload.
    pub fn decode(
        &self,
        seq: u64,
        headers: &async_nats::HeaderMap,
        payload: &[u8],
    ) -> Result<Message, ReplicationError> {
        Message::decode(
            |name| headers.get(name).map(async_nats::HeaderValue::as_str),
            payload,
            &self.ids,
        )
        .map_err(|source| ReplicationError::Message {
            stream: self.names.stream.clone(),
            seq,
            source,
        })
    }

    /// Where the stream ends.
    pub async fn tail(&self) -> Result<Tail, ReplicationError> {
        let (first, last) = self.bounds().await?;
        let mut tail = Tail {
            seq: last,
            after: None,
            epoch: 0,
        };
        let mut seq = last;
        while seq >= first.max(1) {
            let m = self.message(seq).await?;
            if tail.epoch == 0 {
                tail.epoch = m.epoch;
            }
            match m.cursor() {
                Some(after) => {
                    tail.after = Some(after);
                    break;
                }
                None => seq -= 1,
            }
        }
        Ok(tail)
    }

    /// The first sequence whose message is past `lsn` (`last + 1` when none is): where a
    /// reader whose WAL is durable up to `lsn` starts. Binary search: positions only grow
    /// along the stream (a fence counts as the message before it).
    pub async fn first_after(&self, lsn: Lsn) -> Result<u64, ReplicationError> {
        let (first, last) = self.bounds().await?;
        let first = first.max(1);
        if last < first {
            return Ok(last + 1);
        }
        let (mut lo, mut hi) = (first, last + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.position(mid, first).await? > lsn {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(lo)
    }

    /// The LSN a message brings a reader to (a fence: the one before it).
    async fn position(&self, mut seq: u64, first: u64) -> Result<Lsn, ReplicationError> {
        loop {
            if let Some(lsn) = self.message(seq).await?.lsn() {
                return Ok(lsn);
            }
            if seq <= first {
                return Ok(Lsn::ZERO);
            }
            seq -= 1;
        }
    }
}

/// `m` as a JetStream publish: its headers, its cursor as the message id, and the stream
/// sequence it must follow (the fence against a second publisher).
pub(crate) fn to_publish(m: &Message, expected: u64) -> Result<PublishMessage, MessageError> {
    let (headers, payload) = m.encode()?;
    let mut publish = PublishMessage::build()
        .payload(payload.into())
        .message_id(m.id())
        .expected_last_sequence(expected);
    for (name, value) in headers {
        publish = publish.header(name, value.as_str());
    }
    Ok(publish)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
