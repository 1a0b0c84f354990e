//! The parsed form of an expression: a tree of [`Ast`] nodes with the byte offsets errors
//! point at.

use super::types::SqlType;

/// A parsed expression node; `pos` is the byte offset reported in errors about it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Ast {
    pub pos: usize,
    pub kind: AstKind,
}

/// Binary operators.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    BitAnd,
    BitOr,
    BitXor,
    Shl,
    Shr,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl BinOp {
    /// What a comparison operator says of operands in order `ord` (`None`: not a comparison).
    pub(crate) fn compares(self, ord: std::cmp::Ordering) -> Option<bool> {
        use std::cmp::Ordering::{Equal, Greater, Less};
        Some(match self {
            BinOp::Eq => ord == Equal,
            BinOp::Ne => ord != Equal,
            BinOp::Lt => ord == Less,
            BinOp::Le => ord != Greater,
            BinOp::Gt => ord == Greater,
            BinOp::Ge => ord != Less,
            _ => return None,
        })
    }

    pub(crate) fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::BitAnd => "&",
            BinOp::BitOr => "|",
            BinOp::BitXor => "#",
            BinOp::Shl => "<<",
            BinOp::Shr => ">>",
            BinOp::Eq => "=",
            BinOp::Ne => "<>",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
        }
    }

    pub(crate) fn from_symbol(op: &str) -> Option<BinOp> {
        Some(match op {
            "+" => BinOp::Add,
            "-" => BinOp::Sub,
            "*" => BinOp::Mul,
            "/" => BinOp::Div,
            "%" => BinOp::Mod,
            "&" => BinOp::BitAnd,
            "|" => BinOp::BitOr,
            "#" => BinOp::BitXor,
            "<<" => BinOp::Shl,
            ">>" => BinOp::Shr,
            "=" => BinOp::Eq,
            "<>" => BinOp::Ne,
            "<" => BinOp::Lt,
            "<=" => BinOp::Le,
            ">" => BinOp::Gt,
            ">=" => BinOp::Ge,
            _ => return None,
        })
    }
}

/// Prefix operators.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum UnOp {
    Neg,
    Plus,
    BitNot,
}

/// Variadic functions.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Func {
    Greatest,
    Least,
    Coalesce,
    NullIf,
}

/// Expression shapes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum AstKind {
    Column(String),
    /// A number literal as written, with a folded leading `-`.
    Number(String),
    Str(String),
    Bool(bool),
    Null,
    Unary(UnOp, Box<Ast>),
    Binary(BinOp, Box<Ast>, Box<Ast>),
    And(Box<Ast>, Box<Ast>),
    Or(Box<Ast>, Box<Ast>),
    Not(Box<Ast>),
    IsNull {
        arg: Box<Ast>,
        negated: bool,
    },
    /// `IS [NOT] TRUE / FALSE / UNKNOWN` (`value: None` is UNKNOWN).
    IsBool {
        arg: Box<Ast>,
        value: Option<bool>,
        negated: bool,
    },
    IsDistinct {
        l: Box<Ast>,
        r: Box<Ast>,
        negated: bool,
    },
    Call(Func, Vec<Ast>),
    /// `extract(epoch from x)`.
    ExtractEpoch(Box<Ast>),
    /// `date_part('epoch', x)`.
    DatePartEpoch(Box<Ast>),
    Case {
        operand: Option<Box<Ast>>,
        whens: Vec<(Ast, Ast)>,
        default: Option<Box<Ast>>,
    },
    Cast(Box<Ast>, SqlType),
}
