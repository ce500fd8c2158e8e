//! Building responses: the one place that decides status and headers.

use std::cell::RefCell;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::Method;
use pingora_http::{RequestHeader, ResponseHeader};

use super::conditional::{self, RangeAnswer};
use crate::cache::{CachedObject, ObjectMeta};
use crate::metrics::Tier;

/// A response ready to write: header, and the body if there is one.
pub struct Answer {
    pub header: ResponseHeader,
    pub body: Bytes,
}

impl Answer {
    pub fn status(&self) -> u16 {
        self.header.status.as_u16()
    }
}

/// SVG can carry script; served from our origin it must not run.
const SVG_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; sandbox";

/// `503` for a limit reached (send budget, connections): try again after
/// `retry_after` seconds.
pub fn busy(method: &Method, retry_after: u64) -> Answer {
    let mut a = error(503, method);
    let _ = a.header.insert_header(header::RETRY_AFTER, retry_after);
    a
}

/// A bodyless-detail error. The text is the status reason only: no internal
/// error ever reaches a client.
pub fn error(status: u16, method: &Method) -> Answer {
    let text = match status {
        400 => "bad request\n",
        404 => "not found\n",
        403 => "forbidden\n",
        405 => "method not allowed\n",
        503 => "service unavailable\n",
        502 => "bad gateway\n",
        504 => "gateway timeout\n",
        422 => "unprocessable: the image is too large for this transform\n",
        _ => "error\n",
    };
    let mut h = ResponseHeader::build(status, Some(6)).expect("valid status");
    let _ = h.insert_header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
    let _ = h.insert_header(header::CONTENT_LENGTH, text.len());
    let _ = h.insert_header(header::CACHE_CONTROL, "no-store");
    let _ = h.insert_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if status == 405 {
        let _ = h.insert_header(header::ALLOW, "GET, HEAD");
    }
    let body = if method == Method::HEAD { Bytes::new() } else { Bytes::from_static(text.as_bytes()) };
    Answer { header: h, body }
}

/// `451 Unavailable For Legal Reasons` (RFC 7725): no detail beyond a link
/// to the policy page.
pub fn unavailable_for_legal_reasons(method: &Method, policy_link: Option<&str>) -> Answer {
    let mut a = error(451, method);
    let text = "unavailable for legal reasons\n";
    let _ = a.header.insert_header(header::CONTENT_LENGTH, text.len());
    if method != Method::HEAD {
        a.body = Bytes::from_static(text.as_bytes());
    }
    if let Some(link) = policy_link {
        let _ = a.header.insert_header(header::LINK, format!("<{link}>; rel=\"blocked-by\""));
    }
    a
}

/// Mark a restricted (warned) image: embedders and clients can tell, and the
/// viewer page shows an interstitial before it.
pub fn mark_restricted(header: &mut ResponseHeader) {
    let _ = header.insert_header(CONTENT_WARNING, HeaderValue::from_static("restricted"));
}

// Names of the headers set on every object response. As `&'static str`
// pingora turns them into header names without allocating (an `http`
// constant outside its short title-case list is first copied into a
// case-preserving name). Object responses keep no case map (see
// [`object_template`]), so pingora spells them on the wire: its title-case
// list (Content-Length, Content-Type, Cache-Control, Accept-Ranges, Date,
// Connection) and lower case for the rest; each is spelled here as it goes.
const ETAG: &str = "etag";
const X_CACHE: &str = "x-cache";
const CACHE_CONTROL: &str = "Cache-Control";
const ACCEPT_RANGES: &str = "Accept-Ranges";
const CONTENT_LENGTH: &str = "Content-Length";
const CONTENT_TYPE: &str = "Content-Type";
const CONTENT_RANGE: &str = "content-range";
const ALLOW_ORIGIN: &str = "access-control-allow-origin";
const NOSNIFF_NAME: &str = "x-content-type-options";
const CSP_NAME: &str = "content-security-policy";
const CONTENT_WARNING: &str = "x-content-warning";
const DATE: &str = "Date";
const CONNECTION: &str = "Connection";
/// Never sent: pingora overwrites it with the current date on every
/// response (`kept_alive_connections_end_at_their_deadlines` checks that a
/// served `Date` is current).
const DATE_PLACEHOLDER: &str = "Thu, 01 Jan 1970 00:00:00 GMT";

