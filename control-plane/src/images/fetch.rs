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

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use reqwest::{StatusCode, Url};

/// Longest URL accepted, first or after a redirect.
pub const MAX_URL_LEN: usize = 2048;
/// API.md: "30 s limit".
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_REDIRECTS: usize = 5;

/// Who is knocking, for the operators of the sites we fetch from.
const USER_AGENT: &str = "imgcdn-import/1 (+image import requested by an imgcdn user)";
/// Some hosts negotiate on Accept; ask for an image, take anything (the
/// upload path detects the real format from the bytes anyway).
const ACCEPT_VALUE: &str = "image/*,*/*;q=0.8";
/// A Content-Length is only a claim: pre-allocate at most this much for it.
const MAX_PREALLOCATION: u64 = 1 << 20;

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

/// Whether `ip` is a globally routable unicast address, i.e. one an import
/// may connect to: not loopback, unspecified, private, link-local (cloud
/// metadata), shared/CGNAT, documentation, benchmarking, multicast,
/// broadcast, reserved, or an IPv6 form embedding such an IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    non_public_kind(ip).is_none()
}

/// The kind of a non-public address (`None` when public). An explicit
/// table rather than `std`'s `is_global`, which is unstable, and so a
/// reviewer can check each range against the IANA special-purpose
/// registries.
fn non_public_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => v6_kind(v6),
    }
}

/// IPv4 special-purpose ranges (RFC 6890 and successors). Order matters
/// only where ranges nest: broadcast is named before the reserved /4 it
/// lies in.
const V4_RANGES: &[([u8; 4], u32, &str)] = &[
    ([0, 0, 0, 0], 8, "unspecified"),
    ([10, 0, 0, 0], 8, "private"),
    ([100, 64, 0, 0], 10, "shared (carrier-grade NAT)"),
    ([127, 0, 0, 0], 8, "loopback"),
    // Includes 169.254.169.254, the cloud metadata service.
    ([169, 254, 0, 0], 16, "link-local"),
    ([172, 16, 0, 0], 12, "private"),
    ([192, 0, 0, 0], 24, "IETF protocol assignment"),
    ([192, 0, 2, 0], 24, "documentation"),
    ([192, 88, 99, 0], 24, "6to4 relay anycast"),
    ([192, 168, 0, 0], 16, "private"),
    ([198, 18, 0, 0], 15, "benchmarking"),
    ([198, 51, 100, 0], 24, "documentation"),
    ([203, 0, 113, 0], 24, "documentation"),
    ([224, 0, 0, 0], 4, "multicast"),
    ([255, 255, 255, 255], 32, "broadcast"),
    ([240, 0, 0, 0], 4, "reserved"),
];

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let a = u32::from(ip);
    V4_RANGES
        .iter()
        .find(|(net, bits, _)| a & v4_mask(*bits) == u32::from(Ipv4Addr::from(*net)))
        .map(|(_, _, kind)| *kind)
}

fn v4_mask(bits: u32) -> u32 {
    u32::MAX.checked_shl(32 - bits).unwrap_or(0)
}

