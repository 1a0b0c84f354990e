//! Where a row's input comes from and where its ops go: [`Tuple`] is a row's column values
//! (a pgoutput tuple, a line of a COPY dump), [`OpSink`] receives the ops (a `Vec` of
//! [`EntityOps`] for the stream, the bulk accumulator for a dump, with no op built per row).

use crate::decode::{Datum, TupleData};
use crate::ops::{EntityOps, Op, Value};
use crate::schema::Field;

/// One column value of a row, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatumRef<'a> {
    /// SQL NULL.
    Null,
    /// An unchanged TOASTed value that was not sent.
    Unchanged,
    /// The value in Postgres's text output form.
    Text(&'a [u8]),
    /// The value in Postgres's binary send form.
    Binary(&'a [u8]),
}

/// A row's column values by position.
pub trait Tuple {
    /// Column `c`'s value; `None` past the last column.
    fn datum(&self, c: usize) -> Option<DatumRef<'_>>;
}

impl Tuple for TupleData {
    fn datum(&self, c: usize) -> Option<DatumRef<'_>> {
        self.columns.get(c).map(|d| match d {
            Datum::Null => DatumRef::Null,
            Datum::Unchanged => DatumRef::Unchanged,
            Datum::Text(b) => DatumRef::Text(b),
            Datum::Binary(b) => DatumRef::Binary(b),
        })
    }
}

/// What a field op does with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldOp {
    /// [`Op::Set`].
    Set,
    /// [`Op::Add`].
    Add,
    /// [`Op::Remove`].
    Remove,
}

/// Receives translated ops, one entity at a time: [`OpSink::entity`] starts an entity, the
/// calls after it until the next one are its ops, in order.
pub trait OpSink {
    /// Starts the ops of entity `id`; `creates_slot` as in [`EntityOps::creates_slot`].
    fn entity(&mut self, id: i64, creates_slot: bool);
    /// A `set`, `add` or `remove` of `value` on `field`, for the current entity.
    fn field_op(&mut self, op: FieldOp, field: &Field, value: Value);
    /// Any other op, for the current entity.
    fn op(&mut self, op: Op);
}

impl OpSink for Vec<EntityOps> {
    fn entity(&mut self, id: i64, creates_slot: bool) {
        self.push(EntityOps {
            entity_id: id,
            ops: Vec::new(),
            creates_slot,
        });
    }

    fn field_op(&mut self, op: FieldOp, field: &Field, value: Value) {
        let field = field.clone();
        self.op(match op {
            FieldOp::Set => Op::Set { field, value },
            FieldOp::Add => Op::Add { field, value },
            FieldOp::Remove => Op::Remove { field, value },
        });
    }

    fn op(&mut self, op: Op) {
        self.last_mut()
            .expect("an op follows its entity")
            .ops
            .push(op);
    }
}