/// `public, max-age={max_age}, immutable`.
fn cache_control(max_age: u64) -> HeaderValue {
    HeaderValue::try_from(format!("public, max-age={max_age}, immutable")).expect("ASCII digits and text")
}

/// The header of a `200` object response from `tier`: built once per thread
/// and tier, and cloned for each response, which copies it without parsing,
/// hashing or formatting anything. `Cache-Control` (the configured max-age),
/// `Accept-Ranges`, `X-Cache`, CORS and `nosniff` are final;
/// `Content-Length`, `Content-Type` and `ETag` hold placeholders, in their
/// places, for [`object_header`] to replace or remove, and `Date` and
/// `Connection` for pingora, which sets both on every response it writes
/// (replacing a value in place spares the copy the growth of its header
/// map, a reallocation, that an added header costs).
///
/// The template has no case map (`build_no_case`): pingora's case-preserving
/// headers keep a second header map beside the values, which every clone,
/// insert and drop paid for again (−9% instructions per 2 KB hit without
/// it). Header names are case-insensitive in HTTP (and all lower case in
/// HTTP/2), so only the spelling of `etag` and `x-cache` on HTTP/1 changed.
fn object_template(tier: Tier, max_age: u64) -> ResponseHeader {
    thread_local! {
        static TEMPLATES: RefCell<Option<(u64, [ResponseHeader; 3])>> = const { RefCell::new(None) };
    }
    let build = |tier: Tier| {
        let mut h = ResponseHeader::build_no_case(200, Some(12)).expect("valid status");
        let _ = h.insert_header(CONTENT_LENGTH, HeaderValue::from_static("0"));
        let _ = h.insert_header(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        let _ = h.insert_header(ETAG, HeaderValue::from_static("\"\""));
        let _ = h.insert_header(CACHE_CONTROL, cache_control(max_age));
        let _ = h.insert_header(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        let _ = h.insert_header(X_CACHE, HeaderValue::from_static(tier.x_cache()));
        let _ = h.insert_header(ALLOW_ORIGIN, HeaderValue::from_static("*"));
        let _ = h.insert_header(NOSNIFF_NAME, HeaderValue::from_static("nosniff"));
        // Last, where pingora would have appended them.
        let _ = h.insert_header(DATE, HeaderValue::from_static(DATE_PLACEHOLDER));
        let _ = h.insert_header(CONNECTION, HeaderValue::from_static("keep-alive"));
        h
    };
    let at = match tier {
        Tier::Memory => 0,
        Tier::Disk => 1,
        Tier::Origin | Tier::None => 2,
    };
    TEMPLATES.with(|t| {
        let mut t = t.borrow_mut();
        match t.as_ref() {
            Some((n, templates)) if *n == max_age => templates[at].clone(),
            _ => {
                let templates = [build(Tier::Memory), build(Tier::Disk), build(Tier::Origin)];
                let h = templates[at].clone();
                *t = Some((max_age, templates));
                h
            }
        }
    })
}

/// The answer for a found object, honouring If-None-Match and Range.
pub fn object(req: &RequestHeader, obj: &CachedObject, tier: Tier, now: i64, max_age_secs: u64) -> Answer {
    let (header, range) = object_header(req, &obj.meta, obj.body.len() as u64, tier, now, max_age_secs);
    let body = match range {
        Some((start, end)) if start == 0 && end == obj.body.len() as u64 => obj.body.clone(),
        Some((start, end)) => obj.body.slice(start as usize..end as usize),
        None => Bytes::new(),
    };
    Answer { header, body }
}

/// The response header for an object of `len` bytes, honouring
/// If-None-Match and Range, and the body bytes to send (`start..end`), if
/// any (none for 304, 416 and HEAD).
pub fn object_header(
    req: &RequestHeader,
    meta: &ObjectMeta,
    len: u64,
    tier: Tier,
    now: i64,
    max_age_secs: u64,
) -> (ResponseHeader, Option<(u64, u64)>) {
    let max_age = match meta.expires_at {
        Some(e) => (e.saturating_sub(now).max(0) as u64).min(max_age_secs),
        None => max_age_secs,
    };
    let etag = meta.etag.as_bytes();

    let mut h = object_template(tier, max_age_secs);
    // Values are static or precomputed `HeaderValue`s: inserting them
    // neither parses nor copies.
    let common = |h: &mut ResponseHeader| {
        let _ = h.insert_header(ETAG, meta.etag.clone());
        if max_age != max_age_secs {
            // An expiry sooner than the max-age: the template's value replaced.
            let _ = h.insert_header(CACHE_CONTROL, cache_control(max_age));
        }
        if meta.format == imgcdn_shared::Format::Svg {
            let _ = h.insert_header(CSP_NAME, HeaderValue::from_static(SVG_CSP));
        }
    };

    if let Some(inm) = req.headers.get(header::IF_NONE_MATCH) {
        if conditional::none_match(inm.as_bytes(), etag) {
            let _ = h.set_status(304);
            h.remove_header(CONTENT_LENGTH);
            h.remove_header(CONTENT_TYPE);
            common(&mut h);
            return (h, None);
        }
    }

    let head = req.method == Method::HEAD;
    let answer = conditional::range(
        req.headers.get(header::RANGE).map(HeaderValue::as_bytes),
        req.headers.get(header::IF_RANGE).map(HeaderValue::as_bytes),
        etag,
        len,
    );
    let body = match answer {
        RangeAnswer::Full => {
            let _ = h.insert_header(CONTENT_LENGTH, meta.content_length(len));
            (0, len)
        }
        RangeAnswer::Partial { start, end } => {
            let _ = h.set_status(206);
            let _ = h.insert_header(CONTENT_LENGTH, end - start + 1);
            let _ = h.insert_header(CONTENT_RANGE, format!("bytes {start}-{end}/{len}"));
            (start, end + 1)
        }
        RangeAnswer::Unsatisfiable => {
            let _ = h.set_status(416);
            let _ = h.insert_header(CONTENT_RANGE, format!("bytes */{len}"));
            // The template's Content-Length is 0 already.
            h.remove_header(CONTENT_TYPE);
            common(&mut h);
            return (h, None);
        }
    };
    let _ = h.insert_header(CONTENT_TYPE, meta.content_type.clone());
    common(&mut h);
    (h, if head || len == 0 { None } else { Some(body) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_support::object as obj;

    fn req(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, b"/x", None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn hv<'a>(a: &'a Answer, name: &str) -> &'a str {
        a.header.headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
    }

    #[test]
    fn full_get_has_every_header() {
        let o = obj(b"0123456789", None);
        let a = object(&req("GET", &[]), &o, Tier::Memory, 0, 3600);
        assert_eq!(a.status(), 200);
        assert_eq!(&a.body[..], b"0123456789");
        assert_eq!(hv(&a, "content-length"), "10");
        assert_eq!(hv(&a, "content-type"), "image/png");
        assert_eq!(hv(&a, "etag"), format!("\"{}\"", o.meta.manifest.sha256));
        assert_eq!(hv(&a, "cache-control"), "public, max-age=3600, immutable");
        assert_eq!(hv(&a, "accept-ranges"), "bytes");
        assert_eq!(hv(&a, "X-Cache"), "HIT-MEMORY");
    }

    #[test]
    fn max_age_never_passes_expiry() {
        let o = obj(b"x", Some(1000));
        let a = object(&req("GET", &[]), &o, Tier::Origin, 900, 3600);
        assert_eq!(hv(&a, "cache-control"), "public, max-age=100, immutable");
        assert_eq!(hv(&a, "X-Cache"), "MISS");
    }

    #[test]
    fn head_has_length_but_no_body() {
        let o = obj(b"0123456789", None);
        let a = object(&req("HEAD", &[]), &o, Tier::Disk, 0, 60);
        assert_eq!(a.status(), 200);
        assert!(a.body.is_empty());
        assert_eq!(hv(&a, "content-length"), "10");
    }

    #[test]
    fn matching_etag_gives_304_without_body() {
        let o = obj(b"0123456789", None);
        let etag = o.meta.etag.to_str().unwrap().to_string();
        let a = object(&req("GET", &[("if-none-match", &etag)]), &o, Tier::Memory, 0, 60);
        assert_eq!(a.status(), 304);
        assert!(a.body.is_empty());
        assert_eq!(hv(&a, "etag"), etag);
    }

    #[test]
    fn ranges_give_206_and_416() {
        let o = obj(b"0123456789", None);
        let a = object(&req("GET", &[("range", "bytes=2-4")]), &o, Tier::Memory, 0, 60);
        assert_eq!(a.status(), 206);
        assert_eq!(&a.body[..], b"234");
        assert_eq!(hv(&a, "content-range"), "bytes 2-4/10");
        assert_eq!(hv(&a, "content-length"), "3");
        let a = object(&req("GET", &[("range", "bytes=10-")]), &o, Tier::Memory, 0, 60);
        assert_eq!(a.status(), 416);
        assert_eq!(hv(&a, "content-range"), "bytes */10");
    }

    #[test]
    fn shared_headers_follow_the_tier_and_max_age_of_each_response() {
        let o = obj(b"0123456789", None);
        let svg = {
            let mut m = imgcdn_shared::testing::png_manifest(b"<svg/>", None);
            m.content_type = "image/svg+xml".into();
            CachedObject::new(Bytes::from_static(b"<svg/>"), ObjectMeta::new(m).unwrap())
        };
        // One thread, responses of every tier and two max-ages in turn: each
        // has its own X-Cache and Cache-Control, and nothing of another's.
        for (tier, x_cache, max_age) in [
            (Tier::Memory, "HIT-MEMORY", 60),
            (Tier::Disk, "HIT-DISK", 60),
            (Tier::Origin, "MISS", 60),
            (Tier::Memory, "HIT-MEMORY", 120),
            (Tier::Disk, "HIT-DISK", 60),
        ] {
            let a = object(&req("GET", &[]), &o, tier, 0, max_age);
            assert_eq!(hv(&a, "X-Cache"), x_cache);
            assert_eq!(hv(&a, "cache-control"), format!("public, max-age={max_age}, immutable"));
            assert_eq!(hv(&a, "access-control-allow-origin"), "*");
            assert_eq!(hv(&a, "x-content-type-options"), "nosniff");
            assert_eq!(hv(&a, "content-security-policy"), "");
            // Eight of ours, and `Date` and `Connection` for pingora to
            // overwrite in place (that it does is tested end to end, in
            // tests/edge_limits.rs).
            assert_eq!(a.header.headers.len(), 10, "{:?}", a.header.headers);
            assert_eq!(hv(&a, "date"), DATE_PLACEHOLDER);
            let b = object(&req("GET", &[]), &svg, tier, 0, max_age);
            assert!(hv(&b, "content-security-policy").contains("sandbox"));
        }
        // A 304 carries the shared headers and the ETag, no length or type.
        let etag = o.meta.etag.to_str().unwrap().to_string();
        let a = object(&req("GET", &[("if-none-match", &etag)]), &o, Tier::Disk, 0, 60);
        assert_eq!(a.status(), 304);
        assert_eq!(hv(&a, "content-length"), "");
        assert_eq!(hv(&a, "content-type"), "");
        assert_eq!(hv(&a, "X-Cache"), "HIT-DISK");
        assert_eq!(hv(&a, "etag"), etag);
        // A 416 has a zero length and no type.
        let a = object(&req("GET", &[("range", "bytes=50-")]), &o, Tier::Memory, 0, 60);
        assert_eq!(a.status(), 416);
        assert_eq!(hv(&a, "content-length"), "0");
        assert_eq!(hv(&a, "content-type"), "");
        assert_eq!(hv(&a, "etag"), etag);
        // And the template is untouched by what a response changed.
        let a = object(&req("GET", &[]), &o, Tier::Disk, 0, 60);
        assert_eq!(a.status(), 200);
        assert_eq!(hv(&a, "content-length"), "10");
    }

    #[test]
    fn errors_carry_no_detail() {
        let a = error(502, &Method::GET);
        assert_eq!(&a.body[..], b"bad gateway\n");
        assert_eq!(hv(&a, "allow"), "");
        assert_eq!(hv(&error(405, &Method::POST), "allow"), "GET, HEAD");
        assert!(error(404, &Method::HEAD).body.is_empty());
    }
}
