//! The filter language, rule by rule. Longer than most files because each
//! operator, limit and refusal gets its own case; they share the fixtures
//! at the top, which splitting the file would repeat.

use serde_json::{Value, json};

use super::*;

fn filter(source: Value) -> Filter {
    Filter::compile(&source).unwrap_or_else(|err| panic!("{source} should compile: {err}"))
}

/// Whether `source` lets the event `{type: "invoice.paid", payload}` through.
fn passes(source: Value, payload: Value) -> bool {
    filter(source).matches("invoice.paid", &payload)
}

fn refusal(source: Value) -> RoutingError {
    match Filter::compile(&source) {
        Ok(_) => panic!("{source} should be refused"),
        Err(err) => err,
    }
}

fn order() -> Value {
    json!({
        "amount": 120,
        "price": 9.5,
        "currency": "EUR",
        "customer": {"country": "DE", "vip": true, "note": null},
        "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}],
        "tags": ["new", "web"]
    })
}

#[test]
fn a_literal_is_json_equality() {
    assert!(passes(json!({"payload.currency": "EUR"}), order()));
    assert!(!passes(json!({"payload.currency": "USD"}), order()));
    assert!(passes(json!({"payload.customer.vip": true}), order()));
    assert!(passes(json!({"payload.customer.note": null}), order()));
    assert!(passes(json!({"payload.tags": ["new", "web"]}), order()));
    // An array is compared, not searched.
    assert!(!passes(json!({"payload.tags": "new"}), order()));
    assert!(!passes(json!({"payload.tags": ["web", "new"]}), order()));
    // Kinds never mix: "120" is not 120, true is not 1.
    assert!(!passes(json!({"payload.amount": "120"}), order()));
    assert!(!passes(json!({"payload.customer.vip": 1}), order()));
}

#[test]
fn numbers_are_equal_by_value() {
    assert!(passes(json!({"payload.amount": 120.0}), order()));
    assert!(passes(json!({"payload.amount": {"$eq": 1.2e2}}), order()));
    assert!(passes(
        json!({"payload.amount": {"$in": [1, 120.0]}}),
        order()
    ));
    assert!(passes(json!({"payload.n": -0.0}), json!({"n": 0})));
    // Integers compare exactly, beyond what a double can tell apart.
    assert!(!passes(
        json!({"payload.n": 9_007_199_254_740_993_u64}),
        json!({"n": 9_007_199_254_740_992_u64})
    ));
    assert!(passes(
        json!({"payload.n": {"$gt": -1}}),
        json!({"n": u64::MAX})
    ));
}

#[test]
fn an_object_literal_is_equality_with_an_object() {
    let source = json!({"payload.customer": {"country": "DE", "vip": true, "note": null}});
    assert!(passes(source, order()));
    assert!(!passes(
        json!({"payload.customer": {"country": "DE"}}),
        order()
    ));
    // Key order does not matter, numbers still compare by value.
    assert!(passes(
        json!({"payload.x": {"b": 1.0, "a": [2]}}),
        json!({"x": {"a": [2.0], "b": 1}})
    ));
    // `$eq` takes any literal, including an object with `$` keys.
    assert!(passes(
        json!({"payload.x": {"$eq": {"$gt": 1}}}),
        json!({"x": {"$gt": 1}})
    ));
}

#[test]
fn eq_and_ne() {
    assert!(passes(json!({"payload.currency": {"$eq": "EUR"}}), order()));
    assert!(!passes(
        json!({"payload.currency": {"$ne": "EUR"}}),
        order()
    ));
    assert!(passes(json!({"payload.currency": {"$ne": "USD"}}), order()));
    assert!(passes(json!({"payload.amount": {"$ne": "120"}}), order()));
}

#[test]
fn numbers_compare_as_numbers() {
    let cases = [
        ("$gt", 119, true),
        ("$gt", 120, false),
        ("$gte", 120, true),
        ("$gte", 121, false),
        ("$lt", 121, true),
        ("$lt", 120, false),
        ("$lte", 120, true),
        ("$lte", 119, false),
    ];
    for (op, bound, expected) in cases {
        let source = json!({"payload.amount": {op: bound}});
        assert_eq!(passes(source, order()), expected, "{op} {bound}");
    }
    assert!(passes(
        json!({"payload.price": {"$gt": 9, "$lt": 10}}),
        order()
    ));
    assert!(passes(json!({"payload.price": {"$gte": 9.5}}), order()));
    assert!(passes(json!({"payload.amount": {"$lt": 120.5}}), order()));
}

