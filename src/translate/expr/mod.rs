//! The SQL expressions of `track_fields` and join-table `filter`s, evaluated locally with
//! Postgres semantics.
//!
//! An expression is parsed once ([`Expr::parse`]), bound to the row's columns and types once
//! ([`Expr::bind`]: unknown columns and type errors such as `text & integer` are reported
//! here, and constant parts are computed, as Postgres's planner does), and then evaluated per
//! row ([`BoundExpr::eval`]) without looking anything up by name. Postgres is the oracle: the
//! same expression run as `SELECT` over the same row gives the same value, or both fail (see
//! `tests/it/expr_oracle.rs`).
//!
//! Supported: `{column}` references; integer, decimal, string, `TRUE`/`FALSE`/`NULL`
//! literals and `type 'literal'`; `+ - * / %`, `& | # << >> ~`, comparisons, `AND OR NOT`,
//! `IS [NOT] NULL | TRUE | FALSE | UNKNOWN | DISTINCT FROM`, `ISNULL`/`NOTNULL`;
//! `GREATEST`, `LEAST`, `COALESCE`, `NULLIF`, `extract(epoch from …)`,
//! `date_part('epoch', …)`, searched and simple `CASE`; casts (`::type`, `CAST(x AS type)`)
//! to `smallint`/`int2`, `integer`/`int`/`int4`, `bigint`/`int8`, `numeric`/`decimal`,
//! `real`/`float4`, `double precision`/`float8`/`float`, `text`/`varchar`,
//! `boolean`/`bool`, `date`, `timestamp [without time zone]`,
//! `timestamptz`/`timestamp with time zone`. Anything else is an [`ExprError`] at parse or
//! bind time, never a silently different result.
//!
//! Facts of Postgres (15, x86-64) this follows, each checked by the oracle test: integer
//! arithmetic stays in the operands' width (`smallint + smallint` is `smallint`) and
//! overflow is an error; `/` truncates toward zero, `%` takes the dividend's sign and
//! `INT_MIN % -1` is 0; shift counts are taken modulo the width the CPU shifts in (32 bits
//! for `smallint` and `integer`, 64 for `bigint`), so `1 << 32 = 1` and `1 << -1` is
//! `-2147483648`; `numeric` → integer rounds half away from zero, float → integer half to
//! even; `extract(epoch …)` is an exact `numeric` (scale 6 for timestamps, 0 for dates);
//! `boolean::text` is `true`/`false` while a boolean's output is `t`/`f`; floats print
//! the shortest digits that are *not* exactly halfway between two floats
//! (`3.1415900000000003e+20`), ties to even; `char(n)` compares without trailing spaces,
//! and `varchar = char(n)` uses `char(n)`'s comparison; a constant part fails the whole
//! expression at bind time exactly when Postgres's planner would fail it (`1/0` in an
//! untaken `CASE` branch does, `COALESCE(1, 1/0)` does not), and time-zone-dependent
//! parts are left to run time as there.
//! Limitations: comparisons on types without special support (enums, `uuid`, `jsonb`, …)
//! are rejected — compare `{col}::text` instead; text columns cannot be cast to date/time
//! types (literals can, in ISO 8601 form); text ordering is byte order (collation `C`).

mod ast;
mod bigint;
mod bind;
mod cast;
pub(crate) mod datetime;
mod eval;
mod fast;
pub(crate) mod float;
mod fold;
mod lexer;
pub(crate) mod numeric;
mod parser;
mod shortest;
pub mod types;

use std::fmt;

pub use numeric::{Numeric, NumericError};

pub use types::SqlType;

use crate::translate::value::SqlValue;

/// A parsed expression, not yet tied to a table.
#[derive(Clone, Debug)]
pub struct Expr {
    text: String,
    ast: parser::Ast,
}

/// A column an expression may read: its position in the rows passed to
/// [`BoundExpr::eval`] and its type OID.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ColumnSlot {
    /// Index into the row slice.
    pub index: usize,
    /// The column's type OID (`pg_attribute.atttypid`, as in the relation message).
    pub type_oid: u32,
}

