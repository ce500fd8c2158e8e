//! The public HTTP service: `GET`/`HEAD /{storage}/{id}.{ext}` answered from
//! memory, then disk, then the origin store.
//!
//! This is a pingora [`HttpServerApp`] rather than a proxy: nothing here
//! connects to an upstream HTTP server. The request is read, answered from
//! our tiers and written back, and the connection is handed back to pingora
//! for keep-alive (pipelined requests included: they are answered in
//! order). The public listeners wrap it in [`conn::Guarded`], which caps
//! connections and bounds how long a request head may take. No code here
//! reads the client's address.

pub mod conditional;
pub mod conn;
pub mod response;
pub mod sendfile;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use imgcdn_shared::sync::Action;
use imgcdn_shared::variant::Variant;
use imgcdn_shared::ImagePath;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;
use pingora_http::ResponseHeader;

use crate::budget::Held;
use crate::cache::disk::DiskObject;
use crate::metrics::Tier;
use crate::tiers::{Body, Found, LookupError, Tiers};
use crate::variants::{Source, VariantError};
use conn::TrackedStream;
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
    /// A response write that makes no progress for this long ends the connection.
    pub send_timeout: Duration,
    /// `Retry-After` of 503s for limits reached.
    pub retry_after_secs: u64,
}

pub struct EdgeApp {
    pub tiers: Arc<Tiers>,
    pub settings: HttpSettings,
}

/// What to send for a request.
enum Reply {
    /// Header and (possibly empty) body in memory; `held` is released once
    /// it is written.
    Whole { answer: Answer, held: Option<Held> },
    /// Header, then body bytes `range` of a disk entry, chunk by chunk.
    Stream { header: ResponseHeader, obj: Arc<DiskObject>, range: (u64, u64) },
    /// Header, then body bytes `range` of a verified disk entry, sent from
    /// its file (`sendfile`) where the connection can.
    File { header: ResponseHeader, obj: Arc<DiskObject>, range: (u64, u64) },
}

