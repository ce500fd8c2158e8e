//! How long an image is kept: one pure function, [`expires_at`], from who
//! uploaded it, their plan, the surface it came through, its
//! classification and the expiry its uploader asked for. Every path that
//! sets an expiry (upload, import, `PATCH ttl`, a plan change, a verified
//! email, a classification or operator decision) goes through it, so no
//! path can give an image more time than the table allows.
//!
//! The order is fixed: the base window (the surface's for anonymous
//! uploads, the plan's for teams), then the uploader's own request (which
//! can only shorten it), then the ceilings, last, so nothing above can lift
//! them:
//! - anonymous uploads: at most `anonymous_ceiling_days` (2 years) after
//!   upload, whatever a surface advertises;
//! - uploads of unverified accounts: at most `unverified_days`, on every
//!   team they upload to;
//! - restricted content on plans that are not paid: at most
//!   `restricted_days`.
//!
//! Windows run from the upload (`created_at`); the request is an absolute
//! time. For anonymous uploads the expiry shown at upload is stored as the
//! request, so a later recomputation can shorten what the surface disclosed
//! but never extend it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::dates::{days_text, DAY};

/// The ceiling no configuration can lift: two years.
pub const ANONYMOUS_CEILING_MAX_DAYS: i64 = 730;

/// `[retention]`: the windows of the table. Defaults are in `docs/design.md`
/// and the README's retention table (generated from these).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Anonymous uploads, on surfaces not listed in `surfaces`.
    pub anonymous_days: i64,
    /// Anonymous uploads per upload surface (`api`, `legacy_upload`,
    /// `legacy_import`, `web`), for surfaces that disclose another window.
    pub surfaces: BTreeMap<String, i64>,
    /// No anonymous upload outlives this (at most 730).
    pub anonymous_ceiling_days: i64,
    /// Uploads of accounts whose email is not verified.
    pub unverified_days: i64,
    /// Restricted content (e.g. nudity) on plans that are not paid.
    pub restricted_days: i64,
    /// Deleted, expired, taken-down and removed images stay this long in
    /// the recovery store (operators only), then are reaped.
    pub recovery_days: i64,
    /// API request logs.
    pub request_log_days: i64,
    /// Seconds between sweeps.
    pub sweep_every_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            anonymous_days: 30,
            surfaces: BTreeMap::new(),
            anonymous_ceiling_days: ANONYMOUS_CEILING_MAX_DAYS,
            unverified_days: 30,
            restricted_days: 30,
            recovery_days: 30,
            request_log_days: 30,
            sweep_every_secs: 60,
        }
    }
}

impl RetentionConfig {
    /// Every problem, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let ceiling = self.anonymous_ceiling_days;
        if !(1..=ANONYMOUS_CEILING_MAX_DAYS).contains(&ceiling) {
            p.push(format!(
                "retention.anonymous_ceiling_days: 1 to {ANONYMOUS_CEILING_MAX_DAYS} (anonymous uploads are never kept longer than 2 years)"
            ));
        }
        for (name, days) in [
            ("anonymous_days", self.anonymous_days),
            ("unverified_days", self.unverified_days),
            ("restricted_days", self.restricted_days),
            ("recovery_days", self.recovery_days),
            ("request_log_days", self.request_log_days),
        ] {
            if days < 1 {
                p.push(format!("retention.{name}: at least 1 day"));
            }
        }
        for (surface, days) in &self.surfaces {
            if Surface::parse(surface).is_none() {
                p.push(format!("retention.surfaces.{surface}: not a surface (api, legacy_upload, legacy_import, web)"));
            }
            if *days < 1 {
                p.push(format!("retention.surfaces.{surface}: at least 1 day"));
            }
        }
        if self.sweep_every_secs == 0 {
            p.push("retention.sweep_every_secs: at least 1".to_string());
        }
        p
    }

    /// The window an anonymous upload through `surface` gets (before the ceiling).
    pub fn anonymous_window_days(&self, surface: Surface) -> i64 {
        self.surfaces.get(surface.as_str()).copied().unwrap_or(self.anonymous_days)
    }
}

/// Where an upload came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Surface {
    /// `POST /v1/images` (upload or import).
    Api,
    /// Legacy `POST /v1/upload`.
    LegacyUpload,
    /// Legacy `POST /v1/import`.
    LegacyImport,
    /// The website's upload page.
    Web,
}

