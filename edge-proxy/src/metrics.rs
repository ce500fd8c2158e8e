//! Prometheus metrics for the edge, in a registry of our own (no globals).
//!
//! Labels are closed sets (status code, cache tier, error kind): nothing
//! that comes from a visitor, and never an address.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Which tier answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    // Discriminants index `TIERS`.
    Memory,
    Disk,
    Origin,
    /// Answered before any tier (bad path, method, …).
    None,
}

impl Tier {
    pub fn label(self) -> &'static str {
        match self {
            Tier::Memory => "memory",
            Tier::Disk => "disk",
            Tier::Origin => "origin",
            Tier::None => "none",
        }
    }

    /// The `X-Cache` header value.
    pub fn x_cache(self) -> &'static str {
        match self {
            Tier::Memory => "HIT-MEMORY",
            Tier::Disk => "HIT-DISK",
            Tier::Origin | Tier::None => "MISS",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    /// `imgcdn_edge_requests_total` per tier and status label (indexed like [`TIERS`] and
    /// [`LABELLED_STATUSES`]), resolved once: counting a request is then one
    /// atomic add instead of hashing two labels under a lock.
    requests_by: [[IntCounter; LABELLED_STATUSES.len()]; TIERS.len()],
    pub bytes_served: IntCounter,
    /// The request latency histogram per tier, resolved once (like `requests_by`).
    latency_by: [Histogram; TIERS.len()],
    pub origin_reads: IntCounter,
    pub origin_errors: IntCounterVec,
    pub evictions: IntCounterVec,
    pub disk_corrupt: IntCounter,
    pub disk_write_errors: IntCounter,
    cache_bytes: IntGaugeVec,
    cache_entries: IntGaugeVec,
    pub origin_read_seconds: Histogram,
    pub sync_applied_seq: IntGauge,
    sync_lag: IntGauge,
    sync_last_success: IntGauge,
    sync_entries: IntGauge,
    pub sync_purges: IntCounter,
    pub sync_errors: IntCounter,
    pub sync_snapshots: IntCounter,
    pub sync_hides_dropped: IntCounter,
    pub disk_read_bytes: IntCounter,
    pub disk_full: IntCounter,
    pub connections_open: IntGauge,
    pub connections_refused: IntCounter,
    pub connections_timed_out: IntCounter,
    pub send_budget_refused: IntCounter,
    pub send_budget_bytes: IntGauge,
    pub responses_cut: IntCounter,
    /// Responses whose body was sent from a disk-tier file (`sendfile`).
    pub file_responses: IntCounter,
    /// Disk-tier files kept open to send from (set when scraped).
    pub open_files: IntGauge,
    /// Variant requests by outcome (`made`, `busy`, `limited`, `failed`, `timed_out`).
    pub transforms: IntCounterVec,
}

const TIERS: [Tier; 4] = [Tier::Memory, Tier::Disk, Tier::Origin, Tier::None];

/// A status for each value of the `status` label (0 stands for "other").
const LABELLED_STATUSES: [u16; 13] = [200, 206, 304, 400, 404, 405, 416, 451, 500, 502, 503, 504, 0];

