//! Numbers as people read them, and durations as people write them.

use std::time::Duration;

/// Thousands separators: 10000 → 10,000.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A figure with its unit, to three significant digits or so: `61.2 ms`, `100%`, `2000
/// events/s`, `3` (a count has no unit).
pub fn with_unit(v: f64, unit: &str) -> String {
    let n = if (unit.is_empty() && v.fract() == 0.0) || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    match unit {
        "" => n,
        "%" => format!("{n}%"),
        u => format!("{n} {u}"),
    }
}

/// A duration such as `90s`, `10m` or `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write it like 90s, 10m or 1h"))
}

/// A duration, or a bare number of seconds (what the flag's old `-secs` name took).
pub fn secs_or_duration(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(n) if n >= 0.0 && n.is_finite() => Ok(Duration::from_secs_f64(n)),
        _ => parse_duration(s),
    }
}

/// A duration, or a bare number of milliseconds (what the flag's old `-ms` name took).
pub fn millis_or_duration(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(n) if n >= 0.0 && n.is_finite() => Ok(Duration::from_secs_f64(n / 1000.0)),
        _ => parse_duration(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_carry_their_unit() {
        assert_eq!(with_unit(61.24, "ms"), "61.2 ms");
        assert_eq!(with_unit(100.0, "%"), "100%");
        assert_eq!(with_unit(2.0, ""), "2");
    }

    #[test]
    fn groups_of_three_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }
}
