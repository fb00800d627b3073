//! Value comparison for the ordering operators (`>`, `>=`, `<`, `<=`) and the timestamp formats
//! `registeredAt` accepts.
//!
//! AWS documents the operators but not how `>` compares two strings. We compare the way a person
//! reading the expression would expect (a guess, written down in the crate docs): numbers as
//! numbers (`attribute:cores > 8`), dotted versions component by component
//! (`agentVersion < 1.14.5`), anything else as strings, byte by byte.

use std::cmp::Ordering;

/// An argument of an ordering comparison, parsed once when the expression is compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparable {
    pub text: String,
    number: Option<f64>,
    version: Option<Vec<u64>>,
}

impl Comparable {
    pub fn new(text: &str) -> Self {
        Comparable {
            text: text.to_owned(),
            number: parse_number(text),
            version: parse_version(text),
        }
    }

    /// Compares an instance's value (left) with this argument (right).
    pub fn compare_from(&self, left: &str) -> Ordering {
        if let (Some(l), Some(r)) = (parse_number(left), self.number) {
            // Both finite: `partial_cmp` cannot fail.
            return l.partial_cmp(&r).unwrap_or(Ordering::Equal);
        }
        if let (Some(l), Some(r)) = (parse_version(left), self.version.as_ref()) {
            return l.as_slice().cmp(r.as_slice());
        }
        left.cmp(self.text.as_str())
    }
}

fn parse_number(text: &str) -> Option<f64> {
    // `f64::from_str` accepts "inf" and "NaN"; attribute values like "nan" are words, not numbers.
    let plausible = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
        && text.chars().any(|c| c.is_ascii_digit());
    if !plausible {
        return None;
    }
    text.parse::<f64>().ok().filter(|n| n.is_finite())
}

fn parse_version(text: &str) -> Option<Vec<u64>> {
    if !text.contains('.') {
        return None;
    }
    text.split('.')
        .map(|part| part.parse::<u64>().ok())
        .collect()
}

/// Parses the `registeredAt` formats AWS lists (`2018-06-18T22:28:28+00:00`,
/// `2018-06-18T22:28:28Z`, `2018-06-18T22:28:28`, `2018-06-18`) into seconds since the Unix
/// epoch. A missing offset means UTC; a date alone means its midnight. Fractional seconds are
/// accepted and truncated, since `registeredAt` is kept in whole seconds.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        if part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut seconds = days_from_civil(year, month, day) * 86_400;
    if bytes.len() == 10 {
        return Some(seconds);
    }
    if bytes.len() < 19 || bytes[10] != b'T' || bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    seconds += hour * 3600 + minute * 60 + second;
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &fraction[digits..];
    }
    match rest {
        "" | "Z" => Some(seconds),
        offset if offset.len() == 6 && offset.as_bytes()[3] == b':' => {
            let sign = match offset.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hours: i64 = offset.get(1..3)?.parse().ok()?;
            let minutes: i64 = offset.get(4..6)?.parse().ok()?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            // Local time = UTC + offset, so UTC = local − offset.
            Some(seconds - sign * (hours * 3600 + minutes * 60))
        }
        _ => None,
    }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_every_documented_format() {
        let at = 1_529_360_908; // 2018-06-18T22:28:28Z
        assert_eq!(parse_timestamp("2018-06-18T22:28:28+00:00"), Some(at));
        assert_eq!(parse_timestamp("2018-06-18T22:28:28Z"), Some(at));
        assert_eq!(parse_timestamp("2018-06-18T22:28:28"), Some(at));
        assert_eq!(parse_timestamp("2018-06-18T22:28:28.123Z"), Some(at));
        assert_eq!(parse_timestamp("2018-06-19T00:28:28+02:00"), Some(at));
        assert_eq!(parse_timestamp("2018-06-18"), Some(1_529_280_000));
        assert_eq!(parse_timestamp("1970-01-01"), Some(0));
        for bad in [
            "2018-02-30",
            "2018-13-01",
            "2018-06-18T25:00:00",
            "18-06-18",
            "2018-06-18T22:28",
            "2018-06-18 22:28:28",
            "2018-06-18T22:28:28+0000",
            "yesterday",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers_versions_and_strings_compare_as_a_reader_expects() {
        assert_eq!(Comparable::new("8").compare_from("16"), Ordering::Greater);
        assert_eq!(Comparable::new("8.5").compare_from("16"), Ordering::Greater);
        assert_eq!(
            Comparable::new("1.14.5").compare_from("1.9.0"),
            Ordering::Less
        );
        assert_eq!(
            Comparable::new("1.14.5").compare_from("1.14.5"),
            Ordering::Equal
        );
        assert_eq!(Comparable::new("b").compare_from("a"), Ordering::Less);
        // Mixed: a number against a word falls back to strings.
        assert_eq!(Comparable::new("abc").compare_from("10"), Ordering::Less);
        assert_eq!(Comparable::new("nan").compare_from("inf"), Ordering::Less);
    }
}
