//! Operators on requests: `Authorization: Bearer img_op_…`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::bearer;
use crate::error::ApiError;
use crate::operators::{self, OPERATOR_TOKEN_PREFIX};
use crate::AppState;

/// An authenticated operator.
pub type OperatorAuth = operators::Operator;

impl FromRequestParts<AppState> for OperatorAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let denied = || ApiError::Unauthorized("Operator token required (Authorization: Bearer img_op_…).".into());
        let token = bearer(parts).filter(|t| t.starts_with(OPERATOR_TOKEN_PREFIX)).ok_or_else(denied)?;
        operators::authenticate(&state.db, token).await?.ok_or_else(denied)
    }
}