/// IPv6 ranges that are not public, after the forms that embed an IPv4
/// address have been judged by that address (see [`v6_kind`]).
const V6_RANGES: &[(u128, u32, &str)] = &[
    (0x0064_ff9b_0001 << 80, 48, "NAT64 local-use"),
    (0x0100 << 112, 64, "discard-only"),
    // Teredo tunnels to an obfuscated IPv4 client: never a web server.
    (0x2001 << 112, 32, "Teredo"),
    // The rest of 2001::/23 (benchmarking 2001:2::/48, ORCHID, …).
    (0x2001 << 112, 23, "IETF protocol assignment"),
    (0x2001_0db8 << 96, 32, "documentation"),
    (0x3fff << 112, 20, "documentation"),
    (0x3ffe << 112, 16, "reserved (former 6bone)"),
    (0xfc00 << 112, 7, "private (unique local)"),
    (0xfe80 << 112, 10, "link-local"),
    (0xfec0 << 112, 10, "site-local"),
    (0xff00 << 112, 8, "multicast"),
];

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let a = u128::from(ip);
    let within = |net: u128, bits: u32| a & v6_mask(bits) == net;
    if a == 0 {
        return Some("unspecified");
    }
    if a == 1 {
        return Some("loopback");
    }
    // Forms that carry an IPv4 address are judged by it, so that
    // ::ffff:127.0.0.1 is loopback and ::ffff:8.8.8.8 is as public as
    // 8.8.8.8: IPv4-mapped ::ffff:0:0/96, the deprecated IPv4-compatible
    // ::/96 (what is left of it after :: and ::1), NAT64 64:ff9b::/96.
    if within(0xffff << 32, 96) || within(0, 96) || within(0x0064_ff9b << 96, 96) {
        return v4_kind(Ipv4Addr::from(a as u32));
    }
    // 6to4 2002::/16 carries its IPv4 address in bits 16..48.
    if within(0x2002 << 112, 16) {
        return v4_kind(Ipv4Addr::from((a >> 80) as u32));
    }
    if let Some((_, _, kind)) = V6_RANGES.iter().find(|(net, bits, _)| within(*net, *bits)) {
        return Some(kind);
    }
    // Everything global that IANA hands out lies in 2000::/3; the rest of
    // the space is reserved.
    if !within(0x2000 << 112, 3) {
        return Some("reserved");
    }
    None
}

fn v6_mask(bits: u32) -> u128 {
    u128::MAX.checked_shl(128 - bits).unwrap_or(0)
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

/// An address may be connected to if it is public, or listed in the
/// policy's (test-only) allow list.
fn check_addr(addr: SocketAddr, policy: &FetchPolicy) -> Result<(), FetchError> {
    if policy.allow.contains(&addr) {
        return Ok(());
    }
    match non_public_kind(addr.ip()) {
        None => Ok(()),
        Some(kind) => Err(FetchError::Blocked(kind.to_string())),
    }
}

/// One request to one hop: validate where it goes, then connect only there.
async fn send(url: &Url, policy: &FetchPolicy) -> Result<reqwest::Response, FetchError> {
    let port = url.port_or_known_default().ok_or_else(|| FetchError::InvalidUrl("no port".into()))?;
    let pinned = match url.host() {
        Some(url::Host::Ipv4(ip)) => {
            check_addr(SocketAddr::new(ip.into(), port), policy)?;
            None
        }
        Some(url::Host::Ipv6(ip)) => {
            check_addr(SocketAddr::new(ip.into(), port), policy)?;
            None
        }
        Some(url::Host::Domain(host)) => {
            Some(Pinned { addrs: resolve_public(host, port, policy).await?, host: host.to_string() })
        }
        None => return Err(FetchError::InvalidUrl("the URL has no host".into())),
    };
    let client = hop_client(pinned)?;
    client.get(url.clone()).header(ACCEPT, ACCEPT_VALUE).send().await.map_err(network)
}

/// Every address of `host`, or an error if any of them is not allowed.
async fn resolve_public(host: &str, port: u16, policy: &FetchPolicy) -> Result<Vec<SocketAddr>, FetchError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| FetchError::Network(format!("cannot resolve the host: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(FetchError::Network("the host has no addresses".into()));
    }
    for addr in &addrs {
        check_addr(*addr, policy)?;
    }
    Ok(addrs)
}

/// A client for exactly one request. Built per hop because its resolver is
/// pinned to that hop's validated addresses (and nothing is pooled between
/// hosts).
fn hop_client(pinned: Option<Pinned>) -> Result<reqwest::Client, FetchError> {
    let pinned = pinned.unwrap_or(Pinned { host: String::new(), addrs: Vec::new() });
    // reqwest is built without its `cookies` feature, so there is no cookie
    // store; no credentials are ever set; redirects are ours to follow.
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // An HTTP(S)_PROXY from the environment would connect on our
        // behalf to an address we never checked.
        .no_proxy()
        .referer(false)
        .user_agent(USER_AGENT)
        .dns_resolver(Arc::new(pinned))
        .pool_max_idle_per_host(0)
        .build()
        .map_err(network)
}

/// A resolver that knows one host and its already validated addresses and
/// refuses any other name, so the client can never ask the system resolver
/// (which could answer differently the second time: DNS rebinding).
/// IP-literal URLs never reach a resolver; they use one with no host.
struct Pinned {
    host: String,
    addrs: Vec<SocketAddr>,
}

impl reqwest::dns::Resolve for Pinned {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let result: Result<reqwest::dns::Addrs, Box<dyn std::error::Error + Send + Sync>> =
            if !self.host.is_empty() && name.as_str().eq_ignore_ascii_case(&self.host) {
                Ok(Box::new(self.addrs.clone().into_iter()))
            } else {
                Err("host not validated for this request".into())
            };
        Box::pin(std::future::ready(result))
    }
}

