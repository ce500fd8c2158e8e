//! The admin listener: `/metrics` (Prometheus text), `/healthz` (the
//! process answers), `/readyz` (it can serve: see [`crate::readiness`]).
//! Bind it to a private address.

use std::sync::Arc;

use async_trait::async_trait;
use http::{header, Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;

use crate::readiness::Readiness;
use crate::tiers::Tiers;

pub struct AdminApp {
    pub tiers: Arc<Tiers>,
    pub readiness: Arc<Readiness>,
}

fn text(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len())
        .header(header::CACHE_CONTROL, "no-store")
        .body(body)
        .expect("static response parts are valid")
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let plain = "text/plain; charset=utf-8";
        match session.req_header().uri.path() {
            "/metrics" => {
                self.tiers.update_gauges();
                text(StatusCode::OK, "text/plain; version=0.0.4", self.tiers.metrics.render())
            }
            "/healthz" => text(StatusCode::OK, plain, b"ok\n".to_vec()),
            "/readyz" => match self.readiness.not_ready(self.tiers.visibility.is_ready()) {
                None => text(StatusCode::OK, plain, b"ready\n".to_vec()),
                Some(why) => text(StatusCode::SERVICE_UNAVAILABLE, plain, format!("{why}\n").into_bytes()),
            },
            _ => text(StatusCode::NOT_FOUND, plain, b"not found\n".to_vec()),
        }
    }
}
