//! How the API writes times: RFC 3339 instants, and `YYYY-MM-DD` for the
//! day-granular dates we keep on purpose (API key creation and last use).

/// Seconds in a day.
pub const DAY: i64 = 86_400;

/// Unix seconds as RFC 3339 (`2026-01-01T00:00:00Z`).
pub fn iso(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Unix seconds truncated to 00:00 UTC of their day.
pub fn day(t: i64) -> i64 {
    t.div_euclid(DAY) * DAY
}

/// A window in days as people read it: `1 day`, `30 days`.
pub fn days_text(d: i64) -> String {
    if d == 1 {
        "1 day".into()
    } else {
        format!("{d} days")
    }
}

/// Unix seconds as the UTC date `YYYY-MM-DD`.
pub fn date(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t).map(|d| d.date().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(iso(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(day(1_767_225_600 + 3_700), 1_767_225_600);
        assert_eq!(date(1_767_225_600 + 3_700), "2026-01-01");
        assert_eq!((days_text(1), days_text(30)), ("1 day".to_string(), "30 days".to_string()));
    }
}
