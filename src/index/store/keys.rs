//! Filter keys, per-field string dictionaries, and how op values become filter keys and sort
//! values.
//!
//! * A filter value becomes a [`RawKey`] (`Null`, `Int`, or `Str` text) by [`filter_key`]; the
//!   index then turns `Str` text into a dictionary id ([`Key::Str`]). The bulk accumulator keeps
//!   the text (threads cannot share dictionary ids).
//! * Dictionaries are append-only and case-sensitive; an id, once given, names the same text for
//!   the life of the index (checkpoints persist them). A dictionary sits behind an `Arc`: adding a
//!   text after a snapshot copies the dictionary, so they suit the low-cardinality text fields
//!   they are meant for (enums such as `type`), not unique strings.
//! * A field's value map (key → slots) is a [`KeyMap`](super::keymap::KeyMap).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::size::{ARC, map_bytes, vec_bytes};
use crate::ops::Value;
use crate::schema::{FilterKind, SortField};

/// A filter key as stored in the index: an integer, or a per-field dictionary id.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Key {
    /// Integers, booleans (0/1) and integral floats.
    Int(i64),
    /// Text, by its id in the field's dictionary.
    Str(u32),
}

impl Key {
    /// One word standing for the key in hashes (an `Int` and a `Str` may share one; equality
    /// still tells them apart).
    pub(crate) fn word(self) -> u64 {
        match self {
            Key::Int(i) => i as u64,
            Key::Str(s) => u64::from(s) ^ 0x5851_f42d_4c95_7f2d,
        }
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.word());
    }
}

/// A filter value before dictionary lookup.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum RawKey {
    /// SQL NULL: kept in the field's own NULL bitmap.
    Null,
    /// An integer key.
    Int(i64),
    /// A text key.
    Str(Arc<str>),
}

/// A value a field of this kind cannot hold (e.g. `"maybe"` for a boolean field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadValue;

/// An integral, in-range float as an integer.
pub(crate) fn integral(x: f64) -> Option<i64> {
    // ±2^63 are exactly representable; i64::MAX is not.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if x.is_finite() && x.fract() == 0.0 && (-TWO_63..TWO_63).contains(&x) {
        Some(x as i64)
    } else {
        None
    }
}

/// The text a non-integral float is keyed by.
pub(crate) fn float_text(x: f64) -> Arc<str> {
    Arc::from(format!("{x}"))
}

/// Boolean text as Postgres and JSON spell it.
pub(crate) fn bool_text(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "t" => Some(true),
        "false" | "f" => Some(false),
        _ => None,
    }
}

/// How an op value keys a filter field of `kind`.
///
/// Bool → 0/1; integral float → Int; other floats → their text. A boolean field takes only
/// 0/1, booleans, `"true"`/`"false"`/`"t"`/`"f"` and NULL.
pub(crate) fn filter_key(kind: FilterKind, v: &Value) -> Result<RawKey, BadValue> {
    let raw = match v {
        Value::Null => RawKey::Null,
        Value::Bool(b) => RawKey::Int(i64::from(*b)),
        Value::Int(i) => RawKey::Int(*i),
        Value::Float(x) => match integral(*x) {
            Some(i) => RawKey::Int(i),
            None => RawKey::Str(float_text(*x)),
        },
        Value::Str(s) => RawKey::Str(s.clone()),
    };
    if kind != FilterKind::Bool {
        return Ok(raw);
    }
    match raw {
        RawKey::Null => Ok(RawKey::Null),
        RawKey::Int(i @ (0 | 1)) => Ok(RawKey::Int(i)),
        RawKey::Str(s) => bool_text(&s)
            .map(|b| RawKey::Int(i64::from(b)))
            .ok_or(BadValue),
        RawKey::Int(_) => Err(BadValue),
    }
}

/// A sort value: the stored u32 and whether it had to be clamped into `0..=max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SortValue {
    /// The value stored.
    pub value: u32,
    /// The input was outside `0..=max` and was clamped.
    pub clamped: bool,
}

fn clamp(i: i128, max: u32) -> SortValue {
    let value = i.clamp(0, i128::from(max)) as u32;
    SortValue {
        value,
        clamped: i128::from(value) != i,
    }
}

/// How an op value becomes a sort value: Int clamped, Bool 0/1, Float truncated then clamped,
/// Str parsed as an integer, NULL 0. NaN and text that is not an integer are bad values.
pub(crate) fn sort_value(field: &SortField, v: &Value) -> Result<SortValue, BadValue> {
    let max = field.max_value();
    match v {
        Value::Null => Ok(clamp(0, max)),
        Value::Bool(b) => Ok(clamp(i128::from(*b), max)),
        Value::Int(i) => Ok(clamp(i128::from(*i), max)),
        Value::Float(x) if x.is_nan() => Err(BadValue),
        Value::Float(x) => Ok(clamp(x.trunc() as i128, max)),
        Value::Str(s) => s
            .parse::<i64>()
            .map(|i| clamp(i128::from(i), max))
            .map_err(|_| BadValue),
    }
}

/// The identity the index gives an op value in one field: two values with equal canonical
/// forms land on the same key (e.g. `true`, `1` and `1.0` in a boolean field, or `300` and `15`
/// in a 4-bit sort field). Dedup compares values by it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CanonicalValue {
    /// NULL in a filter field.
    Null,
    /// An integer filter key.
    Int(i64),
    /// A text filter key.
    Str(Arc<str>),
    /// A sort value after clamping.
    Sort(u32),
}

