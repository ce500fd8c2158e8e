//! Edge sync: the wire format between the control plane and the edges.
//!
//! The control plane keeps an append-only log of visibility changes, each
//! with a sequence number (`seq`, strictly increasing, gaps allowed, and
//! committed in order: when `seq` N is visible every change below N is).
//! Each change says what an image id is *now* at the edge; the latest
//! change for an id wins, and `restore` means "nothing to enforce".
//!
//! Edges authenticate with `Authorization: Bearer <edge token>` (one token
//! per edge in the control plane's config; the token names the edge).
//!
//! | call | answer |
//! |---|---|
//! | `GET /v1/edge/changes?after=SEQ&wait_ms=MS` | 200 [`ChangesPage`]: the changes after `SEQ` (at most [`MAX_PAGE`]), at once if there are any, otherwise after waiting up to `wait_ms` (capped by the control plane) for one. 410 [`SNAPSHOT_REQUIRED`] when `SEQ` is too far behind, or ahead of the log (the edge last spoke to another database). |
//! | `GET /v1/edge/snapshot` | 200 [`Snapshot`]: every id with something to enforce, as of `seq`. |
//! | `POST /v1/edge/ack` [`Ack`] | 204: the edge has applied (and persisted) everything up to `seq`. |
//!
//! A missing or unknown token is a 401 with no body detail.

use serde::{Deserialize, Serialize};

use crate::ImageId;

pub const PATH_CHANGES: &str = "/v1/edge/changes";
pub const PATH_SNAPSHOT: &str = "/v1/edge/snapshot";
pub const PATH_ACK: &str = "/v1/edge/ack";

/// Most changes in one [`ChangesPage`].
pub const MAX_PAGE: usize = 1000;

/// The `error.code` of a 410 from `changes`: fetch a snapshot.
pub const SNAPSHOT_REQUIRED: &str = "snapshot_required";

/// What an edge does with an image id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Legal or policy removal: `451 Unavailable For Legal Reasons`.
    Takedown,
    /// Private, deleted, expired or in recovery: `404`, as if it never was.
    Hide,
    /// Restricted: served with a marking header (or blocked, by edge config);
    /// the viewer page shows an interstitial.
    Warn,
    /// Nothing to enforce any more.
    Restore,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Takedown => "takedown",
            Action::Hide => "hide",
            Action::Warn => "warn",
            Action::Restore => "restore",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "takedown" => Action::Takedown,
            "hide" => Action::Hide,
            "warn" => Action::Warn,
            "restore" => Action::Restore,
            _ => return None,
        })
    }

    /// Whether cached bytes of the id must leave the edge's caches.
    pub fn purges(self) -> bool {
        matches!(self, Action::Takedown | Action::Hide)
    }
}

/// Reason codes a takedown may carry. The edge never shows them; they are
/// for the operators' records and transparency reports.
pub const TAKEDOWN_REASONS: &[&str] =
    &["csam", "terrorism", "copyright", "court_order", "privacy", "illegal_content", "terms_violation"];

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub seq: u64,
    pub id: ImageId,
    pub action: Action,
    /// The takedown reason code (takedowns only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Answer to `changes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangesPage {
    /// In `seq` order.
    pub changes: Vec<Change>,
    /// The latest `seq` in the log when this page was read (≥ every change
    /// in it); `head - applied` is the edge's lag.
    pub head: u64,
    /// The page stops before `head`: ask again after its last change.
    /// Otherwise the edge has everything up to `head`.
    #[serde(default)]
    pub more: bool,
}

/// Answer to `snapshot`: the latest non-`restore` change of every id, as
/// of `seq`. Applying it replaces an edge's whole state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub seq: u64,
    pub entries: Vec<Change>,
}

/// Body of `ack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_is_stable() {
        let c =
            Change { seq: 7, id: "aB3dE6gH".parse().unwrap(), action: Action::Takedown, reason: Some("csam".into()) };
        let page = ChangesPage { changes: vec![c.clone()], head: 9, more: false };
        let text = serde_json::to_string(&page).unwrap();
        assert_eq!(
            text,
            r#"{"changes":[{"seq":7,"id":"aB3dE6gH","action":"takedown","reason":"csam"}],"head":9,"more":false}"#
        );
        assert_eq!(serde_json::from_str::<ChangesPage>(&text).unwrap(), page);
        let hide = Change { seq: 8, id: c.id, action: Action::Hide, reason: None };
        assert_eq!(serde_json::to_string(&hide).unwrap(), r#"{"seq":8,"id":"aB3dE6gH","action":"hide"}"#);
    }

    #[test]
    fn bad_ids_and_actions_are_refused() {
        assert!(serde_json::from_str::<Change>(r#"{"seq":1,"id":"../etc","action":"hide"}"#).is_err());
        assert!(serde_json::from_str::<Change>(r#"{"seq":1,"id":"aB3dE6gH","action":"nuke"}"#).is_err());
    }

    #[test]
    fn action_names_round_trip() {
        for a in [Action::Takedown, Action::Hide, Action::Warn, Action::Restore] {
            assert_eq!(Action::parse(a.as_str()), Some(a));
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
        assert!(Action::Takedown.purges() && Action::Hide.purges());
        assert!(!Action::Warn.purges() && !Action::Restore.purges());
    }
}
