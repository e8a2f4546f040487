//! The one Prometheus recorder of the process, installed by the binary, rendered at `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets, seconds: 1 ms to 10 s.
const SECONDS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Group-commit sizes: jobs per transaction.
const SIZES: [f64; 11] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// Installs the recorder once (later calls and a recorder set elsewhere change nothing); whether
/// this process renders metrics.
pub fn install() -> bool {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_size".to_owned()), &SIZES))
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .is_some()
}

/// The Prometheus text of every metric so far, or `None` before [`install`].
pub fn render() -> Option<String> {
    HANDLE.get().and_then(Option::as_ref).map(PrometheusHandle::render)
}

/// Drains the histograms' buckets into their totals; call every few seconds.
pub fn upkeep() {
    if let Some(handle) = HANDLE.get().and_then(Option::as_ref) {
        handle.run_upkeep();
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!("cityhub_http_requests_total", "HTTP requests answered, by route template, method and status");
    describe_histogram!(
        "cityhub_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by route template and method"
    );
    describe_counter!("cityhub_store_writes_total", "Entity modifications committed by the store");
    describe_counter!("cityhub_store_commits_total", "Transactions the store's writer committed");
    describe_histogram!("cityhub_store_group_commit_size", "Jobs committed together in one transaction");
    describe_gauge!("cityhub_store_bytes", Unit::Bytes, "The store's size: data directory or database");
    describe_gauge!("cityhub_entities", "Entities per tenant");
    describe_gauge!("cityhub_entities_total", "Entities in every tenant");
    describe_gauge!("cityhub_history_instances", "Temporal instances kept (estimated on PostgreSQL)");
    describe_gauge!("cityhub_notification_queue_depth", "Pending notifications per endpoint host");
    describe_counter!("cityhub_notifications_total", "Notification deliveries by endpoint host and outcome");
    describe_counter!(
        "cityhub_federation_requests_total",
        "Requests forwarded to context sources, by peer and outcome"
    );
    describe_counter!(
        "cityhub_ingest_readings_total",
        "Device messages stored (ingestion agent, NGSIv2 intake, pollers, imports)"
    );
    describe_counter!(
        "cityhub_ingest_dead_letters_total",
        "Messages the ingestion could not store (kept as dead letters)"
    );
    describe_counter!("cityhub_rate_limited_total", "Requests refused 429 over their caller's rate");
    describe_counter!("cityhub_in_flight_shed_total", "Requests refused 503 over --max-in-flight");
}
