//! The OpenAPI document matches the router: every documented operation is
//! served, no other method is served on a documented path, and the pages
//! that show the document load nothing from elsewhere.

use serde_json::Value;

use crate::helpers::spawn_app;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

#[tokio::test]
async fn every_documented_operation_is_served_and_nothing_else_on_its_path() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("spec");
    assert_eq!(response.status(), 200);
    let spec: Value = response.json().await.expect("JSON");
    assert_eq!(spec["openapi"], "3.1.0");
    let paths = spec["paths"].as_object().expect("paths");
    assert!(paths.len() >= 20, "{} paths", paths.len());

    for (path, item) in paths {
        let concrete = path.replace("{id}", &uuid::Uuid::now_v7().to_string());
        for method in METHODS {
            // No key and no body: a served route answers from its handler
            // or extractor (401, 400, 200…); an unserved one from the
            // router's fallbacks (404 "no such route", 405).
            let request = app.client.request(
                method.to_uppercase().parse().expect("method"),
                app.url(&concrete),
            );
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let unrouted = status == 405 || body["error"] == "no such route";
            if item.get(method).is_some() {
                assert!(
                    !unrouted,
                    "{method} {path} is documented but not served ({status})"
                );
                let documented = item[method]["responses"].as_object().expect("responses");
                assert!(
                    documented.contains_key(&status.to_string()),
                    "{method} {path} answered {status}, which it does not document"
                );
            } else {
                assert_eq!(status, 405, "{method} {path} is served but not documented");
            }
        }
    }

    let docs = app.client.get(app.url("/docs")).send().await.expect("docs");
    assert_eq!(docs.status(), 200);
    let html = docs.text().await.expect("html");
    assert!(html.contains("/openapi.json"));
    for external in ["http://", "https://", "//cdn", "<link"] {
        assert!(!html.contains(external), "the docs page loads {external}");
    }
    app.stop().await;
}
