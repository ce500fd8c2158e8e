//! The admin listener (`admin_listen`; keep it private): `/metrics`
//! (Prometheus text), `/healthz` (the process answers), `/readyz` (it can
//! take traffic: started, and not draining after a shutdown signal).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::AppState;

#[derive(Clone)]
struct Admin {
    state: AppState,
    draining: Arc<AtomicBool>,
}

pub fn router(state: AppState, draining: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Admin { state, draining })
}

async fn metrics(State(a): State<Admin>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], a.state.metrics.render(&a.state).await)
}

/// Ready once serving (the database is migrated and every store answered
/// before the listeners were handed over), until a shutdown signal.
async fn readyz(State(a): State<Admin>) -> impl IntoResponse {
    if a.draining.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

/// Serve the admin router until `stop` flips.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    draining: Arc<AtomicBool>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let app = router(state, draining);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.changed().await;
        })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "admin listener failed");
    }
}
