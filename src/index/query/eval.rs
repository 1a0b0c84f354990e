//! Evaluating a [`Filter`] against index state. Every result is ⊆ alive.
//!
//! * `eq` / `in` on a filter field look keys up: a number matches `Int(n)` and the dictionary
//!   entry spelled like the literal; text matches its dictionary entry and `Int` if it parses as
//!   an integer; `true`/`false` match 1/0 (and on a boolean field so do `"t"`/`"f"`); `null`
//!   matches the NULL bitmap.
//! * Ranges on a filter field cover its `Int` keys only.
//! * On a sort field, `eq` / `in` / ranges are bit-sliced comparisons; every live slot has a sort
//!   value (0 when never set). Text, NULL and NaN cannot be compared with a sort field.
//! * A name that is both a filter and a sort field: `eq`/`in` use the filter keys (exact),
//!   ranges use the sort layers (bit-sliced, no scan of the keys).
//! * `NOT x` = alive − x.

use std::time::Instant;

use super::slices;
use crate::filter::{CmpOp, Filter, FilterError, Literal};
use crate::index::store::bits::Bits;
use crate::index::store::keys::{self, Key};
use crate::index::{FilterState, State};
use crate::schema::FilterKind;

/// The live slots matching `f`; abandoned with [`FilterError::Deadline`] once `deadline` has
/// passed (checked before each clause and each combination).
pub(crate) fn evaluate(
    state: &State,
    f: &Filter,
    deadline: Option<Instant>,
) -> Result<Bits, FilterError> {
    f.check(&state.schema)?;
    Ok(eval(state, f, deadline)?.and(&state.alive))
}

fn eval(state: &State, f: &Filter, deadline: Option<Instant>) -> Result<Bits, FilterError> {
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Err(FilterError::Deadline);
    }
    let e = |x: &Filter| eval(state, x, deadline);
    Ok(match f {
        Filter::And(a, b) => match (&**a, &**b) {
            (x, Filter::Not(y)) | (Filter::Not(y), x) => e(x)?.andnot(&e(y)?),
            _ => e(a)?.and(&e(b)?),
        },
        Filter::Or(a, b) => e(a)?.or(&e(b)?),
        Filter::Not(a) => state.alive.andnot(&e(a)?),
        Filter::Cmp { field, op, value } => clause(state, field, *op, std::slice::from_ref(value))?,
        Filter::In { field, values } => clause(state, field, CmpOp::Eq, values)?,
    })
}

fn clause(state: &State, field: &str, op: CmpOp, values: &[Literal]) -> Result<Bits, FilterError> {
    let at = state.schema.field(field);
    let use_sort = match (at.filter, at.sort) {
        (Some(_), Some(_)) => op != CmpOp::Eq,
        (None, Some(_)) => true,
        (Some(_), None) => false,
        (None, None) => return Err(FilterError::UnknownField(field.to_string())),
    };
    if use_sort {
        let si = at.sort.expect("checked above");
        let sf = &state.schema.sorts[si];
        let layers = &state.sorts[si];
        let mut hits = Vec::new();
        for v in values {
            let (lo, hi) = interval(field, op, v)?;
            let (lo, hi) = (lo.max(0), hi.min(i128::from(sf.max_value())));
            if lo <= hi {
                hits.push(slices::in_range(
                    layers,
                    &state.alive,
                    lo as u32..=hi as u32,
                    sf.max_value(),
                ));
            }
        }
        return Ok(union(hits.iter()));
    }
    let fi = at.filter.expect("checked above");
    let fs = &state.filters[fi];
    let kind = state.schema.filters[fi].kind;
    if op == CmpOp::Eq {
        let mut hits: Vec<&Bits> = Vec::new();
        for v in values {
            if *v == Literal::Null {
                hits.push(&fs.null);
            }
            for k in eq_keys(fs, kind, v) {
                if let Some(b) = fs.values.get(&k) {
                    hits.push(b);
                }
            }
        }
        return Ok(union(hits.into_iter()));
    }
    let mut ranges = Vec::new();
    for v in values {
        ranges.push(interval(field, op, v)?);
    }
    let hits = fs.values.iter().filter_map(|(k, b)| match k {
        Key::Int(i)
            if ranges
                .iter()
                .any(|(lo, hi)| (*lo..=*hi).contains(&i128::from(*i))) =>
        {
            Some(b)
        }
        _ => None,
    });
    Ok(union(hits))
}

/// The keys a literal matches with `eq` on a filter field.
fn eq_keys(fs: &FilterState, kind: FilterKind, v: &Literal) -> Vec<Key> {
    let mut out = Vec::with_capacity(2);
    let dict = |text: &str, out: &mut Vec<Key>| {
        if let Some(id) = fs.dict.get(text) {
            out.push(Key::Str(id));
        }
    };
    match v {
        Literal::Null => {}
        Literal::Bool(b) => out.push(Key::Int(i64::from(*b))),
        Literal::Int { value, text } => {
            out.push(Key::Int(*value));
            dict(text, &mut out);
        }
        Literal::Decimal { value, text } => {
            match keys::integral(*value) {
                Some(i) => out.push(Key::Int(i)),
                None => dict(&keys::float_text(*value), &mut out),
            }
            dict(text, &mut out);
        }
        Literal::Text(s) => {
            dict(s, &mut out);
            if let Ok(i) = s.parse::<i64>() {
                out.push(Key::Int(i));
            } else if kind == FilterKind::Bool
                && let Some(b) = keys::bool_text(s)
            {
                out.push(Key::Int(i64::from(b)));
            }
        }
    }
    out.dedup();
    out
}

