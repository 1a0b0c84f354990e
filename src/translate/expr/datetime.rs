//! `date`, `timestamp` and `timestamptz` in Postgres's own representation: days or
//! microseconds since 2000-01-01 (UTC for `timestamptz`), with the extreme values of the
//! integer type standing for `-infinity` / `infinity`.
//!
//! Text forms are those of `DateStyle = ISO` with `TimeZone = UTC`: `2024-01-02`,
//! `2024-01-02 03:04:05.123456`, `2024-01-02 03:04:05.123456+00`, years before 1 AD as
//! `0044-03-15 BC`, years past 9999 in full. Parsing accepts any UTC offset
//! (`+05:30`, `-03:00:00`) and converts to UTC.

/// Days from 1970-01-01 to 2000-01-01.
const UNIX_TO_PG_DAYS: i64 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
pub(crate) const UNIX_TO_PG_USECS: i64 = UNIX_TO_PG_DAYS * USECS_PER_DAY;
/// Microseconds per day.
pub(crate) const USECS_PER_DAY: i64 = 86_400_000_000;

/// `date` `-infinity`.
pub(crate) const DATE_NEG_INF: i32 = i32::MIN;
/// `date` `infinity`.
pub(crate) const DATE_POS_INF: i32 = i32::MAX;
/// `timestamp` `-infinity`.
pub(crate) const TS_NEG_INF: i64 = i64::MIN;
/// `timestamp` `infinity`.
pub(crate) const TS_POS_INF: i64 = i64::MAX;

/// First valid date: 4714-11-24 BC (Julian day 0), in days since 2000-01-01.
const DATE_MIN: i64 = -2_451_545;
/// Last valid date: 5874897-12-31.
const DATE_MAX: i64 = 2_147_483_494 - 2_451_545 - 1;
/// First valid timestamp (4714-11-24 00:00:00 BC).
const TS_MIN: i64 = DATE_MIN * USECS_PER_DAY;
/// One past the last valid timestamp (294277-01-01 00:00:00).
const TS_END: i64 = 9_223_371_331_200_000_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (astronomical year: 0 = 1 BC).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Why date/time text was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DateTimeError {
    /// Not in the accepted format.
    Invalid,
    /// Well-formed but outside Postgres's range.
    OutOfRange,
}

/// A parsed `YYYY-MM-DD[ HH:MM:SS[.ffffff][±HH[:MM[:SS]]]][ BC]`.
struct Parts {
    days: i64,
    usecs_of_day: i64,
    offset_secs: Option<i64>,
    has_time: bool,
}

/// A tiny cursor over ASCII text.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, min: usize, max: usize) -> Option<i64> {
        let start = self.i;
        while self.i < self.b.len() && self.i - start < max && self.b[self.i].is_ascii_digit() {
            self.i += 1;
        }
        if self.i - start < min {
            return None;
        }
        self.b[start..self.i].iter().try_fold(0i64, |acc, &c| {
            acc.checked_mul(10)?.checked_add((c - b'0') as i64)
        })
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn at_end(&self) -> bool {
        self.i == self.b.len()
    }
}