/// An expression bound to a table's columns, ready to evaluate rows.
#[derive(Clone, Debug)]
pub struct BoundExpr {
    root: eval::Node,
    ty: SqlType,
    columns: Vec<usize>,
    /// Every node is in the integer and boolean fast path's subset.
    fast: bool,
}

impl Expr {
    /// Parses `text` (with `{column}` placeholders).
    pub fn parse(text: &str) -> Result<Expr, ExprError> {
        Ok(Expr {
            text: text.to_owned(),
            ast: parser::parse(text)?,
        })
    }

    /// The text the expression was parsed from.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Type-checks the expression against the columns `resolve` knows (by name, case
    /// sensitive) and computes its constant parts.
    pub fn bind(
        &self,
        resolve: &dyn Fn(&str) -> Option<ColumnSlot>,
    ) -> Result<BoundExpr, ExprError> {
        // The fast path reads only integer and boolean columns.
        let fast_columns = std::cell::Cell::new(true);
        let resolve_noting = |name: &str| {
            let slot = resolve(name);
            if let Some(s) = &slot
                && !fast::column_type(s.type_oid)
            {
                fast_columns.set(false);
            }
            slot
        };
        let (root, ty, columns) = bind::bind(&self.ast, &resolve_noting)?;
        let fast = fast_columns.get() && fast::supported(&root);
        Ok(BoundExpr {
            root,
            ty,
            columns,
            fast,
        })
    }

    /// [`Expr::bind`] against `(name, type OID)` pairs; a column's index is its position.
    pub fn bind_columns(&self, columns: &[(&str, u32)]) -> Result<BoundExpr, ExprError> {
        self.bind(&|name| {
            columns
                .iter()
                .position(|(n, _)| *n == name)
                .map(|index| ColumnSlot {
                    index,
                    type_oid: columns[index].1,
                })
        })
    }
}

impl BoundExpr {
    /// Evaluates the expression over one row (indexed as the [`ColumnSlot`]s said).
    pub fn eval(&self, row: &[SqlValue]) -> Result<SqlValue, EvalError> {
        if self.fast
            && let Ok(v) = fast::eval(&self.root, row, None)
        {
            return Ok(v.sql());
        }
        self.root.eval(row, None)
    }

    /// The type of the result (an untyped literal result is `text`).
    pub fn result_type(&self) -> SqlType {
        self.ty
    }

    /// The row indexes the expression reads, in order of first use, without duplicates
    /// (after constant folding: a column in a branch Postgres would drop is not listed).
    pub fn columns(&self) -> &[usize] {
        &self.columns
    }

    /// The value when the expression does not depend on the row.
    pub fn constant(&self) -> Option<&SqlValue> {
        self.root.as_const()
    }
}

/// Why an expression cannot be parsed or bound.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{kind} (at byte {offset})")]
pub struct ExprError {
    /// 0-based byte offset in the expression text.
    pub offset: usize,
    /// What is wrong (boxed: errors are rare, and results carrying them stay small).
    pub kind: Box<ExprErrorKind>,
}

impl ExprError {
    /// An error of `kind` at byte `offset`.
    pub fn new(offset: usize, kind: ExprErrorKind) -> ExprError {
        ExprError {
            offset,
            kind: Box::new(kind),
        }
    }

    /// The 1-based character position of the error in `text` (the expression it came from).
    pub fn char_position(&self, text: &str) -> usize {
        let end = self.offset.min(text.len());
        text.char_indices().take_while(|(i, _)| *i < end).count() + 1
    }
}