async fn read_body(mut response: reqwest::Response, url: Url, policy: &FetchPolicy) -> Result<Fetched, FetchError> {
    let too_large = FetchError::TooLarge { limit: policy.max_bytes };
    let declared = response.content_length();
    if declared.is_some_and(|len| len > policy.max_bytes) {
        return Err(too_large);
    }
    let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let capacity = declared.unwrap_or(0).min(policy.max_bytes).min(MAX_PREALLOCATION);
    let mut bytes = Vec::with_capacity(capacity as usize);
    while let Some(chunk) = response.chunk().await.map_err(network)? {
        // Checked before appending, so at most max_bytes are ever held;
        // returning drops the response, which closes the connection.
        if bytes.len() as u64 + chunk.len() as u64 > policy.max_bytes {
            return Err(too_large);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Fetched { bytes, final_url: url.into(), content_type })
}

/// A reqwest error as a short message: what failed and the innermost cause
/// (e.g. "connection refused"), without the URL.
fn network(e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        return FetchError::Timeout;
    }
    let cause = {
        let mut cause: &dyn std::error::Error = &e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        cause.to_string()
    };
    let what = e.without_url().to_string();
    if cause == what {
        FetchError::Network(what)
    } else {
        FetchError::Network(format!("{what}: {cause}"))
    }
}

#[cfg(test)]
mod tests {
    //! Every test talks only to servers it starts on 127.0.0.1; blocked
    //! addresses are refused before any connection is attempted.

    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;

    const MIB: u64 = 1 << 20;

    fn policy(allow: &[SocketAddr]) -> FetchPolicy {
        FetchPolicy { max_bytes: MIB, timeout: Duration::from_secs(5), max_redirects: 5, allow: allow.to_vec() }
    }

    /// What the test server answers to a request for a path.
    enum Reply {
        Full {
            status: u16,
            headers: Vec<(&'static str, String)>,
            body: Vec<u8>,
        },
        /// `total` bytes, chunked (no Content-Length), in 16 KiB chunks;
        /// how far it got is reported on [`Server::streamed`].
        Chunked {
            total: u64,
        },
        /// Headers claiming `content_length`, then a few bytes and silence.
        Claims {
            content_length: u64,
        },
        /// Reads the request and never answers.
        Silent,
    }

    fn ok(content_type: &str, body: &[u8]) -> Reply {
        Reply::Full { status: 200, headers: vec![("Content-Type", content_type.to_string())], body: body.to_vec() }
    }

    fn redirect(status: u16, location: String) -> Reply {
        Reply::Full {
            status,
            headers: vec![("Location", location), ("Set-Cookie", "session=secret; Path=/".into())],
            body: Vec::new(),
        }
    }

    /// (bytes written, whether the whole body went out).
    type Streamed = (u64, bool);

