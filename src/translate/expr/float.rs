//! `real` / `double precision` text forms and conversions as Postgres 12+ does them.
//!
//! Output is the shortest text that reads back to the same value without being exactly
//! halfway between two floats (what Postgres prints with `extra_float_digits` ≥ 1, the
//! default; see [`super::shortest`]): fixed notation for decimal exponents in
//! `-4 ..= 14` (`double precision`) or `-4 ..= 5` (`real`), otherwise `1.5e-07` / `1e+16`.
//! Conversion to `numeric` goes through 15 (`real`: 6) significant digits, like
//! `float8_numeric`'s `%.15g`.

use super::numeric::{Numeric, is_pg_space};
use super::shortest;

/// `float8out`.
pub(crate) fn format_f64(x: f64) -> String {
    match special(x) {
        Some(s) => s.to_owned(),
        None => {
            let (digits, exp) = shortest::digits_f64(x);
            layout(x < 0.0, &digits, exp, 15)
        }
    }
}

/// `float4out`.
pub(crate) fn format_f32(x: f32) -> String {
    match special(x as f64) {
        Some(s) => s.to_owned(),
        None => {
            let (digits, exp) = shortest::digits_f32(x);
            layout(x < 0.0, &digits, exp, 6)
        }
    }
}

fn special(x: f64) -> Option<&'static str> {
    Some(if x.is_nan() {
        "NaN"
    } else if x == f64::INFINITY {
        "Infinity"
    } else if x == f64::NEG_INFINITY {
        "-Infinity"
    } else if x == 0.0 {
        if x.is_sign_negative() { "-0" } else { "0" }
    } else {
        return None;
    })
}

/// Writes `d.ddd × 10^exp` the way Postgres does: fixed notation for exponents in
/// `-4 .. sci_from`, otherwise `d.ddde±XX`.
fn layout(neg: bool, digits: &str, exp: i32, sci_from: i32) -> String {
    let mut out = String::with_capacity(digits.len() + 8);
    if neg {
        out.push('-');
    }
    if exp < -4 || exp >= sci_from {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    } else if exp < 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat((-exp - 1) as usize));
        out.push_str(digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(digits);
            out.push_str(&"0".repeat(int_len - digits.len()));
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

/// Why text is not a float.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FloatParseError {
    /// Not a number at all.
    Invalid,
    /// A number too large, or too small to be anything but zero.
    OutOfRange,
}

/// `float8in`: optional whitespace, a decimal number, `NaN`, `Infinity`, `inf` (any case).
pub(crate) fn parse_f64(text: &str) -> Result<f64, FloatParseError> {
    let s = checked_float_text(text)?;
    let x: f64 = s.parse().map_err(|_| FloatParseError::Invalid)?;
    range_check(s, x.is_infinite(), x == 0.0).map(|()| x)
}

/// `float4in`.
pub(crate) fn parse_f32(text: &str) -> Result<f32, FloatParseError> {
    let s = checked_float_text(text)?;
    let x: f32 = s.parse().map_err(|_| FloatParseError::Invalid)?;
    range_check(s, x.is_infinite(), x == 0.0).map(|()| x)
}

