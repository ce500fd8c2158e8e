//! How values read on a page: times, sizes, counts and windows of days,
//! written once so every page says them the same way.

use maud::{html, Markup};

/// A time of the API (RFC 3339) as a `<time>` a person reads:
/// `2026-12-02 11:52 UTC`. A day-granular date (`2026-12-02`, as API keys
/// record their use) or anything else is shown as it is.
pub fn when(iso: &str) -> Markup {
    let shown = match (iso.get(..10), iso.get(10..11), iso.get(11..16)) {
        (Some(day), Some("T"), Some(time)) => format!("{day} {time} UTC"),
        _ => iso.to_string(),
    };
    html! { time datetime=(iso) { (shown) } }
}

/// Unix seconds as [`when`] shows them.
pub fn when_unix(t: i64) -> Markup {
    when(&crate::dates::iso(t))
}

/// A moment as people write it in a sentence: `31 January 2026 at 01:05 UTC`.
pub fn long_date(t: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(t) {
        Ok(d) => format!("{} {} {} at {:02}:{:02} UTC", d.day(), d.month(), d.year(), d.hour(), d.minute()),
        Err(_) => String::new(),
    }
}

/// A size in decimal units, as labelled (1 KB = 1000 bytes): `812 bytes`,
/// `1.4 MB`, `20 MB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return plural(n as i64, "byte");
    }
    let mut v = n as f64 / 1000.0;
    let mut unit = 0;
    // 999 950 bytes reads `1 MB`, not `1000.0 KB`.
    while v >= 999.95 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    let number = format!("{v:.1}");
    format!("{} {}", number.strip_suffix(".0").unwrap_or(&number), UNITS[unit])
}

/// `1 image`, `3 images`.
pub fn plural(n: i64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_people_write_them() {
        assert_eq!(
            when("2026-01-01T09:30:00Z").into_string(),
            "<time datetime=\"2026-01-01T09:30:00Z\">2026-01-01 09:30 UTC</time>"
        );
        assert_eq!(when("2026-01-01").into_string(), "<time datetime=\"2026-01-01\">2026-01-01</time>");
        assert_eq!(when("").into_string(), "<time datetime=\"\"></time>");
        assert_eq!(
            when_unix(1_767_225_600 + 7 * 86_400 + 3_600).into_string(),
            "<time datetime=\"2026-01-08T01:00:00Z\">2026-01-08 01:00 UTC</time>"
        );
        assert_eq!(long_date(1_767_225_600 + 30 * 86_400 + 3_900), "31 January 2026 at 01:05 UTC");
    }

    #[test]
    fn sizes_are_decimal_as_labelled() {
        assert_eq!(bytes(1), "1 byte");
        assert_eq!(bytes(812), "812 bytes");
        assert_eq!(bytes(1_000), "1 KB");
        assert_eq!(bytes(500_000), "500 KB");
        assert_eq!(bytes(1_400_000), "1.4 MB");
        assert_eq!(bytes(1_048_576), "1 MB");
        assert_eq!(bytes(20_000_000), "20 MB");
        assert_eq!(bytes(999_950), "1 MB");
        assert_eq!(bytes(2_000_000_000), "2 GB");
    }

    #[test]
    fn counts_and_windows() {
        assert_eq!(plural(1, "image"), "1 image");
        assert_eq!(plural(3, "image"), "3 images");
        assert_eq!(plural(0, "live session"), "0 live sessions");
    }
}
