//! Translation of replicated rows: typed column values ([`value`]) and the SQL expressions
//! of the sync configuration, evaluated locally with Postgres semantics ([`expr`]).

pub mod expr;
pub mod value;

pub use expr::{BoundExpr, ColumnSlot, EvalError, Expr, ExprError, ExprErrorKind, SqlType};
pub use value::{SqlValue, ValueError, parse_binary, parse_text, reads_binary, to_op_value};

mod rows;
pub use rows::{DatumRef, FieldOp, OpSink, TranslateError, TranslateStats, Translator, Tuple};
mod identity;
pub use identity::{IdentityError, IdentityReport, TableIdentity, check_identities};
