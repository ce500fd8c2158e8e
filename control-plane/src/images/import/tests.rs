//! Every test talks only to servers it starts on 127.0.0.1; blocked
//! addresses are refused before any connection is attempted.

use super::client::{hop_client, Pinned};
use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const MIB: u64 = 1 << 20;

fn policy(allow: &[SocketAddr]) -> FetchPolicy {
    FetchPolicy { max_bytes: MIB, timeout: Duration::from_secs(5), max_redirects: 5, allow: allow.to_vec() }
}

/// What the test server answers to a request for a path.
enum Reply {
    Full {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// `total` bytes, chunked (no Content-Length), in 16 KiB chunks;
    /// how far it got is reported on [`Server::streamed`].
    Chunked {
        total: u64,
    },
    /// Headers claiming `content_length`, then a few bytes and silence.
    Claims {
        content_length: u64,
    },
    /// Reads the request and never answers.
    Silent,
}

fn ok(content_type: &str, body: &[u8]) -> Reply {
    Reply::Full { status: 200, headers: vec![("Content-Type", content_type.to_string())], body: body.to_vec() }
}

fn redirect(status: u16, location: String) -> Reply {
    Reply::Full {
        status,
        headers: vec![("Location", location), ("Set-Cookie", "session=secret; Path=/".into())],
        body: Vec::new(),
    }
}

/// (bytes written, whether the whole body went out).
type Streamed = (u64, bool);

struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    /// Request heads, lower-cased.
    requests: Arc<Mutex<Vec<String>>>,
    streamed: tokio::sync::Mutex<mpsc::UnboundedReceiver<Streamed>>,
}

impl Server {
    async fn start(reply: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::unbounded_channel();
        let reply = Arc::new(reply);
        let (conns, reqs) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                conns.fetch_add(1, Ordering::SeqCst);
                let (reply, reqs, tx) = (reply.clone(), reqs.clone(), tx.clone());
                tokio::spawn(async move {
                    let mut stream = stream;
                    if let Some(head) = read_head(&mut stream).await {
                        reqs.lock().unwrap().push(head.to_ascii_lowercase());
                        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                        answer(stream, reply(&path), tx).await;
                    }
                });
            }
        });
        Server { addr, connections, requests, streamed: tokio::sync::Mutex::new(rx) }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    async fn streamed(&self) -> Streamed {
        let mut rx = self.streamed.lock().await;
        tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("the server finished streaming").unwrap()
    }
}

async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() > 16 * 1024 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

async fn answer(mut stream: TcpStream, reply: Reply, streamed: mpsc::UnboundedSender<Streamed>) {
    match reply {
        Reply::Full { status, headers, body } => {
            let mut head = format!("HTTP/1.1 {status} X\r\n");
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body).await;
            let _ = stream.shutdown().await;
        }
        Reply::Chunked { total } => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n\
                        Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
            let chunk = vec![b'x'; 16 * 1024];
            let mut written = 0u64;
            let mut result = stream.write_all(head.as_bytes()).await;
            while result.is_ok() && written < total {
                let n = (total - written).min(chunk.len() as u64) as usize;
                let mut frame = format!("{n:x}\r\n").into_bytes();
                frame.extend_from_slice(&chunk[..n]);
                frame.extend_from_slice(b"\r\n");
                result = stream.write_all(&frame).await;
                if result.is_ok() {
                    written += n as u64;
                }
            }
            if result.is_ok() {
                result = stream.write_all(b"0\r\n\r\n").await;
            }
            let _ = streamed.send((written, result.is_ok()));
        }
        Reply::Claims { content_length } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n\
                 Content-Length: {content_length}\r\n\r\nxxxx"
            );
            let _ = stream.write_all(head.as_bytes()).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Reply::Silent => tokio::time::sleep(Duration::from_secs(30)).await,
    }
}

#[track_caller]
fn assert_blocked(result: Result<Fetched, FetchError>, kind: &str) {
    match result {
        Err(FetchError::Blocked(k)) => assert_eq!(k, kind),
        other => panic!("expected Blocked({kind}), got {other:?}"),
    }
}

#[tokio::test]
async fn loopback_is_blocked_without_connecting_unless_allowed() {
    let server = Server::start(|_| ok("image/png", b"png")).await;
    let result = fetch_public(&server.url("/x"), &policy(&[])).await;
    assert_blocked(result, "loopback");
    assert_eq!(server.connections(), 0, "refused before connecting");
}