impl Surface {
    pub const ALL: [Surface; 4] = [Surface::Api, Surface::LegacyUpload, Surface::LegacyImport, Surface::Web];

    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Api => "api",
            Surface::LegacyUpload => "legacy_upload",
            Surface::LegacyImport => "legacy_import",
            Surface::Web => "web",
        }
    }

    pub fn parse(s: &str) -> Option<Surface> {
        Surface::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// Who uploaded, as retention sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uploader {
    Anonymous,
    /// An account whose email is not verified (for an API key: a team none
    /// of whose owners is verified).
    Unverified,
    Verified,
}

impl Uploader {
    pub fn as_str(self) -> &'static str {
        match self {
            Uploader::Anonymous => "anonymous",
            Uploader::Unverified => "unverified",
            Uploader::Verified => "verified",
        }
    }
}

/// What the classification means for retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Clean, or not classified yet.
    Clean,
    /// Restricted (served behind a warning) or prohibited (which
    /// moderation keeps off public serving; should an outcome publish it,
    /// it gets at most the restricted window).
    Restricted,
}

impl Class {
    /// From a classification (`clean`, `restricted:nudity`, …) and the
    /// operator's warning flag.
    pub fn of(classification: Option<&str>, warned: bool) -> Class {
        let verdict = classification.and_then(|c| c.split(':').next()).unwrap_or("clean");
        if warned || verdict == "restricted" || verdict == "prohibited" {
            Class::Restricted
        } else {
            Class::Clean
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Clean => "clean",
            Class::Restricted => "restricted",
        }
    }
}

/// What of a plan matters for retention (from `[plans.*]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanTerms {
    /// Days uploads are kept; `None`: until deleted.
    pub retention_days: Option<i64>,
    /// Paid plans keep restricted content.
    pub paid: bool,
}

/// Everything that decides an image's expiry.
#[derive(Debug, Clone, Copy)]
pub struct Subject {
    pub uploader: Uploader,
    /// The team's plan (ignored for anonymous uploads).
    pub plan: PlanTerms,
    pub surface: Surface,
    pub class: Class,
    pub created_at: i64,
    /// The expiry the uploader asked for (a `ttl` at upload or by `PATCH`),
    /// or, for anonymous uploads, the one disclosed at upload.
    pub requested: Option<i64>,
}

/// Which rule set the expiry, for the table and for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Kept until deleted.
    Kept,
    Plan,
    Surface,
    Requested,
    AnonymousCeiling,
    Unverified,
    Restricted,
}

/// When the image expires (`None`: kept until deleted), and why.
pub fn decide(cfg: &RetentionConfig, s: &Subject) -> (Option<i64>, Rule) {
    let days = |d: i64| s.created_at.saturating_add(d.saturating_mul(DAY));
    let mut at = match s.uploader {
        Uploader::Anonymous => (Some(days(cfg.anonymous_window_days(s.surface))), Rule::Surface),
        _ => match s.plan.retention_days {
            Some(d) => (Some(days(d)), Rule::Plan),
            None => (None, Rule::Kept),
        },
    };
    let mut cap = |limit: Option<i64>, rule: Rule| {
        if let Some(limit) = limit {
            if at.0.is_none_or(|t| limit < t) {
                at = (Some(limit), rule);
            }
        }
    };
    cap(s.requested, Rule::Requested);
    // The ceilings, last.
    if s.uploader == Uploader::Anonymous {
        cap(Some(days(cfg.anonymous_ceiling_days.min(ANONYMOUS_CEILING_MAX_DAYS))), Rule::AnonymousCeiling);
    }
    if s.uploader == Uploader::Unverified {
        cap(Some(days(cfg.unverified_days)), Rule::Unverified);
    }
    let paid = s.uploader != Uploader::Anonymous && s.plan.paid;
    if s.class == Class::Restricted && !paid {
        cap(Some(days(cfg.restricted_days)), Rule::Restricted);
    }
    at
}

/// When the image expires; `None`: kept until deleted.
pub fn expires_at(cfg: &RetentionConfig, s: &Subject) -> Option<i64> {
    decide(cfg, s).0
}

