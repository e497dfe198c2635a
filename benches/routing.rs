//! The routing decision per (event, endpoint), measured on its own:
//! `cargo bench --bench routing`. Each case runs for about a quarter of a
//! second after a warm-up, so the whole run takes well under 10 s.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use triggers_api::routing::{EventTypes, Filter, Route};

const RUN_FOR: Duration = Duration::from_millis(250);
const BATCH: u32 = 1_000;

/// Nanoseconds per call of `decide`, over batches until `RUN_FOR` is spent.
fn time(mut decide: impl FnMut() -> bool) -> f64 {
    for _ in 0..BATCH {
        black_box(decide());
    }
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < RUN_FOR {
        for _ in 0..BATCH {
            black_box(decide());
        }
        calls += u64::from(BATCH);
    }
    start.elapsed().as_nanos() as f64 / calls as f64
}

fn route(patterns: &[&str], filter: Option<Value>) -> Route {
    Route {
        event_types: EventTypes::parse(patterns).expect("valid patterns"),
        filter: filter.map(|f| Filter::compile(&f).expect("valid filter")),
    }
}

/// An order-like payload of about 1 KiB.
fn payload() -> String {
    let items: Vec<Value> = (0..8)
        .map(|i| {
            json!({
                "sku": format!("SKU-{i:04}"),
                "name": format!("Widget number {i}, standard size"),
                "qty": i + 1,
                "unit_price": 12.5 + f64::from(i),
            })
        })
        .collect();
    json!({
        "id": "ord_01HZX3K9Q2W8E5R7T6Y4U1I0OP",
        "amount": 249.9,
        "currency": "EUR",
        "customer": {
            "id": "cus_8f2a9c",
            "email": "jane.doe@example.com",
            "country": "DE",
            "vip": true,
            "address": {"street": "Hauptstrasse 1", "city": "Berlin", "zip": "10115"}
        },
        "items": items,
        "created_at": "2025-01-15T10:30:00Z",
        "metadata": {"channel": "web", "campaign": "winter-sale", "ref": "newsletter"}
    })
    .to_string()
}

fn main() {
    let start = Instant::now();
    let event_type = "invoice.line.added";
    let empty = json!({});

    let one = route(&["invoice.*"], None);
    let a = time(|| one.matches(black_box(event_type), black_box(&empty)));
    println!("(a) one `invoice.*` pattern:            {a:8.1} ns per decision");

    let endpoints: Vec<Route> = (0..50)
        .map(|i| match i {
            37 => route(&["invoice.*"], None),
            i if i % 2 == 0 => route(&[&format!("customer{i}.*"), "order.created"], None),
            i => route(&[&format!("invoice{i}.paid")], None),
        })
        .collect();
    let b = time(|| {
        let matched = endpoints
            .iter()
            .filter(|r| r.matches(black_box(event_type), black_box(&empty)))
            .count();
        matched == 1
    });
    println!(
        "(b) 50 endpoints, one matching:         {b:8.1} ns per event ({:.1} ns per decision)",
        b / 50.0
    );

    let raw = payload();
    let parsed: Value = serde_json::from_str(&raw).expect("valid payload");
    let filtered = route(
        &["invoice.*"],
        Some(json!({
            "payload.customer.country": {"$in": ["DE", "FR", "NL"]},
            "payload.amount": {"$gte": 100},
            "payload.items.0.sku": {"$prefix": "SKU-"}
        })),
    );
    assert!(
        filtered.matches(event_type, &parsed),
        "the filter should hold"
    );
    let c = time(|| filtered.matches(black_box(event_type), black_box(&parsed)));
    println!(
        "(c) 3-condition filter, {} B payload: {c:8.1} ns per decision",
        raw.len()
    );
    let parse =
        time(|| serde_json::from_str::<Value>(black_box(&raw)).is_ok_and(|v| v.is_object()));
    println!("    parsing that payload (once per event): {parse:8.1} ns");
    println!("total {:.2} s", start.elapsed().as_secs_f64());
}