fn parse_parts(text: &str, allow_t: bool) -> Result<Parts, DateTimeError> {
    use DateTimeError::Invalid;
    let (body, bc) = match text.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (text, false),
    };
    let mut c = Cursor {
        b: body.as_bytes(),
        i: 0,
    };
    let year = c.digits(4, 9).ok_or(Invalid)?;
    if !c.eat(b'-') {
        return Err(Invalid);
    }
    let month = c.digits(2, 2).ok_or(Invalid)? as u32;
    if !c.eat(b'-') {
        return Err(Invalid);
    }
    let day = c.digits(2, 2).ok_or(Invalid)? as u32;
    if year == 0 || !(1..=12).contains(&month) || day == 0 || day > 31 {
        return Err(DateTimeError::OutOfRange);
    }
    let astro_year = if bc { 1 - year } else { year };
    if day > days_in_month(astro_year, month) {
        return Err(DateTimeError::OutOfRange);
    }
    let days = days_from_civil(astro_year, month, day) - UNIX_TO_PG_DAYS;
    let mut parts = Parts {
        days,
        usecs_of_day: 0,
        offset_secs: None,
        has_time: false,
    };
    if c.at_end() {
        return Ok(parts);
    }
    if !(c.eat(b' ') || (allow_t && c.eat(b'T'))) {
        return Err(Invalid);
    }
    let hour = c.digits(2, 2).ok_or(Invalid)?;
    if !c.eat(b':') {
        return Err(Invalid);
    }
    let minute = c.digits(2, 2).ok_or(Invalid)?;
    if !c.eat(b':') {
        return Err(Invalid);
    }
    let second = c.digits(2, 2).ok_or(Invalid)?;
    let mut usecs = 0;
    if c.eat(b'.') {
        let start = c.i;
        let frac = c.digits(1, 6).ok_or(Invalid)?;
        usecs = frac * 10i64.pow((6 - (c.i - start)) as u32);
        if c.b.get(c.i).is_some_and(u8::is_ascii_digit) {
            return Err(Invalid); // more than microsecond precision
        }
    }
    // 24:00:00 is valid in Postgres and means the end of the day.
    if minute > 59
        || second > 59
        || hour > 24
        || (hour == 24 && (minute, second, usecs) != (0, 0, 0))
    {
        return Err(DateTimeError::OutOfRange);
    }
    parts.usecs_of_day = ((hour * 60 + minute) * 60 + second) * 1_000_000 + usecs;
    parts.has_time = true;
    if let Some(&sign @ (b'+' | b'-')) = c.b.get(c.i) {
        c.i += 1;
        let h = c.digits(2, 2).ok_or(Invalid)?;
        let mut secs = h * 3600;
        if c.eat(b':') {
            secs += c.digits(2, 2).ok_or(Invalid)? * 60;
            if c.eat(b':') {
                secs += c.digits(2, 2).ok_or(Invalid)?;
            }
        }
        parts.offset_secs = Some(if sign == b'-' { -secs } else { secs });
    }
    if !c.at_end() {
        return Err(Invalid);
    }
    Ok(parts)
}

/// Parses a `date` in ISO output form (or `infinity` / `-infinity`).
pub(crate) fn parse_date(text: &str) -> Result<i32, DateTimeError> {
    match text {
        "infinity" => return Ok(DATE_POS_INF),
        "-infinity" => return Ok(DATE_NEG_INF),
        _ => {}
    }
    let p = parse_parts(text, false)?;
    if p.has_time {
        return Err(DateTimeError::Invalid);
    }
    if !(DATE_MIN..=DATE_MAX).contains(&p.days) {
        return Err(DateTimeError::OutOfRange);
    }
    Ok(p.days as i32)
}

/// Parses a `timestamp` (`with_zone = false`) or `timestamptz` in ISO output form. A
/// `timestamptz` without an offset is taken as UTC; a `timestamp` with one is rejected.
/// `literal` also accepts a date alone (midnight) and `T` between date and time.
pub(crate) fn parse_timestamp(
    text: &str,
    with_zone: bool,
    literal: bool,
) -> Result<i64, DateTimeError> {
    match text {
        "infinity" => return Ok(TS_POS_INF),
        "-infinity" => return Ok(TS_NEG_INF),
        _ => {}
    }
    let p = parse_parts(text, literal)?;
    if (!p.has_time && !literal) || (p.offset_secs.is_some() && !with_zone) {
        return Err(DateTimeError::Invalid);
    }
    let local = (p.days as i128) * USECS_PER_DAY as i128 + p.usecs_of_day as i128;
    let utc = local - p.offset_secs.unwrap_or(0) as i128 * 1_000_000;
    if utc < TS_MIN as i128 || utc >= TS_END as i128 {
        return Err(DateTimeError::OutOfRange);
    }
    Ok(utc as i64)
}

/// Year (as printed, with BC flag), month, day of a day count since 2000-01-01.
fn ymd(days: i64) -> (i64, u32, u32, bool) {
    let (y, m, d) = civil_from_days(days + UNIX_TO_PG_DAYS);
    if y <= 0 {
        (1 - y, m, d, true)
    } else {
        (y, m, d, false)
    }
}

/// `date_out`.
pub(crate) fn format_date(days: i32) -> String {
    match days {
        DATE_POS_INF => "infinity".to_owned(),
        DATE_NEG_INF => "-infinity".to_owned(),
        _ => {
            let (y, m, d, bc) = ymd(days as i64);
            format!("{y:04}-{m:02}-{d:02}{}", if bc { " BC" } else { "" })
        }
    }
}

/// How a timestamp is written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum TsStyle {
    /// `timestamp_out`: `2024-01-02 03:04:05.5`.
    Plain,
    /// `timestamptz_out` in UTC: `2024-01-02 03:04:05.5+00`.
    Zoned,
    /// `to_jsonb(timestamp)`: `2024-01-02T03:04:05.5`.
    JsonPlain,
    /// `to_jsonb(timestamptz)` in UTC: `2024-01-02T03:04:05.5+00:00`.
    JsonZoned,
}