/// The inclusive integer interval `op v` denotes.
fn interval(field: &str, op: CmpOp, v: &Literal) -> Result<(i128, i128), FilterError> {
    let bad = |reason| FilterError::BadValue {
        field: field.to_string(),
        value: v.to_string(),
        reason,
    };
    let (min, max) = (i128::MIN / 2, i128::MAX / 2);
    let int = |n: i128| match op {
        CmpOp::Eq => (n, n),
        CmpOp::Gt => (n + 1, max),
        CmpOp::Gte => (n, max),
        CmpOp::Lt => (min, n - 1),
        CmpOp::Lte => (min, n),
    };
    let float = |x: f64| -> Result<(i128, i128), FilterError> {
        if x.is_nan() {
            return Err(bad("NaN has no order"));
        }
        let (fl, ce) = (x.floor() as i128, x.ceil() as i128);
        let (fl, ce) = (fl.clamp(min, max), ce.clamp(min, max));
        Ok(match op {
            CmpOp::Eq if fl == ce => (fl, fl),
            CmpOp::Eq => (1, 0),
            CmpOp::Gt => (fl + 1, max),
            CmpOp::Gte => (ce, max),
            CmpOp::Lt => (min, ce - 1),
            CmpOp::Lte => (min, fl),
        })
    };
    match v {
        Literal::Null => Err(bad("null has no order")),
        Literal::Bool(b) => Ok(int(i128::from(*b))),
        Literal::Int { value, .. } => Ok(int(i128::from(*value))),
        Literal::Decimal { value, .. } => float(*value),
        Literal::Text(s) => match (s.parse::<i64>(), s.parse::<f64>()) {
            (Ok(i), _) => Ok(int(i128::from(i))),
            (_, Ok(x)) => float(x),
            _ => Err(bad("text is not a number")),
        },
    }
}

/// The union of several bitmaps, built chunk by chunk in place.
pub(in crate::index) fn union<'a>(bits: impl Iterator<Item = &'a Bits>) -> Bits {
    let mut acc: Option<Bits> = None;
    let mut many: Option<std::collections::BTreeMap<u32, roaring::RoaringBitmap>> = None;
    for b in bits {
        if let Some(m) = &mut many {
            for (id, bm) in b.chunks() {
                *m.entry(id).or_default() |= bm;
            }
            continue;
        }
        match &acc {
            None => acc = Some(b.clone()),
            Some(a) => {
                // From the second operand on, OR into owned per-chunk bitmaps.
                let mut m = std::collections::BTreeMap::new();
                for (id, bm) in a.chunks().chain(b.chunks()) {
                    *m.entry(id).or_insert_with(roaring::RoaringBitmap::new) |= bm;
                }
                many = Some(m);
            }
        }
    }
    match many {
        Some(m) => Bits::from_chunks(m.into_iter().collect()).expect("chunks of valid bitmaps"),
        None => acc.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_round_toward_the_integers_they_admit() {
        let d = |x: f64| Literal::Decimal {
            value: x,
            text: x.to_string(),
        };
        assert_eq!(interval("f", CmpOp::Gt, &d(1.5)).unwrap().0, 2);
        assert_eq!(interval("f", CmpOp::Gte, &d(1.5)).unwrap().0, 2);
        assert_eq!(interval("f", CmpOp::Lt, &d(1.5)).unwrap().1, 1);
        assert_eq!(interval("f", CmpOp::Lte, &d(1.5)).unwrap().1, 1);
        assert_eq!(interval("f", CmpOp::Gt, &d(2.0)).unwrap().0, 3);
        let (lo, hi) = interval("f", CmpOp::Eq, &d(1.5)).unwrap();
        assert!(lo > hi);
        assert_eq!(interval("f", CmpOp::Gt, &Literal::int(-3)).unwrap().0, -2);
        assert_eq!(
            interval("f", CmpOp::Eq, &Literal::Text("7".into())).unwrap(),
            (7, 7)
        );
        assert!(interval("f", CmpOp::Eq, &Literal::Null).is_err());
        assert!(interval("f", CmpOp::Gt, &Literal::Text("x".into())).is_err());
    }

    #[test]
    fn union_of_many_equals_pairwise_or() {
        let sets: Vec<Bits> = (0..5u32)
            .map(|i| [i, i + (1 << 20), 7].into_iter().collect())
            .collect();
        let want = sets.iter().fold(Bits::new(), |a, b| a.or(b));
        assert_eq!(union(sets.iter()), want);
        assert_eq!(union(sets[..1].iter()), sets[0]);
        assert!(union(std::iter::empty()).is_empty());
    }
}
