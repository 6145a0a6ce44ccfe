//! The schema checker itself, on the vendors' real documents: it must reject what the vendors do
//! not define, or the fakes would let a broken client through.

use authentify_fakes::openapi::{Direction, RequestParts, Spec};
use authentify_fakes::{AtlasFake, CloudflareFake, atlas, cloudflare};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GROUP: &str = "5f1a2b3c4d5e6f7a8b9c0d1e";
const ZONE: &str = "0123456789abcdef0123456789abcdef";
const ATLAS_V1: &str = "application/vnd.atlas.2023-01-01+json";

fn messages(spec: &Spec, req: RequestParts<'_>) -> Vec<String> {
    let (_, violations) = spec.check_request(&req);
    violations.into_iter().map(|v| v.message).collect()
}

fn req<'a>(method: &'a str, path: &'a str, headers: &[(&str, &str)], body: &'a [u8]) -> RequestParts<'a> {
    RequestParts {
        method,
        path,
        query: None,
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        body,
    }
}

fn user_body(extra: Value) -> Vec<u8> {
    let mut user = json!({
        "groupId": GROUP, "databaseName": "admin", "username": "app-1", "password": "longenough",
        "roles": [{"roleName": "readWrite", "databaseName": "app"}], "scopes": [{"name": "main", "type": "CLUSTER"}]
    });
    if let (Some(u), Some(e)) = (user.as_object_mut(), extra.as_object()) {
        u.extend(e.clone());
    }
    serde_json::to_vec(&user).unwrap()
}

const USERS: &str = "/api/atlas/v2/groups/5f1a2b3c4d5e6f7a8b9c0d1e/databaseUsers";

#[test]
fn both_documents_load_with_their_errata() {
    let a = atlas::spec().unwrap();
    assert_eq!(a.operations().len(), 12);
    let c = cloudflare::spec().unwrap();
    assert_eq!(c.base_path(), "/client/v4");
    assert_eq!(c.operations().len(), 18);
    // An erratum that no longer applies (here: applied twice) makes loading fail.
    let fixed =
        serde_json::to_string(&serde_json::from_str::<Value>(cloudflare::SPEC_JSON).unwrap()).unwrap();
    let once = {
        let mut doc: Value = serde_json::from_str(&fixed).unwrap();
        for e in cloudflare::ERRATA {
            assert!((e.apply)(&mut doc), "{}", e.why);
        }
        doc.to_string()
    };
    let err = Spec::from_json(&once, cloudflare::ERRATA).unwrap_err();
    assert!(err.to_string().contains("erratum no longer applies"), "{err}");
}

#[test]
fn a_valid_atlas_request_passes() {
    let spec = atlas::spec().unwrap();
    let body = user_body(json!({}));
    let m = messages(&spec, req("POST", USERS, &[("Content-Type", ATLAS_V1), ("Accept", ATLAS_V1)], &body));
    assert!(m.is_empty(), "{m:?}");
}

#[test]
fn unknown_and_read_only_request_fields_are_rejected() {
    let spec = atlas::spec().unwrap();
    let body = user_body(json!({"nickname": "x", "links": []}));
    let m = messages(&spec, req("POST", USERS, &[("Content-Type", ATLAS_V1), ("Accept", ATLAS_V1)], &body));
    assert_eq!(m.len(), 2, "{m:?}");
    assert!(m.iter().any(|m| m.contains("property `nickname` is not declared")), "{m:?}");
    assert!(m.iter().any(|m| m.contains("body.links: read-only property must not be sent")), "{m:?}");

    // Nested too: an unknown field in a role, a scope name against its pattern.
    let body = user_body(json!({"roles": [{"roleName": "read", "databaseName": "app", "db": "x"}],
                                "scopes": [{"name": "-bad", "type": "CLUSTER"}]}));
    let m = messages(&spec, req("POST", USERS, &[("Content-Type", ATLAS_V1), ("Accept", ATLAS_V1)], &body));
    assert!(m.iter().any(|m| m.contains("body.roles[0]: property `db` is not declared")), "{m:?}");
    assert!(m.iter().any(|m| m.contains("body.scopes[0].name") && m.contains("pattern")), "{m:?}");

    // Missing required fields and a too short password.
    let body = br#"{"groupId": "5f1a2b3c4d5e6f7a8b9c0d1e", "username": "u", "password": "short"}"#;
    let m = messages(&spec, req("POST", USERS, &[("Content-Type", ATLAS_V1), ("Accept", ATLAS_V1)], body));
    assert!(m.iter().any(|m| m.contains("`databaseName` is missing")), "{m:?}");
    assert!(m.iter().any(|m| m.contains("`roles` is missing")), "{m:?}");
    assert!(m.iter().any(|m| m.contains("shorter than 8")), "{m:?}");
}

