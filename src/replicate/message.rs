//! The stream's messages: what the leader publishes and followers read. No I/O (fuzzable).
//!
//! Three kinds, told apart by the `Pgroar-Kind` header:
//!
//! * `ops` — a part of one transaction: the records with sequence numbers `first..=last` of
//!   the transaction committed at `lsn` in the leader's WAL, deduplicated, each encoded as a WAL
//!   Ops record (CRC-checked). `Pgroar-End: 1` on the part that ends the transaction. A large
//!   transaction is cut into parts of about [`PART_BYTES`]; where it is cut depends only on the
//!   records, so a part published again after a crash is the same part.
//! * `mark` — a durable position without ops (a commit's end, an idle keepalive), published
//!   once nothing follows it yet, so that a follower's `min_lsn` (a position read after a
//!   commit) and lag move as the leader's do.
//! * `leader` — a new leader's first message: its lease epoch, published with the stream's
//!   last sequence expected, so that it fences off every earlier leader (their next publish
//!   expects an older last sequence and is refused).
//!
//! Every message carries the leader's epoch and the wall time it was published at (ms since
//! the Unix epoch). The message id (`Nats-Msg-Id`, deduplicated by the server) is the cursor
//! `LSN:seq` of the part's last record, `LSN:mark` for a mark, `leader:epoch` for a fence.

use crate::ops::EntityOps;
use crate::schema::FieldIds;
use crate::wal::format::encode_record;
use crate::wal::{DecodeError, EncodeError, RecordKind, decode_entity_ops_with, decode_record};
use crate::{Lsn, WalKey};

/// Target payload size of one part of a transaction (the server's default limit is 1 MiB).
pub const PART_BYTES: usize = 256 << 10;

/// Header: the message's kind.
pub const KIND: &str = "Pgroar-Kind";
/// Header: the commit LSN (a mark's position), decimal.
pub const LSN: &str = "Pgroar-Lsn";
/// Header: `first-last` sequence numbers of the part's records in the leader's WAL.
pub const SEQ: &str = "Pgroar-Seq";
/// Header: `1` on the part that ends its transaction.
pub const END: &str = "Pgroar-End";
/// Header: the publishing leader's lease epoch.
pub const EPOCH: &str = "Pgroar-Epoch";
/// Header: wall time of publishing, ms since the Unix epoch.
pub const TIME: &str = "Pgroar-Time";

/// A message's headers, as (name, value).
pub type Headers = Vec<(&'static str, String)>;

/// What a message says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Part of a transaction.
    Ops {
        /// Its commit LSN.
        lsn: Lsn,
        /// First and last record sequence numbers it covers in the leader's WAL.
        first: u32,
        /// See `first`.
        last: u32,
        /// Whether it ends the transaction.
        end: bool,
        /// The ops, deduplicated.
        ops: Vec<EntityOps>,
    },
    /// A durable position without ops.
    Mark {
        /// The position.
        lsn: Lsn,
    },
    /// A new leader's fence.
    Leader,
}

/// A message with the headers every message carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// What it says.
    pub body: Body,
    /// The publishing leader's epoch.
    pub epoch: u64,
    /// When it was published (ms since the Unix epoch).
    pub time_ms: u64,
}

