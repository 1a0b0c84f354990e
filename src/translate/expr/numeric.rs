//! Exact decimals with PostgreSQL `NUMERIC` semantics.
//!
//! A finite value is `±coef × 10^-scale` where `scale` is Postgres's *display scale* (`dscale`:
//! `1.50` keeps scale 2) and `coef` an unsigned integer of any size, stored as base-10⁹ limbs.
//! The rules follow Postgres 14+ (`numeric.c`): `+`/`-` are exact with the larger scale, `*` is
//! exact with the sum of the scales, `/` rounds half away from zero at the scale chosen by
//! `select_div_scale` (at least 16 significant digits), `%` is `a - trunc(a/b)*b`. `NaN`,
//! `Infinity` and `-Infinity` behave as in Postgres: `NaN` equals itself and sorts above
//! everything, `Infinity - Infinity` is `NaN`, dividing by zero is an error.

use std::cmp::Ordering;
use std::fmt;

use super::bigint::Mag;

/// The whitespace Postgres's input functions skip (`isspace` in the C locale).
pub(crate) fn is_pg_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Largest display scale Postgres stores (`NUMERIC_DSCALE_MAX`).
const MAX_SCALE: u32 = 16383;
/// Most digits before the decimal point Postgres stores.
const MAX_INT_DIGITS: usize = 131_072;
/// Largest exponent `numeric_in` accepts (`NUMERIC_MAX_PRECISION`).
const MAX_INPUT_EXPONENT: i64 = 1000;

/// Why a numeric operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NumericError {
    /// Division (or `%`) by zero.
    #[error("division by zero")]
    DivisionByZero,
    /// The result does not fit Postgres's numeric format.
    #[error("value overflows numeric format")]
    Overflow,
    /// Text that `numeric_in` rejects.
    #[error("invalid input syntax for type numeric")]
    InvalidInput,
}

/// A finite decimal: `(-1)^neg × coef × 10^-scale`; zero is never negative.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Dec {
    neg: bool,
    coef: Mag,
    scale: u32,
}

impl Dec {
    fn new(neg: bool, coef: Mag, scale: u32) -> Dec {
        let neg = neg && !coef.is_zero();
        Dec { neg, coef, scale }
    }

    /// The coefficient at a larger (or equal) scale.
    fn coef_at(&self, scale: u32) -> Mag {
        self.coef.mul_pow10((scale - self.scale) as usize)
    }

    /// Postgres's base-10000 weight and first base-10000 digit (0, 0 for zero).
    fn weight_and_first_digit(&self) -> (i64, u32) {
        if self.coef.is_zero() {
            return (0, 0);
        }
        let digits = self.coef.to_decimal();
        let exp = digits.len() as i64 - 1 - self.scale as i64;
        let weight = exp.div_euclid(4);
        let take = (exp - 4 * weight + 1) as usize;
        let first = digits.as_bytes()[..take.min(digits.len())]
            .iter()
            .fold(0u32, |acc, &c| acc * 10 + (c - b'0') as u32);
        // If the coefficient has fewer digits than the group, the rest are zeros.
        let first = first * 10u32.pow(take.saturating_sub(digits.len()) as u32);
        (weight, first)
    }

    fn check(self) -> Result<Dec, NumericError> {
        let int_digits = self.coef.digits().saturating_sub(self.scale as usize);
        if int_digits > MAX_INT_DIGITS || self.scale > MAX_SCALE {
            return Err(NumericError::Overflow);
        }
        Ok(self)
    }

    fn cmp(&self, other: &Dec) -> Ordering {
        match (self.neg, other.neg) {
            (false, true) => return Ordering::Greater,
            (true, false) => return Ordering::Less,
            _ => {}
        }
        let scale = self.scale.max(other.scale);
        let mag = self.coef_at(scale).cmp(&other.coef_at(scale));
        if self.neg { mag.reverse() } else { mag }
    }

    fn add(&self, other: &Dec) -> Dec {
        let scale = self.scale.max(other.scale);
        let (a, b) = (self.coef_at(scale), other.coef_at(scale));
        if self.neg == other.neg {
            return Dec::new(self.neg, a.add(&b), scale);
        }
        match a.cmp(&b) {
            Ordering::Less => Dec::new(other.neg, b.sub(&a), scale),
            _ => Dec::new(self.neg, a.sub(&b), scale),
        }
    }

    fn negated(&self) -> Dec {
        Dec::new(!self.neg, self.coef.clone(), self.scale)
    }