#[test]
fn wrong_media_types_are_rejected() {
    let spec = atlas::spec().unwrap();
    let body = user_body(json!({}));
    let m = messages(
        &spec,
        req("POST", USERS, &[("Content-Type", "application/json"), ("Accept", ATLAS_V1)], &body),
    );
    assert_eq!(
        m,
        [
            "Content-Type application/json is not one the operation accepts (application/vnd.atlas.2023-01-01+json)"
        ]
    );
    // getCluster is versioned 2024-08-05: asking for 2023-01-01 is wrong, asking for nothing too.
    let cluster = "/api/atlas/v2/groups/5f1a2b3c4d5e6f7a8b9c0d1e/clusters/main";
    let m = messages(&spec, req("GET", cluster, &[("Accept", ATLAS_V1)], b""));
    assert!(
        m[0].contains("admits none of the operation's media types (application/vnd.atlas.2024-08-05+json)"),
        "{m:?}"
    );
    let m = messages(&spec, req("GET", cluster, &[], b""));
    assert!(m[0].contains("no Accept header"), "{m:?}");
    let m = messages(&spec, req("GET", cluster, &[("Accept", "application/vnd.atlas.2024-08-05+json")], b""));
    assert!(m.is_empty(), "{m:?}");
}

#[test]
fn unknown_paths_methods_and_parameters_are_rejected() {
    let spec = atlas::spec().unwrap();
    let accept = [("Accept", ATLAS_V1)];
    let m = messages(&spec, req("GET", "/api/atlas/v2/groups/5f1a2b3c4d5e6f7a8b9c0d1e/teams", &accept, b""));
    assert_eq!(m, ["no path of the schema matches"]);
    let m = messages(&spec, req("PUT", USERS, &accept, b""));
    assert_eq!(m, ["the schema defines no PUT on /api/atlas/v2/groups/{groupId}/databaseUsers"]);
    let m = messages(&spec, req("GET", "/api/atlas/v2/groups/not-hex/databaseUsers", &accept, b""));
    assert!(m[0].contains("path parameter groupId") && m[0].contains("pattern"), "{m:?}");
    let mut r = req("GET", USERS, &accept, b"");
    r.query = Some("pageNum=0&envelope=true");
    let m = messages(&spec, r);
    assert!(m.iter().any(|m| m.contains("pageNum") && m.contains("below the minimum 1")), "{m:?}");
    assert!(m.iter().any(|m| m.contains("query parameter envelope is not declared")), "{m:?}");
}

