//! The public HTTP service: `GET`/`HEAD /{shard}/{id}.{ext}` answered from
//! memory, then disk, then the origin store.
//!
//! This is a pingora [`HttpServerApp`] rather than a proxy: nothing here
//! connects to an upstream HTTP server. The request is read, answered from
//! our tiers and written back, and the connection is handed back to pingora
//! for keep-alive. No code here reads the client's address.

pub mod conditional;
pub mod response;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use http::Method;
use imgcdn_shared::sync::Action;
use imgcdn_shared::ImagePath;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;

use crate::metrics::Tier;
use crate::tiers::Tiers;
use response::Answer;

/// Per-connection HTTP settings.
pub struct HttpSettings {
    pub keepalive_secs: u64,
    pub max_age_secs: u64,
    pub server_options: HttpServerOptions,
    /// `Link` header value for 451 answers.
    pub policy_link: Option<String>,
    /// Answer restricted (warned) images with 403 instead of serving them marked.
    pub block_restricted: bool,
}

pub struct EdgeApp {
    pub tiers: Arc<Tiers>,
    pub settings: HttpSettings,
}

impl EdgeApp {
    async fn answer(&self, session: &ServerSession) -> (Answer, Tier) {
        let req = session.req_header();
        let method = &req.method;
        if method != Method::GET && method != Method::HEAD {
            return (response::error(405, method), Tier::None);
        }
        let path = match ImagePath::parse(req.raw_path()) {
            Ok(p) => p,
            Err(e) => return (response::error(e.status(), method), Tier::None),
        };
        // Edge sync is enforced before any tier.
        let vis = &self.tiers.visibility;
        if !vis.is_ready() {
            return (response::error(503, method), Tier::None);
        }
        let restricted = match vis.action(&path.id) {
            None => false,
            Some(Action::Takedown) => {
                return (
                    response::unavailable_for_legal_reasons(method, self.settings.policy_link.as_deref()),
                    Tier::None,
                )
            }
            Some(Action::Hide) | Some(Action::Restore) => return (response::error(404, method), Tier::None),
            Some(Action::Warn) if self.settings.block_restricted => return (response::error(403, method), Tier::None),
            Some(Action::Warn) => true,
        };
        match self.tiers.lookup(path.id).await {
            // The URL's extension must be the stored format (jpg/jpeg alike).
            Ok((obj, _)) if obj.meta.format != path.format => (response::error(404, method), Tier::None),
            Ok((obj, tier)) => {
                let now = self.tiers.clock.unix_now();
                let mut answer = response::object(req, &obj, tier, now, self.settings.max_age_secs);
                if restricted {
                    response::mark_restricted(&mut answer);
                }
                (answer, tier)
            }
            Err(e) => (response::error(e.status(), method), Tier::Origin),
        }
    }
}

#[async_trait]
impl HttpServerApp for EdgeApp {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        // A failed read (garbage, timeout, client gone) just ends the
        // connection. Deliberately not logged: pingora's error text for it
        // can describe the connection, and there is nothing to act on.
        match session.read_request().await {
            Ok(true) => {}
            Ok(false) | Err(_) => return None,
        }
        let started = Instant::now();
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(self.settings.keepalive_secs) });
        if !session.is_body_empty() {
            // We never read request bodies; don't reuse a connection that has one.
            session.set_keepalive(None);
        }
        let (answer, tier) = self.answer(&session).await;
        let status = answer.status();
        let body_len = answer.body.len();
        let written = async {
            session.write_response_header(Box::new(answer.header)).await?;
            if answer.body.is_empty() {
                session.finish_body().await
            } else {
                session.write_response_body(answer.body, true).await
            }
        }
        .await;
        self.tiers.metrics.observe(
            status,
            tier,
            if written.is_ok() { body_len } else { 0 },
            started.elapsed().as_secs_f64(),
        );
        if written.is_err() {
            return None;
        }
        let persistent = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(Some(stream)) => Some(ReusedHttpStream::from_reusable_stream(stream, persistent)),
            _ => None,
        }
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.settings.server_options)
    }
}
