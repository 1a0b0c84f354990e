//! The digits Postgres prints for a float (`float8out`/`float4out` with
//! `extra_float_digits` ≥ 1): the shortest decimal that lies *strictly* inside the interval
//! of values that read back as the float, the closest to it among those.
//!
//! Rust's own shortest formatting differs in one respect: like IEEE reading, it also accepts
//! a decimal lying exactly on the interval's bound when the float's mantissa is even (it
//! prints `3.14159e20`; Postgres, which never prints a value exactly halfway between two
//! floats, prints `3.1415900000000003e+20`). So Rust's digits are used unless they can be
//! such a halfway value, which is decided exactly and cheaply; only then are the digits
//! searched with exact integer arithmetic.

use std::cmp::Ordering;

use super::bigint::Mag;

/// A finite, non-zero float taken apart: `v = m × 2^e`, and whether the next float below is
/// closer than the next one above (at a power of two).
#[derive(Clone, Copy)]
struct Parts {
    m: u64,
    e: i32,
    narrow_below: bool,
    /// Significant bits of a normal mantissa (53 or 24).
    bits: u32,
}

fn parts_f64(x: f64) -> Parts {
    let b = x.abs().to_bits();
    let exp = (b >> 52) as i32;
    let frac = b & ((1 << 52) - 1);
    if exp == 0 {
        Parts {
            m: frac,
            e: -1074,
            narrow_below: false,
            bits: 53,
        }
    } else {
        Parts {
            m: frac | (1 << 52),
            e: exp - 1075,
            narrow_below: frac == 0 && exp > 1,
            bits: 53,
        }
    }
}

fn parts_f32(x: f32) -> Parts {
    let b = x.abs().to_bits();
    let exp = (b >> 23) as i32;
    let frac = (b & ((1 << 23) - 1)) as u64;
    if exp == 0 {
        Parts {
            m: frac,
            e: -149,
            narrow_below: false,
            bits: 24,
        }
    } else {
        Parts {
            m: frac | (1 << 23),
            e: exp - 150,
            narrow_below: frac == 0 && exp > 1,
            bits: 24,
        }
    }
}

/// Postgres's digits and decimal exponent for a finite non-zero `f64`: `d.ddd × 10^exp`.
pub(crate) fn digits_f64(x: f64) -> (String, i32) {
    digits(format!("{:e}", x.abs()), parts_f64(x))
}

/// As [`digits_f64`] for `f32`.
pub(crate) fn digits_f32(x: f32) -> (String, i32) {
    digits(format!("{:e}", x.abs()), parts_f32(x))
}

