//! Process-wide logging: `tracing` with `log` records (pingora's) bridged
//! in, written to stderr through a filter that redacts anything shaped like
//! an IP address.
//!
//! Our own code never logs a client address. Pingora does in a few paths
//! (failed TLS handshakes at error level; dropped streams at debug level,
//! which the `log` crate's `max_level_info` feature compiles out), so the
//! redaction is the last line of defence for the promise that no visitor
//! IP is ever written anywhere.

use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Install the global subscriber. `RUST_LOG` overrides the default filter.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(RedactingStderr).with_ansi(false).init();
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
        |tok| {
            let t = tok.trim_matches('.');
            t.parse::<Ipv4Addr>().is_ok().then(|| tok.replacen(t, MASK, 1))
        },
    );
    replace_runs(
        &v4,
        |c| c.is_ascii_hexdigit() || c == ':' || c == '.',
        |tok| {
            let punct = |c: char| c == ':' || c == '.';
            // Punctuation around an address ("from ::1:" …) may belong to the text.
            [tok, tok.trim_end_matches(punct), tok.trim_start_matches('.'), tok.trim_matches(punct)]
                .into_iter()
                .find(|t| {
                    t.matches(':').count() >= 2 && (t.parse::<Ipv6Addr>().is_ok() || t.parse::<SocketAddr>().is_ok())
                })
                .map(|t| tok.replacen(t, MASK, 1))
        },
    )
}

/// Apply `f` to every maximal run of chars matching `class` that stands on
/// its own: a run glued to identifier characters (`core::server`, `h2::frame`)
/// is part of a word, not an address.
fn replace_runs(s: &str, class: impl Fn(char) -> bool, f: impl Fn(&str) -> Option<String>) -> String {
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
                let replaced = if standalone { f(tok) } else { None };
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
    use super::redact;

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
}