/// Why a message from the stream cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// A header is missing or malformed.
    #[error("header {name} is missing or malformed ({value:?})")]
    Header {
        /// The header.
        name: &'static str,
        /// What it held.
        value: Option<String>,
    },
    /// A record of the payload is damaged.
    #[error("damaged payload")]
    Payload(#[from] DecodeError),
    /// A record of the payload belongs to another transaction.
    #[error("a record of the part of {lsn} is from {found}")]
    Foreign {
        /// The part's LSN.
        lsn: Lsn,
        /// The record's.
        found: Lsn,
    },
    /// Ops could not be encoded.
    #[error("ops cannot be encoded")]
    Encode(#[from] EncodeError),
}

impl Message {
    /// The message id the server deduplicates by.
    pub fn id(&self) -> String {
        match &self.body {
            Body::Ops { lsn, last, .. } => format!("{lsn}:{last}"),
            Body::Mark { lsn } => format!("{lsn}:mark"),
            Body::Leader => format!("leader:{}", self.epoch),
        }
    }

    /// The position the message brings a reader to: a part's or mark's LSN (`None` for a
    /// fence).
    pub fn lsn(&self) -> Option<Lsn> {
        match &self.body {
            Body::Ops { lsn, .. } | Body::Mark { lsn } => Some(*lsn),
            Body::Leader => None,
        }
    }

    /// The cursor a reader stands at after this message: a part's last record (the end of
    /// its transaction when it ends it), a mark's position; `None` for a fence.
    pub fn cursor(&self) -> Option<WalKey> {
        match &self.body {
            Body::Ops { lsn, end: true, .. } => Some(WalKey::end_of(*lsn)),
            Body::Ops { lsn, last, .. } => Some(WalKey::new(*lsn, *last)),
            Body::Mark { lsn } => Some(WalKey::end_of(*lsn)),
            Body::Leader => None,
        }
    }

    /// The headers (besides the message id) and the payload.
    pub fn encode(&self) -> Result<(Headers, Vec<u8>), MessageError> {
        let mut headers = vec![
            (EPOCH, self.epoch.to_string()),
            (TIME, self.time_ms.to_string()),
        ];
        let mut payload = Vec::new();
        match &self.body {
            Body::Ops {
                lsn,
                first,
                last,
                end,
                ops,
            } => {
                headers.push((KIND, "ops".into()));
                headers.push((LSN, lsn.0.to_string()));
                headers.push((SEQ, format!("{first}-{last}")));
                if *end {
                    headers.push((END, "1".into()));
                }
                for (i, op) in ops.iter().enumerate() {
                    encode_record(&mut payload, RecordKind::Ops, *lsn, i as u32, |out| {
                        crate::wal::encode_entity_ops(op, out)
                    })?;
                }
            }
            Body::Mark { lsn } => {
                headers.push((KIND, "mark".into()));
                headers.push((LSN, lsn.0.to_string()));
            }
            Body::Leader => headers.push((KIND, "leader".into())),
        }
        Ok((headers, payload))
    }

    /// Reads a message from its headers (`header(name)`) and payload.
    pub fn decode<'a>(
        header: impl Fn(&'static str) -> Option<&'a str>,
        payload: &[u8],
        ids: &FieldIds,
    ) -> Result<Message, MessageError> {
        let number = |name: &'static str| -> Result<u64, MessageError> {
            let value = header(name);
            value
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| MessageError::Header {
                    name,
                    value: value.map(str::to_owned),
                })
        };
        let epoch = number(EPOCH)?;
        let time_ms = number(TIME)?;
        let body = match header(KIND) {
            Some("ops") => {
                let lsn = Lsn(number(LSN)?);
                let seq = header(SEQ);
                let (first, last) = seq
                    .and_then(|s| s.split_once('-'))
                    .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                    .ok_or_else(|| MessageError::Header {
                        name: SEQ,
                        value: seq.map(str::to_owned),
                    })?;
                let ops = decode_ops(payload, lsn, ids)?;
                Body::Ops {
                    lsn,
                    first,
                    last,
                    end: header(END) == Some("1"),
                    ops,
                }
            }
            Some("mark") => Body::Mark {
                lsn: Lsn(number(LSN)?),
            },
            Some("leader") => Body::Leader,
            other => {
                return Err(MessageError::Header {
                    name: KIND,
                    value: other.map(str::to_owned),
                });
            }
        };
        Ok(Message {
            body,
            epoch,
            time_ms,
        })
    }
}

/// The Ops records of a payload, each of the transaction at `lsn`.
fn decode_ops(mut buf: &[u8], lsn: Lsn, ids: &FieldIds) -> Result<Vec<EntityOps>, MessageError> {
    let mut ops = Vec::new();
    while !buf.is_empty() {
        let (record, len) = decode_record(buf)?.ok_or(DecodeError::Truncated("record"))?;
        if record.kind != RecordKind::Ops {
            return Err(DecodeError::UnknownKind(record.kind as u8).into());
        }
        if record.lsn != lsn {
            return Err(MessageError::Foreign {
                lsn,
                found: record.lsn,
            });
        }
        ops.push(decode_entity_ops_with(record.payload, ids)?);
        buf = &buf[len..];
    }
    Ok(ops)
}