#[test]
fn answers_must_not_leak_write_only_fields_or_miss_required_ones() {
    let spec = atlas::spec().unwrap();
    let op = spec.operation("getDatabaseUser").unwrap();
    let headers = vec![("content-type".to_string(), ATLAS_V1.to_string())];
    let body = json!({"databaseName": "admin", "username": "u", "password": "leaked!!", "roles": []});
    let v = spec.check_response(op, "/x", 200, &headers, body.to_string().as_bytes());
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].direction, Direction::Response);
    assert!(v[0].message.contains("body.password: write-only property must not be answered"), "{v:?}");
    let v = spec.check_response(op, "/x", 200, &headers, br#"{"username": "u"}"#);
    assert!(v.iter().any(|v| v.message.contains("`roles` is missing")), "{v:?}");
    let v = spec.check_response(op, "/x", 418, &headers, b"{}");
    assert_eq!(v[0].message, "the operation defines no response with status 418");
    // Errors are Atlas' error JSON.
    let json_headers = vec![("content-type".to_string(), "application/json".to_string())];
    let v = spec.check_response(op, "/x", 404, &json_headers, br#"{"detail": "gone"}"#);
    assert!(v.iter().any(|v| v.message.contains("`errorCode` is missing")), "{v:?}");
}

#[test]
fn cloudflare_rules_purges_and_records_are_checked_deeply() {
    let spec = cloudflare::spec().unwrap();
    let json = [("Content-Type", "application/json")];
    let ruleset = format!("/client/v4/zones/{ZONE}/rulesets/phases/http_request_cache_settings/entrypoint");
    let rule = |extra: Value| {
        let mut r = json!({"ref": "authentify:a", "expression": "true", "action": "set_cache_settings",
                           "action_parameters": {"cache": true}, "enabled": true});
        if let (Some(r), Some(e)) = (r.as_object_mut(), extra.as_object()) {
            r.extend(e.clone());
        }
        serde_json::to_vec(&json!({ "rules": [r] })).unwrap()
    };
    assert!(messages(&spec, req("PUT", &ruleset, &json, &rule(json!({})))).is_empty());
    let m = messages(&spec, req("PUT", &ruleset, &json, &rule(json!({"version": "2"}))));
    assert!(m.iter().any(|m| m.contains("body.rules[0].version: read-only")), "{m:?}");
    let m = messages(
        &spec,
        req("PUT", &ruleset, &json, &rule(json!({"action_parameters": {"cache": true, "ttl": 5}}))),
    );
    assert!(
        m.iter().any(|m| m.contains("body.rules[0].action_parameters: property `ttl` is not declared")),
        "{m:?}"
    );
    let m = messages(&spec, req("PUT", &ruleset, &json, &rule(json!({"action": "make_coffee"}))));
    assert!(m.iter().any(|m| m.contains("\"make_coffee\" names none of the oneOf schemas")), "{m:?}");
    let wrong_phase = format!("/client/v4/zones/{ZONE}/rulesets/phases/http_request_cache/entrypoint");
    let m = messages(&spec, req("PUT", &wrong_phase, &json, &rule(json!({}))));
    assert!(m.iter().any(|m| m.contains("path parameter ruleset_phase")), "{m:?}");

    let purge = format!("/client/v4/zones/{ZONE}/purge_cache");
    assert!(messages(&spec, req("POST", &purge, &json, br#"{"tags": ["a"]}"#)).is_empty());
    let m = messages(&spec, req("POST", &purge, &json, br#"{"urls": ["a"]}"#));
    assert!(m.iter().any(|m| m.contains("matches none of the anyOf")), "{m:?}");

    let records = format!("/client/v4/zones/{ZONE}/dns_records");
    let ok = br#"{"type": "CNAME", "name": "a.example.com", "content": "b.example.net", "proxied": true, "ttl": 1}"#;
    assert!(messages(&spec, req("POST", &records, &json, ok)).is_empty());
    let m = messages(
        &spec,
        req("POST", &records, &json, br#"{"type": "A", "name": "a.example.com", "content": "not-an-ip"}"#),
    );
    assert!(m.iter().any(|m| m.contains("matches none of the oneOf")), "{m:?}");
    let m = messages(
        &spec,
        req("POST", &records, &json, br#"{"type": "CNAME", "name": "a", "content": "b", "ttl": 5}"#),
    );
    assert!(
        m.iter().any(|m| m.contains("matches none of the oneOf")),
        "ttl 5 is neither 1 nor 30..86400: {m:?}"
    );
    let m = messages(
        &spec,
        req("POST", &records, &json, br#"{"type": "CNAME", "name": "a", "content": "b", "id": "x"}"#),
    );
    assert!(!m.is_empty(), "a record id is Cloudflare's to assign");
}

/// Sends one raw HTTP/1.1 request and returns the status code.
async fn raw(addr: &str, request: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap()
}

#[tokio::test]
async fn the_fakes_record_what_a_client_gets_wrong() {
    let atlas = AtlasFake::start().await.unwrap();
    let addr = atlas.base_url().trim_start_matches("http://").to_string();
    let status =
        raw(&addr, "GET /api/atlas/v2/groups/x/whatever HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .await;
    assert_eq!(status, 404);
    assert_eq!(atlas.violations().len(), 1);
    assert_eq!(atlas.violations()[0].message, "no path of the schema matches");
    let result = std::panic::catch_unwind(|| atlas.assert_no_violations());
    assert!(result.is_err(), "assert_no_violations must fail when there are violations");

    let cf = CloudflareFake::start().await.unwrap();
    cf.add_token("t");
    let zone = cf.add_zone("example.org");
    let addr = cf.base_url().trim_start_matches("http://").trim_end_matches("/client/v4").to_string();
    let body = r#"{"hosts": ["a"], "bogus": 1}"#;
    let request = format!(
        "POST /client/v4/zones/{zone}/purge_cache HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(raw(&addr, &request).await, 400, "the fake refuses a request the schema does not define");
    assert_eq!(cf.violations().len(), 1, "{:?}", cf.violations());
    assert!(cf.purges(&zone).is_empty());
}