#[tokio::test]
async fn localhost_is_blocked_after_dns_resolution() {
    let server = Server::start(|_| ok("image/png", b"png")).await;
    let url = format!("http://localhost:{}/x", server.addr.port());
    assert_blocked(fetch_public(&url, &policy(&[])).await, "loopback");
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn ipv6_loopback_is_blocked() {
    let server = Server::start(|_| ok("image/png", b"png")).await;
    let url = format!("http://[::1]:{}/x", server.addr.port());
    assert_blocked(fetch_public(&url, &policy(&[])).await, "loopback");
}

#[tokio::test]
async fn cloud_metadata_address_is_blocked_before_any_connection() {
    let started = Instant::now();
    let result = fetch_public("http://169.254.169.254/latest/meta-data", &policy(&[])).await;
    assert_blocked(result, "link-local");
    // A connection attempt would hang or fail slowly; a refusal is instant.
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn private_address_is_blocked() {
    assert_blocked(fetch_public("http://10.0.0.1/", &policy(&[])).await, "private");
    assert_blocked(fetch_public("https://192.168.1.1:8443/a.png", &policy(&[])).await, "private");
}

#[tokio::test]
async fn ipv4_hidden_in_ipv6_or_odd_notation_is_judged_as_ipv4() {
    for (url, kind) in [
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),
        ("http://[2002:a00:1::]/", "private"),
        ("http://[::127.0.0.1]/", "loopback"),
        // WHATWG URL parsing turns these into 127.0.0.1.
        ("http://2130706433/", "loopback"),
        ("http://0x7f.1/", "loopback"),
        ("http://0177.0.0.1/", "loopback"),
    ] {
        assert_blocked(fetch_public(url, &policy(&[])).await, kind);
    }
}

#[tokio::test]
async fn redirect_to_a_local_port_that_is_not_allowed_is_blocked() {
    let target = Server::start(|_| ok("image/png", b"secret")).await;
    let location = target.url("/admin");
    let origin = Server::start(move |_| redirect(302, location.clone())).await;
    let result = fetch_public(&origin.url("/img"), &policy(&[origin.addr])).await;
    assert_blocked(result, "loopback");
    assert_eq!(origin.requests().len(), 1);
    assert_eq!(target.connections(), 0, "the redirect target was never contacted");
}

#[tokio::test]
async fn redirect_to_cloud_metadata_is_blocked() {
    let origin = Server::start(|_| redirect(301, "http://169.254.169.254/latest/meta-data".into())).await;
    let result = fetch_public(&origin.url("/img"), &policy(&[origin.addr])).await;
    assert_blocked(result, "link-local");
}

#[tokio::test]
async fn allowed_server_returns_the_exact_bytes_and_content_type() {
    let body: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let served = body.clone();
    let server = Server::start(move |_| ok("image/webp", &served)).await;
    let fetched = fetch_public(&server.url("/a/cat.webp?v=1#frag"), &policy(&[server.addr])).await.unwrap();
    assert_eq!(fetched.bytes, body);
    assert_eq!(fetched.content_type.as_deref(), Some("image/webp"));
    assert_eq!(fetched.final_url, server.url("/a/cat.webp?v=1"));
    let head = &server.requests()[0];
    assert!(head.starts_with("get /a/cat.webp?v=1 http/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nuser-agent: imgcdn-import/1 (+"), "{head}");
    assert!(!head.contains("\r\nauthorization:") && !head.contains("\r\ncookie:"));
}

#[tokio::test]
async fn redirects_between_allowed_servers_are_followed_without_cookies() {
    let target = Server::start(|_| ok("image/gif", b"GIF89a")).await;
    let location = target.url("/final.gif");
    let origin = Server::start(move |path| match path {
        "/start" => redirect(302, "/next".into()),
        _ => redirect(307, location.clone()),
    })
    .await;
    let allow = [origin.addr, target.addr];
    let fetched = fetch_public(&origin.url("/start"), &policy(&allow)).await.unwrap();
    assert_eq!(fetched.bytes, b"GIF89a");
    assert_eq!(fetched.final_url, target.url("/final.gif"));
    let origin_paths: Vec<String> =
        origin.requests().iter().map(|h| h.split(' ').nth(1).unwrap().to_string()).collect();
    assert_eq!(origin_paths, ["/start", "/next"], "relative Location resolved");
    for head in origin.requests().iter().chain(&target.requests()) {
        assert!(!head.contains("\r\ncookie:"), "{head}");
        assert!(!head.contains("\r\nauthorization:"), "{head}");
    }
}

#[tokio::test]
async fn more_than_max_redirects_is_too_many_redirects() {
    // /r/N redirects to /r/N+1 until N reaches the path's limit.
    let server = Server::start(|path| {
        let (limit, n) = path
            .trim_start_matches('/')
            .split_once('/')
            .map(|(l, n)| (l.parse::<u32>().unwrap(), n.parse::<u32>().unwrap()))
            .unwrap();
        if n < limit {
            redirect(302, format!("/{limit}/{}", n + 1))
        } else {
            ok("image/png", b"end")
        }
    })
    .await;
    let policy = policy(&[server.addr]);
    let five = fetch_public(&server.url("/5/0"), &policy).await.unwrap();
    assert_eq!(five.bytes, b"end", "exactly max_redirects is fine");
    let six = fetch_public(&server.url("/6/0"), &policy).await;
    assert!(matches!(six, Err(FetchError::TooManyRedirects)), "{six:?}");
    // 6 for the first fetch, then the first URL and 5 redirects.
    assert_eq!(server.requests().len(), 6 + 6);
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_too_large_and_the_connection_is_dropped() {
    let total = 256 * MIB;
    let server = Server::start(move |_| Reply::Chunked { total }).await;
    let mut policy = policy(&[server.addr]);
    policy.max_bytes = 100_000;
    let result = fetch_public(&server.url("/big"), &policy).await;
    assert!(matches!(result, Err(FetchError::TooLarge { limit: 100_000 })), "{result:?}");
    let (written, finished) = server.streamed().await;
    assert!(!finished, "the server could send the whole body");
    assert!(written < 32 * MIB, "only socket buffers' worth was sent: {written}");
}

#[tokio::test]
async fn body_of_exactly_max_bytes_is_accepted() {
    let server = Server::start(|_| Reply::Chunked { total: 100_000 }).await;
    let mut policy = policy(&[server.addr]);
    policy.max_bytes = 100_000;
    let fetched = fetch_public(&server.url("/edge"), &policy).await.unwrap();
    assert_eq!(fetched.bytes.len(), 100_000);
}

#[tokio::test]
async fn content_length_over_the_limit_is_too_large_before_the_body() {
    let server = Server::start(|_| Reply::Claims { content_length: 50 * MIB }).await;
    let started = Instant::now();
    let result = fetch_public(&server.url("/huge"), &policy(&[server.addr])).await;
    assert!(matches!(result, Err(FetchError::TooLarge { limit }) if limit == MIB), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "did not wait for the body");
}

#[tokio::test]
async fn server_that_never_answers_times_out() {
    let server = Server::start(|_| Reply::Silent).await;
    let mut policy = policy(&[server.addr]);
    policy.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let result = fetch_public(&server.url("/slow"), &policy).await;
    assert!(matches!(result, Err(FetchError::Timeout)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn other_schemes_credentials_and_garbage_are_invalid_urls() {
    let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
    for url in [
        "ftp://example.com/cat.png",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "http://user:pw@example.com/",
        "http://user@127.0.0.1/",
        "https://:pw@example.com/",
        "not a url",
        "",
        "http://",
        "http://exa mple.com/",
        "//example.com/cat.png",
        long.as_str(),
    ] {
        let result = fetch_public(url, &policy(&[])).await;
        assert!(matches!(result, Err(FetchError::InvalidUrl(_))), "{url}: {result:?}");
    }
}

#[tokio::test]
async fn redirect_to_another_scheme_or_with_credentials_is_invalid() {
    let server = Server::start(|path| match path {
        "/ftp" => redirect(302, "ftp://example.com/x".into()),
        _ => redirect(302, "http://user:pw@example.com/x".into()),
    })
    .await;
    let policy = policy(&[server.addr]);
    for path in ["/ftp", "/creds"] {
        let result = fetch_public(&server.url(path), &policy).await;
        assert!(matches!(result, Err(FetchError::InvalidUrl(_))), "{result:?}");
    }
}

#[tokio::test]
async fn not_found_is_status_404() {
    let server = Server::start(|_| Reply::Full { status: 404, headers: Vec::new(), body: b"nope".to_vec() }).await;
    let result = fetch_public(&server.url("/gone.png"), &policy(&[server.addr])).await;
    assert!(matches!(result, Err(FetchError::Status(404))), "{result:?}");
}

#[tokio::test]
async fn the_hop_client_connects_only_to_the_validated_addresses() {
    let server = Server::start(|_| ok("image/png", b"pinned")).await;
    let port = server.addr.port();
    let client = hop_client(Some(Pinned { host: "imgcdn-test.invalid".into(), addrs: vec![server.addr] })).unwrap();
    // A name that exists nowhere reaches the pinned address...
    let response = client.get(format!("http://imgcdn-test.invalid:{port}/x")).send().await.unwrap();
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"pinned");
    // ...and a name the system resolver knows (localhost is this very
    // server) is refused: there is no fallback to a second lookup.
    let other = client.get(format!("http://localhost:{port}/x")).send().await;
    assert!(other.is_err(), "{other:?}");
    assert_eq!(server.connections(), 1);
}
