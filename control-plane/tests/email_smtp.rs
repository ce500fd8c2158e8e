//! The production mail path: lettre over SMTP to a real (minimal) SMTP
//! server started by the test, including an outage and the retry after it.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use imgcdn_control_plane::email;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Debug, Clone, Default)]
struct Received {
    rcpt: Vec<String>,
    data: String,
}

/// A small SMTP server: speaks enough of RFC 5321 for a client to deliver.
async fn smtp_sink(listener: TcpListener) -> Arc<Mutex<Vec<Received>>> {
    let inbox: Arc<Mutex<Vec<Received>>> = Arc::default();
    let store = inbox.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                w.write_all(b"220 sink ESMTP\r\n").await.ok();
                let mut cur = Received::default();
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        b"250-sink\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("HELO")
                        || upper.starts_with("MAIL FROM")
                        || upper.starts_with("RSET")
                        || upper.starts_with("NOOP")
                    {
                        b"250 ok\r\n"
                    } else if upper.starts_with("RCPT TO") {
                        cur.rcpt.push(line[8..].trim().to_string());
                        b"250 ok\r\n"
                    } else if upper == "DATA" {
                        w.write_all(b"354 go ahead\r\n").await.ok();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            cur.data.push_str(&l);
                            cur.data.push('\n');
                        }
                        store.lock().unwrap().push(std::mem::take(&mut cur));
                        b"250 queued\r\n"
                    } else if upper.starts_with("QUIT") {
                        w.write_all(b"221 bye\r\n").await.ok();
                        break;
                    } else {
                        b"502 not implemented\r\n"
                    };
                    w.write_all(reply).await.ok();
                }
            });
        }
    });
    inbox
}

async fn smtp_app(port: u16) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.database_url = format!("sqlite://{}", dir.path().join("smtp.db").display());
    cfg.email.transport = imgcdn_control_plane::config::MailTransport::Smtp;
    cfg.email.smtp_host = "127.0.0.1".into();
    cfg.email.smtp_port = port;
    cfg.email.smtp_tls = imgcdn_control_plane::config::SmtpTls::None;
    TestApp::with(cfg, dir, None).await
}

async fn deliver(t: &TestApp) -> usize {
    let mailer = email::mailer(&t.state.cfg.email).unwrap();
    let from = t.state.cfg.email.from.parse().unwrap();
    email::deliver_due(&t.state.db, mailer.as_ref(), &from, t.clock.as_ref()).await.unwrap().sent
}

#[tokio::test]
async fn verification_mail_goes_out_over_smtp() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let inbox = smtp_sink(listener).await;
    let t = smtp_app(port).await;
    let r = t
        .call(Req::post(
            "/v1/auth/signup",
            json!({"email": "smtp@example.com", "name": "S", "password": "tulip-Orbit-94", "age_confirmed": true}),
        ))
        .await;
    assert_eq!(r.status, axum::http::StatusCode::ACCEPTED);
    assert_eq!(deliver(&t).await, 1);
    let got = inbox.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt, ["<smtp@example.com>"]);
    assert!(got[0].data.contains("Subject: Confirm your email address"));
    assert!(got[0].data.contains("/verify-email?token="));
    assert_eq!(t.count("SELECT COUNT(*) FROM outbound_emails").await, 0, "sent mail leaves the queue");
}

#[tokio::test]
async fn an_smtp_outage_keeps_the_mail_queued_until_it_can_be_sent() {
    // A port with nobody listening (yet).
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let t = smtp_app(port).await;
    t.call(Req::post("/v1/auth/password-reset", json!({"email": "nobody@example.com"}))).await;
    t.call(Req::post(
        "/v1/auth/signup",
        json!({"email": "wait@example.com", "name": "W", "password": "tulip-Orbit-94", "age_confirmed": true}),
    ))
    .await;
    assert_eq!(deliver(&t).await, 0);
    assert_eq!(t.count("SELECT COUNT(*) FROM outbound_emails WHERE attempts = 1").await, 1);
    // Not retried before its backoff…
    assert_eq!(deliver(&t).await, 0);
    assert_eq!(t.count("SELECT COUNT(*) FROM outbound_emails WHERE attempts = 1").await, 1);
    // …and delivered once the server is back and the backoff has passed.
    let inbox = smtp_sink(TcpListener::bind(("127.0.0.1", port)).await.unwrap()).await;
    t.clock.advance(31);
    assert_eq!(deliver(&t).await, 1);
    assert_eq!(inbox.lock().unwrap().len(), 1);
    assert_eq!(t.count("SELECT COUNT(*) FROM outbound_emails").await, 0);
}
