//! One hop of an import: validate where it goes, then connect only there
//! (a client whose resolver is pinned to the validated addresses), and
//! read the body within the size limit.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::Url;

use super::addresses::non_public_kind;
use super::{FetchError, FetchPolicy, Fetched, ACCEPT_VALUE, MAX_PREALLOCATION, USER_AGENT};

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
pub(super) async fn send(url: &Url, policy: &FetchPolicy) -> Result<reqwest::Response, FetchError> {
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
pub(super) fn hop_client(pinned: Option<Pinned>) -> Result<reqwest::Client, FetchError> {
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
pub(super) struct Pinned {
    pub(super) host: String,
    pub(super) addrs: Vec<SocketAddr>,
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

pub(super) async fn read_body(
    mut response: reqwest::Response,
    url: Url,
    policy: &FetchPolicy,
) -> Result<Fetched, FetchError> {
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
pub(super) fn network(e: reqwest::Error) -> FetchError {
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
