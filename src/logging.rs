//! Process-wide logging: `tracing` with `log` records (pingora's) bridged
//! in, written to stderr through a filter that redacts anything shaped like
//! an IP address.
//!
//! Our own code never logs a client address. Pingora does in a few paths
//! (failed TLS handshakes at error level; dropped streams at debug level,
//! which the `log` crate's `max_level_info` feature compiles out), so the
//! redaction is the last line of defence for the promise that no visitor
//! IP is ever written anywhere.
//!
//! The operator's own infrastructure is not a visitor: the addresses the
//! configuration names (control planes, object-store endpoints, the SMTP
//! relay, the database, our own listeners) are [`allow`]ed and stay legible,
//! so a failing sync target or store can be identified from the log.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::RwLock;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

pub use imgcdn_shared::config::LogFormat;

/// Install the global subscriber. `RUST_LOG` overrides the default filter.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(RedactingStderr).with_ansi(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Addresses that may appear in logs as they are: the operator's own, as
/// (IP, port, whether the port was written out) — a visitor on the same
/// machine (loopback in development) comes from another port and stays
/// masked.
static ALLOWED: RwLock<Vec<(IpAddr, u16, bool)>> = RwLock::new(Vec::new());

/// Let the addresses named by these URLs or `host:port`s through the
/// redaction (host names need nothing: only IP-shaped text is masked). A
/// URL without a port stands for its scheme's default port.
pub fn allow<'a>(targets: impl IntoIterator<Item = &'a str>) {
    let found: Vec<(IpAddr, u16, bool)> = targets.into_iter().filter_map(endpoint_in).collect();
    if let Ok(mut allowed) = ALLOWED.write() {
        allowed.extend(found);
        allowed.sort();
        allowed.dedup();
    }
}

/// The IP literal and port of a URL's or address's host, if it is one.
fn endpoint_in(target: &str) -> Option<(IpAddr, u16, bool)> {
    let (scheme, rest) = target.split_once("://").unwrap_or(("", target));
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        "postgres" | "postgresql" => 5432,
        "smtp" => 25,
        _ => 0,
    };
    if let Ok(sa) = authority.parse::<SocketAddr>() {
        return Some((sa.ip(), sa.port(), true));
    }
    if let Some(v6) = authority.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
        return Some((v6.parse().ok()?, default_port, false));
    }
    Some((authority.parse().ok()?, default_port, false))
}

/// Whether `ip`, followed in the text by `rest`, is an allowed endpoint:
/// its port follows (`:8091`, `]:8091`), or no port does and it was
/// configured without one.
fn is_allowed(ip: IpAddr, rest: &str) -> bool {
    let rest = rest.strip_prefix(']').unwrap_or(rest);
    let digits: String =
        rest.strip_prefix(':').map(|r| r.chars().take_while(char::is_ascii_digit).collect()).unwrap_or_default();
    let port: Option<u16> = digits.parse().ok();
    ALLOWED
        .read()
        .is_ok_and(|a| a.iter().any(|&(aip, aport, explicit)| aip == ip && port.map_or(!explicit, |p| p == aport)))
}

struct RedactingStderr;

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = Redacting<io::Stderr>;
    fn make_writer(&'a self) -> Self::Writer {
        Redacting(io::stderr())
    }
}

/// Redacts each chunk written through it (the fmt layer writes one event
/// per call, so an address is never split across chunks).
pub struct Redacting<W>(pub W);

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

const MASK: &str = "<addr>";

/// Replace IPv4 and IPv6 addresses (with or without a port) by a mask.
pub fn redact(line: &str) -> String {
    let v4 = replace_runs(
        line,
        |c| c.is_ascii_digit() || c == '.',
        |tok, rest| {
            let t = tok.trim_matches('.');
            let ip = t.parse::<Ipv4Addr>().ok()?;
            (!is_allowed(IpAddr::V4(ip), rest)).then(|| tok.replacen(t, MASK, 1))
        },
    );
    replace_runs(
        &v4,
        |c| c.is_ascii_hexdigit() || c == ':' || c == '.',
        |tok, rest| {
            let punct = |c: char| c == ':' || c == '.';
            // Punctuation around an address ("from ::1:" …) may belong to the text.
            [tok, tok.trim_end_matches(punct), tok.trim_start_matches('.'), tok.trim_matches(punct)]
                .into_iter()
                .find_map(|t| {
                    if t.matches(':').count() < 2 {
                        return None;
                    }
                    let ip = t.parse::<Ipv6Addr>().map(IpAddr::V6).or_else(|_| t.parse::<SocketAddr>().map(|s| s.ip()));
                    ip.ok().map(|ip| (t, ip))
                })
                .and_then(|(t, ip)| (!(t == tok && is_allowed(ip, rest))).then(|| tok.replacen(t, MASK, 1)))
        },
    )
}

