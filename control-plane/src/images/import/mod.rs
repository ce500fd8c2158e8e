//! The server-side fetch behind URL import (`POST /v1/images` with
//! `{"url": …}`): download one image over HTTP(S) from a **public** address,
//! within a size and time limit.
//!
//! Fetching a URL a stranger hands us is server-side request forgery
//! waiting to happen, so every hop is checked before we connect:
//!
//! - only `http`/`https`, no `user:pass@`, at most [`MAX_URL_LEN`] long;
//! - the host is resolved here, and if **any** of its addresses is not
//!   public ([`is_public`]) the fetch is refused — stricter than picking a
//!   good one, and nothing to get wrong;
//! - the HTTP client of that hop can only connect to the addresses we
//!   validated: its resolver knows that one host and refuses every other
//!   name, so a second, different DNS answer (rebinding) is never asked
//!   for, and no proxy from the environment is used;
//! - redirects are followed by hand, each `Location` resolved against the
//!   current URL and validated like the first URL, with a fresh request
//!   that carries no cookies or credentials;
//! - a `Content-Length` over the limit is refused before the body; any
//!   other body is read chunk by chunk and cut off as soon as it passes the
//!   limit, so we never hold more than `max_bytes`;
//! - the whole thing (DNS, connects, redirects, body) runs under one
//!   deadline.

mod addresses;
mod client;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::header::LOCATION;
use reqwest::{StatusCode, Url};

pub use addresses::is_public;
use client::{read_body, send};

/// Longest URL accepted, first or after a redirect.
pub const MAX_URL_LEN: usize = 2048;
/// API.md: "30 s limit".
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_REDIRECTS: usize = 5;

/// Who is knocking, for the operators of the sites we fetch from.
pub(crate) const USER_AGENT: &str = "imgcdn-import/1 (+image import requested by an imgcdn user)";
/// Some hosts negotiate on Accept; ask for an image, take anything (the
/// upload path detects the real format from the bytes anyway).
pub(crate) const ACCEPT_VALUE: &str = "image/*,*/*;q=0.8";
/// A Content-Length is only a claim: pre-allocate at most this much for it.
pub(crate) const MAX_PREALLOCATION: u64 = 1 << 20;

/// Limits of one import.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// The plan's size limit: a body larger than this is refused.
    pub max_bytes: u64,
    /// The whole fetch, including DNS, redirects and the body.
    pub timeout: Duration,
    /// How many redirects are followed; one more is an error.
    pub max_redirects: usize,
    /// Test-only escape hatch: socket addresses allowed even though not public. Empty in production.
    pub allow: Vec<SocketAddr>,
}

impl FetchPolicy {
    /// `max_bytes` with the defaults of API.md: 30 s, 5 redirects, nothing
    /// non-public allowed.
    pub fn new(max_bytes: u64) -> FetchPolicy {
        FetchPolicy { max_bytes, timeout: DEFAULT_TIMEOUT, max_redirects: DEFAULT_MAX_REDIRECTS, allow: Vec::new() }
    }
}

/// A successfully fetched body.
pub struct Fetched {
    pub bytes: Vec<u8>,
    /// Where the bytes came from after redirects (without a fragment).
    pub final_url: String,
    /// As the server sent it; only a hint, never trusted for the format.
    pub content_type: Option<String>,
}

impl std::fmt::Debug for Fetched {
    // Not the bytes: a failing test or a log line would print megabytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched")
            .field("bytes", &self.bytes.len())
            .field("final_url", &self.final_url)
            .field("content_type", &self.content_type)
            .finish()
    }
}

/// Why an import fetch failed. The API answers all of these with
/// `fetch_failed`; the messages are safe to show to the user who sent the
/// URL (they name the kind of a blocked address, never the address).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not http(s), has userinfo, no host, too long, unparsable.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// The host (or a redirect's host) is or resolves to a non-public
    /// address; the string says which kind.
    #[error("not a public address ({0}); only public addresses can be imported")]
    Blocked(String),
    #[error("larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("timed out")]
    Timeout,
    /// The final answer was not 2xx.
    #[error("the server answered HTTP {0}")]
    Status(u16),
    #[error("too many redirects")]
    TooManyRedirects,
    #[error("network error: {0}")]
    Network(String),
}

/// Fetch `url` for an import: public addresses only, within `policy`.
pub async fn fetch_public(url: &str, policy: &FetchPolicy) -> Result<Fetched, FetchError> {
    match tokio::time::timeout(policy.timeout, fetch_within_deadline(url, policy)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(FetchError::Timeout),
    }
}

async fn fetch_within_deadline(url: &str, policy: &FetchPolicy) -> Result<Fetched, FetchError> {
    if url.len() > MAX_URL_LEN {
        return Err(too_long());
    }
    let parsed = Url::parse(url).map_err(|e| FetchError::InvalidUrl(e.to_string()))?;
    let mut url = checked_url(parsed)?;
    let mut redirects = 0;
    loop {
        let response = send(&url, policy).await?;
        let status = response.status();
        if !is_followed_redirect(status) {
            if !status.is_success() {
                return Err(FetchError::Status(status.as_u16()));
            }
            return read_body(response, url, policy).await;
        }
        if redirects == policy.max_redirects {
            return Err(FetchError::TooManyRedirects);
        }
        redirects += 1;
        let location = response
            .headers()
            .get(LOCATION)
            .ok_or(FetchError::Status(status.as_u16()))?
            .to_str()
            .map_err(|_| FetchError::InvalidUrl("redirect Location is not text".into()))?;
        let next = url.join(location).map_err(|e| FetchError::InvalidUrl(format!("redirect Location: {e}")))?;
        url = checked_url(next)?;
    }
}

/// The redirects a browser follows with a new GET; 300 (a choice), 304
/// and 305 are not redirects to follow.
fn is_followed_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

fn too_long() -> FetchError {
    FetchError::InvalidUrl(format!("longer than {MAX_URL_LEN} characters"))
}

/// The syntactic rules, for the first URL and every redirect target.
fn checked_url(mut url: Url) -> Result<Url, FetchError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::InvalidUrl("only http and https URLs can be imported".into()));
    }
    // Credentials in a URL would be sent to whoever the host turns out to
    // be, and are a classic way to disguise the real host.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(FetchError::InvalidUrl("a URL with a user name or password is not accepted".into()));
    }
    if url.host().is_none() {
        return Err(FetchError::InvalidUrl("the URL has no host".into()));
    }
    url.set_fragment(None);
    if url.as_str().len() > MAX_URL_LEN {
        return Err(too_long());
    }
    Ok(url)
}
