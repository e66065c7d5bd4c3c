//! The served OpenAPI document declares what each operation can answer (decision 0046): the
//! statuses its shape implies, success statuses with their bodies, errors with the envelope.
//! scripts/fuzz.sh checks the running server against it; this keeps the document from rotting
//! between fuzz runs.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_app;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Every (method, path, operation) of the served document.
async fn operations() -> Vec<(String, String, Value)> {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
    let doc: Value = res.json().await.expect("json");
    app.stop().await;
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((method.to_string(), path.clone(), op.clone()));
            }
        }
    }
    assert!(out.len() > 40, "only {} operations", out.len());
    out
}

fn declared(op: &Value) -> Vec<String> {
    op["responses"]
        .as_object()
        .map(|r| r.keys().cloned().collect())
        .unwrap_or_default()
}

fn has_parameter_in(op: &Value, place: &str) -> bool {
    op["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["in"] == place))
}

/// Schemathesis (and every OpenAPI client) needs each `{name}` of a path declared as a path
/// parameter, and nothing salvo-only (`{**path}`) in the template.
#[tokio::test]
async fn every_path_template_names_only_declared_path_parameters() {
    for (method, path, op) in operations().await {
        let names: Vec<&str> = path
            .split('{')
            .skip(1)
            .filter_map(|rest| rest.split('}').next())
            .collect();
        for name in names {
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{method} {path}: `{{{name}}}` is not an OpenAPI path parameter"
            );
            let declared = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["in"] == "path" && p["name"] == name));
            assert!(declared, "{method} {path}: `{name}` is not declared");
        }
    }
}

#[tokio::test]
async fn every_operation_declares_the_statuses_its_shape_implies() {
    let mut problems = Vec::new();
    for (method, path, op) in operations().await {
        let statuses = declared(&op);
        let mut need = Vec::new();
        if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
            need.extend(["401", "429"]);
        }
        if op.get("requestBody").is_some() {
            need.extend(["400", "413", "422"]);
        }
        if has_parameter_in(&op, "path") {
            need.push("404");
        }
        if has_parameter_in(&op, "query") {
            need.push("400");
        }
        for status in need {
            if !statuses.iter().any(|s| s == status) {
                problems.push(format!("{method} {path}: no {status}"));
            }
        }
        if !statuses.iter().any(|s| s.starts_with('2')) {
            problems.push(format!("{method} {path}: no success status"));
        }
        // a GET has no body to be too large or invalid: these mean a forgotten status list
        if method == "get" && statuses.iter().any(|s| s == "413" || s == "422") {
            problems.push(format!("{method} {path}: declares 413/422 ({statuses:?})"));
        }
        // every error status at once: the operation has no status list of its own
        if statuses.len() > herald_api::error::ERROR_STATUSES.len() {
            problems.push(format!(
                "{method} {path}: declares everything ({statuses:?})"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn errors_carry_the_envelope_and_successes_their_bodies() {
    let mut problems = Vec::new();
    for (method, path, op) in operations().await {
        for (status, response) in op["responses"].as_object().expect("responses") {
            let json = &response["content"]["application/json"]["schema"];
            if status.starts_with('4') || status.starts_with('5') {
                let envelope = json["$ref"]
                    .as_str()
                    .is_some_and(|r| r.ends_with(".ErrorBody"));
                if !envelope {
                    problems.push(format!(
                        "{method} {path} {status}: not the envelope: {json}"
                    ));
                }
            } else if status == "204" {
                if response.get("content").is_some() {
                    problems.push(format!("{method} {path} 204 has a body"));
                }
            } else if (status == "201" || status == "202") && json.is_null() {
                problems.push(format!("{method} {path} {status}: no JSON body"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn creates_deletes_and_refusals_are_declared_as_answered() {
    let ops = operations().await;
    let statuses_of = |method: &str, path: &str| {
        ops.iter()
            .find(|(m, p, _)| m == method && p == path)
            .map(|(_, _, op)| declared(op))
            .unwrap_or_else(|| panic!("{method} {path} is not in the document"))
    };
    // what schemathesis found answered but undeclared
    for (method, path, expected) in [
        ("post", "/api/v1/auth/register", &["201", "409"][..]),
        ("post", "/api/v1/api-keys", &["201"]),
        ("delete", "/api/v1/api-keys/{id}", &["204"]),
        ("post", "/api/v1/sessions", &["201", "403", "409", "502"]),
        ("delete", "/api/v1/sessions/{id}", &["204", "502"]),
        ("post", "/api/v1/templates", &["201"]),
        ("delete", "/api/v1/templates/{id}", &["204"]),
        ("post", "/api/v1/campaigns", &["201", "403"]),
        ("post", "/api/v1/campaigns/{id}/pause", &["409"]),
        ("post", "/api/v1/contacts", &["200", "201"]),
        ("delete", "/api/v1/contacts/{phone}", &["204"]),
        ("post", "/api/v1/contacts/sync", &["502"]),
        ("post", "/api/v1/messages", &["202", "403", "409", "429"]),
        ("post", "/api/v1/sessions/{id}/connect", &["502"]),
        ("get", "/api/v1/admin/tenants", &["400", "401"]),
        ("get", "/health/ready", &["503"]),
    ] {
        let statuses = statuses_of(method, path);
        for status in expected {
            assert!(
                statuses.iter().any(|s| s == status),
                "{method} {path} does not declare {status}: {statuses:?}"
            );
        }
    }
}
