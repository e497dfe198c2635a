//! Random and mangled requests: whatever arrives, the answer is a JSON
//! status the client can act on, never a 5xx, and every 202 is a real event.

use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde_json::{Value, json};

use crate::helpers::spawn_app;

/// A random JSON value, nested up to `depth`.
fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.gen_range(0..if depth == 0 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.r#gen::<bool>()),
        2 => json!(rng.r#gen::<i64>()),
        3 => json!(rng.r#gen::<f64>()),
        4 => {
            let len = rng.gen_range(0..12);
            let text: String = (0..len)
                .map(|_| {
                    *['a', 'é', '"', '\\', '\u{1F600}', ' ', '\n', '\0']
                        .choose(rng)
                        .unwrap_or(&'a')
                })
                .collect();
            json!(text)
        }
        5 => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
        _ => {
            let mut map = serde_json::Map::new();
            for _ in 0..rng.gen_range(0..4) {
                map.insert(
                    format!("k{}", rng.gen_range(0..5)),
                    random_value(rng, depth - 1),
                );
            }
            Value::Object(map)
        }
    }
}

/// A body: a random document, a plausible event with random fields, or a
/// valid event with some bytes mangled.
fn random_body(rng: &mut StdRng) -> Vec<u8> {
    match rng.gen_range(0..3) {
        0 => random_value(rng, 3).to_string().into_bytes(),
        1 => {
            let mut event = serde_json::Map::new();
            for field in ["type", "payload", "dedup_id"] {
                if rng.gen_bool(0.8) {
                    event.insert(field.to_owned(), random_value(rng, 2));
                }
            }
            Value::Object(event).to_string().into_bytes()
        }
        _ => {
            let mut bytes = json!({ "type": "t", "dedup_id": "d", "payload": { "a": [1, "x"] } })
                .to_string()
                .into_bytes();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..bytes.len());
                match rng.gen_range(0..3) {
                    0 => bytes[at] = rng.r#gen(),
                    1 => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, rng.r#gen()),
                }
            }
            bytes
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bodies_get_a_json_answer_and_never_a_5xx() {
    let app = spawn_app().await;
    let org = app.create_org("enterprise").await;
    let mut rng = StdRng::seed_from_u64(0x7472_6967);
    let mut accepted = Vec::new();
    for _ in 0..400 {
        let body = random_body(&mut rng);
        let response = app
            .client
            .post(app.url("/api/events"))
            .header("x-api-key", &org.key)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let shown = String::from_utf8_lossy(&body).into_owned();
        assert!(
            [202, 400, 409, 422].contains(&status),
            "{status} for {shown}"
        );
        let answer: Value = response
            .json()
            .await
            .unwrap_or_else(|_| panic!("not JSON for {shown}"));
        if status == 202 {
            accepted.push(answer["id"].as_str().unwrap().to_owned());
        } else {
            assert!(answer["error"].is_string(), "{answer}");
        }
    }
    assert!(!accepted.is_empty(), "some random bodies are valid events");
    for id in &accepted {
        let event = app.get(&org.key, &format!("/api/events/{id}")).await;
        assert_eq!(event.status(), 200);
    }
    app.stop().await;
}
