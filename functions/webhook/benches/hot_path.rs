//! The webhook's hot path per request: signature check over the raw body, parse,
//! split into one queue message per event, and the SQS SendMessageBatch entries
//! built for them. Only the network call is left out (the queue is faked).
//!
//!   cargo bench -p webhook --bench hot_path
//!
//! Fed with the reference workloads in `benches/data` (1-event 1 KB body, 50-event
//! batch); criterion's `thrpt` line is events per second on one core.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hub_signature::{SignatureHeaders, Verifier};
use sha2::{Digest, Sha256};
use signals::Metric;
use webhook::accept::{EventQueue, FailedEntry, OutgoingMessage, QueueError};
use webhook::testing::MemoryQuarantine;
use webhook::{Receiver, RetryPolicy};

/// Builds the SDK's batch entries exactly as the SQS adapter does, then drops them.
struct FakeSqs;

impl EventQueue for FakeSqs {
    async fn send_batch(&self, batch: &[OutgoingMessage]) -> Result<Vec<FailedEntry>, QueueError> {
        black_box(webhook::sqs::batch_entries(batch)?);
        Ok(Vec::new())
    }
}

struct Workload {
    name: &'static str,
    body: Vec<u8>,
    signature: String,
    events: u64,
}

fn load(name: &'static str) -> Workload {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/data");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let spec = &manifest["workloads"][name];
    let body = std::fs::read(dir.join(spec["body"].as_str().unwrap())).unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&body)),
        spec["sha256"].as_str().unwrap(),
        "{name}: the workload differs from the reference bytes"
    );
    let headers: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join(spec["headers"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    Workload {
        name,
        body,
        signature: headers["x-hub-signature-256"].as_str().unwrap().to_owned(),
        events: spec["expected_events"].as_u64().unwrap(),
    }
}

fn hot_path(c: &mut Criterion) {
    let receiver = Receiver {
        credentials: webhook::testing::fixed_credentials("bench-secret", "bench-token"),
        max_body_bytes: webhook::DEFAULT_MAX_BODY_BYTES,
        max_events: webhook::DEFAULT_MAX_EVENTS_PER_DELIVERY,
        answer_within: webhook::DEFAULT_ANSWER_WITHIN,
        queue: FakeSqs,
        quarantine: MemoryQuarantine::new(),
        retry: RetryPolicy::default(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("webhook_hot_path");
    for workload in [load("single"), load("batch50")] {
        let headers = SignatureHeaders {
            sha256: Some(workload.signature.as_bytes()),
            sha1: None,
        };
        // The path must really do the work before it is timed.
        let accepted = rt
            .block_on(receiver.accept(headers, &workload.body))
            .unwrap();
        assert_eq!(accepted.enqueued as u64, workload.events);
        assert!(accepted.quarantined.is_none());

        group.throughput(Throughput::Elements(workload.events));
        group.bench_function(workload.name, |b| {
            b.iter(|| rt.block_on(receiver.accept(headers, black_box(&workload.body))))
        });
    }
    group.finish();

    // The same path with what the handler adds for metrics: the counts, and the
    // EMF document written at the end of the invocation (into a sink here; in
    // Lambda one write to stdout).
    let mut metrics = c.benchmark_group("webhook_hot_path_with_metrics");
    for workload in [load("single"), load("batch50")] {
        let headers = SignatureHeaders {
            sha256: Some(workload.signature.as_bytes()),
            sha1: None,
        };
        metrics.throughput(Throughput::Elements(workload.events));
        metrics.bench_function(workload.name, |b| {
            b.iter(|| {
                let accepted = rt
                    .block_on(receiver.accept(headers, black_box(&workload.body)))
                    .unwrap();
                signals::count(Metric::EventsAccepted, accepted.enqueued as u64);
                signals::flush_to(std::io::sink()).unwrap();
            })
        });
    }
    // The metrics' own cost, alone: one count and one flush, as each invocation does.
    metrics.throughput(Throughput::Elements(1));
    metrics.bench_function("count_and_flush_alone", |b| {
        b.iter(|| {
            signals::count(Metric::EventsAccepted, black_box(1));
            signals::flush_to(std::io::sink()).unwrap();
        })
    });
    metrics.finish();

    // The parts, to see where the time goes.
    let batch = load("batch50");
    let verifier = Verifier::new(b"bench-secret");
    let headers = SignatureHeaders {
        sha256: Some(batch.signature.as_bytes()),
        sha1: None,
    };
    let mut parts = c.benchmark_group("webhook_parts_batch50");
    parts.throughput(Throughput::Bytes(batch.body.len() as u64));
    parts.bench_function("verify_signature", |b| {
        b.iter(|| verifier.verify(headers, black_box(&batch.body)))
    });
    parts.bench_function("split", |b| {
        b.iter(|| webhook::accept::split(black_box(&batch.body)))
    });
    parts.finish();
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
