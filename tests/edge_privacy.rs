//! The promise: the edge never records who visits. This drives normal,
//! bad and aborted requests from a distinctive client address (127.0.0.2)
//! and then searches every log line, the metrics output and every file the
//! edge wrote for it. That includes what the connection limits do: idle and
//! trickling connections closed at the request-head deadline, connections
//! over the cap refused, pipelined requests.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const VISITOR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

async fn connect_as_visitor(base: &str) -> TcpStream {
    let target: SocketAddr = base.strip_prefix("http://").unwrap().parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(VISITOR), 0)).unwrap();
    socket.connect(target).await.unwrap()
}

async fn send_raw(base: &str, bytes: &[u8], read: bool) {
    let mut s = connect_as_visitor(base).await;
    let _ = s.write_all(bytes).await;
    if read {
        let mut buf = vec![0u8; 256];
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
    }
    // Dropped here: an abort from the client's side.
}

#[tokio::test]
async fn no_visitor_address_reaches_logs_metrics_or_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("store"));
    let small = store.publish(&png(16, 16, 1), None);
    let big = store.publish(&png(600, 600, 2), None);
    let mut opts = EdgeOpts::new(dir.path());
    // As verbose as an operator could make it.
    opts.rust_log = "trace".into();
    opts.limits_toml = Some("header_timeout_secs = 1\nmax_connections = 20\n".into());
    let edge = EdgeProcess::start(dir.path(), &opts);

    let visitor = reqwest::Client::builder().no_proxy().local_address(IpAddr::V4(VISITOR)).build().unwrap();
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .local_address(IpAddr::V4(VISITOR))
        .build()
        .unwrap();
    // Normal traffic over h1 and h2c: miss, hits, 304, range, HEAD, 404, 405.
    for _ in 0..3 {
        visitor.get(edge.url(&small)).send().await.unwrap().bytes().await.unwrap();
    }
    h2.get(edge.url(&small)).send().await.unwrap().bytes().await.unwrap();
    h2.head(edge.url(&big)).send().await.unwrap();
    visitor.get(edge.url(&small)).header("if-none-match", "*").send().await.unwrap();
    visitor.get(edge.url(&small)).header("range", "bytes=0-3").send().await.unwrap();
    visitor.get(format!("{}/abc/defghijk.png", edge.base)).send().await.unwrap();
    visitor.post(edge.url(&small)).body("x").send().await.unwrap();

    // Bad and aborted traffic.
    send_raw(&edge.base, b"NOT HTTP AT ALL\r\n\r\n", true).await;
    send_raw(&edge.base, b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", true).await;
    send_raw(&edge.base, b"GET / HTTP/1.1\r\nHost: x\r\nX-Half: ", false).await;
    send_raw(&edge.base, b"", false).await;
    send_raw(&edge.base, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00garbage-frames", true).await;
    send_raw(&edge.base, &[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5], true).await; // a TLS hello on plain HTTP
    let mut s = connect_as_visitor(&edge.base).await;
    s.write_all(format!("GET {big} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let _ = s.read(&mut buf).await;
    drop(s); // aborted mid-body
    let mut s = connect_as_visitor(&edge.base).await;
    s.write_all(format!("GET {big} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let _ = s.shutdown().await; // half-closed before reading anything
                                // Pipelined requests.
    let mut s = connect_as_visitor(&edge.base).await;
    s.write_all(format!("GET {small} HTTP/1.1\r\nHost: x\r\n\r\nGET {big} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
    drop(s);
    // Connection limits: more idle connections than the cap (some refused
    // with 503 at once), one trickling a head; all closed by the deadline.
    let mut idle = Vec::new();
    for _ in 0..25 {
        idle.push(connect_as_visitor(&edge.base).await);
    }
    let mut trickle = connect_as_visitor(&edge.base).await;
    for b in b"GET / HT" {
        let _ = trickle.write_all(&[*b]).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    drop(idle);
    drop(trickle);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let metrics = edge.metrics();
    assert!(metrics.contains("imgcdn_edge_requests_total"), "metrics missing:\n{metrics}");
    assert!(metric_value(&metrics, "imgcdn_edge_connections_refused_total") >= 1.0, "the cap was not exercised");
    assert!(metric_value(&metrics, "imgcdn_edge_connections_timed_out_total") >= 1.0, "no deadline was exercised");
    let log_path = edge.log_path.clone();
    assert!(edge.stop().success());
    let log = std::fs::read_to_string(&log_path).unwrap();
    if std::env::var_os("SHOW_EDGE_LOG").is_some() {
        eprintln!("{log}");
    }
    assert!(log.contains("Server starting"), "the log was not captured:\n{log}");

    let needle = VISITOR.to_string();
    for (i, line) in log.lines().enumerate() {
        assert!(!line.contains(&needle), "log line {i} holds the visitor address: {line}");
    }
    assert!(!metrics.contains(&needle), "metrics hold the visitor address");
    for f in files_under(dir.path()) {
        let bytes = std::fs::read(&f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&needle), "{} holds the visitor address", f.display());
    }
}