    struct Server {
        addr: SocketAddr,
        connections: Arc<AtomicUsize>,
        /// Request heads, lower-cased.
        requests: Arc<Mutex<Vec<String>>>,
        streamed: tokio::sync::Mutex<mpsc::UnboundedReceiver<Streamed>>,
    }

    impl Server {
        async fn start(reply: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let connections = Arc::new(AtomicUsize::new(0));
            let requests = Arc::new(Mutex::new(Vec::new()));
            let (tx, rx) = mpsc::unbounded_channel();
            let reply = Arc::new(reply);
            let (conns, reqs) = (connections.clone(), requests.clone());
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    conns.fetch_add(1, Ordering::SeqCst);
                    let (reply, reqs, tx) = (reply.clone(), reqs.clone(), tx.clone());
                    tokio::spawn(async move {
                        let mut stream = stream;
                        if let Some(head) = read_head(&mut stream).await {
                            reqs.lock().unwrap().push(head.to_ascii_lowercase());
                            let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                            answer(stream, reply(&path), tx).await;
                        }
                    });
                }
            });
            Server { addr, connections, requests, streamed: tokio::sync::Mutex::new(rx) }
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        fn connections(&self) -> usize {
            self.connections.load(Ordering::SeqCst)
        }

        fn requests(&self) -> Vec<String> {
            self.requests.lock().unwrap().clone()
        }

