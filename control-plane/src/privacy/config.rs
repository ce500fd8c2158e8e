//! `[privacy]`: the deletion grace period, how long exports stay
//! downloadable, and the subprocessors `/subprocessors` lists.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    /// Days between asking for deletion and the erasure (the cancel link
    /// works until then).
    pub deletion_grace_days: i64,
    /// Days a finished export can be downloaded.
    pub export_ttl_days: i64,
    /// Who processes personal data for this deployment.
    pub subprocessors: Vec<Subprocessor>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Subprocessor {
    pub name: String,
    pub purpose: String,
    pub location: String,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig { deletion_grace_days: 7, export_ttl_days: 7, subprocessors: Vec::new() }
    }
}

impl PrivacyConfig {
    /// Every problem, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        // The policy promises erasure well inside GDPR's one-month answer.
        if !(1..=21).contains(&self.deletion_grace_days) {
            p.push("privacy.deletion_grace_days: 1 to 21 (erasure must come well inside 30 days)".to_string());
        }
        if self.export_ttl_days < 1 {
            p.push("privacy.export_ttl_days: at least 1".to_string());
        }
        for (i, s) in self.subprocessors.iter().enumerate() {
            if s.name.trim().is_empty() || s.purpose.trim().is_empty() || s.location.trim().is_empty() {
                p.push(format!("privacy.subprocessors[{i}]: name, purpose and location are all required"));
            }
        }
        p
    }
}