fn digits(rust: String, p: Parts) -> (String, i32) {
    let (mantissa, exp) = rust.split_once('e').unwrap_or((&rust, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if let Some(even) = tie(&digits, p) {
        // At a power of two the candidate below may lie outside the narrower lower half.
        return if p.narrow_below { exact(p, exp) } else { even };
    }
    if may_be_halfway(&digits, exp, p) {
        exact(p, exp)
    } else {
        (digits, exp)
    }
}

/// When the float's exact decimal value has one digit more than the shortest output and so
/// ends in 5 (`1466451024462310.25` printed with 17 digits), the two candidates are equally
/// close: Postgres takes the even one (`…310.2`), Rust rounds up. Returns Postgres's digits
/// in that case.
fn tie(digits: &str, p: Parts) -> Option<(String, i32)> {
    let tz = p.m.trailing_zeros();
    let (m, e) = (p.m >> tz, p.e + tz as i32);
    // The exact value is m × 5^-e × 10^e: short enough only for small -e.
    if !(-27..0).contains(&e) {
        return None;
    }
    let x = m as u128 * 5u128.pow(e.unsigned_abs());
    if x.to_string().len() != digits.len() + 1 {
        return None;
    }
    let down = x / 10;
    let pick = if down.is_multiple_of(2) {
        down
    } else {
        down + 1
    };
    let text = pick.to_string();
    let exp = e + text.len() as i32;
    Some((text.trim_end_matches('0').to_owned(), exp))
}

/// Whether `digits × 10^(exp + 1 - len)` can be exactly halfway between two floats: such a
/// value is a dyadic rational whose odd part has `bits + 1` bits (`(2m ± 1) × 2^k`) for
/// normal floats. Subnormals are always checked exactly.
fn may_be_halfway(digits: &str, exp: i32, p: Parts) -> bool {
    if p.m < (1 << (p.bits - 1)) {
        return true;
    }
    let Ok(mut d) = digits.parse::<u128>() else {
        return true;
    };
    let k = exp + 1 - digits.len() as i32;
    if k < 0 {
        // Dyadic only if 5^-k divides the digits.
        for _ in 0..-k {
            if d % 5 != 0 {
                return false;
            }
            d /= 5;
        }
    } else {
        for _ in 0..k {
            match d.checked_mul(5) {
                Some(v) => d = v,
                None => return false, // the odd part is far wider than a mantissa
            }
        }
    }
    while d > 0 && d % 2 == 0 {
        d /= 2;
    }
    128 - d.leading_zeros() == p.bits + 1
}

/// An exact rational `n × 2^two × 10^ten` (`two`, `ten` may be negative), compared by
/// bringing both sides to integers.
#[derive(Clone)]
struct Q {
    n: Mag,
    two: i64,
    ten: i64,
}

impl Q {
    fn cmp(&self, o: &Q) -> Ordering {
        let two = self.two.min(o.two);
        let ten = self.ten.min(o.ten);
        let scale = |q: &Q| {
            q.n.mul_pow2((q.two - two) as usize)
                .mul_pow10((q.ten - ten) as usize)
        };
        scale(self).cmp(&scale(o))
    }

    /// `floor(self / 10^k)` as an integer.
    fn floor_div_pow10(&self, k: i64) -> Mag {
        let ten = self.ten - k;
        let (mut num, mut den) = (self.n.clone(), Mag::one());
        if self.two >= 0 {
            num = num.mul_pow2(self.two as usize);
        } else {
            den = den.mul_pow2((-self.two) as usize);
        }
        if ten >= 0 {
            num = num.mul_pow10(ten as usize);
        } else {
            den = den.mul_pow10((-ten) as usize);
        }
        num.divmod(&den).0
    }
}

fn q(n: Mag, two: i64, ten: i64) -> Q {
    Q { n, two, ten }
}

/// The shortest decimal strictly between the float's neighbours' midpoints, closest to the
/// float; `approx_exp` is the decimal exponent of the float or of its rounding up.
fn exact(p: Parts, approx_exp: i32) -> (String, i32) {
    let unit = p.e as i64 - 2; // values in quarters of the float's spacing
    let v = q(Mag::from_u128(4 * p.m as u128), unit, 0);
    let high = q(Mag::from_u128(4 * p.m as u128 + 2), unit, 0);
    let below = if p.narrow_below { 1 } else { 2 };
    let low = q(Mag::from_u128(4 * p.m as u128 - below), unit, 0);
    // The decimal exponent of v itself: approx_exp, or one less if rounding carried.
    let mut top = approx_exp as i64;
    if v.floor_div_pow10(top).is_zero() {
        top -= 1;
    }
    let inside = |c: &Q| low.cmp(c) == Ordering::Less && c.cmp(&high) == Ordering::Less;
    for n in 1..=20i64 {
        let k = top - n + 1;
        let d_low = v.floor_div_pow10(k);
        let d_high = d_low.add(&Mag::one());
        let c_low = q(d_low.clone(), 0, k);
        let c_high = q(d_high.clone(), 0, k);
        let chosen = match (inside(&c_low), inside(&c_high)) {
            (false, false) => continue,
            (true, false) => d_low,
            (false, true) => d_high,
            (true, true) => {
                // Closer of the two: compare 2v with c_low + c_high = (2·d_low + 1)·10^k.
                let twice_v = q(v.n.clone(), v.two + 1, 0);
                let mid = q(d_low.mul_small(2).add(&Mag::one()), 0, k);
                match twice_v.cmp(&mid) {
                    Ordering::Greater => d_high,
                    Ordering::Less => d_low,
                    // Equally close: the even one.
                    Ordering::Equal if d_low.divmod_small(2).1 == 0 => d_low,
                    Ordering::Equal => d_high,
                }
            }
        };
        let text = chosen.to_decimal();
        let exp = k + text.len() as i64 - 1;
        return (text.trim_end_matches('0').to_owned(), exp as i32);
    }
    // Unreachable for finite floats (17 digits always suffice); fall back to the float's
    // exact value rounded to 17 digits.
    let k = top - 16;
    let text = v.floor_div_pow10(k).to_decimal();
    let exp = k + text.len() as i64 - 1;
    (text.trim_end_matches('0').to_owned(), exp as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(x: f64) -> String {
        let (d, e) = digits_f64(x);
        format!("{d}e{e}")
    }

    #[test]
    fn halfway_values_are_avoided_like_postgres() {
        // Postgres: 3.1415900000000003e+20, 2.4999999999999998e+22, 9.999999999999999e+22.
        assert_eq!(show(3.14159e20), "31415900000000003e20");
        assert_eq!(show(2.5e22), "24999999999999998e22");
        assert_eq!(show(1e23), "9999999999999999e22");
        assert_eq!(show(1e22), "1e22");
        assert_eq!(show(1e20), "1e20");
        assert_eq!(show(0.1), "1e-1");
        assert_eq!(show(5e-324), "5e-324");
        assert_eq!(show(123456789012345678.0), "12345678901234568e17");
        // 1466451024462310.25: a tie at 17 digits, rounded to even.
        assert_eq!(show(-(1466451024462310.0 + 0.25)), "14664510244623102e15");
        // 2^-24 = 5.9604644775390625e-8: only the candidate above is close enough.
        assert_eq!(show(2f64.powi(-24)), "5960464477539063e-8");
        let (d, e) = digits_f32(16777216.0);
        assert_eq!((d.as_str(), e), ("16777216", 7));
    }

    #[test]
    fn exact_search_agrees_with_rust_away_from_bounds() {
        let mut x: u64 = 0x1234_5678_9abc_def0;
        for _ in 0..2000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let f = f64::from_bits(x >> 1);
            if !f.is_finite() || f == 0.0 {
                continue;
            }
            let rust = format!("{f:e}");
            let (m, e) = rust.split_once('e').unwrap();
            let d: String = m.chars().filter(|c| *c != '.').collect();
            let exp: i32 = e.parse().unwrap();
            let p = parts_f64(f);
            if !may_be_halfway(&d, exp, p) {
                assert_eq!(exact(p, exp), (d, exp), "{f:e}");
            }
        }
    }
}