impl EdgeApp {
    async fn answer(&self, session: &ServerSession) -> (Reply, Tier) {
        let done = |answer: Answer, tier| (Reply::Whole { answer, held: None }, tier);
        let req = session.req_header();
        let method = &req.method;
        if method != Method::GET && method != Method::HEAD {
            return done(response::error(405, method), Tier::None);
        }
        let path = match ImagePath::parse(req.raw_path()) {
            Ok(p) => p,
            Err(e) => return done(response::error(e.status(), method), Tier::None),
        };
        // Edge sync is enforced before any tier.
        let vis = &self.tiers.visibility;
        if !vis.is_ready() {
            return done(response::error(503, method), Tier::None);
        }
        let restricted = match vis.action(&path.id) {
            None => false,
            Some(Action::Takedown) => {
                let a = response::unavailable_for_legal_reasons(method, self.settings.policy_link.as_deref());
                return done(a, Tier::None);
            }
            Some(Action::Hide) | Some(Action::Restore) => return done(response::error(404, method), Tier::None),
            Some(Action::Warn) if self.settings.block_restricted => {
                return done(response::error(403, method), Tier::None)
            }
            Some(Action::Warn) => true,
        };
        // Bodies go from disk-tier files straight to the socket where the
        // connection allows it (HTTP/1 without TLS).
        let files = method == Method::GET && TrackedStream::sends_files(session.stream());
        let looked_up = self.tiers.clock.unix_now();
        let found = match self.tiers.lookup(path.id, files, looked_up).await {
            // The URL's first segment must be the image's storage (or, for
            // images published before storage names, its shard): a guessed
            // id under another team's storage is 404 like an unknown one.
            Ok(f) if !path.serves(&f.meta.manifest) => return done(response::error(404, method), Tier::None),
            Ok(f) => f,
            Err(LookupError::Busy) => {
                return done(response::busy(method, self.settings.retry_after_secs), Tier::None);
            }
            Err(LookupError::Origin(e)) => return done(response::error(e.status(), method), Tier::Origin),
        };
        // A memory hit is found without waiting: its lookup time is still
        // now. Any other tier may have waited (disk, origin, send budget).
        let now = if found.tier == Tier::Memory { looked_up } else { self.tiers.clock.unix_now() };
        // The query (and an extension other than the stored format's) asks
        // for a variant; without transforms, or for formats that are not
        // transformed, only the stored format's extension (jpg/jpeg alike).
        let variant = match &self.tiers.variants {
            Some(v) => Variant::from_target(req.raw_path(), found.meta.format, path.format, &v.rules),
            None => Variant::ORIGINAL,
        };
        if variant.is_original() && found.meta.format != path.format {
            return done(response::error(404, method), Tier::None);
        }
        let found = match (&self.tiers.variants, variant.is_original()) {
            (Some(variants), false) => {
                let source = match found.body {
                    Body::Whole(b) => Source::Whole(b),
                    Body::Stream(obj) | Body::File(obj) => Source::Disk(obj),
                };
                match variants.get(path.id, variant, found.meta.clone(), source, now).await {
                    Ok((obj, tier)) => {
                        // Made or read from disk: held against the send
                        // budget like an original's whole body.
                        let held = match tier {
                            Tier::Memory => None,
                            _ => match self.tiers.hold(obj.body.len() as u64).await {
                                Ok(h) => Some(h),
                                Err(_) => {
                                    return done(response::busy(method, self.settings.retry_after_secs), Tier::None)
                                }
                            },
                        };
                        Found { meta: obj.meta, body: Body::Whole(obj.body), tier, held }
                    }
                    // Too many variants of this image: the original, when
                    // the URL's extension is its format.
                    Err(VariantError::Limited) => {
                        match self.tiers.lookup(path.id, files, self.tiers.clock.unix_now()).await {
                            Ok(f) if f.meta.format != path.format => {
                                return done(response::error(404, method), Tier::None)
                            }
                            Ok(f) => f,
                            Err(_) => return done(response::busy(method, self.settings.retry_after_secs), Tier::None),
                        }
                    }
                    Err(VariantError::Busy) => {
                        return done(response::busy(method, self.settings.retry_after_secs), Tier::None)
                    }
                    Err(VariantError::TooLarge(_)) => return done(response::error(422, method), Tier::None),
                    Err(VariantError::Failed(_)) => return done(response::error(502, method), Tier::Origin),
                    Err(VariantError::TimedOut) => return done(response::error(504, method), Tier::None),
                }
            }
            _ => found,
        };
        let (mut header, range) =
            response::object_header(req, &found.meta, found.len(), found.tier, now, self.settings.max_age_secs);
        if restricted {
            response::mark_restricted(&mut header);
        }
        let reply = match (found.body, range) {
            (Body::Whole(body), range) => {
                let body = match range {
                    Some((0, end)) if end == body.len() as u64 => body,
                    Some((start, end)) => body.slice(start as usize..end as usize),
                    None => Bytes::new(),
                };
                Reply::Whole { answer: Answer { header, body }, held: found.held }
            }
            (Body::Stream(obj), Some(range)) => Reply::Stream { header, obj, range },
            (Body::File(obj), Some(range)) => Reply::File { header, obj, range },
            (Body::Stream(_) | Body::File(_), None) => {
                Reply::Whole { answer: Answer { header, body: Bytes::new() }, held: None }
            }
        };
        (reply, found.tier)
    }

    /// Write `reply`; the number of body bytes sent, or `None` if the
    /// connection must end (write failed, or the body was cut short).
    async fn send(&self, session: &mut ServerSession, reply: Reply) -> (u16, Option<usize>) {
        match reply {
            Reply::Whole { answer, held } => {
                let r = write_whole(session, answer).await;
                drop(held);
                r
            }
            Reply::Stream { header, obj, range } => self.stream(session, header, obj, range).await,
            Reply::File { header, obj, range: (start, end) } => {
                let (file, body_at) = obj.file();
                match TrackedStream::send_file(session.stream(), file.clone(), body_at + start, end - start) {
                    Some(stand_in) => {
                        self.tiers.metrics.file_responses.inc();
                        write_whole(session, Answer { header, body: stand_in }).await
                    }
                    // Not this connection after all: read and send it.
                    None => self.stream(session, header, obj, (start, end)).await,
                }
            }
        }
    }