/// Trims whitespace and rejects what Rust would accept but `strtod` would not (or vice
/// versa in ways we do not follow, such as hexadecimal floats).
fn checked_float_text(text: &str) -> Result<&str, FloatParseError> {
    let s = text.trim_matches(is_pg_space);
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let ok = !body.is_empty()
        && (body.eq_ignore_ascii_case("nan")
            || body.eq_ignore_ascii_case("inf")
            || body.eq_ignore_ascii_case("infinity")
            || body
                .bytes()
                .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-')));
    if ok {
        Ok(s)
    } else {
        Err(FloatParseError::Invalid)
    }
}

/// Postgres rejects overflow to infinity and underflow to zero (denormals are fine).
fn range_check(s: &str, is_inf: bool, is_zero: bool) -> Result<(), FloatParseError> {
    let lower = s.to_ascii_lowercase();
    let literal_inf = lower.contains("inf");
    let mantissa = lower.split('e').next().unwrap_or("");
    let nonzero_digits = mantissa.bytes().any(|c| matches!(c, b'1'..=b'9'));
    if (is_inf && !literal_inf) || (is_zero && nonzero_digits) {
        Err(FloatParseError::OutOfRange)
    } else {
        Ok(())
    }
}

/// `float8_numeric`: 15 significant digits.
pub(crate) fn f64_to_numeric(x: f64) -> Numeric {
    float_to_numeric(x, 15)
}

/// `float4_numeric`: 6 significant digits.
pub(crate) fn f32_to_numeric(x: f32) -> Numeric {
    float_to_numeric(x as f64, 6)
}

fn float_to_numeric(x: f64, digits: usize) -> Numeric {
    if x.is_nan() {
        return Numeric::nan();
    }
    if x.is_infinite() {
        return Numeric::infinity(x < 0.0);
    }
    // `%.{digits}g` drops trailing zeros, so the scale is the smallest that shows the digits.
    let sci = format!("{:.*e}", digits - 1, x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let mantissa = if mantissa.contains('.') {
        mantissa.trim_end_matches('0').trim_end_matches('.')
    } else {
        mantissa
    };
    Numeric::parse(&format!("{mantissa}e{exp}")).unwrap_or_else(|_| Numeric::nan())
}

/// The `numeric` read from `float8out`'s text (what `to_jsonb` stores); finite `x` only.
pub(crate) fn f64_text_as_numeric(x: f64) -> Numeric {
    Numeric::parse(&format_f64(x)).unwrap_or_else(|_| Numeric::nan())
}

/// The `numeric` read from `float4out`'s text; finite `x` only.
pub(crate) fn f32_text_as_numeric(x: f32) -> Numeric {
    Numeric::parse(&format_f32(x)).unwrap_or_else(|_| Numeric::nan())
}

/// Postgres's `rint`-then-range-check conversion of a float to an integer type whose range
/// is `[min, max]`: rounds half to even, `None` when out of range or `NaN`.
pub(crate) fn float_to_int(x: f64, min: i64, max: i64) -> Option<i64> {
    let r = x.round_ties_even();
    // `max + 1` is a power of two, exactly representable, like Postgres's FITS_IN macros.
    if r.is_nan() || r < min as f64 || r >= (max as f64 + 1.0) {
        None
    } else {
        Some(r as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_matches_postgres() {
        let cases: [(f64, &str); 14] = [
            (1e15, "1e+15"),
            (1e16, "1e+16"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (123456789012345.0, "123456789012345"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-0.0, "-0"),
            (1e22, "1e+22"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (x, want) in cases {
            assert_eq!(format_f64(x), want);
        }
        assert_eq!(format_f32(1e6), "1e+06");
        assert_eq!(format_f32(123456.0), "123456");
        assert_eq!(format_f32(16777217.0), "1.6777216e+07");
        assert_eq!(format_f32(1.5e-5), "1.5e-05");
    }

    #[test]
    fn input_rejects_out_of_range() {
        assert_eq!(parse_f64(" 1.5 "), Ok(1.5));
        assert_eq!(parse_f64("-INF"), Ok(f64::NEG_INFINITY));
        assert!(parse_f64("nan").unwrap().is_nan());
        assert_eq!(parse_f64("1e400"), Err(FloatParseError::OutOfRange));
        assert_eq!(parse_f64("1e-400"), Err(FloatParseError::OutOfRange));
        assert_eq!(parse_f64("0e-400"), Ok(0.0));
        assert_eq!(parse_f64("abc"), Err(FloatParseError::Invalid));
        assert_eq!(parse_f64(""), Err(FloatParseError::Invalid));
        assert_eq!(parse_f32("1e39"), Err(FloatParseError::OutOfRange));
    }

    #[test]
    fn numeric_conversion_uses_fifteen_digits() {
        assert_eq!(f64_to_numeric(0.1).to_string(), "0.1");
        assert_eq!(f64_to_numeric(1e20).to_string(), "100000000000000000000");
        assert_eq!(
            f64_to_numeric(1.5e-20).to_string(),
            "0.000000000000000000015"
        );
        assert_eq!(
            f64_to_numeric(123456789.12345679).to_string(),
            "123456789.123457"
        );
        assert_eq!(f32_to_numeric(0.1).to_string(), "0.1");
    }

    #[test]
    fn float_to_int_rounds_half_even() {
        assert_eq!(float_to_int(2.5, i32::MIN as i64, i32::MAX as i64), Some(2));
        assert_eq!(float_to_int(3.5, i32::MIN as i64, i32::MAX as i64), Some(4));
        assert_eq!(
            float_to_int(2147483647.4, i32::MIN as i64, i32::MAX as i64),
            Some(i32::MAX as i64)
        );
        assert_eq!(
            float_to_int(2147483647.5, i32::MIN as i64, i32::MAX as i64),
            None
        );
        assert_eq!(float_to_int(9.3e18, i64::MIN, i64::MAX), None);
        assert_eq!(
            float_to_int(-9223372036854775808.0, i64::MIN, i64::MAX),
            Some(i64::MIN)
        );
        assert_eq!(float_to_int(f64::NAN, i64::MIN, i64::MAX), None);
    }
}
