//! Routes outside the public API document: the edge endpoints of edge sync
//! (edge tokens) and the operator API (operator tokens).

use axum::routing::{get, post};
use axum::Router;

use crate::api::{admin, edge_sync};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(imgcdn_shared::sync::PATH_CHANGES, get(edge_sync::changes))
        .route(imgcdn_shared::sync::PATH_SNAPSHOT, get(edge_sync::snapshot))
        .route(imgcdn_shared::sync::PATH_ACK, post(edge_sync::ack))
        .route("/v1/admin/images/{id}", get(admin::image_state))
        .route("/v1/admin/images/{id}/{decision}", post(admin::decision))
        .route("/v1/admin/takedowns", get(admin::takedowns))
        .route("/v1/admin/changes/{seq}", get(admin::change_propagation))
        .route("/v1/admin/edges", get(admin::edges))
        .route("/v1/admin/review", get(admin::review_queue))
        .route("/v1/admin/review/{item_id}", get(admin::review_item))
        .route("/v1/admin/review/{item_id}/{decision}", post(admin::review_decide))
        .route("/v1/admin/review-log", get(admin::review_log))
        .route("/v1/admin/blocklist", post(admin::blocklist_add))
        .route("/v1/admin/blocklist/matches", get(admin::blocklist_matches))
        .route("/v1/admin/dmca/{id}", get(admin::dmca_get))
        .route("/v1/admin/dmca/{id}/takedown", post(admin::dmca_takedown))
        .route("/v1/admin/dmca/{id}/court-action", post(admin::dmca_court_action))
        .route("/v1/admin/accounts/erase", post(admin::erase_account))
}
