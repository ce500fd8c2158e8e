//! Prometheus metrics for the control plane, in a registry of our own,
//! served on the admin listener (`admin_listen`), never the public one.
//!
//! Labels are closed sets (route templates, status codes, outcomes, sweep
//! steps): never an address, an email or an id. Counters exist from the
//! start with every label value they will have (an alert on a rate needs
//! the series before the first event). Gauges that are cheap to read at
//! scrape time (mail queue depth, pool use, sync head) are read then.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use sqlx::Row;

use crate::AppState;

/// What an upload ended as.
pub const UPLOAD_OUTCOMES: [&str; 5] = ["ready", "processing", "review", "blocked", "refused"];

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub uploads: IntCounterVec,
    pub upload_bytes: IntCounterVec,
    pub classifications: IntCounterVec,
    pub sweep_items: IntCounterVec,
    pub sweep_errors: IntCounter,
    pub sweep_passes: IntCounter,
    pub sweep_last_success: IntGauge,
    pub mail_sent: IntCounter,
    pub mail_failures: IntCounter,
    mail_queue: IntGauge,
    sync_head: IntGauge,
    db_connections: IntGaugeVec,
    request_log_dropped: IntCounter,
    catching_up: std::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let single = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "imgcdn_cp_http_request_duration_seconds",
                "Time to answer an API request, by route template",
            )
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["route"],
        )
        .expect("valid metric");
        registry.register(Box::new(request_seconds.clone())).expect("unique metric");
        let db_connections = IntGaugeVec::new(
            Opts::new("imgcdn_cp_db_pool_connections", "Database pool connections, by state"),
            &["state"],
        )
        .expect("valid metric");
        registry.register(Box::new(db_connections.clone())).expect("unique metric");
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("the process collector registers once");
        let m = Metrics {
            requests: counter(
                "imgcdn_cp_http_requests_total",
                "API requests answered, by route template and status",
                &["route", "status"],
            ),
            request_seconds,
            uploads: counter("imgcdn_cp_uploads_total", "Uploads by outcome", &["outcome"]),
            upload_bytes: counter("imgcdn_cp_upload_bytes_total", "Bytes of uploads by outcome", &["outcome"]),
            classifications: counter("imgcdn_cp_classifications_total", "Uploads classified, by verdict", &["verdict"]),
            sweep_items: counter("imgcdn_cp_sweep_items_total", "Items the sweep handled, by step", &["step"]),
            sweep_errors: single("imgcdn_cp_sweep_errors_total", "Items a sweep failed on (retried by the next)"),
            sweep_passes: single("imgcdn_cp_sweep_passes_total", "Sweep passes finished"),
            sweep_last_success: gauge(
                "imgcdn_cp_sweep_last_success_timestamp_seconds",
                "Unix time the last sweep pass of this process finished",
            ),
            mail_sent: single("imgcdn_cp_mail_sent_total", "Emails delivered"),
            mail_failures: single("imgcdn_cp_mail_failures_total", "Email delivery attempts that failed"),
            mail_queue: gauge("imgcdn_cp_mail_queue_depth", "Emails waiting to be delivered"),
            sync_head: gauge("imgcdn_cp_sync_head", "Sequence number of the newest edge-sync change"),
            db_connections,
            request_log_dropped: single(
                "imgcdn_cp_request_log_dropped_total",
                "API request log entries dropped (queue full or write failed)",
            ),
            catching_up: std::sync::Mutex::new(()),
            registry,
        };
        for outcome in UPLOAD_OUTCOMES {
            m.uploads.with_label_values(&[outcome]);
            m.upload_bytes.with_label_values(&[outcome]);
        }
        for verdict in ["clean", "restricted", "prohibited", "unknown"] {
            m.classifications.with_label_values(&[verdict]);
        }
        m
    }

    /// The metrics, with a sweep series for each of `sweep_steps` from the
    /// start (the sweep's own list, given by whoever builds the state).
    pub fn with_sweep_steps(sweep_steps: &[&str]) -> Metrics {
        let m = Metrics::new();
        for step in sweep_steps {
            m.sweep_items.with_label_values(&[step]);
        }
        m
    }

    /// An upload ended as `outcome` (one of [`UPLOAD_OUTCOMES`]).
    pub fn upload(&self, outcome: &str, bytes: usize) {
        self.uploads.with_label_values(&[outcome]).inc();
        self.upload_bytes.with_label_values(&[outcome]).inc_by(bytes as u64);
    }

    /// The text exposition, with the gauges read now.
    pub async fn render(&self, state: &AppState) -> Vec<u8> {
        let depth = sqlx::query("SELECT COUNT(*) FROM outbound_emails").fetch_one(&state.db.pool).await;
        if let Ok(r) = depth {
            self.mail_queue.set(r.get::<i64, _>(0));
        }
        self.sync_head.set(state.sync.head() as i64);
        let (size, idle) = (state.db.pool.size() as i64, state.db.pool.num_idle() as i64);
        self.db_connections.with_label_values(&["idle"]).set(idle);
        self.db_connections.with_label_values(&["in_use"]).set(size - idle);
        {
            // Brought up to the log's own count; one scrape at a time, so
            // two cannot add the same difference.
            let _one = self.catching_up.lock().unwrap_or_else(|e| e.into_inner());
            let dropped = state.request_log.dropped();
            self.request_log_dropped.inc_by(dropped.saturating_sub(self.request_log_dropped.get()));
        }
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding");
        out
    }
}