    /// `self / other` rounded half away from zero at `scale` digits (`other` non-zero).
    fn div_round(&self, other: &Dec, scale: u32) -> Dec {
        // q = coef_a / coef_b × 10^(scale_b - scale_a + scale + 1), truncated; then round.
        let e = other.scale as i64 - self.scale as i64 + scale as i64 + 1;
        let (num, den) = if e >= 0 {
            (self.coef.mul_pow10(e as usize), other.coef.clone())
        } else {
            (self.coef.clone(), other.coef.mul_pow10((-e) as usize))
        };
        let (q, _) = num.divmod(&den);
        let (q, last) = q.divmod_small(10);
        let q = if last >= 5 { q.add(&Mag(vec![1])) } else { q };
        Dec::new(self.neg != other.neg, q, scale)
    }

    /// `self / other` truncated to an integer (`other` non-zero).
    fn div_trunc(&self, other: &Dec) -> Dec {
        let e = other.scale as i64 - self.scale as i64;
        let (num, den) = if e >= 0 {
            (self.coef.mul_pow10(e as usize), other.coef.clone())
        } else {
            (self.coef.clone(), other.coef.mul_pow10((-e) as usize))
        };
        Dec::new(self.neg != other.neg, num.divmod(&den).0, 0)
    }

    fn mul(&self, other: &Dec) -> Dec {
        Dec::new(
            self.neg != other.neg,
            self.coef.mul(&other.coef),
            self.scale + other.scale,
        )
    }

    /// The coefficient with its sign as an `i64`, if it fits (the scale is ignored).
    fn to_i64(&self) -> Option<i64> {
        let m = i128::try_from(self.coef.to_u128()?).ok()?;
        i64::try_from(if self.neg { -m } else { m }).ok()
    }

    /// Rounds half away from zero to `scale` digits (no-op when already at or below).
    fn round_to(&self, scale: u32) -> Dec {
        if self.scale <= scale {
            return self.clone();
        }
        let drop = (self.scale - scale) as usize;
        let (q, r) = self.coef.divmod(&Mag::pow10(drop));
        let half = Mag::pow10(drop - 1).mul_small(5);
        let q = if r.cmp(&half) != Ordering::Less {
            q.add(&Mag(vec![1]))
        } else {
            q
        };
        Dec::new(self.neg, q, scale)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Repr {
    NaN,
    Inf { neg: bool },
    Finite(Dec),
}

/// A Postgres `numeric` value: exact decimal with a display scale, or `NaN`/`±Infinity`.
///
/// `PartialEq` is structural (`1.0` ≠ `1.00`); use [`Numeric::pg_cmp`] for SQL comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Numeric(Repr);

impl Numeric {
    /// `NaN`.
    pub fn nan() -> Numeric {
        Numeric(Repr::NaN)
    }

    /// `Infinity` or `-Infinity`.
    pub fn infinity(negative: bool) -> Numeric {
        Numeric(Repr::Inf { neg: negative })
    }

    /// An integer (scale 0).
    pub fn from_i64(v: i64) -> Numeric {
        Numeric::from_i128(v as i128, 0)
    }

    /// `v × 10^-scale` (e.g. microseconds with scale 6).
    pub fn from_i128(v: i128, scale: u32) -> Numeric {
        Numeric(Repr::Finite(Dec::new(
            v < 0,
            Mag::from_u128(v.unsigned_abs()),
            scale,
        )))
    }

    /// True for `NaN`.
    pub fn is_nan(&self) -> bool {
        matches!(self.0, Repr::NaN)
    }

    /// `Some(negative)` for `±Infinity`.
    pub fn infinite_sign(&self) -> Option<bool> {
        match self.0 {
            Repr::Inf { neg } => Some(neg),
            _ => None,
        }
    }

    /// The display scale of a finite value (0 for the special values).
    pub fn scale(&self) -> u32 {
        match &self.0 {
            Repr::Finite(d) => d.scale,
            _ => 0,
        }
    }

    /// Parses `numeric_in`'s input: optional whitespace and sign, digits with an optional
    /// point and exponent (`1.5e-3`), or `NaN`, `Infinity`, `inf` (any case, signed).
    pub fn parse(text: &str) -> Result<Numeric, NumericError> {
        let s = text.trim_matches(is_pg_space);
        let lower = s.to_ascii_lowercase();
        match lower.as_str() {
            "nan" => return Ok(Numeric::nan()),
            "infinity" | "+infinity" | "inf" | "+inf" => return Ok(Numeric::infinity(false)),
            "-infinity" | "-inf" => return Ok(Numeric::infinity(true)),
            _ => {}
        }
        let b = s.as_bytes();
        let mut i = 0;
        let mut neg = false;
        if let Some(&c @ (b'+' | b'-')) = b.first() {
            neg = c == b'-';
            i = 1;
        }
        let mut digits: Vec<u8> = Vec::new();
        let mut frac = 0i64;
        let mut seen_point = false;
        while i < b.len() {
            match b[i] {
                c @ b'0'..=b'9' => {
                    digits.push(c);
                    if seen_point {
                        frac += 1;
                    }
                }
                b'.' if !seen_point => seen_point = true,
                _ => break,
            }
            i += 1;
        }
        if digits.is_empty() {
            return Err(NumericError::InvalidInput);
        }
        let mut exp = 0i64;
        if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            i += 1;
            let mut eneg = false;
            if let Some(&c @ (b'+' | b'-')) = b.get(i) {
                eneg = c == b'-';
                i += 1;
            }
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                exp = (exp * 10 + (b[i] - b'0') as i64).min(i64::MAX / 100);
                i += 1;
            }
            if i == start {
                return Err(NumericError::InvalidInput);
            }
            if exp > MAX_INPUT_EXPONENT {
                return Err(NumericError::InvalidInput);
            }
            if eneg {
                exp = -exp;
            }
        }
        if i != b.len() {
            return Err(NumericError::InvalidInput);
        }
        let scale = frac - exp;
        let coef = Mag::from_digits(&digits);
        let dec = if scale >= 0 {
            Dec::new(neg, coef, scale as u32)
        } else {
            Dec::new(neg, coef.mul_pow10((-scale) as usize), 0)
        };
        dec.check().map(|d| Numeric(Repr::Finite(d)))
    }

