//! `GET /privacy`: the privacy policy in full (`privacy-policy.txt`,
//! compiled in), after a short list of the rights and the pages where each
//! is exercised; `GET /subprocessors`: who processes personal data for
//! this deployment (from config).
//!
//! The policy's text is plain: a short line without a closing period is a
//! heading, `- ` lines form a list, other lines are paragraphs; the short
//! lines after one ending in `:` (an address) stay together as one block.

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use maud::{html, Markup};
use serde_json::json;

use crate::web::layout::{self, Chrome};
use crate::web::session::Visitor;
use crate::AppState;

const POLICY: &str = include_str!("../privacy-policy.txt");

/// Longest line that can be a heading.
const HEADING_MAX: usize = 80;
/// Longest line of an address block.
const ADDRESS_LINE_MAX: usize = 40;

/// A piece of the policy's text.
#[derive(Debug, PartialEq)]
enum Block<'a> {
    Heading(&'a str),
    Paragraph(&'a str),
    List(Vec<&'a str>),
    /// Lines that belong together (a postal address).
    Lines(Vec<&'a str>),
}

fn is_heading(line: &str) -> bool {
    line.chars().count() <= HEADING_MAX
        && !line.starts_with("- ")
        && !line.ends_with(['.', ':', ';', ','])
        && line.chars().next().is_some_and(char::is_alphabetic)
}

fn blocks(text: &str) -> Vec<Block<'_>> {
    let mut out = Vec::new();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty()).peekable();
    while let Some(line) = lines.next() {
        if let Some(first) = line.strip_prefix("- ") {
            let mut items = vec![first];
            while let Some(item) = lines.peek().and_then(|l| l.strip_prefix("- ")) {
                items.push(item);
                lines.next();
            }
            out.push(Block::List(items));
        } else if is_heading(line) {
            out.push(Block::Heading(line));
        } else {
            out.push(Block::Paragraph(line));
            if line.ends_with(':') {
                let mut group = Vec::new();
                while let Some(next) = lines.next_if(|l| !l.starts_with("- ") && l.chars().count() <= ADDRESS_LINE_MAX)
                {
                    group.push(next);
                }
                if !group.is_empty() {
                    out.push(Block::Lines(group));
                }
            }
        }
    }
    out
}

/// `policy-your-rights` for "Your Rights": the heading's anchor.
fn anchor(heading: &str) -> String {
    let words: Vec<String> = heading
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    format!("policy-{}", words.join("-"))
}

/// Text with its email addresses and site paths as links.
fn inline(text: &str) -> Markup {
    html! {
        @for (i, word) in text.split(' ').enumerate() {
            @if i > 0 { " " }
            @let core = word.trim_end_matches(['.', ',', ';', ':', ')']);
            @let rest = &word[core.len()..];
            @if core.contains('@') && core.contains('.') && !core.starts_with('@') {
                a href=(format!("mailto:{core}")) { (core) } (rest)
            } @else if core.len() > 1 && core.starts_with('/') && !core.starts_with("//") {
                a href=(core) { (core) } (rest)
            } @else {
                (word)
            }
        }
    }
}

fn policy_markup(blocks: &[Block<'_>]) -> Markup {
    html! {
        @for block in blocks {
            @match block {
                Block::Heading(h) => h2 id=(anchor(h)) { (h) },
                Block::Paragraph(p) => p { (inline(p)) },
                Block::List(items) => ul { @for item in items { li { (inline(item)) } } },
                Block::Lines(lines) => address {
                    @for (i, line) in lines.iter().enumerate() {
                        @if i > 0 { br; }
                        (line)
                    }
                },
            }
        }
    }
}

/// `GET /privacy`: the rights and where to exercise them, then the policy.
pub async fn privacy_page(State(state): State<AppState>, Visitor(session): Visitor) -> Response {
    let grace = state.cfg.privacy.deletion_grace_days;
    let policy = blocks(POLICY);
    let headings: Vec<&str> =
        policy.iter().filter_map(|b| if let Block::Heading(h) = b { Some(*h) } else { None }).collect();
    let body = html! {
        section.panel aria-labelledby="rights" {
            h2 #rights { "Your rights, in short" }
            ul {
                li {
                    strong { "A copy of your data: " }
                    a href="/settings#data" { "Settings → Your data" }
                    " builds a file of everything we hold about you, to keep or take elsewhere."
                }
                li {
                    strong { "Correct it: " }
                    "change your " a href="/settings#profile" { "name" } " or "
                    a href="/settings#email" { "email address" } " in Settings."
                }
                li {
                    strong { "Delete your account: " }
                    a href="/settings#delete" { "Settings → Delete your account" }
                    ". You can undo it for " (grace) " days with the link we email you; then everything is erased."
                }
                li {
                    strong { "Say no: " }
                    "stop marketing email, or restrict or object to how we process your data, in "
                    a href="/settings#privacy" { "Settings → Privacy choices" } ". We honour Global Privacy Control."
                }
                li {
                    strong { "Who processes data for us: " }
                    a href="/subprocessors" { "our subprocessors" } "."
                }
            }
            @if session.is_none() {
                p.hint { "These pages need you to " a href="/login?next=/settings" { "log in" } " first." }
            }
        }
        nav aria-label="Contents of the policy" {
            h2 #contents { "Contents" }
            ul {
                @for h in &headings {
                    li { a href=(format!("#{}", anchor(h))) { (h) } }
                }
            }
        }
        (policy_markup(&policy))
    };
    layout::ok("Privacy policy", Chrome::user(session.as_ref()), body)
}

/// `GET /subprocessors`: who processes personal data for this deployment;
/// JSON for `Accept: application/json`, a page otherwise.
pub async fn subprocessors(State(state): State<AppState>, Visitor(session): Visitor, headers: HeaderMap) -> Response {
    let list = &state.cfg.privacy.subprocessors;
    let wants_json =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("application/json"));
    if wants_json {
        return Json(json!({ "object": "list", "data": list })).into_response();
    }
    let body = html! {
        @if list.is_empty() {
            p { "This service uses no subprocessors: nobody else processes personal data for it." }
        } @else {
            p { "These companies process personal data for this service, each under a data processing agreement." }
            div.table-wrap {
                table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Purpose" } th scope="col" { "Location" } } }
                    tbody {
                        @for s in list {
                            tr { td { (s.name) } td { (s.purpose) } td { (s.location) } }
                        }
                    }
                }
            }
        }
    };
    layout::ok("Subprocessors", Chrome::user(session.as_ref()), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy states numbers; the defaults must keep them (a deployment
    /// that changes them changes its policy text too).
    #[test]
    fn the_defaults_keep_the_numbers_the_policy_states() {
        let cfg = crate::config::Config::default();
        let grace = format!("reversible for {} days", cfg.privacy.deletion_grace_days);
        assert!(POLICY.contains(&grace), "the policy says erasure is {grace}");
        let log = format!("retained ~{} days", cfg.retention.request_log_days);
        assert!(POLICY.contains(&log), "the policy says API request logs are {log}");
        assert!(POLICY.contains("sliding expiry of approximately three months"));
        assert_eq!((cfg.sessions.sliding_days, cfg.sessions.max_days), (90, 180), "three and six months");
        assert!(POLICY.contains("not intended for children under 16"));
    }

    #[test]
    fn short_lines_are_headings_dashes_lists_and_an_address_stays_together() {
        let text = "Data Controller\nThe controller is:\nMoshi Inc.\n4023 Kennett Pike\nUnited States\n\
                    Contact us at privacy@example.com for anything at all.\nOverview\n- one\n- two\nA paragraph.";
        assert_eq!(
            blocks(text),
            vec![
                Block::Heading("Data Controller"),
                Block::Paragraph("The controller is:"),
                Block::Lines(vec!["Moshi Inc.", "4023 Kennett Pike", "United States"]),
                Block::Paragraph("Contact us at privacy@example.com for anything at all."),
                Block::Heading("Overview"),
                Block::List(vec!["one", "two"]),
                Block::Paragraph("A paragraph."),
            ]
        );
    }

    #[test]
    fn the_policy_has_its_sections_as_headings() {
        let headings: Vec<String> = blocks(POLICY)
            .iter()
            .filter_map(|b| if let Block::Heading(h) = b { Some(h.to_string()) } else { None })
            .collect();
        for h in ["Data Controller", "Retention", "Your Rights", "Children", "Contact"] {
            assert!(headings.iter().any(|x| x == h), "{h} in {headings:?}");
        }
        assert!(!headings.iter().any(|h| h.contains("United States") || h.contains("Kennett")), "{headings:?}");
        assert_eq!(
            anchor("Legal Bases for Processing (GDPR / UK GDPR)"),
            "policy-legal-bases-for-processing-gdpr-uk-gdpr"
        );
    }

    #[test]
    fn addresses_and_paths_become_links() {
        let html = inline("Write to privacy@img.pro. The list is at /subprocessors.").into_string();
        assert!(html.contains("<a href=\"mailto:privacy@img.pro\">privacy@img.pro</a>."), "{html}");
        assert!(html.contains("<a href=\"/subprocessors\">/subprocessors</a>."), "{html}");
    }
}