/// The kinds of [`ExprError`].
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ExprErrorKind {
    /// The text does not follow the grammar.
    #[error("expected {expected}, found {found}")]
    Syntax {
        /// What would have been accepted.
        expected: String,
        /// What was there.
        found: String,
    },
    /// Valid SQL that pgroar does not evaluate.
    #[error("{0} is not supported")]
    Unsupported(String),
    /// A function other than the supported ones.
    #[error(
        "function {0}() is not supported (supported: GREATEST, LEAST, COALESCE, NULLIF, extract, date_part)"
    )]
    UnknownFunction(String),
    /// A type name other than the supported ones.
    #[error("type {0:?} is not supported in casts")]
    UnknownType(String),
    /// A `{column}` the table does not have.
    #[error("column {{{0}}} does not exist")]
    UnknownColumn(String),
    /// No operator or function for these argument types (`text & integer`).
    #[error("operator does not exist: {0}")]
    NoOperator(String),
    /// An untyped literal where several operators would fit (`- '5'`).
    #[error("operator is not unique: {0}")]
    Ambiguous(String),
    /// An argument of the wrong type (`argument of AND must be type boolean`).
    #[error("argument of {context} must be type {expected}, not type {found}")]
    ArgumentType {
        /// `AND`, `CASE/WHEN`, …
        context: &'static str,
        /// The type required.
        expected: SqlType,
        /// The type found.
        found: SqlType,
    },
    /// `COALESCE`, `CASE`, … over types with no common type.
    #[error("{context} types {a} and {b} cannot be matched")]
    NoCommonType {
        /// `COALESCE`, `CASE`, `GREATEST`, …
        context: &'static str,
        /// One type.
        a: SqlType,
        /// The other.
        b: SqlType,
    },
    /// An explicit cast Postgres (or pgroar) does not have.
    #[error("cannot cast type {from} to {to}")]
    CannotCast {
        /// The source type.
        from: SqlType,
        /// The target type.
        to: SqlType,
    },
    /// A constant part fails to compute (a bad literal, `1/0`): Postgres fails such a
    /// query before reading any row.
    #[error("constant expression fails: {0}")]
    Constant(#[source] EvalError),
}

/// Why an expression failed on a row (the field is skipped and the failure counted).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// Integer overflow (`smallint`, `integer`, `bigint`).
    #[error("{0} out of range")]
    OutOfRange(&'static str),
    /// Division or `%` by zero.
    #[error("division by zero")]
    DivisionByZero,
    /// Float overflow.
    #[error("value out of range: overflow")]
    FloatOverflow,
    /// Float underflow.
    #[error("value out of range: underflow")]
    FloatUnderflow,
    /// A `numeric` past Postgres's limits.
    #[error("value overflows numeric format")]
    NumericOverflow,
    /// `NaN` or infinity converted to an integer.
    #[error("cannot convert {what} to {to}")]
    CannotConvert {
        /// `NaN` or `infinity`.
        what: &'static str,
        /// The target type.
        to: &'static str,
    },
    /// Text that the target type's input function rejects.
    #[error("invalid input syntax for type {ty}: {text:?}")]
    InvalidText {
        /// The target type.
        ty: &'static str,
        /// The text.
        text: String,
    },
    /// Text for a value outside the target type's range.
    #[error("value {text:?} is out of range for type {ty}")]
    TextOutOfRange {
        /// The target type.
        ty: &'static str,
        /// The text.
        text: String,
    },
    /// A date past the last timestamp (294276 AD) converted to a timestamp.
    #[error("date out of range for timestamp")]
    DateOutOfRange,
    /// Something pgroar does not evaluate (reported at bind time for literals).
    #[error("{0} is not supported")]
    Unsupported(String),
    /// The row is shorter than the column indexes the expression was bound with.
    #[error("the expression reads column {index} of a row with {len} columns")]
    MissingColumn {
        /// The index read.
        index: usize,
        /// The row's length.
        len: usize,
    },
    /// A row value of another type than the column was bound with.
    #[error("internal type mismatch: {0}")]
    Internal(&'static str),
}

impl EvalError {
    /// The SQLSTATE Postgres reports for the same failure (`22012` division by zero,
    /// `22003` out of range, …; `XX000` for pgroar's own failures).
    pub fn sqlstate(&self) -> &'static str {
        match self {
            EvalError::OutOfRange(_)
            | EvalError::FloatOverflow
            | EvalError::FloatUnderflow
            | EvalError::NumericOverflow
            | EvalError::TextOutOfRange { .. } => "22003",
            EvalError::DivisionByZero => "22012",
            EvalError::CannotConvert { .. } => "0A000",
            EvalError::InvalidText { .. } => "22P02",
            EvalError::DateOutOfRange => "22008",
            EvalError::Unsupported(_) => "0A000",
            EvalError::MissingColumn { .. } | EvalError::Internal(_) => "XX000",
        }
    }
}

impl fmt::Display for BoundExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} expression>", self.ty)
    }
}

#[cfg(test)]
mod tests;