/// Writes a timestamp (microseconds since 2000-01-01) in `style`.
pub(crate) fn format_timestamp(usecs: i64, style: TsStyle) -> String {
    match usecs {
        TS_POS_INF => return "infinity".to_owned(),
        TS_NEG_INF => return "-infinity".to_owned(),
        _ => {}
    }
    let days = usecs.div_euclid(USECS_PER_DAY);
    let tod = usecs.rem_euclid(USECS_PER_DAY);
    let (y, m, d, bc) = ymd(days);
    let secs = tod / 1_000_000;
    let frac = tod % 1_000_000;
    let sep = if matches!(style, TsStyle::JsonPlain | TsStyle::JsonZoned) {
        'T'
    } else {
        ' '
    };
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}{sep}{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if frac != 0 {
        let f = format!("{frac:06}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    match style {
        TsStyle::Zoned => out.push_str("+00"),
        TsStyle::JsonZoned => out.push_str("+00:00"),
        TsStyle::Plain | TsStyle::JsonPlain => {}
    }
    if bc {
        out.push_str(" BC");
    }
    out
}

/// `date` → `timestamp`: midnight; `None` past the timestamp range.
pub(crate) fn date_to_timestamp(days: i32) -> Option<i64> {
    match days {
        DATE_POS_INF => Some(TS_POS_INF),
        DATE_NEG_INF => Some(TS_NEG_INF),
        _ => {
            let us = (days as i64).checked_mul(USECS_PER_DAY)?;
            (us < TS_END).then_some(us)
        }
    }
}

/// `timestamp` → `date`: the calendar day.
pub(crate) fn timestamp_to_date(usecs: i64) -> i32 {
    match usecs {
        TS_POS_INF => DATE_POS_INF,
        TS_NEG_INF => DATE_NEG_INF,
        _ => usecs.div_euclid(USECS_PER_DAY) as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for z in (-3_000_000..3_000_000).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(days_from_civil(2000, 1, 1), UNIX_TO_PG_DAYS);
        assert_eq!(days_from_civil(-4713, 11, 24) - UNIX_TO_PG_DAYS, DATE_MIN);
    }

    #[test]
    fn text_forms_round_trip() {
        for text in [
            "2024-01-02",
            "0044-03-15 BC",
            "4714-11-24 BC",
            "12345-01-01",
            "5874897-12-31",
            "infinity",
            "-infinity",
        ] {
            assert_eq!(format_date(parse_date(text).unwrap()), text);
        }
        for text in [
            "2024-01-02 03:04:05.123456",
            "2024-01-02 03:04:05.1",
            "1999-12-31 23:59:59",
            "0044-03-15 12:00:00.5 BC",
            "294276-12-31 23:59:59.999999",
        ] {
            let us = parse_timestamp(text, false, false).unwrap();
            assert_eq!(format_timestamp(us, TsStyle::Plain), text);
        }
        let us = parse_timestamp("2024-01-02 08:34:05.5+05:30", true, false).unwrap();
        assert_eq!(
            format_timestamp(us, TsStyle::Zoned),
            "2024-01-02 03:04:05.5+00"
        );
        assert_eq!(
            format_timestamp(us, TsStyle::JsonZoned),
            "2024-01-02T03:04:05.5+00:00"
        );
    }

    #[test]
    fn bad_text_is_rejected() {
        assert_eq!(parse_date("2023-02-29"), Err(DateTimeError::OutOfRange));
        assert_eq!(parse_date("0000-01-01"), Err(DateTimeError::OutOfRange));
        assert_eq!(parse_date("5874898-01-01"), Err(DateTimeError::OutOfRange));
        assert_eq!(parse_date("24-01-01"), Err(DateTimeError::Invalid));
        assert_eq!(
            parse_timestamp("2024-01-01", false, false),
            Err(DateTimeError::Invalid)
        );
        assert_eq!(
            parse_timestamp("294277-01-01 00:00:00", false, false),
            Err(DateTimeError::OutOfRange)
        );
        assert_eq!(
            parse_timestamp("2024-01-01 00:00:00+01", false, true),
            Err(DateTimeError::Invalid)
        );
        assert!(parse_timestamp("2024-01-01T00:00:00", false, true).is_ok());
    }
}
