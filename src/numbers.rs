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

/// The longest duration any flag takes: a year. Longer is no run's length, and a deadline
/// that far ahead overflows the clock (`--timeout 1e30` panicked).
pub const LONGEST: Duration = Duration::from_secs(366 * 24 * 3600);

/// A duration such as `90s`, `10m` or `1h 30m`, at most [`LONGEST`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write it like 90s, 10m or 1h"))?;
    at_most_a_year(s, d)
}

fn at_most_a_year(s: &str, d: Duration) -> Result<Duration, String> {
    if d > LONGEST {
        return Err(format!(
            "`{s}` is longer than a year, the longest any duration here may be"
        ));
    }
    Ok(d)
}

/// A duration, or a bare number of seconds (what the flag's old `-secs` name took).
pub fn secs_or_duration(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(n) if n >= 0.0 && n <= LONGEST.as_secs_f64() => Ok(Duration::from_secs_f64(n)),
        Ok(n) if n.is_finite() && n > 0.0 => at_most_a_year(s, LONGEST + Duration::from_secs(1)),
        _ => parse_duration(s),
    }
}

/// A duration, or a bare number of milliseconds (what the flag's old `-ms` name took).
pub fn millis_or_duration(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(n) if n >= 0.0 && n / 1000.0 <= LONGEST.as_secs_f64() => {
            Ok(Duration::from_secs_f64(n / 1000.0))
        }
        Ok(n) if n.is_finite() && n > 0.0 => at_most_a_year(s, LONGEST + Duration::from_secs(1)),
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
    fn durations_beyond_a_year_are_refused_not_a_panic() {
        assert_eq!(secs_or_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(secs_or_duration("1m"), Ok(Duration::from_secs(60)));
        for s in ["1e30", "inf", "400days", "1e300"] {
            let e = secs_or_duration(s).unwrap_err();
            assert!(
                e.contains("longer than a year") || e.contains("not a duration"),
                "{s}: {e}"
            );
        }
        assert!(millis_or_duration("1e30")
            .unwrap_err()
            .contains("longer than a year"));
        assert!(parse_duration("2years")
            .unwrap_err()
            .contains("longer than a year"));
    }

    #[test]
    fn groups_of_three_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }
}