#[test]
fn strings_compare_as_strings() {
    assert!(passes(json!({"payload.currency": {"$gt": "EUA"}}), order()));
    assert!(passes(
        json!({"payload.currency": {"$lte": "EUR"}}),
        order()
    ));
    assert!(!passes(
        json!({"payload.currency": {"$lt": "EUR"}}),
        order()
    ));
    // By code point: lower case sorts after upper case.
    assert!(passes(json!({"payload.currency": {"$lt": "eur"}}), order()));
    assert!(passes(json!({"type": {"$gte": "invoice."}}), json!({})));
}

#[test]
fn comparisons_across_kinds_are_false() {
    for op in ["$gt", "$gte", "$lt", "$lte"] {
        assert!(
            !passes(json!({"payload.amount": {op: "100"}}), order()),
            "{op}"
        );
        assert!(
            !passes(json!({"payload.currency": {op: 1}}), order()),
            "{op}"
        );
        assert!(
            !passes(json!({"payload.customer.vip": {op: 0}}), order()),
            "{op}"
        );
        assert!(
            !passes(json!({"payload.customer.note": {op: ""}}), order()),
            "{op}"
        );
        assert!(!passes(json!({"payload.tags": {op: "a"}}), order()), "{op}");
        assert!(!passes(json!({"type": {op: 0}}), order()), "{op}");
    }
}

#[test]
fn in_and_nin() {
    assert!(passes(
        json!({"payload.currency": {"$in": ["USD", "EUR"]}}),
        order()
    ));
    assert!(!passes(
        json!({"payload.currency": {"$in": ["USD"]}}),
        order()
    ));
    assert!(!passes(json!({"payload.currency": {"$in": []}}), order()));
    assert!(passes(
        json!({"payload.currency": {"$nin": ["USD"]}}),
        order()
    ));
    assert!(!passes(
        json!({"payload.currency": {"$nin": ["USD", "EUR"]}}),
        order()
    ));
    assert!(passes(json!({"payload.currency": {"$nin": []}}), order()));
    assert!(passes(
        json!({"payload.tags": {"$in": [["new", "web"]]}}),
        order()
    ));
}

#[test]
fn exists() {
    assert!(passes(
        json!({"payload.customer.note": {"$exists": true}}),
        order()
    ));
    assert!(!passes(
        json!({"payload.customer.note": {"$exists": false}}),
        order()
    ));
    assert!(passes(
        json!({"payload.customer.email": {"$exists": false}}),
        order()
    ));
    assert!(!passes(
        json!({"payload.customer.email": {"$exists": true}}),
        order()
    ));
    assert!(passes(json!({"type": {"$exists": true}}), json!({})));
}

#[test]
fn prefix_applies_to_strings_only() {
    assert!(passes(
        json!({"payload.items.1.sku": {"$prefix": "B-"}}),
        order()
    ));
    assert!(!passes(
        json!({"payload.items.1.sku": {"$prefix": "A-"}}),
        order()
    ));
    assert!(passes(json!({"type": {"$prefix": "invoice."}}), json!({})));
    assert!(!passes(
        json!({"payload.amount": {"$prefix": "1"}}),
        order()
    ));
    assert!(!passes(
        json!({"payload.tags": {"$prefix": "new"}}),
        order()
    ));
    assert!(passes(
        json!({"payload.currency": {"$prefix": ""}}),
        order()
    ));
}

#[test]
fn a_missing_field_satisfies_only_exists_false_ne_and_nin() {
    let missing = "payload.customer.email";
    let holding = [
        json!({"$exists": false}),
        json!({"$ne": "x"}),
        json!({"$ne": null}),
        json!({"$nin": ["x"]}),
    ];
    for ops in holding {
        assert!(passes(json!({missing: ops.clone()}), order()), "{ops}");
    }
    let failing = [
        json!(null),
        json!("x"),
        json!({"$eq": null}),
        json!({"$exists": true}),
        json!({"$gt": 0}),
        json!({"$gte": ""}),
        json!({"$lt": 0}),
        json!({"$lte": "z"}),
        json!({"$in": [null]}),
        json!({"$prefix": ""}),
    ];
    for ops in failing {
        assert!(!passes(json!({missing: ops.clone()}), order()), "{ops}");
    }
}