    /// Postgres's total order: `NaN` is equal to itself and above everything, then
    /// `Infinity`; finite values compare by value regardless of scale.
    pub fn pg_cmp(&self, other: &Numeric) -> Ordering {
        fn rank(n: &Numeric) -> i8 {
            match n.0 {
                Repr::Inf { neg: true } => 0,
                Repr::Finite(_) => 1,
                Repr::Inf { neg: false } => 2,
                Repr::NaN => 3,
            }
        }
        match (&self.0, &other.0) {
            (Repr::Finite(a), Repr::Finite(b)) => a.cmp(b),
            _ => rank(self).cmp(&rank(other)),
        }
    }

    /// `self + other`.
    pub fn add(&self, other: &Numeric) -> Result<Numeric, NumericError> {
        Ok(match (&self.0, &other.0) {
            (Repr::NaN, _) | (_, Repr::NaN) => Numeric::nan(),
            (Repr::Inf { neg: a }, Repr::Inf { neg: b }) if a != b => Numeric::nan(),
            (Repr::Inf { .. }, _) => self.clone(),
            (_, Repr::Inf { .. }) => other.clone(),
            (Repr::Finite(a), Repr::Finite(b)) => Numeric(Repr::Finite(a.add(b).check()?)),
        })
    }

    /// `self - other`.
    pub fn sub(&self, other: &Numeric) -> Result<Numeric, NumericError> {
        self.add(&other.neg())
    }

    /// `-self`.
    pub fn neg(&self) -> Numeric {
        Numeric(match &self.0 {
            Repr::NaN => Repr::NaN,
            Repr::Inf { neg } => Repr::Inf { neg: !neg },
            Repr::Finite(d) => Repr::Finite(d.negated()),
        })
    }

    /// Sign of a non-NaN value: -1, 0 or 1.
    fn sign(&self) -> i8 {
        match &self.0 {
            Repr::NaN => 0,
            Repr::Inf { neg } => {
                if *neg {
                    -1
                } else {
                    1
                }
            }
            Repr::Finite(d) if d.coef.is_zero() => 0,
            Repr::Finite(d) => {
                if d.neg {
                    -1
                } else {
                    1
                }
            }
        }
    }

    /// `self * other`; the exact product, rounded only past the largest storable scale.
    pub fn mul(&self, other: &Numeric) -> Result<Numeric, NumericError> {
        Ok(match (&self.0, &other.0) {
            (Repr::NaN, _) | (_, Repr::NaN) => Numeric::nan(),
            (Repr::Finite(a), Repr::Finite(b)) => {
                let mut p = a.mul(b);
                if p.scale > MAX_SCALE {
                    p = p.round_to(MAX_SCALE);
                }
                Numeric(Repr::Finite(p.check()?))
            }
            _ => match self.sign() * other.sign() {
                0 => Numeric::nan(),
                s => Numeric::infinity(s < 0),
            },
        })
    }

