//! Conditional and range requests, as pure functions of the request
//! headers and the object's ETag and length (RFC 9110 §13, §14).

/// `If-None-Match` matches `etag` (weak comparison, as the RFC requires for
/// this header; `*` matches any existing representation).
pub fn none_match(if_none_match: &[u8], etag: &[u8]) -> bool {
    let Ok(list) = std::str::from_utf8(if_none_match) else {
        return false;
    };
    let etag = std::str::from_utf8(etag).unwrap_or("");
    list.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// What to send for a `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// Ignore the header: send the whole body (no header, a header we do not
    /// understand, several ranges, or an If-Range that no longer matches).
    Full,
    /// 206 with bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416: the range starts past the end.
    Unsatisfiable,
}

/// Interpret `Range` (and `If-Range`) for a body of `len` bytes.
pub fn range(range: Option<&[u8]>, if_range: Option<&[u8]>, etag: &[u8], len: u64) -> RangeAnswer {
    let Some(range) = range else {
        return RangeAnswer::Full;
    };
    // If-Range needs a strong match; a date validator never matches (we send no Last-Modified).
    if if_range.is_some_and(|v| v != etag) {
        return RangeAnswer::Full;
    }
    let Ok(spec) = std::str::from_utf8(range) else {
        return RangeAnswer::Full;
    };
    let Some(set) = spec.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Full;
    };
    if set.contains(',') {
        // Multipart ranges are allowed to be ignored; a full 200 is correct.
        return RangeAnswer::Full;
    }
    let Some((first, last)) = set.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let num = |s: &str| -> Option<Option<u64>> {
        if s.is_empty() {
            Some(None)
        } else if s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().ok().map(Some)
        } else {
            None
        }
    };
    let (Some(first), Some(last)) = (num(first.trim()), num(last.trim())) else {
        return RangeAnswer::Full;
    };
    match (first, last) {
        (Some(start), last) => {
            if last.is_some_and(|l| l < start) {
                return RangeAnswer::Full; // invalid: ignore
            }
            if start >= len {
                return RangeAnswer::Unsatisfiable;
            }
            let end = last.map_or(len - 1, |l| l.min(len - 1));
            RangeAnswer::Partial { start, end }
        }
        (None, Some(suffix)) => {
            if suffix == 0 || len == 0 {
                return RangeAnswer::Unsatisfiable;
            }
            RangeAnswer::Partial { start: len.saturating_sub(suffix), end: len - 1 }
        }
        (None, None) => RangeAnswer::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeAnswer::*;

    const ETAG: &[u8] = b"\"abc\"";

    fn r(h: &str, len: u64) -> RangeAnswer {
        range(Some(h.as_bytes()), None, ETAG, len)
    }

    #[test]
    fn if_none_match_forms() {
        assert!(none_match(b"\"abc\"", ETAG));
        assert!(none_match(b"W/\"abc\"", ETAG));
        assert!(none_match(b"\"x\", \"abc\"", ETAG));
        assert!(none_match(b"*", ETAG));
        assert!(!none_match(b"\"abd\"", ETAG));
        assert!(!none_match(b"abc", ETAG));
    }

    #[test]
    fn single_ranges() {
        assert_eq!(r("bytes=0-9", 100), Partial { start: 0, end: 9 });
        assert_eq!(r("bytes=90-", 100), Partial { start: 90, end: 99 });
        assert_eq!(r("bytes=90-500", 100), Partial { start: 90, end: 99 });
        assert_eq!(r("bytes=-10", 100), Partial { start: 90, end: 99 });
        assert_eq!(r("bytes=-500", 100), Partial { start: 0, end: 99 });
        assert_eq!(r("bytes=99-99", 100), Partial { start: 99, end: 99 });
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(r("bytes=100-", 100), Unsatisfiable);
        assert_eq!(r("bytes=200-300", 100), Unsatisfiable);
        assert_eq!(r("bytes=-0", 100), Unsatisfiable);
    }

    #[test]
    fn ignored_ranges() {
        for h in ["items=0-1", "bytes=5-1", "bytes=a-b", "bytes=0-1,5-6", "bytes=-", "bytes=1"] {
            assert_eq!(r(h, 100), Full, "{h}");
        }
        assert_eq!(range(None, None, ETAG, 100), Full);
    }

    #[test]
    fn if_range_must_match_strongly() {
        assert_eq!(range(Some(b"bytes=0-1"), Some(ETAG), ETAG, 10), Partial { start: 0, end: 1 });
        assert_eq!(range(Some(b"bytes=0-1"), Some(b"\"old\""), ETAG, 10), Full);
        assert_eq!(range(Some(b"bytes=0-1"), Some(b"W/\"abc\""), ETAG, 10), Full);
    }
}