#[test]
fn paths_walk_objects_and_index_arrays() {
    assert!(passes(json!({"payload.items.0.sku": "A-1"}), order()));
    assert!(passes(json!({"payload.items.1.qty": 1}), order()));
    assert!(passes(json!({"payload.tags.1": "web"}), order()));
    // Past the end, through a scalar, or a key into an array: missing.
    assert!(passes(
        json!({"payload.items.2": {"$exists": false}}),
        order()
    ));
    assert!(passes(
        json!({"payload.amount.x": {"$exists": false}}),
        order()
    ));
    assert!(passes(
        json!({"payload.items.sku": {"$exists": false}}),
        order()
    ));
    // Not canonical decimal: not an index.
    assert!(passes(
        json!({"payload.tags.01": {"$exists": false}}),
        order()
    ));
    // A number segment on an object is a key.
    assert!(passes(
        json!({"payload.codes.7": "x"}),
        json!({"codes": {"7": "x"}})
    ));
    // `payload` alone is the whole payload.
    assert!(passes(json!({"payload": {"a": 1}}), json!({"a": 1})));
}

#[test]
fn type_is_the_event_type() {
    let f = filter(json!({"type": "invoice.paid"}));
    assert!(f.matches("invoice.paid", &json!({})));
    assert!(!f.matches("invoice.void", &json!({})));
    let f = filter(json!({"type": {"$in": ["a", "b"]}, "payload.n": 1}));
    assert!(f.matches("b", &json!({"n": 1})));
    assert!(!f.matches("c", &json!({"n": 1})));
    assert!(!f.matches("a", &json!({"n": 2})));
}

#[test]
fn every_key_of_an_object_must_hold() {
    let source = json!({"payload.currency": "EUR", "payload.amount": {"$gte": 100}});
    assert!(passes(source.clone(), order()));
    assert!(!passes(source, json!({"currency": "EUR", "amount": 99})));
    assert!(passes(json!({}), order()));
}

#[test]
fn and_or_not() {
    let both = json!({"$and": [{"payload.currency": "EUR"}, {"payload.amount": {"$gt": 100}}]});
    assert!(passes(both, order()));
    let one_fails =
        json!({"$and": [{"payload.currency": "EUR"}, {"payload.amount": {"$gt": 500}}]});
    assert!(!passes(one_fails, order()));
    let either = json!({"$or": [{"payload.currency": "USD"}, {"payload.customer.country": "DE"}]});
    assert!(passes(either, order()));
    let neither = json!({"$or": [{"payload.currency": "USD"}, {"payload.customer.country": "FR"}]});
    assert!(!passes(neither, order()));
    assert!(passes(
        json!({"$not": {"payload.currency": "USD"}}),
        order()
    ));
    assert!(!passes(
        json!({"$not": {"payload.currency": "EUR"}}),
        order()
    ));
    // `$not` of a condition on a missing field holds.
    assert!(passes(json!({"$not": {"payload.nope": 1}}), order()));
    let nested = json!({
        "$or": [
            {"$and": [{"payload.amount": {"$gte": 1000}}, {"type": {"$prefix": "invoice."}}]},
            {"$not": {"payload.customer.vip": false}}
        ]
    });
    assert!(passes(nested, order()));
}