/// Apply `f` to every maximal run of chars matching `class` that stands on
/// its own: a run glued to identifier characters (`core::server`, `h2::frame`)
/// is part of a word, not an address.
/// `f` also gets the text after the run.
fn replace_runs(s: &str, class: impl Fn(char) -> bool, f: impl Fn(&str, &str) -> Option<String>) -> String {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut out = String::with_capacity(s.len());
    let mut start = None;
    let mut before = None;
    let mut prev = None;
    for (i, c) in s.char_indices().chain(std::iter::once((s.len(), ' '))) {
        let inside = i < s.len() && class(c);
        match (start, inside) {
            (None, true) => {
                start = Some(i);
                before = prev;
            }
            (Some(b), false) => {
                let tok = &s[b..i];
                let after = (i < s.len()).then_some(c);
                let standalone = !word(before) && !word(after);
                let replaced = if standalone { f(tok, &s[i..]) } else { None };
                out.push_str(replaced.as_deref().unwrap_or(tok));
                start = None;
                if i < s.len() {
                    out.push(c);
                }
            }
            (None, false) if i < s.len() => out.push(c),
            _ => {}
        }
        prev = Some(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{allow, endpoint_in, redact};

    #[test]
    fn addresses_are_masked() {
        for (input, want) in [
            (
                "Downstream handshake error from 127.0.0.2:51234: eof",
                "Downstream handshake error from <addr>:51234: eof",
            ),
            ("peer 10.1.2.3 dropped", "peer <addr> dropped"),
            ("from [::1]:443", "from [<addr>]:443"),
            ("from [2001:db8::7]:80 x", "from [<addr>]:80 x"),
            ("v6 ::ffff:127.0.0.2 mapped", "v6 <addr>:<addr> mapped"),
            ("addr=192.168.0.1,", "addr=<addr>,"),
            ("fe80::1%eth0", "<addr>%eth0"),
        ] {
            assert_eq!(redact(input), want, "{input}");
        }
    }

    #[test]
    fn ordinary_text_is_kept() {
        for s in [
            "2026-11-29T19:09:41.123456Z  INFO imgcdn: started",
            "read 1.5 MB in 12:30",
            "version 0.9.1 ready",
            "id aB3dE6gH served",
            "deadbeef cafe",
            "INFO pingora_core::server::bootstrap_services: Bootstrap starting",
            "h2::proto::streams::flow_control: inc_window",
            "FramedWrite::buffer{frame=Settings}",
        ] {
            assert_eq!(redact(s), s);
        }
    }

    #[test]
    fn configured_upstreams_stay_legible_and_visitors_do_not() {
        // Addresses only these tests use, so the process-wide allow list
        // does not change what the other tests see.
        allow(["http://10.77.0.9:8091/v1/edge", "s3.example.com", "[2001:db8::77]:587", "postgres://u@10.77.0.10/db"]);
        assert_eq!(
            redact("sync call to http://10.77.0.9:8091/v1/edge/changes failed"),
            "sync call to http://10.77.0.9:8091/v1/edge/changes failed"
        );
        assert_eq!(redact("smtp [2001:db8::77]:587 refused"), "smtp [2001:db8::77]:587 refused");
        assert_eq!(redact("db 10.77.0.10:5432 down"), "db 10.77.0.10:5432 down");
        // Visitors are still masked, on another host or on another port of
        // an allowed one (loopback in development).
        assert_eq!(redact("from 10.77.0.11:4000 to 10.77.0.9:8091"), "from <addr>:4000 to 10.77.0.9:8091");
        assert_eq!(redact("from 10.77.0.9:51000"), "from <addr>:51000");
        assert_eq!(redact("peer 10.77.0.9 (no port)"), "peer <addr> (no port)");
        assert_eq!(redact("db 10.77.0.10 down"), "db 10.77.0.10 down");
        assert_eq!(redact("from [2001:db8::77]:40000"), "from [<addr>]:40000");
    }

    #[test]
    fn endpoints_are_read_from_urls_and_addresses() {
        let at = |t: &str| endpoint_in(t).map(|(ip, port, _)| format!("{ip} {port}"));
        assert_eq!(at("http://1.2.3.4:81/x").as_deref(), Some("1.2.3.4 81"));
        assert_eq!(at("postgres://u:p@10.0.0.1/db").as_deref(), Some("10.0.0.1 5432"));
        assert_eq!(at("[::1]:8080").as_deref(), Some("::1 8080"));
        assert_eq!(at("https://[fd00::2]/").as_deref(), Some("fd00::2 443"));
        assert_eq!(at("10.0.0.2:25").as_deref(), Some("10.0.0.2 25"));
        assert_eq!(at("https://r2.example.com"), None);
    }
}
