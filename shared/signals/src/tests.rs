//! The recorder is the process's: the counting checks share it, in order, in one test.

#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn counts_are_flushed_once_as_emf_documents_with_the_function_and_the_named_dimension() {
    let capture = capture();
    flush();
    assert!(
        capture.documents().is_empty(),
        "nothing counted, nothing written"
    );

    count(Metric::MessagesSent, 1);
    count(Metric::MessagesSent, 2);
    count(Metric::EventsProcessed, 3);
    count_by(Metric::SendsRefused, "outside_window", 1);
    count_by(Metric::GraphErrors, "token_invalid", 1);
    count(Metric::EventsAccepted, 0);
    flush();
    let documents = capture.documents();
    // One document per dimension set: (Function), (Function, Reason), (Function, ErrorClass).
    assert_eq!(documents.len(), 3, "{documents:#?}");
    let plain = documents
        .iter()
        .find(|d| d.get("Reason").is_none() && d.get("ErrorClass").is_none())
        .unwrap();
    let spec = &plain["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(spec["Namespace"], DEFAULT_NAMESPACE);
    assert_eq!(spec["Dimensions"], serde_json::json!([["Function"]]));
    assert_eq!(plain["Function"], "processor");
    assert_eq!(plain["MessagesSent"], 3);
    assert_eq!(plain["EventsProcessed"], 3);
    assert!(
        plain.get("EventsAccepted").is_none(),
        "a zero is not written"
    );
    assert!(plain["_aws"]["Timestamp"].as_u64().is_some());
    let names: Vec<&str> = spec["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["Name"].as_str())
        .collect();
    assert_eq!(names, vec!["EventsProcessed", "MessagesSent"]);
    let refused = documents
        .iter()
        .find(|d| d.get("Reason").is_some())
        .unwrap();
    assert_eq!(
        refused["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        serde_json::json!([["Function", "Reason"]])
    );
    assert_eq!(refused["Reason"], "outside_window");
    assert_eq!(
        capture.total(Metric::SendsRefused, Some("outside_window")),
        1
    );
    assert_eq!(capture.total(Metric::GraphErrors, Some("token_invalid")), 1);
    assert_eq!(capture.total(Metric::GraphErrors, Some("throttled")), 0);

    // Flushed counts start again from zero.
    flush();
    assert_eq!(capture.documents().len(), 3);
    count(Metric::TokensExpired, 5);
    flush();
    assert_eq!(capture.total(Metric::TokensExpired, None), 5);
    assert_eq!(capture.total(Metric::MessagesSent, None), 3);

    // The local stack's running totals: drained documents are not read twice.
    let mut totals = Totals::default();
    assert_eq!(totals.to_string(), "no metrics yet");
    for d in capture.drain() {
        totals.add(&d);
    }
    assert!(capture.drain().is_empty());
    count_by(Metric::SendsRefused, "retired_tag", 2);
    flush();
    for d in capture.drain() {
        totals.add(&d);
    }
    assert_eq!(totals.get(Metric::SendsRefused), 3);
    assert_eq!(
        totals.to_string(),
        "EventsProcessed 3, MessagesSent 3, SendsRefused 3 (outside_window 1, retired_tag 2), \
         GraphErrors 1 (token_invalid 1), TokensExpired 5"
    );
}

#[test]
fn every_metric_has_a_distinct_name_and_only_three_have_a_second_dimension() {
    // `count` keeps each metric's handle at its declaration index.
    for (i, metric) in Metric::ALL.iter().enumerate() {
        assert_eq!(*metric as usize, i, "{metric:?}");
    }
    let mut names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), Metric::ALL.len());
    let with_dimension: Vec<&str> = Metric::ALL
        .iter()
        .filter(|m| m.dimension().is_some())
        .map(|m| m.name())
        .collect();
    assert_eq!(
        with_dimension,
        vec!["SendsRefused", "GraphErrors", "MessagesRefused"]
    );
}