#[test]
fn errors_name_the_path() {
    let cases = [
        (json!([]), "filter", "expected an object"),
        (
            json!({"payload.amount": {"$gt": true}}),
            "filter.payload.amount.$gt",
            "expected a number or string",
        ),
        (
            json!({"payload.amount": {"$lte": null}}),
            "filter.payload.amount.$lte",
            "expected a number or string",
        ),
        (
            json!({"payload.a": {"$in": "x"}}),
            "filter.payload.a.$in",
            "expected an array",
        ),
        (
            json!({"payload.a": {"$nin": {}}}),
            "filter.payload.a.$nin",
            "expected an array",
        ),
        (
            json!({"payload.a": {"$exists": "yes"}}),
            "filter.payload.a.$exists",
            "expected true or false",
        ),
        (
            json!({"payload.a": {"$prefix": 1}}),
            "filter.payload.a.$prefix",
            "expected a string",
        ),
        (
            json!({"payload.a": {"$regex": "x"}}),
            "filter.payload.a.$regex",
            "unknown operator",
        ),
        (
            json!({"payload.a": {"$or": []}}),
            "filter.payload.a.$or",
            "combines filters",
        ),
        (
            json!({"payload.a": {"$gt": 1, "b": 2}}),
            "filter.payload.a.b",
            "among operators",
        ),
        (json!({"$gt": 1}), "filter.$gt", "applies to a field"),
        (json!({"$where": "1"}), "filter.$where", "unknown operator"),
        (json!({"$and": []}), "filter.$and", "non-empty array"),
        (
            json!({"$or": {"payload.a": 1}}),
            "filter.$or",
            "non-empty array",
        ),
        (
            json!({"$and": [{"payload.a": 1}, 3]}),
            "filter.$and[1]",
            "expected an object",
        ),
        (
            json!({"$not": [{"payload.a": 1}]}),
            "filter.$not",
            "expected an object",
        ),
        (
            json!({"$or": [{"payload.a": {"$gt": []}}]}),
            "filter.$or[0].payload.a.$gt",
            "number or string",
        ),
        (
            json!({"customer.country": "DE"}),
            "filter.customer.country",
            "`type` or `payload`",
        ),
        (json!({"": 1}), "filter.", "`type` or `payload`"),
        (
            json!({"payload..a": 1}),
            "filter.payload..a",
            "empty segment",
        ),
        (
            json!({"payload.a.": 1}),
            "filter.payload.a.",
            "empty segment",
        ),
        (json!({"type.x": 1}), "filter.type.x", "has no fields"),
        (json!({"payload.a": "x\u{0}"}), "filter.payload.a", "NUL"),
        (
            json!({"payload.a": {"$in": ["ok", "\u{0}"]}}),
            "filter.payload.a.$in[1]",
            "NUL",
        ),
    ];
    for (source, path, message) in cases {
        let err = refusal(source.clone());
        assert_eq!(err.path, path, "{source}: {err}");
        assert!(err.message.contains(message), "{source}: {err}");
        assert_eq!(err.to_string(), format!("{path}: {}", err.message));
    }
}

/// `{"$not": …}` wrapped around a condition until the filter is `levels`
/// deep; the innermost condition uses an operator object, which adds none.
fn nested_not(levels: usize) -> Value {
    (1..levels).fold(
        json!({"payload.a": {"$ne": 1}}),
        |inner, _| json!({"$not": inner}),
    )
}

fn nested_and(levels: usize) -> Value {
    (1..levels).fold(
        json!({"payload.a": {"$in": [1, 2]}}),
        |inner, _| json!({"$and": [inner]}),
    )
}

#[test]
fn filters_nest_at_most_five_levels() {
    assert!(Filter::compile(&nested_not(5)).is_ok());
    assert!(Filter::compile(&nested_and(5)).is_ok());
    // Five levels still decide correctly: four `$not`s cancel out.
    assert!(filter(nested_not(5)).matches("t", &json!({"a": 2})));
    let err = refusal(nested_not(6));
    assert_eq!(err.path, "filter.$not.$not.$not.$not.$not");
    assert!(err.message.contains("5 levels"), "{err}");
    let err = refusal(nested_and(6));
    assert_eq!(err.path, "filter.$and[0].$and[0].$and[0].$and[0].$and[0]");
    let mixed = json!({"$or": [{"$and": [{"$not": {"$or": [{"$not": {"payload.a": 1}}]}}]}]});
    assert_eq!(
        refusal(mixed).path,
        "filter.$or[0].$and[0].$not.$or[0].$not"
    );
}

#[test]
fn filters_are_at_most_4_kib() {
    // `{"payload.s":"…"}` is 16 bytes around the string.
    let at_limit = json!({"payload.s": "x".repeat(MAX_FILTER_BYTES - 16)});
    assert_eq!(
        serde_json::to_string(&at_limit).expect("json").len(),
        MAX_FILTER_BYTES
    );
    assert!(Filter::compile(&at_limit).is_ok());
    let over = json!({"payload.s": "x".repeat(MAX_FILTER_BYTES - 15)});
    let err = refusal(over);
    assert_eq!(err.path, "filter");
    assert!(err.message.contains("4096"), "{err}");
}

#[test]
fn a_filter_serializes_back_as_given() {
    let text = r#"{"payload.amount":{"$gte":100.0,"$lt":1e3},"$or":[{"type":"a"},{"payload.x":{"k":[1,2]}}]}"#;
    let f: Filter = serde_json::from_str(text).expect("valid");
    let given: Value = serde_json::from_str(text).expect("json");
    assert_eq!(serde_json::to_value(&f).expect("serializes"), given);
    assert_eq!(f.as_json(), &given);
    assert_eq!(f, filter(given));
    let err = serde_json::from_str::<Filter>(r#"{"payload.a":{"$gt":[]}}"#).expect_err("invalid");
    assert!(err.to_string().contains("filter.payload.a.$gt: "), "{err}");
}