        async fn streamed(&self) -> Streamed {
            let mut rx = self.streamed.lock().await;
            tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("the server finished streaming")
                .unwrap()
        }
    }

    async fn read_head(stream: &mut TcpStream) -> Option<String> {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 || head.len() > 16 * 1024 {
                return None;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Some(String::from_utf8_lossy(&head).into_owned())
    }

    async fn answer(mut stream: TcpStream, reply: Reply, streamed: mpsc::UnboundedSender<Streamed>) {
        match reply {
            Reply::Full { status, headers, body } => {
                let mut head = format!("HTTP/1.1 {status} X\r\n");
                for (name, value) in headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
            }
            Reply::Chunked { total } => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n\
                            Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
                let chunk = vec![b'x'; 16 * 1024];
                let mut written = 0u64;
                let mut result = stream.write_all(head.as_bytes()).await;
                while result.is_ok() && written < total {
                    let n = (total - written).min(chunk.len() as u64) as usize;
                    let mut frame = format!("{n:x}\r\n").into_bytes();
                    frame.extend_from_slice(&chunk[..n]);
                    frame.extend_from_slice(b"\r\n");
                    result = stream.write_all(&frame).await;
                    if result.is_ok() {
                        written += n as u64;
                    }
                }
                if result.is_ok() {
                    result = stream.write_all(b"0\r\n\r\n").await;
                }
                let _ = streamed.send((written, result.is_ok()));
            }
            Reply::Claims { content_length } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n\
                     Content-Length: {content_length}\r\n\r\nxxxx"
                );
                let _ = stream.write_all(head.as_bytes()).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            Reply::Silent => tokio::time::sleep(Duration::from_secs(30)).await,
        }
    }

    #[track_caller]
    fn assert_blocked(result: Result<Fetched, FetchError>, kind: &str) {
        match result {
            Err(FetchError::Blocked(k)) => assert_eq!(k, kind),
            other => panic!("expected Blocked({kind}), got {other:?}"),
        }
    }

    #[test]
    fn is_public_judges_every_ipv4_range_on_both_sides_of_its_boundaries() {
        let table: &[(&str, bool)] = &[
            ("0.0.0.0", false),
            ("0.255.255.255", false),
            ("1.0.0.0", true),
            ("1.1.1.1", true),
            ("8.8.8.8", true),
            ("9.255.255.255", true),
            ("10.0.0.0", false),
            ("10.255.255.255", false),
            ("11.0.0.0", true),
            ("100.63.255.255", true),
            ("100.64.0.0", false),
            ("100.127.255.255", false),
            ("100.128.0.0", true),
            ("126.255.255.255", true),
            ("127.0.0.0", false),
            ("127.0.0.1", false),
            ("127.255.255.255", false),
            ("128.0.0.0", true),
            ("169.253.255.255", true),
            ("169.254.0.0", false),
            ("169.254.169.254", false),
            ("169.254.255.255", false),
            ("169.255.0.0", true),
            ("172.15.255.255", true),
            ("172.16.0.0", false),
            ("172.31.255.255", false),
            ("172.32.0.0", true),
            ("191.255.255.255", true),
            ("192.0.0.0", false),
            ("192.0.0.255", false),
            ("192.0.1.0", true),
            ("192.0.2.0", false),
            ("192.0.2.255", false),
            ("192.0.3.0", true),
            ("192.88.98.255", true),
            ("192.88.99.0", false),
            ("192.88.99.255", false),
            ("192.88.100.0", true),
            ("192.167.255.255", true),
            ("192.168.0.0", false),
            ("192.168.255.255", false),
            ("192.169.0.0", true),
            ("198.17.255.255", true),
            ("198.18.0.0", false),
            ("198.19.255.255", false),
            ("198.20.0.0", true),
            ("198.51.99.255", true),
            ("198.51.100.0", false),
            ("198.51.100.255", false),
            ("198.51.101.0", true),
            ("203.0.112.255", true),
            ("203.0.113.0", false),
            ("203.0.113.255", false),
            ("203.0.114.0", true),
            ("223.255.255.255", true),
            ("224.0.0.0", false),
            ("239.255.255.255", false),
            ("240.0.0.0", false),
            ("255.255.255.254", false),
            ("255.255.255.255", false),
        ];
        for (ip, public) in table {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(is_public(ip), *public, "{ip}");
        }
    }

    #[test]
    fn is_public_judges_every_ipv6_range_and_embedded_ipv4_addresses() {
        let table: &[(&str, bool)] = &[
            ("::", false),
            ("::1", false),
            // IPv4-compatible ::/96: judged by the IPv4 address.
            ("::2", false),
            ("::127.0.0.1", false),
            ("::8.8.8.8", true),
            // IPv4-mapped ::ffff:0:0/96.
            ("::ffff:0.0.0.0", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:10.0.0.1", false),
            ("::ffff:169.254.169.254", false),
            ("::ffff:100.64.0.1", false),
            ("::ffff:8.8.8.8", true),
            // NAT64 64:ff9b::/96 and its local-use neighbour.
            ("64:ff9b::7f00:1", false),
            ("64:ff9b::a9fe:a9fe", false),
            ("64:ff9b::c0a8:1", false),
            ("64:ff9b::808:808", true),
            ("64:ff9b:1::1", false),
            ("100::1", false),
            // 2000::/3 and what is carved out of it.
            ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("2000::", true),
            ("2001::", false),
            ("2001:0:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("2001:1::1", false),
            ("2001:2::1", false),
            ("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("2001:200::1", true),
            ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("2001:db8::", false),
            ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("2001:db9::", true),
            ("2001:4860:4860::8888", true),
            // 6to4 2002::/16: judged by the IPv4 address in bits 16..48.
            ("2002:7f00:1::", false),
            ("2002:a00:1::1", false),
            ("2002:a9fe:a9fe::", false),
            ("2002:c0a8:101::", false),
            ("2002:808:808::1", true),
            ("2606:4700:4700::1111", true),
            ("3ffd:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("3ffe::1", false),
            ("3fff::", false),
            ("3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("3fff:1000::", true),
            ("3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("4000::", false),
            ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("fc00::", false),
            ("fd12:3456::1", false),
            ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("fe80::", false),
            ("fe80::1", false),
            ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("fec0::", false),
            ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("ff00::", false),
            ("ff02::1", false),
        ];
        for (ip, public) in table {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(is_public(ip), *public, "{ip}");
        }
    }

    #[test]
    fn blocked_addresses_are_named_by_kind() {
        let kind = |s: &str| non_public_kind(s.parse().unwrap());
        assert_eq!(kind("127.0.0.1"), Some("loopback"));
        assert_eq!(kind("169.254.169.254"), Some("link-local"));
        assert_eq!(kind("100.64.0.1"), Some("shared (carrier-grade NAT)"));
        assert_eq!(kind("255.255.255.255"), Some("broadcast"));
        assert_eq!(kind("250.0.0.1"), Some("reserved"));
        assert_eq!(kind("::ffff:127.0.0.1"), Some("loopback"));
        assert_eq!(kind("64:ff9b::a9fe:a9fe"), Some("link-local"));
        assert_eq!(kind("2002:a00:1::"), Some("private"));
        assert_eq!(kind("2001::1"), Some("Teredo"));
        assert_eq!(kind("2001:db8::1"), Some("documentation"));
        assert_eq!(kind("fec0::1"), Some("site-local"));
        assert_eq!(kind("fd00::1"), Some("private (unique local)"));
        assert_eq!(kind("ff02::1"), Some("multicast"));
        assert_eq!(kind("93.184.215.14"), None);
    }

    #[tokio::test]
    async fn loopback_is_blocked_without_connecting_unless_allowed() {
        let server = Server::start(|_| ok("image/png", b"png")).await;
        let result = fetch_public(&server.url("/x"), &policy(&[])).await;
        assert_blocked(result, "loopback");
        assert_eq!(server.connections(), 0, "refused before connecting");
    }

    #[tokio::test]
    async fn localhost_is_blocked_after_dns_resolution() {
        let server = Server::start(|_| ok("image/png", b"png")).await;
        let url = format!("http://localhost:{}/x", server.addr.port());
        assert_blocked(fetch_public(&url, &policy(&[])).await, "loopback");
        assert_eq!(server.connections(), 0);
    }

    #[tokio::test]
    async fn ipv6_loopback_is_blocked() {
        let server = Server::start(|_| ok("image/png", b"png")).await;
        let url = format!("http://[::1]:{}/x", server.addr.port());
        assert_blocked(fetch_public(&url, &policy(&[])).await, "loopback");
    }

    #[tokio::test]
    async fn cloud_metadata_address_is_blocked_before_any_connection() {
        let started = Instant::now();
        let result = fetch_public("http://169.254.169.254/latest/meta-data", &policy(&[])).await;
        assert_blocked(result, "link-local");
        // A connection attempt would hang or fail slowly; a refusal is instant.
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn private_address_is_blocked() {
        assert_blocked(fetch_public("http://10.0.0.1/", &policy(&[])).await, "private");
        assert_blocked(fetch_public("https://192.168.1.1:8443/a.png", &policy(&[])).await, "private");
    }

    #[tokio::test]
    async fn ipv4_hidden_in_ipv6_or_odd_notation_is_judged_as_ipv4() {
        for (url, kind) in [
            ("http://[::ffff:127.0.0.1]/", "loopback"),
            ("http://[::ffff:169.254.169.254]/", "link-local"),
            ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),
            ("http://[2002:a00:1::]/", "private"),
            ("http://[::127.0.0.1]/", "loopback"),
            // WHATWG URL parsing turns these into 127.0.0.1.
            ("http://2130706433/", "loopback"),
            ("http://0x7f.1/", "loopback"),
            ("http://0177.0.0.1/", "loopback"),
        ] {
            assert_blocked(fetch_public(url, &policy(&[])).await, kind);
        }
    }

    #[tokio::test]
    async fn redirect_to_a_local_port_that_is_not_allowed_is_blocked() {
        let target = Server::start(|_| ok("image/png", b"secret")).await;
        let location = target.url("/admin");
        let origin = Server::start(move |_| redirect(302, location.clone())).await;
        let result = fetch_public(&origin.url("/img"), &policy(&[origin.addr])).await;
        assert_blocked(result, "loopback");
        assert_eq!(origin.requests().len(), 1);
        assert_eq!(target.connections(), 0, "the redirect target was never contacted");
    }

    #[tokio::test]
    async fn redirect_to_cloud_metadata_is_blocked() {
        let origin = Server::start(|_| redirect(301, "http://169.254.169.254/latest/meta-data".into())).await;
        let result = fetch_public(&origin.url("/img"), &policy(&[origin.addr])).await;
        assert_blocked(result, "link-local");
    }

    #[tokio::test]
    async fn allowed_server_returns_the_exact_bytes_and_content_type() {
        let body: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        let served = body.clone();
        let server = Server::start(move |_| ok("image/webp", &served)).await;
        let fetched = fetch_public(&server.url("/a/cat.webp?v=1#frag"), &policy(&[server.addr])).await.unwrap();
        assert_eq!(fetched.bytes, body);
        assert_eq!(fetched.content_type.as_deref(), Some("image/webp"));
        assert_eq!(fetched.final_url, server.url("/a/cat.webp?v=1"));
        let head = &server.requests()[0];
        assert!(head.starts_with("get /a/cat.webp?v=1 http/1.1\r\n"), "{head}");
        assert!(head.contains("\r\nuser-agent: imgcdn-import/1 (+"), "{head}");
        assert!(!head.contains("\r\nauthorization:") && !head.contains("\r\ncookie:"));
    }

    #[tokio::test]
    async fn redirects_between_allowed_servers_are_followed_without_cookies() {
        let target = Server::start(|_| ok("image/gif", b"GIF89a")).await;
        let location = target.url("/final.gif");
        let origin = Server::start(move |path| match path {
            "/start" => redirect(302, "/next".into()),
            _ => redirect(307, location.clone()),
        })
        .await;
        let allow = [origin.addr, target.addr];
        let fetched = fetch_public(&origin.url("/start"), &policy(&allow)).await.unwrap();
        assert_eq!(fetched.bytes, b"GIF89a");
        assert_eq!(fetched.final_url, target.url("/final.gif"));
        let origin_paths: Vec<String> =
            origin.requests().iter().map(|h| h.split(' ').nth(1).unwrap().to_string()).collect();
        assert_eq!(origin_paths, ["/start", "/next"], "relative Location resolved");
        for head in origin.requests().iter().chain(&target.requests()) {
            assert!(!head.contains("\r\ncookie:"), "{head}");
            assert!(!head.contains("\r\nauthorization:"), "{head}");
        }
    }

    #[tokio::test]
    async fn more_than_max_redirects_is_too_many_redirects() {
        // /r/N redirects to /r/N+1 until N reaches the path's limit.
        let server = Server::start(|path| {
            let (limit, n) = path
                .trim_start_matches('/')
                .split_once('/')
                .map(|(l, n)| (l.parse::<u32>().unwrap(), n.parse::<u32>().unwrap()))
                .unwrap();
            if n < limit {
                redirect(302, format!("/{limit}/{}", n + 1))
            } else {
                ok("image/png", b"end")
            }
        })
        .await;
        let policy = policy(&[server.addr]);
        let five = fetch_public(&server.url("/5/0"), &policy).await.unwrap();
        assert_eq!(five.bytes, b"end", "exactly max_redirects is fine");
        let six = fetch_public(&server.url("/6/0"), &policy).await;
        assert!(matches!(six, Err(FetchError::TooManyRedirects)), "{six:?}");
        // 6 for the first fetch, then the first URL and 5 redirects.
        assert_eq!(server.requests().len(), 6 + 6);
    }

    #[tokio::test]
    async fn chunked_body_over_the_limit_is_too_large_and_the_connection_is_dropped() {
        let total = 256 * MIB;
        let server = Server::start(move |_| Reply::Chunked { total }).await;
        let mut policy = policy(&[server.addr]);
        policy.max_bytes = 100_000;
        let result = fetch_public(&server.url("/big"), &policy).await;
        assert!(matches!(result, Err(FetchError::TooLarge { limit: 100_000 })), "{result:?}");
        let (written, finished) = server.streamed().await;
        assert!(!finished, "the server could send the whole body");
        assert!(written < 32 * MIB, "only socket buffers' worth was sent: {written}");
    }

    #[tokio::test]
    async fn body_of_exactly_max_bytes_is_accepted() {
        let server = Server::start(|_| Reply::Chunked { total: 100_000 }).await;
        let mut policy = policy(&[server.addr]);
        policy.max_bytes = 100_000;
        let fetched = fetch_public(&server.url("/edge"), &policy).await.unwrap();
        assert_eq!(fetched.bytes.len(), 100_000);
    }

    #[tokio::test]
    async fn content_length_over_the_limit_is_too_large_before_the_body() {
        let server = Server::start(|_| Reply::Claims { content_length: 50 * MIB }).await;
        let started = Instant::now();
        let result = fetch_public(&server.url("/huge"), &policy(&[server.addr])).await;
        assert!(matches!(result, Err(FetchError::TooLarge { limit }) if limit == MIB), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "did not wait for the body");
    }

    #[tokio::test]
    async fn server_that_never_answers_times_out() {
        let server = Server::start(|_| Reply::Silent).await;
        let mut policy = policy(&[server.addr]);
        policy.timeout = Duration::from_millis(300);
        let started = Instant::now();
        let result = fetch_public(&server.url("/slow"), &policy).await;
        assert!(matches!(result, Err(FetchError::Timeout)), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(server.connections(), 1);
    }

    #[tokio::test]
    async fn other_schemes_credentials_and_garbage_are_invalid_urls() {
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        for url in [
            "ftp://example.com/cat.png",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "data:image/png;base64,AAAA",
            "http://user:pw@example.com/",
            "http://user@127.0.0.1/",
            "https://:pw@example.com/",
            "not a url",
            "",
            "http://",
            "http://exa mple.com/",
            "//example.com/cat.png",
            long.as_str(),
        ] {
            let result = fetch_public(url, &policy(&[])).await;
            assert!(matches!(result, Err(FetchError::InvalidUrl(_))), "{url}: {result:?}");
        }
    }

    #[tokio::test]
    async fn redirect_to_another_scheme_or_with_credentials_is_invalid() {
        let server = Server::start(|path| match path {
            "/ftp" => redirect(302, "ftp://example.com/x".into()),
            _ => redirect(302, "http://user:pw@example.com/x".into()),
        })
        .await;
        let policy = policy(&[server.addr]);
        for path in ["/ftp", "/creds"] {
            let result = fetch_public(&server.url(path), &policy).await;
            assert!(matches!(result, Err(FetchError::InvalidUrl(_))), "{result:?}");
        }
    }

    #[tokio::test]
    async fn not_found_is_status_404() {
        let server = Server::start(|_| Reply::Full { status: 404, headers: Vec::new(), body: b"nope".to_vec() }).await;
        let result = fetch_public(&server.url("/gone.png"), &policy(&[server.addr])).await;
        assert!(matches!(result, Err(FetchError::Status(404))), "{result:?}");
    }

    #[tokio::test]
    async fn the_hop_client_connects_only_to_the_validated_addresses() {
        let server = Server::start(|_| ok("image/png", b"pinned")).await;
        let port = server.addr.port();
        let client = hop_client(Some(Pinned { host: "imgcdn-test.invalid".into(), addrs: vec![server.addr] })).unwrap();
        // A name that exists nowhere reaches the pinned address...
        let response = client.get(format!("http://imgcdn-test.invalid:{port}/x")).send().await.unwrap();
        assert_eq!(response.bytes().await.unwrap().as_ref(), b"pinned");
        // ...and a name the system resolver knows (localhost is this very
        // server) is refused: there is no fallback to a second lookup.
        let other = client.get(format!("http://localhost:{port}/x")).send().await;
        assert!(other.is_err(), "{other:?}");
        assert_eq!(server.connections(), 1);
    }
}
