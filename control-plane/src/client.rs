//! What we know about the caller's connection, taken from the request by
//! [`crate::auth`] and used by the domain only for sign-in records (kept
//! while the session lives), consent records (country) and hashed rate
//! limits.

/// Client address, user agent, country (from a trusted proxy header) and
/// whether the browser sent Global Privacy Control.
#[derive(Debug, Clone, Default)]
pub struct ClientMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub country: Option<String>,
    pub gpc: bool,
}
