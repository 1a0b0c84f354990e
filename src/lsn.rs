//! Postgres log sequence numbers, printed and parsed in Postgres's `X/Y` form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A position in Postgres's WAL (`pg_lsn`). Ordered; `Lsn::ZERO` means "nothing yet".
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The zero position, before any WAL.
    pub const ZERO: Lsn = Lsn(0);
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// The cursor of one op record: the transaction's commit LSN and the record's sequence number in
/// that transaction. Keys order records across the whole stream; a record whose key is at or
/// below the durable cursor is never applied twice.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct WalKey {
    /// Commit LSN of the record's transaction.
    pub lsn: Lsn,
    /// Position of the record within its transaction, from 0.
    pub seq: u32,
}

impl WalKey {
    /// Whether an index that has applied up to this key reflects every transaction that
    /// committed before `lsn`.
    ///
    /// Keys carry commit LSNs, so any applied key at or past `lsn` means every earlier commit is
    /// in. The pipeline can also publish `WalKey::end_of(Lsn(p - 1))` once it knows that nothing
    /// committed before `p` is still outstanding (a transaction's end LSN, or an idle keepalive's
    /// WAL end when everything received is applied); that covers `p` too, so a `min_lsn` read
    /// with `pg_current_wal_lsn()` after a commit is reached without waiting for a later commit.
    pub fn covers(self, lsn: Lsn) -> bool {
        lsn == Lsn::ZERO || self >= WalKey::end_of(Lsn(lsn.0 - 1))
    }

    /// The key before every record.
    pub const ZERO: WalKey = WalKey {
        lsn: Lsn::ZERO,
        seq: 0,
    };

    /// A key.
    pub fn new(lsn: Lsn, seq: u32) -> Self {
        WalKey { lsn, seq }
    }

    /// The key after every record of the transaction committed at `lsn`.
    pub fn end_of(lsn: Lsn) -> Self {
        WalKey { lsn, seq: u32::MAX }
    }

    /// The LSN at or below which every record is reflected by an index (or held by a stream)
    /// that has reached this key: the transaction's own LSN at a boundary, the one before it
    /// mid-transaction.
    pub fn covered(self) -> Lsn {
        if self.seq == u32::MAX {
            self.lsn
        } else {
            Lsn(self.lsn.0.saturating_sub(1))
        }
    }

    /// Whether the key falls between transactions (after a whole one, or before any), the only
    /// places a reader may see; a key inside a transaction ends a part of it.
    pub fn is_boundary(&self) -> bool {
        self.seq == u32::MAX || *self == WalKey::ZERO
    }
}

/// Why a string is not an LSN.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid LSN {0:?}: expected the Postgres form like 0/16B3748")]
pub struct LsnParseError(pub String);

impl FromStr for Lsn {
    type Err = LsnParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || LsnParseError(s.to_string());
        let (hi, lo) = s.trim().split_once('/').ok_or_else(err)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| err())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| err())?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        for (text, v) in [
            ("0/0", 0u64),
            ("0/16B3748", 0x16B3748),
            ("1/0", 1 << 32),
            ("FFFFFFFF/FFFFFFFF", u64::MAX),
        ] {
            assert_eq!(Lsn(v).to_string(), text);
            assert_eq!(text.parse::<Lsn>().unwrap(), Lsn(v));
        }
        assert!("16B3748".parse::<Lsn>().is_err());
        assert!("0/xyz".parse::<Lsn>().is_err());
        assert!("100000000/0".parse::<Lsn>().is_err());
    }

    #[test]
    fn covers_means_every_earlier_commit_is_in() {
        let at = |l: u64, s: u32| WalKey::new(Lsn(l), s);
        assert!(WalKey::ZERO.covers(Lsn::ZERO));
        assert!(!WalKey::ZERO.covers(Lsn(1)));
        // Mid-transaction at 100: every commit before 100 is applied.
        assert!(at(100, 0).covers(Lsn(100)));
        assert!(!at(100, 0).covers(Lsn(101)));
        assert!(!WalKey::end_of(Lsn(100)).covers(Lsn(102)));
        // The pipeline's "nothing outstanding before 150".
        assert!(WalKey::end_of(Lsn(149)).covers(Lsn(150)));
        assert!(!at(149, 7).covers(Lsn(150)));
    }
}