/// Status codes we label by; anything else is "other".
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        206 => "206",
        304 => "304",
        400 => "400",
        404 => "404",
        405 => "405",
        416 => "416",
        451 => "451",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => "other",
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("imgcdn_edge_requests_total", "Requests answered, by status and cache tier"),
            &["status", "tier"],
        )
        .unwrap();
        let bytes_served =
            IntCounter::new("imgcdn_edge_response_body_bytes_total", "Response body bytes sent").unwrap();
        let latency = HistogramVec::new(
            HistogramOpts::new("imgcdn_edge_request_duration_seconds", "Time to answer a request").buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["tier"],
        )
        .unwrap();
        let origin_reads =
            IntCounter::new("imgcdn_edge_origin_reads_total", "Reads started against the origin store").unwrap();
        let origin_errors = IntCounterVec::new(
            Opts::new("imgcdn_edge_origin_errors_total", "Origin reads that gave no object, by kind"),
            &["kind"],
        )
        .unwrap();
        let origin_read_seconds = Histogram::with_opts(
            HistogramOpts::new("imgcdn_edge_origin_read_seconds", "Duration of origin reads")
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0]),
        )
        .unwrap();
        let evictions = IntCounterVec::new(
            Opts::new("imgcdn_edge_cache_evictions_total", "Entries pushed out of a tier for space"),
            &["tier"],
        )
        .unwrap();
        let disk_corrupt =
            IntCounter::new("imgcdn_edge_disk_corrupt_total", "Disk entries that failed verification and were dropped")
                .unwrap();
        let disk_write_errors =
            IntCounter::new("imgcdn_edge_disk_write_errors_total", "Disk tier writes that failed").unwrap();
        let cache_bytes =
            IntGaugeVec::new(Opts::new("imgcdn_edge_cache_bytes", "Bytes held by a tier"), &["tier"]).unwrap();
        let cache_entries =
            IntGaugeVec::new(Opts::new("imgcdn_edge_cache_entries", "Entries held by a tier"), &["tier"]).unwrap();
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).unwrap();
        let counter = |name: &str, help: &str| IntCounter::new(name, help).unwrap();
        let sync_applied_seq = gauge("imgcdn_edge_sync_applied_seq", "Edge-sync sequence applied and persisted here");
        let sync_lag = gauge("imgcdn_edge_sync_lag", "Control plane's log head minus the applied sequence");
        let sync_last_success = gauge(
            "imgcdn_edge_sync_last_success_timestamp_seconds",
            "Unix time of the last successful sync call (0: never); alert on time() minus it",
        );
        let sync_entries = gauge("imgcdn_edge_sync_entries", "Image ids with a takedown, hide or warning in force");
        let sync_purges = counter("imgcdn_edge_sync_purges_total", "Ids purged from the caches by sync");
        let sync_errors = counter("imgcdn_edge_sync_errors_total", "Failed sync calls");
        let sync_snapshots = counter("imgcdn_edge_sync_snapshots_total", "Snapshots applied");
        let sync_hides_dropped = counter(
            "imgcdn_edge_sync_hides_dropped_total",
            "Hide entries dropped after their grace period (manifest confirmed withdrawn)",
        );
        let disk_read_bytes = counter("imgcdn_edge_disk_read_bytes_total", "Bytes read from disk-tier files");
        let disk_full = counter(
            "imgcdn_edge_disk_full_total",
            "Disk-tier writes refused because the byte budget could not take them",
        );
        let connections_open = gauge("imgcdn_edge_connections_open", "Client connections open on the public listeners");
        let connections_refused = counter(
            "imgcdn_edge_connections_refused_total",
            "Connections refused (503, closed) because limits.max_connections were open",
        );
        let connections_timed_out = counter(
            "imgcdn_edge_connections_timed_out_total",
            "Connections closed for not delivering a request head in time (or idle past keep-alive)",
        );
        let send_budget_refused = counter(
            "imgcdn_edge_send_budget_refused_total",
            "Requests answered 503 because the response-body send budget stayed full",
        );
        let send_budget_bytes =
            gauge("imgcdn_edge_send_budget_bytes", "Response body bytes held for sending (send budget in use)");
        let file_responses = counter(
            "imgcdn_edge_file_responses_total",
            "Responses whose body was sent from a disk-tier file with sendfile (HTTP/1 without TLS)",
        );
        let open_files =
            IntGauge::new("imgcdn_edge_disk_open_files", "Disk-tier files kept open to send bodies from").unwrap();
        let responses_cut = counter(
            "imgcdn_edge_responses_cut_total",
            "Responses ended mid-body (a disk chunk failed verification, or the client stalled past send_timeout)",
        );
        let transforms = IntCounterVec::new(
            Opts::new(
                "imgcdn_edge_transforms_total",
                "Variants asked for and not cached, by outcome: made, busy (503, pool full), limited (original \
                 served: too many variants of the image), failed, timed_out (504)",
            ),
            &["outcome"],
        )
        .unwrap();
        for outcome in ["made", "busy", "limited", "failed", "timed_out"] {
            transforms.with_label_values(&[outcome]);
        }
        for c in [
            Box::new(transforms.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(requests.clone()),
            Box::new(bytes_served.clone()),
            Box::new(latency.clone()),
            Box::new(origin_reads.clone()),
            Box::new(origin_errors.clone()),
            Box::new(origin_read_seconds.clone()),
            Box::new(evictions.clone()),
            Box::new(disk_corrupt.clone()),
            Box::new(disk_write_errors.clone()),
            Box::new(cache_bytes.clone()),
            Box::new(cache_entries.clone()),
            Box::new(sync_applied_seq.clone()),
            Box::new(sync_lag.clone()),
            Box::new(sync_last_success.clone()),
            Box::new(sync_entries.clone()),
            Box::new(sync_purges.clone()),
            Box::new(sync_errors.clone()),
            Box::new(sync_snapshots.clone()),
            Box::new(sync_hides_dropped.clone()),
            Box::new(disk_read_bytes.clone()),
            Box::new(disk_full.clone()),
            Box::new(connections_open.clone()),
            Box::new(connections_refused.clone()),
            Box::new(connections_timed_out.clone()),
            Box::new(send_budget_refused.clone()),
            Box::new(send_budget_bytes.clone()),
            Box::new(responses_cut.clone()),
            Box::new(file_responses.clone()),
            Box::new(open_files.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        // process_cpu_seconds_total, process_resident_memory_bytes, open fds…
        registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("process metrics register once");
        // Every labelled series exists from the start at 0, so rates and
        // alerts see the first increment instead of a series appearing.
        let requests_by = TIERS.map(|tier| {
            LABELLED_STATUSES.map(|status| requests.with_label_values(&[status_label(status), tier.label()]))
        });
        let latency_by = TIERS.map(|tier| latency.with_label_values(&[tier.label()]));
        for kind in ["not_found", "timeout", "unavailable", "mismatch"] {
            origin_errors.with_label_values(&[kind]);
        }
        for tier in [Tier::Memory, Tier::Disk] {
            evictions.with_label_values(&[tier.label()]);
            cache_bytes.with_label_values(&[tier.label()]);
            cache_entries.with_label_values(&[tier.label()]);
        }
        Metrics {
            transforms,
            registry,
            requests_by,
            bytes_served,
            latency_by,
            origin_reads,
            origin_errors,
            evictions,
            disk_corrupt,
            disk_write_errors,
            cache_bytes,
            cache_entries,
            origin_read_seconds,
            sync_applied_seq,
            sync_lag,
            sync_last_success,
            sync_entries,
            sync_purges,
            sync_errors,
            sync_snapshots,
            sync_hides_dropped,
            disk_read_bytes,
            disk_full,
            connections_open,
            connections_refused,
            connections_timed_out,
            send_budget_refused,
            send_budget_bytes,
            responses_cut,
            file_responses,
            open_files,
        }
    }

    /// Refresh the sync gauges that depend on the time of scraping.
    pub fn set_sync(&self, applied: u64, head: u64, entries: usize, last_success: u64) {
        self.sync_applied_seq.set(applied as i64);
        self.sync_lag.set(head.saturating_sub(applied) as i64);
        self.sync_entries.set(entries as i64);
        self.sync_last_success.set(last_success as i64);
    }

    /// Count one answered request.
    pub fn observe(&self, status: u16, tier: Tier, body_bytes: usize, seconds: f64) {
        let status = LABELLED_STATUSES.iter().position(|s| *s == status).unwrap_or(LABELLED_STATUSES.len() - 1);
        self.requests_by[tier as usize][status].inc();
        self.bytes_served.inc_by(body_bytes as u64);
        self.latency_by[tier as usize].observe(seconds);
    }

    pub fn set_cache_usage(&self, tier: Tier, entries: u64, bytes: u64) {
        self.cache_entries.with_label_values(&[tier.label()]).set(entries as i64);
        self.cache_bytes.with_label_values(&[tier.label()]).set(bytes as i64);
    }

    /// The variant cache's entries and bytes (tier label `variants`).
    pub fn set_variant_usage(&self, entries: u64, bytes: u64) {
        self.cache_entries.with_label_values(&["variants"]).set(entries as i64);
        self.cache_bytes.with_label_values(&["variants"]).set(bytes as i64);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_under_their_tier_and_status_labels() {
        for (i, tier) in TIERS.into_iter().enumerate() {
            assert_eq!(tier as usize, i, "TIERS is indexed by discriminant");
        }
        let m = Metrics::new();
        m.observe(200, Tier::Disk, 10, 0.001);
        m.observe(200, Tier::Disk, 5, 0.001);
        m.observe(418, Tier::None, 0, 0.001);
        let text = String::from_utf8(m.render()).unwrap();
        let value = |series: &str| {
            text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok()).unwrap_or(-1.0)
        };
        assert_eq!(value(r#"imgcdn_edge_requests_total{status="200",tier="disk"}"#), 2.0);
        assert_eq!(value(r#"imgcdn_edge_requests_total{status="200",tier="memory"}"#), 0.0);
        assert_eq!(value(r#"imgcdn_edge_requests_total{status="other",tier="none"}"#), 1.0);
        assert_eq!(value(r#"imgcdn_edge_request_duration_seconds_count{tier="disk"}"#), 2.0);
        assert_eq!(value("imgcdn_edge_response_body_bytes_total"), 15.0);
    }
}
