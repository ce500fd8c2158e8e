//! `ttl` on upload and `PATCH`: seconds (`3600`) or a number with a unit
//! (`5m`, `2h`, `7d`), between 300 seconds and 90 days. What it leads to is
//! the retention policy's decision ([`crate::retention::policy`]): a ttl
//! can only shorten a window.

pub const MIN_TTL: i64 = 300;
pub const MAX_TTL: i64 = 90 * 86_400;

/// Parse and bound-check a ttl; the error is the user-facing reason.
pub fn parse(raw: &str) -> Result<i64, String> {
    let raw = raw.trim();
    let (num, unit) = match raw.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&raw[..i], &raw[i..]),
        None => (raw, "s"),
    };
    let n: i64 = num.parse().map_err(|_| format!("ttl {raw:?} is not a number of seconds or like 5m, 2h, 7d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("ttl unit {unit:?} is not one of s, m, h, d")),
    };
    let secs = n.checked_mul(mult).ok_or_else(|| "ttl is too large".to_string())?;
    if !(MIN_TTL..=MAX_TTL).contains(&secs) {
        return Err("ttl must be between 300 seconds (5m) and 90 days (90d)".to_string());
    }
    Ok(secs)
}

/// A `ttl` given in JSON: seconds as a number, or a string like `7d`;
/// `null` or absent = none.
pub fn from_json(v: Option<&serde_json::Value>) -> Result<Option<i64>, String> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => parse(&n.to_string()).map(Some),
        Some(serde_json::Value::String(s)) => parse(s).map(Some),
        Some(_) => Err("ttl is seconds or a string like 7d.".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::{from_json, parse};

    #[test]
    fn json_forms() {
        assert_eq!(from_json(None), Ok(None));
        assert_eq!(from_json(Some(&serde_json::json!(null))), Ok(None));
        assert_eq!(from_json(Some(&serde_json::json!(600))), Ok(Some(600)));
        assert_eq!(from_json(Some(&serde_json::json!("2h"))), Ok(Some(7200)));
        assert!(from_json(Some(&serde_json::json!([1]))).is_err());
        assert!(from_json(Some(&serde_json::json!(5))).is_err());
    }

    #[test]
    fn forms_and_bounds() {
        assert_eq!(parse("300"), Ok(300));
        assert_eq!(parse("5m"), Ok(300));
        assert_eq!(parse("2h"), Ok(7200));
        assert_eq!(parse("7d"), Ok(604_800));
        assert_eq!(parse("90d"), Ok(7_776_000));
        for bad in ["299", "4m", "91d", "", "abc", "5w", "-5m", "1.5h", "99999999999999999999d"] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