    /// `self / other` with Postgres's result scale (`select_div_scale`).
    pub fn div(&self, other: &Numeric) -> Result<Numeric, NumericError> {
        match (&self.0, &other.0) {
            (Repr::NaN, _) | (_, Repr::NaN) => Ok(Numeric::nan()),
            (Repr::Inf { .. }, Repr::Inf { .. }) => Ok(Numeric::nan()),
            (Repr::Inf { neg }, Repr::Finite(_)) => match other.sign() {
                0 => Err(NumericError::DivisionByZero),
                s => Ok(Numeric::infinity(*neg != (s < 0))),
            },
            (Repr::Finite(_), Repr::Inf { .. }) => Ok(Numeric::from_i64(0)),
            (Repr::Finite(a), Repr::Finite(b)) => {
                if b.coef.is_zero() {
                    return Err(NumericError::DivisionByZero);
                }
                let scale = div_scale(a, b);
                Ok(Numeric(Repr::Finite(a.div_round(b, scale).check()?)))
            }
        }
    }

    /// `self % other`: `self - trunc(self / other) * other`, sign of `self`.
    pub fn rem(&self, other: &Numeric) -> Result<Numeric, NumericError> {
        match (&self.0, &other.0) {
            (Repr::NaN, _) | (_, Repr::NaN) => Ok(Numeric::nan()),
            (Repr::Inf { .. }, _) => {
                if other.sign() == 0 {
                    Err(NumericError::DivisionByZero)
                } else {
                    Ok(Numeric::nan())
                }
            }
            (Repr::Finite(_), Repr::Inf { .. }) => Ok(self.clone()),
            (Repr::Finite(a), Repr::Finite(b)) => {
                if b.coef.is_zero() {
                    return Err(NumericError::DivisionByZero);
                }
                let q = a.div_trunc(b);
                let r = a.add(&q.mul(b).negated());
                Ok(Numeric(Repr::Finite(r.check()?)))
            }
        }
    }

    /// `round(self, scale)`: rounds half away from zero to `scale` digits after the point,
    /// or pads to that many; the special values are unchanged.
    pub fn with_scale(&self, scale: u32) -> Numeric {
        match &self.0 {
            Repr::Finite(d) if d.scale > scale => Numeric(Repr::Finite(d.round_to(scale))),
            Repr::Finite(d) => Numeric(Repr::Finite(Dec::new(d.neg, d.coef_at(scale), scale))),
            _ => self.clone(),
        }
    }

    /// Rounds half away from zero to an integer, if finite and within `i64`.
    /// `Err(None)` for `NaN`, `Err(Some(neg))` for `±Infinity`, `Ok(None)` when out of range.
    pub fn round_to_i64(&self) -> Result<Option<i64>, Option<bool>> {
        let d = match &self.0 {
            Repr::NaN => return Err(None),
            Repr::Inf { neg } => return Err(Some(*neg)),
            Repr::Finite(d) => d.round_to(0),
        };
        Ok(d.to_i64())
    }

    /// The exact integer value when the scale is 0 and it fits `i64`.
    pub fn as_i64_exact(&self) -> Option<i64> {
        match &self.0 {
            Repr::Finite(d) if d.scale == 0 => d.to_i64(),
            _ => None,
        }
    }
}

/// `select_div_scale`: at least 16 significant digits, at least either input's scale.
fn div_scale(a: &Dec, b: &Dec) -> u32 {
    let (w1, d1) = a.weight_and_first_digit();
    let (w2, d2) = b.weight_and_first_digit();
    let mut qweight = w1 - w2;
    if d1 <= d2 {
        qweight -= 1;
    }
    let scale = (16 - qweight * 4)
        .max(a.scale as i64)
        .max(b.scale as i64)
        .max(0);
    scale.min(1000) as u32
}