/// The retention table: every combination of uploader, plan, surface and
/// classification that leads to a different window, computed by
/// [`decide`] itself, then what else is kept and for how long. `plans` are
/// the team plans by name; `sessions` the sliding and hard session limits
/// in days. Printed by `imgcdn admin retention table` and copied into the
/// README.
pub fn table(cfg: &RetentionConfig, plans: &[(&str, PlanTerms)], sessions: (i64, i64)) -> String {
    let mut out =
        String::from("| uploader | plan | surface | content | kept for | rule |\n|---|---|---|---|---|---|\n");
    let mut rows: Vec<[String; 6]> = Vec::new();
    let mut push = |uploader: Uploader, plan: &str, surface: &str, class: Class, p: PlanTerms, sf: Surface| {
        let s = Subject { uploader, plan: p, surface: sf, class, created_at: 0, requested: None };
        let (at, rule) = decide(cfg, &s);
        rows.push([
            uploader.as_str().into(),
            plan.into(),
            surface.into(),
            class.as_str().into(),
            at.map_or("until deleted".into(), |t| days_text(t / DAY)),
            rule_text(rule).into(),
        ]);
    };
    // Anonymous: one row per surface with its own window, one for the rest.
    for class in [Class::Clean, Class::Restricted] {
        for surface in cfg.surfaces.keys() {
            let sf = Surface::parse(surface).unwrap_or(Surface::Api);
            push(Uploader::Anonymous, "–", surface, class, PlanTerms::default(), sf);
        }
        let other = if cfg.surfaces.is_empty() { "any" } else { "any other" };
        let sf = Surface::ALL.into_iter().find(|s| !cfg.surfaces.contains_key(s.as_str())).unwrap_or(Surface::Api);
        push(Uploader::Anonymous, "–", other, class, PlanTerms::default(), sf);
    }
    for uploader in [Uploader::Unverified, Uploader::Verified] {
        for class in [Class::Clean, Class::Restricted] {
            for &(name, plan) in plans {
                push(uploader, name, "any", class, plan, Surface::Api);
            }
        }
    }
    // Rows that read the same except for the plan are merged.
    let mut merged: Vec<[String; 6]> = Vec::new();
    for row in rows {
        match merged.last_mut() {
            Some(last) if last[0] == row[0] && last[2..] == row[2..] => last[1] = format!("{}, {}", last[1], row[1]),
            _ => merged.push(row),
        }
    }
    for r in merged {
        out.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    out.push_str(&format!(
        "\nA `ttl` (300 s to 90 days) can only shorten these, and no anonymous upload is kept more than {} \
         whatever a surface advertises. Prohibited content is taken off public serving as soon \
         as it is classified or taken down. Deleted, expired, taken-down and removed images stay {} in the recovery \
         store (operators only), then are reaped and their record purged (while a DMCA counter-notice or court action \
         is pending, not before it is resolved).\n\n\
         | other data | kept for |\n|---|---|\n\
         | sessions, with the sign-in IP address and user agent | {} without use, {} at most |\n\
         | API request logs (API-key calls: route, status, key, client address) | {} |\n\
         | email links, invitations, idempotency records | until used or expired, then deleted by the next sweep |\n",
        days_text(cfg.anonymous_ceiling_days.min(ANONYMOUS_CEILING_MAX_DAYS)),
        days_text(cfg.recovery_days),
        days_text(sessions.0),
        days_text(sessions.1),
        days_text(cfg.request_log_days),
    ));
    out
}

fn rule_text(rule: Rule) -> &'static str {
    match rule {
        Rule::Kept => "plan",
        Rule::Plan => "plan window",
        Rule::Surface => "surface window",
        Rule::Requested => "ttl",
        Rule::AnonymousCeiling => "anonymous ceiling",
        Rule::Unverified => "unverified ceiling",
        Rule::Restricted => "restricted on an unpaid plan",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FREE: PlanTerms = PlanTerms { retention_days: None, paid: false };
    const PAID: PlanTerms = PlanTerms { retention_days: None, paid: true };
    const ANON: PlanTerms = PlanTerms { retention_days: None, paid: false };

    fn plans() -> [(&'static str, PlanTerms); 3] {
        [("free", FREE), ("pro", PAID), ("unlimited", PAID)]
    }

    fn subject(uploader: Uploader, plan: PlanTerms, class: Class, requested: Option<i64>) -> Subject {
        Subject { uploader, plan, surface: Surface::Api, class, created_at: 1_000 * DAY, requested }
    }

    #[test]
    fn every_row_of_the_default_table() {
        let cfg = RetentionConfig::default();
        let t0 = 1_000 * DAY;
        let cases = [
            (Uploader::Anonymous, ANON, Class::Clean, Some(t0 + 30 * DAY)),
            (Uploader::Anonymous, ANON, Class::Restricted, Some(t0 + 30 * DAY)),
            (Uploader::Unverified, FREE, Class::Clean, Some(t0 + 30 * DAY)),
            (Uploader::Unverified, PAID, Class::Clean, Some(t0 + 30 * DAY)),
            (Uploader::Unverified, PAID, Class::Restricted, Some(t0 + 30 * DAY)),
            (Uploader::Verified, FREE, Class::Clean, None),
            (Uploader::Verified, FREE, Class::Restricted, Some(t0 + 30 * DAY)),
            (Uploader::Verified, PAID, Class::Restricted, None),
            (Uploader::Verified, PAID, Class::Clean, None),
        ];
        for (uploader, plan, class, want) in cases {
            assert_eq!(expires_at(&cfg, &subject(uploader, plan, class, None)), want, "{uploader:?} {class:?}");
        }
    }

    #[test]
    fn a_request_only_shortens_and_the_ceilings_come_last() {
        let mut cfg = RetentionConfig::default();
        let t0 = 1_000 * DAY;
        // Shorter: taken. Longer: the window wins.
        let s = subject(Uploader::Unverified, FREE, Class::Clean, Some(t0 + 5 * DAY));
        assert_eq!(decide(&cfg, &s), (Some(t0 + 5 * DAY), Rule::Requested));
        let s = subject(Uploader::Unverified, FREE, Class::Clean, Some(t0 + 90 * DAY));
        assert_eq!(decide(&cfg, &s), (Some(t0 + 30 * DAY), Rule::Unverified));
        // A surface advertising 5 years still stops at the 2-year ceiling.
        cfg.surfaces.insert("web".into(), 5 * 365);
        let s = Subject { surface: Surface::Web, ..subject(Uploader::Anonymous, ANON, Class::Clean, None) };
        assert_eq!(decide(&cfg, &s), (Some(t0 + 730 * DAY), Rule::AnonymousCeiling));
        // Even a misconfigured ceiling cannot pass two years.
        cfg.anonymous_ceiling_days = 10_000;
        assert_eq!(expires_at(&cfg, &s), Some(t0 + 730 * DAY));
        // A plan with a window: the shorter of it and the ceiling.
        let trial = PlanTerms { retention_days: Some(7), paid: false };
        let s = subject(Uploader::Verified, trial, Class::Restricted, None);
        assert_eq!(decide(&cfg, &s), (Some(t0 + 7 * DAY), Rule::Plan));
    }

    #[test]
    fn classification_and_warnings_read_as_restricted() {
        assert_eq!(Class::of(None, false), Class::Clean);
        assert_eq!(Class::of(Some("clean"), false), Class::Clean);
        assert_eq!(Class::of(Some("clean"), true), Class::Restricted);
        assert_eq!(Class::of(Some("restricted:nudity"), false), Class::Restricted);
        assert_eq!(Class::of(Some("prohibited:csam"), false), Class::Restricted);
    }

    #[test]
    fn the_table_shows_each_window_once() {
        let t = table(&RetentionConfig::default(), &plans(), (90, 180));
        assert!(t.contains("| anonymous | – | any | clean | 30 days | surface window |"), "{t}");
        assert!(
            t.contains("| unverified | free, pro, unlimited | any | clean | 30 days | unverified ceiling |"),
            "{t}"
        );
        assert!(t.contains("| verified | free | any | restricted | 30 days | restricted on an unpaid plan |"), "{t}");
        assert!(t.contains("| verified | pro, unlimited | any | restricted | until deleted | plan |"), "{t}");
        assert!(t.contains("| 90 days without use, 180 days at most |"), "{t}");
    }

    #[test]
    fn config_problems() {
        let mut c = RetentionConfig::default();
        assert!(c.problems().is_empty());
        c.anonymous_ceiling_days = 731;
        c.surfaces.insert("tool".into(), 1);
        c.recovery_days = 0;
        assert_eq!(c.problems().len(), 3, "{:?}", c.problems());
    }
}
