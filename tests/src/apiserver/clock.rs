//! Timestamps as the apiserver writes them (RFC 3339, UTC) and kubectl's "AGE" rendering.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `2026-11-24T10:00:00Z`, the metav1.Time wire format.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (y, mo, day, h, mi, s) = split(d.as_secs());
    format!("{y:04}-{mo:02}-{day:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `2026-11-24T10:00:00.123456789Z`, the format of `kubectl logs --timestamps`.
pub(crate) fn rfc3339_nanos(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (y, mo, day, h, mi, s) = split(d.as_secs());
    let n = d.subsec_nanos();
    format!("{y:04}-{mo:02}-{day:02}T{h:02}:{mi:02}:{s:02}.{n:09}Z")
}

pub(crate) fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

fn split(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    (y, m, d, rem / 3600, (rem / 60) % 60, rem % 60)
}

/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe as i64 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = (y - era * 400) as u64;
    let m = u64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + u64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i64 - 719_468
}

/// Parses `YYYY-MM-DD[T ]HH:MM:SS[.frac][Z]` at the start of `s` (UTC assumed). Returns the
/// time and the number of bytes consumed.
pub(crate) fn parse_prefix(s: &str) -> Option<(SystemTime, usize)> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> { s.get(r)?.parse().ok() };
    if b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') || b[13] != b':' {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    let y = num(0..4)? as i64;
    let mo = num(5..7)? as u32;
    let d = num(8..10)? as u32;
    let h = num(11..13)?;
    let mi = num(14..16)?;
    let sec = num(17..19)?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut used = 19;
    let mut nanos = 0u32;
    if b.get(used) == Some(&b'.') {
        used += 1;
        let start = used;
        while used < b.len() && b[used].is_ascii_digit() {
            used += 1;
        }
        let frac = &s[start..used];
        let mut digits: String = frac.chars().take(9).collect();
        while digits.len() < 9 {
            digits.push('0');
        }
        nanos = digits.parse().unwrap_or(0);
    }
    if b.get(used) == Some(&b'Z') {
        used += 1;
    }
    let days = days_from_civil(y, mo, d);
    if days < 0 {
        return None;
    }
    let secs = days as u64 * 86_400 + h * 3600 + mi * 60 + sec;
    Some((UNIX_EPOCH + Duration::new(secs, nanos), used))
}

pub(crate) fn parse(s: &str) -> Option<SystemTime> {
    parse_prefix(s).map(|(t, _)| t)
}

/// apimachinery's `duration.HumanDuration`, used for the AGE column.
pub(crate) fn human_duration(since: SystemTime, now: SystemTime) -> String {
    let secs: i64 = match now.duration_since(since) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let s = rfc3339(t);
        assert_eq!(parse(&s), Some(t));
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            parse("2024-02-29 12:34:56.5").map(rfc3339_nanos),
            Some("2024-02-29T12:34:56.500000000Z".to_string())
        );
    }

    #[test]
    fn ages() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ago = |s: u64| human_duration(now - Duration::from_secs(s), now);
        assert_eq!(ago(5), "5s");
        assert_eq!(ago(125), "2m5s");
        assert_eq!(ago(3 * 3600 + 60), "3h1m");
        assert_eq!(ago(3 * 86_400), "3d");
    }
}