/// The canonical form of `v` in a filter field of `kind`; `None` when the index would reject it.
pub fn canonical_filter(kind: FilterKind, v: &Value) -> Option<CanonicalValue> {
    match filter_key(kind, v).ok()? {
        RawKey::Null => Some(CanonicalValue::Null),
        RawKey::Int(i) => Some(CanonicalValue::Int(i)),
        RawKey::Str(s) => Some(CanonicalValue::Str(s)),
    }
}

/// The canonical form of `v` in sort field `field`; `None` when the index would reject it.
pub fn canonical_sort(field: &SortField, v: &Value) -> Option<CanonicalValue> {
    sort_value(field, v)
        .ok()
        .map(|s| CanonicalValue::Sort(s.value))
}

/// A per-field append-only string dictionary.
#[derive(Clone, Debug, Default)]
pub(crate) struct Dict {
    ids: HashMap<Arc<str>, u32>,
    texts: Vec<Arc<str>>,
}

impl Dict {
    /// Heap bytes of the dictionary: each text once, its id table and its list.
    pub(crate) fn heap_bytes(&self) -> u64 {
        let texts: u64 = self.texts.iter().map(|t| ARC + t.len() as u64).sum();
        texts
            + vec_bytes::<Arc<str>>(self.texts.capacity())
            + map_bytes::<Arc<str>, u32>(self.ids.capacity())
    }

    /// The id of `text`, if it has one.
    pub(crate) fn get(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    /// The text of `id`.
    pub(crate) fn text(&self, id: u32) -> Option<&Arc<str>> {
        self.texts.get(id as usize)
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.texts.len()
    }

    /// All texts in id order.
    pub(crate) fn texts(&self) -> &[Arc<str>] {
        &self.texts
    }

    /// Appends `text`; `None` if it is already present or the id space is full.
    pub(crate) fn push(&mut self, text: Arc<str>) -> Option<u32> {
        if self.ids.contains_key(&text) {
            return None;
        }
        let id = u32::try_from(self.texts.len()).ok()?;
        self.ids.insert(text.clone(), id);
        self.texts.push(text);
        Some(id)
    }
}

/// Looks `text` up in the dictionary behind `dict`, appending it when new (copying the
/// dictionary if a snapshot shares it). `None` only when the id space is exhausted.
pub(crate) fn intern(dict: &mut Arc<Dict>, text: &Arc<str>) -> Option<u32> {
    if let Some(id) = dict.get(text) {
        return Some(id);
    }
    Arc::make_mut(dict).push(text.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_keys_follow_the_rules() {
        use FilterKind::*;
        assert_eq!(filter_key(Single, &Value::Bool(true)), Ok(RawKey::Int(1)));
        assert_eq!(filter_key(Single, &Value::Float(3.0)), Ok(RawKey::Int(3)));
        assert_eq!(filter_key(Single, &Value::Float(-0.0)), Ok(RawKey::Int(0)));
        assert_eq!(
            filter_key(Multi, &Value::Float(1.5)),
            Ok(RawKey::Str("1.5".into()))
        );
        assert_eq!(
            filter_key(Single, &Value::Float(1e300)),
            Ok(RawKey::Str(float_text(1e300)))
        );
        assert_eq!(filter_key(Single, &Value::Null), Ok(RawKey::Null));
        assert_eq!(filter_key(Bool, &Value::Int(1)), Ok(RawKey::Int(1)));
        assert_eq!(filter_key(Bool, &Value::str("f")), Ok(RawKey::Int(0)));
        assert_eq!(filter_key(Bool, &Value::str("true")), Ok(RawKey::Int(1)));
        assert_eq!(filter_key(Bool, &Value::Int(2)), Err(BadValue));
        assert_eq!(filter_key(Bool, &Value::str("yes")), Err(BadValue));
        assert_eq!(filter_key(Bool, &Value::Float(0.5)), Err(BadValue));
        assert_eq!(filter_key(Bool, &Value::Null), Ok(RawKey::Null));
    }

    #[test]
    fn sort_values_clamp_and_count() {
        let f = SortField {
            name: "s".into(),
            bits: 4,
        };
        let ok = |value, clamped| Ok(SortValue { value, clamped });
        assert_eq!(sort_value(&f, &Value::Int(7)), ok(7, false));
        assert_eq!(sort_value(&f, &Value::Int(-3)), ok(0, true));
        assert_eq!(sort_value(&f, &Value::Int(99)), ok(15, true));
        assert_eq!(sort_value(&f, &Value::Float(9.9)), ok(9, false));
        assert_eq!(sort_value(&f, &Value::Float(f64::INFINITY)), ok(15, true));
        assert_eq!(sort_value(&f, &Value::Float(f64::NAN)), Err(BadValue));
        assert_eq!(sort_value(&f, &Value::str("12")), ok(12, false));
        assert_eq!(sort_value(&f, &Value::str("x")), Err(BadValue));
        assert_eq!(sort_value(&f, &Value::Bool(true)), ok(1, false));
        assert_eq!(sort_value(&f, &Value::Null), ok(0, false));
        let wide = SortField {
            name: "w".into(),
            bits: 32,
        };
        assert_eq!(sort_value(&wide, &Value::Int(i64::MAX)), ok(u32::MAX, true));
    }

    #[test]
    fn dictionaries_are_append_only_and_case_sensitive() {
        let mut d = Arc::new(Dict::default());
        let snap = d.clone();
        assert_eq!(intern(&mut d, &"SDXL".into()), Some(0));
        assert_eq!(intern(&mut d, &"sdxl".into()), Some(1));
        assert_eq!(intern(&mut d, &"SDXL".into()), Some(0));
        assert_eq!(snap.len(), 0, "a snapshot's dictionary does not change");
        assert_eq!(d.text(1).map(|t| &**t), Some("sdxl"));
    }
}
