//! The least a pingora HTTP server app can do per request: every file under
//! a directory read into memory at start, and each `GET` answered from a
//! hash map with the same headers the edge sends for an image (no tiers, no
//! edge sync, no metrics, no connection limits, no range or conditional
//! handling). The load benchmark runs it beside the edge and nginx
//! (`benches/load/run.py --servers floor,edge,nginx`). On small bodies what
//! it reaches is the ceiling of any server built on pingora's HTTP/1
//! session with the same runtime settings: the gap between it and nginx is
//! pingora's, the gap between it and the edge is ours. It writes every
//! body from memory, so on large bodies the edge (which sends them from
//! files) does better.
//!
//! `pingora_floor ROOT LISTEN [THREADS] [steal|nosteal]`

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::HeaderValue;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server, ShutdownWatch};
use pingora_core::services::listening::Service;
use pingora_http::ResponseHeader;

struct Object {
    body: Bytes,
    etag: HeaderValue,
}

struct Floor {
    objects: HashMap<String, Object>,
    not_found: Bytes,
}

fn load(root: &Path, dir: &Path, out: &mut HashMap<String, Object>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            load(root, &path, out)?;
            continue;
        }
        let body = Bytes::from(std::fs::read(&path)?);
        let rel = path.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
        let etag = HeaderValue::try_from(format!("\"{:016x}\"", body.len() as u64 ^ 0x5bd1e995)).expect("hex digits");
        out.insert(format!("/{rel}"), Object { body, etag });
    }
    Ok(())
}

#[async_trait]
impl HttpServerApp for Floor {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        _shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match session.read_request().await {
            Ok(true) => {}
            _ => return None,
        }
        session.set_keepalive(Some(60));
        session.set_pipelining_enabled(true);
        let (header, body) = match self.objects.get(session.req_header().uri.path()) {
            Some(o) => {
                // The edge's header set for an image, built the same way.
                let mut h = ResponseHeader::build(200, Some(12)).expect("valid status");
                let _ = h.insert_header("Content-Length", o.body.len());
                let _ = h.insert_header("Content-Type", HeaderValue::from_static("image/png"));
                let _ = h.insert_header("ETag", o.etag.clone());
                let _ =
                    h.insert_header("Cache-Control", HeaderValue::from_static("public, max-age=31536000, immutable"));
                let _ = h.insert_header("Accept-Ranges", HeaderValue::from_static("bytes"));
                let _ = h.insert_header("X-Cache", HeaderValue::from_static("HIT-MEMORY"));
                let _ = h.insert_header("access-control-allow-origin", HeaderValue::from_static("*"));
                let _ = h.insert_header("x-content-type-options", HeaderValue::from_static("nosniff"));
                (h, o.body.clone())
            }
            None => {
                let mut h = ResponseHeader::build(404, Some(2)).expect("valid status");
                let _ = h.insert_header("Content-Length", self.not_found.len());
                (h, self.not_found.clone())
            }
        };
        let written = async {
            session.write_response_header(Box::new(header)).await?;
            session.write_response_body(body, true).await
        }
        .await;
        written.ok()?;
        let persistent = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(Some(stream)) => Some(ReusedHttpStream::from_reusable_stream(stream, persistent)),
            _ => None,
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: pingora_floor ROOT LISTEN [THREADS] [steal|nosteal]");
        std::process::exit(2);
    }
    let root = Path::new(&args[1]);
    let threads = args.get(3).map_or(1, |t| t.parse().expect("THREADS is a number"));
    // The edge's default is one runtime per thread (`work_stealing = false`).
    let work_stealing = args.get(4).is_some_and(|s| s == "steal");
    let mut objects = HashMap::new();
    load(root, root, &mut objects).expect("read ROOT");
    eprintln!("pingora_floor: {} files from {}", objects.len(), root.display());
    let app = Floor { objects, not_found: Bytes::from_static(b"not found\n") };

    let conf = ServerConf { threads, work_stealing, ..ServerConf::default() };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = Service::new("pingora floor".to_string(), app);
    // pingora alone writes a response's head and body separately: a 32 KiB
    // write buffer puts a head and a small body in one write. (The edge does
    // this in its connection wrapper instead, with a vectored write and no
    // copy of the body; see its serve/conn.rs.)
    service.add_listener(ListenerConfig::tcp(&args[2]).l4_buffer(L4BufferSettings::default().write(32 * 1024)));
    service.threads = Some(threads);
    server.add_service(service);
    server.run(RunArgs::default());
}