    /// Send bytes `start..end` of a disk entry, one verified chunk at a time,
    /// each held against the send budget while it is read and written.
    async fn stream(
        &self,
        session: &mut ServerSession,
        header: ResponseHeader,
        obj: Arc<DiskObject>,
        (start, end): (u64, u64),
    ) -> (u16, Option<usize>) {
        let tiers = &self.tiers;
        let chunk = obj.chunk_bytes();
        let method = session.req_header().method.clone();
        // The first chunk's worth is held before anything is sent, so a full
        // budget can still be answered with a 503.
        let Some(mut held) = tiers.budget.hold(chunk.min(end - start), tiers.budget_wait).await else {
            tiers.metrics.send_budget_refused.inc();
            return write_whole(session, response::busy(&method, self.settings.retry_after_secs)).await;
        };
        let status = header.status.as_u16();
        if session.write_response_header(Box::new(header)).await.is_err() {
            return (status, None);
        }
        let mut pos = start;
        let mut sent = 0usize;
        while pos < end {
            // Reads are aligned to chunks, so each reads one chunk.
            let next = ((pos / chunk + 1) * chunk).min(end);
            let (o, from) = (obj.clone(), pos);
            let data = match tokio::task::spawn_blocking(move || o.read(from, next)).await {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => {
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        tiers.metrics.disk_corrupt.inc();
                        let (disk, o) = (tiers.disk.clone(), obj.clone());
                        let _ = tokio::task::spawn_blocking(move || disk.drop_corrupt(&o)).await;
                    }
                    log::warn!("disk tier read of {} failed mid-response: {e}", obj.id);
                    tiers.metrics.responses_cut.inc();
                    return (status, None);
                }
                Err(_) => return (status, None),
            };
            sent += data.len();
            pos = next;
            if session.write_response_body(data, pos == end).await.is_err() {
                tiers.metrics.responses_cut.inc();
                return (status, None);
            }
            drop(held);
            if pos < end {
                // Later chunks wait for the budget (up to the send timeout).
                match tiers.budget.hold((end - pos).min(chunk), self.settings.send_timeout).await {
                    Some(h) => held = h,
                    None => {
                        tiers.metrics.responses_cut.inc();
                        return (status, None);
                    }
                }
            } else {
                break;
            }
        }
        (status, Some(sent))
    }
}

/// Write a response whose body is in memory (or is the stand-in of a body
/// sent from a file). The body goes to pingora in slices of at most
/// [`WRITE_SLICE`] bytes: pingora's send timeout bounds each write, so one
/// write of a whole large body would cut off a reader that keeps reading
/// but needs longer than the timeout for all of it; per slice, the timeout
/// means a write making no progress, as for a body streamed in chunks.
async fn write_whole(session: &mut ServerSession, answer: Answer) -> (u16, Option<usize>) {
    let status = answer.status();
    let body = answer.body;
    let len = body.len();
    let written = async {
        session.write_response_header(Box::new(answer.header)).await?;
        if body.is_empty() {
            return session.finish_body().await.map(|_| ());
        }
        let mut at = 0;
        while at < len {
            let end = (at + WRITE_SLICE).min(len);
            session.write_response_body(body.slice(at..end), end == len).await?;
            at = end;
        }
        Ok(())
    }
    .await;
    (status, written.ok().map(|_| len))
}

/// See [`write_whole`].
const WRITE_SLICE: usize = 256 * 1024;

#[async_trait]
impl HttpServerApp for EdgeApp {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        // The connection wrapper bounds every read of a request head (the
        // head and keep-alive deadlines), so pingora's own timer around each
        // read (its keep-alive time, which our deadlines reach first) is
        // turned off: arming and dropping it cost ~1,400 instructions a
        // request. pingora reads "infinite keep-alive" as no read timer; what
        // is kept alive is decided below, once the head is read.
        if TrackedStream::bounds_reads(session.stream()) {
            session.set_keepalive(Some(0));
        }
        // A failed read (garbage, timeout, client gone) just ends the
        // connection. Deliberately not logged: pingora's error text for it
        // can describe the connection, and there is nothing to act on.
        match session.read_request().await {
            Ok(true) => {}
            Ok(false) | Err(_) => return None,
        }
        TrackedStream::request_read(session.stream());
        let started = Instant::now();
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(self.settings.keepalive_secs) });
        if !session.is_body_empty() {
            // We never read request bodies; don't reuse a connection that has one.
            session.set_keepalive(None);
        }
        // Requests sent back to back on one connection (pipelining) are
        // answered in order: pingora keeps the bytes read past this request
        // for the next one instead of dropping the connection.
        session.set_pipelining_enabled(true);
        session.set_write_timeout(Some(self.settings.send_timeout));
        let (reply, tier) = self.answer(&session).await;
        let (status, sent) = self.send(&mut session, reply).await;
        let ended = Instant::now();
        self.tiers.metrics.observe(status, tier, sent.unwrap_or(0), (ended - started).as_secs_f64());
        sent?;
        TrackedStream::response_sent(session.stream(), ended);
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