/// Cuts a transaction's records into parts: consecutive runs whose encoded size stays under
/// [`PART_BYTES`] (a larger record goes alone). Returns the index ranges into `sizes`.
pub fn parts(sizes: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && bytes + size > PART_BYTES {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Op, Value};
    use crate::schema::Field;
    use std::collections::HashMap;

    fn ops(id: i64) -> EntityOps {
        EntityOps {
            entity_id: id,
            creates_slot: true,
            ops: vec![Op::Set {
                field: Field::new("nsfwLevel"),
                value: Value::Int(id),
            }],
        }
    }

    fn round_trip(m: &Message) -> Message {
        let (mut headers, payload) = m.encode().unwrap();
        let id = m.id();
        headers.push(("Nats-Msg-Id", id));
        let map: HashMap<&str, String> = headers.into_iter().collect();
        Message::decode(
            |n| map.get(n).map(String::as_str),
            &payload,
            &FieldIds::default(),
        )
        .unwrap()
    }

    #[test]
    fn every_kind_round_trips_with_its_cursor_as_id() {
        let part = Message {
            body: Body::Ops {
                lsn: Lsn(0x16B_3748),
                first: 3,
                last: 4,
                end: true,
                ops: vec![ops(1), ops(2)],
            },
            epoch: 7,
            time_ms: 1_700_000_000_000,
        };
        assert_eq!(round_trip(&part), part);
        assert_eq!(part.id(), "0/16B3748:4");
        assert_eq!(part.cursor(), Some(WalKey::end_of(Lsn(0x16B_3748))));
        let mut open = part.clone();
        if let Body::Ops { end, .. } = &mut open.body {
            *end = false;
        }
        assert_eq!(open.cursor(), Some(WalKey::new(Lsn(0x16B_3748), 4)));
        assert_eq!(open.cursor().map(WalKey::covered), Some(Lsn(0x16B_3747)));
        let mark = Message {
            body: Body::Mark { lsn: Lsn(42) },
            epoch: 7,
            time_ms: 1,
        };
        assert_eq!(round_trip(&mark), mark);
        let fence = Message {
            body: Body::Leader,
            epoch: 9,
            time_ms: 1,
        };
        assert_eq!(round_trip(&fence), fence);
        assert_eq!(fence.id(), "leader:9");
    }

    #[test]
    fn damage_and_foreign_records_are_refused() {
        let part = Message {
            body: Body::Ops {
                lsn: Lsn(100),
                first: 0,
                last: 0,
                end: false,
                ops: vec![ops(1)],
            },
            epoch: 1,
            time_ms: 1,
        };
        let (headers, mut payload) = part.encode().unwrap();
        let map: HashMap<&str, String> = headers.into_iter().collect();
        let get = |n: &'static str| map.get(n).map(String::as_str);
        let ids = FieldIds::default();
        let last = payload.len() - 6;
        payload[last] ^= 0xFF;
        assert!(matches!(
            Message::decode(get, &payload, &ids),
            Err(MessageError::Payload(_))
        ));
        let mut other = map.clone();
        other.insert(LSN, "101".into());
        let (_, payload) = part.encode().unwrap();
        assert!(matches!(
            Message::decode(|n| other.get(n).map(String::as_str), &payload, &ids),
            Err(MessageError::Foreign { .. })
        ));
        let mut no_kind = map.clone();
        no_kind.remove(KIND);
        assert!(matches!(
            Message::decode(|n| no_kind.get(n).map(String::as_str), &payload, &ids),
            Err(MessageError::Header { name: KIND, .. })
        ));
    }

    #[test]
    fn parts_stay_under_the_bound_and_a_large_record_goes_alone() {
        assert!(parts(&[]).is_empty());
        assert_eq!(parts(&[10, 10, 10]), vec![0..3]);
        let big = PART_BYTES / 2 + 1;
        assert_eq!(parts(&[big, big, big]), vec![0..1, 1..2, 2..3]);
        assert_eq!(parts(&[5, PART_BYTES * 2, 5]), vec![0..1, 1..2, 2..3]);
    }
}