/// `numeric_out`: plain decimal with exactly `scale` digits after the point.
impl fmt::Display for Numeric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = match &self.0 {
            Repr::NaN => return f.write_str("NaN"),
            Repr::Inf { neg: false } => return f.write_str("Infinity"),
            Repr::Inf { neg: true } => return f.write_str("-Infinity"),
            Repr::Finite(d) => d,
        };
        let mut digits = d.coef.to_decimal();
        let scale = d.scale as usize;
        if digits.len() <= scale {
            digits.insert_str(0, &"0".repeat(scale + 1 - digits.len()));
        }
        if d.neg {
            f.write_str("-")?;
        }
        let (int, frac) = digits.split_at(digits.len() - scale);
        f.write_str(int)?;
        if scale > 0 {
            f.write_str(".")?;
            f.write_str(frac)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Numeric {
        Numeric::parse(s).unwrap()
    }

    #[test]
    fn parse_keeps_the_display_scale() {
        assert_eq!(n("1.50").to_string(), "1.50");
        assert_eq!(n(" -0.00 ").to_string(), "0.00");
        assert_eq!(n("1e3").to_string(), "1000");
        assert_eq!(n("1.5e-3").to_string(), "0.0015");
        assert_eq!(n("1.50e1").to_string(), "15.0");
        assert_eq!(n(".5").to_string(), "0.5");
        assert_eq!(n("5.").to_string(), "5");
        assert_eq!(n("-INF").to_string(), "-Infinity");
        assert_eq!(n("nan").to_string(), "NaN");
        for bad in ["", "-", ".", "1e", "1e+", "abc", "1.2.3", "1e1001", "0x10"] {
            assert_eq!(
                Numeric::parse(bad),
                Err(NumericError::InvalidInput),
                "{bad}"
            );
        }
    }

    #[test]
    fn division_uses_postgres_scales() {
        let cases = [
            ("1", "3", "0.33333333333333333333"),
            ("10", "4", "2.5000000000000000"),
            ("100000", "3.0", "33333.333333333333"),
            ("1", "7e10", "0.0000000000142857142857142857"),
            ("2", "2", "1.00000000000000000000"),
            ("0", "5", "0.00000000000000000000"),
            ("1e-20", "3", "0.0000000000000000000033333333333333333333"),
            ("-2", "3", "-0.66666666666666666667"),
            (
                "123456789012345678901234567890",
                "7",
                "17636684144620811271604938270",
            ),
        ];
        for (a, b, want) in cases {
            assert_eq!(n(a).div(&n(b)).unwrap().to_string(), want, "{a} / {b}");
        }
        assert_eq!(n("1").div(&n("0")), Err(NumericError::DivisionByZero));
        assert_eq!(n("5").div(&n("Infinity")).unwrap().to_string(), "0");
        assert!(n("NaN").div(&n("0")).unwrap().is_nan());
    }

    #[test]
    fn remainder_follows_the_dividend() {
        assert_eq!(n("7").rem(&n("2.5")).unwrap().to_string(), "2.0");
        assert_eq!(n("-7.5").rem(&n("2")).unwrap().to_string(), "-1.5");
        assert_eq!(n("5").rem(&n("-Infinity")).unwrap().to_string(), "5");
        assert_eq!(
            n("Infinity").rem(&n("0")),
            Err(NumericError::DivisionByZero)
        );
    }

    #[test]
    fn big_products_and_quotients_are_exact() {
        let a = n("9223372036854775807");
        let p = a.mul(&a).unwrap();
        assert_eq!(p.to_string(), "85070591730234615847396907784232501249");
        assert_eq!(p.div(&a).unwrap().to_string(), "9223372036854775807");
        let big = n("123456789123456789123456789123456789.5");
        assert_eq!(
            big.mul(&big).unwrap().to_string(),
            "15241578780673678546105778311537878169943609404511509639079409873647310.25"
        );
    }

    #[test]
    fn rounding_to_integers_is_half_away_from_zero() {
        assert_eq!(n("2.5").round_to_i64(), Ok(Some(3)));
        assert_eq!(n("-2.5").round_to_i64(), Ok(Some(-3)));
        assert_eq!(n("2.4999").round_to_i64(), Ok(Some(2)));
        assert_eq!(
            n("9223372036854775807.4").round_to_i64(),
            Ok(Some(i64::MAX))
        );
        assert_eq!(n("9223372036854775807.5").round_to_i64(), Ok(None));
        assert_eq!(n("NaN").round_to_i64(), Err(None));
    }

    #[test]
    fn comparison_ignores_scale_and_puts_nan_last() {
        assert_eq!(n("1.0").pg_cmp(&n("1.00")), Ordering::Equal);
        assert_eq!(n("-1").pg_cmp(&n("0.5")), Ordering::Less);
        assert_eq!(n("NaN").pg_cmp(&n("Infinity")), Ordering::Greater);
        assert_eq!(n("-Infinity").pg_cmp(&n("-1e300")), Ordering::Less);
    }
}
