//! Unit tests of the EdgeCache controller's pure decisions.

use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::decide::*;
use crate::api::App;
use crate::api::common::ResourcePhase;
use crate::api::conditions::{REACHABLE, READY, is_true};
use crate::api::edge_cache::{EdgeCache, ManagedRecord, PurgeRecord};
use crate::providers::cloudflare::{DnsRecord, DnsRecordInput, Purge, ZoneSettingId};
use crate::providers::http::ErrorKind;

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).expect("valid"))
}

fn edge(spec: serde_json::Value) -> EdgeCache {
    let mut full = json!({"apiTokenSecret": {"name": "cf", "key": "token"}, "zoneName": "authentify.it"});
    if let (Some(f), Some(s)) = (full.as_object_mut(), spec.as_object()) {
        f.extend(s.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "platform.authentify.it/v1alpha1", "kind": "EdgeCache",
        "metadata": {"name": "edge", "namespace": "prod", "generation": 3, "creationTimestamp": at(50)},
        "spec": full,
    }))
    .expect("fixture")
}

fn app(name: &str, spec: serde_json::Value, history: serde_json::Value) -> App {
    let mut full = json!({"image": "api:1"});
    if let (Some(f), Some(s)) = (full.as_object_mut(), spec.as_object()) {
        f.extend(s.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "platform.authentify.it/v1alpha1", "kind": "App",
        "metadata": {"name": name, "namespace": "prod"},
        "spec": full,
        "status": {"history": history},
    }))
    .expect("fixture")
}

fn promoted(revision: &str, finished: i64) -> serde_json::Value {
    json!([{"revision": revision, "image": "api:2", "startedAt": at(1), "finishedAt": at(finished), "outcome": "Promoted"}])
}

fn routed(host: &str) -> serde_json::Value {
    json!({"route": {"host": host}, "edgeCache": {"name": "edge"}})
}

fn record(id: &str, kind: &str, name: &str, content: &str, comment: Option<&str>) -> DnsRecord {
    DnsRecord {
        id: id.into(),
        record_type: kind.into(),
        name: name.into(),
        content: content.into(),
        proxied: Some(true),
        ttl: Some(1.0),
        comment: comment.map(str::to_string),
    }
}

fn want(kind: &str, name: &str, content: &str, comment: &str) -> DnsRecordInput {
    DnsRecordInput {
        record_type: kind.into(),
        name: name.into(),
        content: content.into(),
        proxied: true,
        ttl: 1,
        comment: Some(comment.into()),
    }
}

#[test]
fn ownership_marks_name_the_edge_cache() {
    let ec = edge(json!({}));
    assert_eq!(owner(&ec), "prod/edge");
    assert_eq!(record_comment(&ec), "managed by authentify-operator for EdgeCache prod/edge");
    assert_eq!(rule_prefix(&ec), "authentify:prod/edge/");
}

#[test]
fn record_type_follows_the_target() {
    assert_eq!(record_type_for("203.0.113.7"), "A");
    assert_eq!(record_type_for("2001:db8::1"), "AAAA");
    assert_eq!(record_type_for("lb.example.net"), "CNAME");
}

#[test]
fn addresses_from_ingress_and_gateway_status() {
    let ing = |lb: serde_json::Value| -> Ingress {
        serde_json::from_value(
            json!({"metadata": {"name": "api"}, "status": {"loadBalancer": {"ingress": lb}}}),
        )
        .expect("ingress")
    };
    assert_eq!(
        ingress_address(&ing(json!([{"hostname": "lb.example.net"}, {"ip": "203.0.113.7"}]))).as_deref(),
        Some("203.0.113.7")
    );
    assert_eq!(
        ingress_address(&ing(json!([{"hostname": "lb.example.net"}]))).as_deref(),
        Some("lb.example.net")
    );
    assert_eq!(ingress_address(&ing(json!([]))), None);
    let no_status: Ingress = serde_json::from_value(json!({"metadata": {"name": "api"}})).expect("ingress");
    assert_eq!(ingress_address(&no_status), None);
    let gw = json!({"status": {"addresses": [{"type": "IPAddress", "value": ""}, {"type": "Hostname", "value": "gw.example.net"}]}});
    assert_eq!(gateway_address(&gw).as_deref(), Some("gw.example.net"));
    assert_eq!(gateway_address(&json!({"status": {}})), None);
}

#[test]
fn app_routes_name_hosts_and_address_source() {
    let ingress = app(
        "api",
        json!({"route": {"host": "api.authentify.it"}, "strategy": {"blueGreen": {"previewHost": "preview.authentify.it"}}}),
        json!([]),
    );
    let r = app_route(&ingress).expect("route");
    assert_eq!(r.hosts, ["api.authentify.it", "preview.authentify.it"]);
    assert_eq!(r.source, AddressSource::Ingress { name: "api".into() });
    let gw =
        app("web", json!({"route": {"host": "authentify.it", "gateway": {"name": "public"}}}), json!([]));
    assert_eq!(
        app_route(&gw).expect("route").source,
        AddressSource::Gateway { name: "public".into(), namespace: "prod".into() }
    );
    let gw_ns = app(
        "web",
        json!({"route": {"host": "authentify.it", "gateway": {"name": "public", "namespace": "infra"}}}),
        json!([]),
    );
    assert_eq!(app_route(&gw_ns).expect("route").source.to_string(), "Gateway infra/public");
    assert_eq!(app_route(&app("worker", json!({}), json!([]))), None);
}

fn route(app: &str, hosts: &[&str], address: Option<&str>) -> AppRoute {
    AppRoute {
        app: app.into(),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        source: AddressSource::Ingress { name: app.into() },
        address: address.map(str::to_string),
    }
}

#[test]
fn desired_records_without_dns_are_none() {
    let ec = edge(json!({}));
    assert_eq!(
        desired_records(&ec, &[route("api", &["api.authentify.it"], Some("203.0.113.7"))]),
        DesiredRecords::default()
    );
}

#[test]
fn desired_records_point_at_the_app_address_or_wait() {
    let ec = edge(json!({"dns": {}}));
    let c = record_comment(&ec);
    let out = desired_records(
        &ec,
        &[
            route("web", &["Authentify.it"], Some("2001:db8::1")),
            route("api", &["api.authentify.it", "preview.authentify.it"], Some("203.0.113.7")),
            route("admin", &["admin.authentify.it"], None),
        ],
    );
    assert_eq!(
        out.records,
        vec![
            want("A", "api.authentify.it", "203.0.113.7", &c),
            want("AAAA", "authentify.it", "2001:db8::1", &c),
            want("A", "preview.authentify.it", "203.0.113.7", &c),
        ]
    );
    assert_eq!(out.waiting.len(), 1);
    assert!(
        out.waiting[0].contains(
            "App admin (admin.authentify.it): waiting for an address in the status of Ingress admin"
        ),
        "{:?}",
        out.waiting
    );
}

#[test]
fn desired_records_with_an_explicit_target_include_extra_hosts_once() {
    let ec = edge(
        json!({"dns": {"target": "lb.example.net", "proxied": false, "extraHosts": ["www.authentify.it", "api.authentify.it"]}}),
    );
    let out = desired_records(
        &ec,
        &[route("api", &["api.authentify.it"], None), route("api2", &["api.authentify.it"], None)],
    );
    let names: Vec<_> =
        out.records.iter().map(|r| (r.name.as_str(), r.record_type.as_str(), r.proxied)).collect();
    assert_eq!(names, [("api.authentify.it", "CNAME", false), ("www.authentify.it", "CNAME", false)]);
    assert!(out.waiting.is_empty());
}

#[test]
fn dns_plan_creates_keeps_updates_and_deletes_only_ours() {
    let c = "mine";
    let desired = vec![
        want("A", "api.authentify.it", "203.0.113.7", c),
        want("A", "new.authentify.it", "203.0.113.7", c),
        want("CNAME", "web.authentify.it", "lb.example.net", c),
        want("A", "taken.authentify.it", "203.0.113.7", c),
        want("A", "txt.authentify.it", "203.0.113.7", c),
    ];
    let existing = vec![
        record("1", "A", "api.authentify.it", "203.0.113.7", Some(c)),
        record("2", "A", "web.authentify.it", "198.51.100.1", Some(c)),
        record("3", "A", "web.authentify.it", "198.51.100.2", Some(c)),
        record("4", "CNAME", "taken.authentify.it", "elsewhere.example", Some("someone's")),
        record("5", "TXT", "txt.authentify.it", "verify", None),
        record("6", "A", "old.authentify.it", "203.0.113.7", Some(c)),
        record("7", "A", "other.authentify.it", "203.0.113.9", None),
    ];
    let plan = plan_dns(&desired, &existing, &[], c);
    assert_eq!(plan.keep, [ManagedRecord { host: "api.authentify.it".into(), id: "1".into() }]);
    assert_eq!(plan.update, [("2".to_string(), desired[2].clone())]);
    assert_eq!(plan.create, [desired[1].clone(), desired[4].clone()]);
    let deleted: Vec<_> = plan.delete.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(deleted, ["3", "6"]);
    assert_eq!(plan.conflicts.len(), 1);
    assert!(plan.conflicts[0].starts_with("taken.authentify.it already has a CNAME record to elsewhere.example that the operator does not manage"));
    assert!(plan.writes());
}

#[test]
fn dns_plan_recognises_our_record_by_id_when_its_comment_was_edited() {
    let desired = vec![want("A", "api.authentify.it", "203.0.113.7", "mine")];
    let existing = vec![record("1", "A", "api.authentify.it", "203.0.113.7", Some("edited by hand"))];
    let plan = plan_dns(&desired, &existing, &["1".to_string()], "mine");
    assert_eq!(plan.update, [("1".to_string(), desired[0].clone())]);
    assert!(plan.conflicts.is_empty() && plan.create.is_empty());
    let none = plan_dns(
        &desired,
        &[record("1", "A", "api.authentify.it", "203.0.113.7", Some("mine"))],
        &[],
        "mine",
    );
    assert!(!none.writes(), "nothing differs: nothing to write");
}

#[test]
fn cache_rules_carry_our_ref_and_the_settings_asked_for() {
    let ec = edge(json!({"cacheRules": [
        {"name": "static", "expression": "starts_with(http.request.uri.path, \"/_next/static/\")", "edgeTtlSeconds": 86400, "browserTtlSeconds": 3600, "ignoreQueryString": true},
        {"name": "api", "expression": "http.host eq \"api.authentify.it\"", "cache": false},
        {"name": "plain", "expression": "true"},
    ]}));
    let rules = desired_rules(&ec);
    let refs: Vec<_> = rules.iter().map(|r| r.reference.clone().unwrap_or_default()).collect();
    assert_eq!(
        refs,
        ["authentify:prod/edge/static", "authentify:prod/edge/api", "authentify:prod/edge/plain"]
    );
    assert_eq!(
        rules[0].action_parameters,
        Some(
            json!({"cache": true, "edge_ttl": {"mode": "override_origin", "default": 86400, "status_code_ttl": []},
            "browser_ttl": {"mode": "override_origin", "default": 3600},
            "cache_key": {"custom_key": {"query_string": {"exclude": {"all": true}}}}})
        )
    );
    assert_eq!(rules[1].action_parameters, Some(json!({"cache": false})));
    assert_eq!(rules[2].action_parameters, Some(json!({"cache": true})));
    assert!(rules.iter().all(|r| r.action == "set_cache_settings" && r.enabled == Some(true)));
    assert_eq!(rules[1].other["description"], "EdgeCache prod/edge: api");
}

#[test]
fn zone_settings_map_to_api_values_and_compare_numbers_as_numbers() {
    assert!(desired_settings(&edge(json!({}))).is_empty());
    let ec = edge(
        json!({"settings": {"browserCacheTtl": 14400, "cacheLevel": "simplified", "alwaysOnline": false, "developmentMode": true, "tieredCaching": true}}),
    );
    assert_eq!(
        desired_settings(&ec),
        vec![
            (ZoneSettingId::BrowserCacheTtl, json!(14400)),
            (ZoneSettingId::CacheLevel, json!("simplified")),
            (ZoneSettingId::AlwaysOnline, json!("off")),
            (ZoneSettingId::DevelopmentMode, json!("on")),
        ]
    );
    let only_level = edge(json!({"settings": {"cacheLevel": "basic"}}));
    assert_eq!(desired_settings(&only_level), vec![(ZoneSettingId::CacheLevel, json!("basic"))]);
    assert!(!setting_differs(&json!(14400), &json!(14400.0)));
    assert!(setting_differs(&json!(14400), &json!(7200)));
    assert!(setting_differs(&json!("on"), &json!("off")));
    assert!(!setting_differs(&json!("on"), &json!("on")));
}

#[test]
fn purges_are_due_once_per_promotion_of_a_referencing_app() {
    let mut ec = edge(json!({}));
    let apps = vec![
        app("api", routed("api.authentify.it"), promoted("r2", 100)),
        app("old", routed("old.authentify.it"), promoted("r1", 40)),
        app("other", json!({"route": {"host": "o.authentify.it"}}), promoted("r9", 100)),
        app(
            "quiet",
            json!({"route": {"host": "q.authentify.it"}, "edgeCache": {"name": "edge", "purgeOnPromote": false}}),
            promoted("r3", 100),
        ),
        app(
            "running",
            routed("run.authentify.it"),
            json!([{"revision": "r4", "image": "x", "startedAt": at(90), "outcome": "Running"}]),
        ),
    ];
    let due: Vec<_> = purges_due(&ec, &apps).into_iter().map(|p| (p.app, p.revision)).collect();
    assert_eq!(due, [("api".to_string(), "r2".to_string())], "old promoted before the EdgeCache existed");

    let mut status = ec.status.clone().unwrap_or_default();
    record_purge(
        &mut status.purges,
        PurgeRecord {
            app: "api".into(),
            revision: "r2".into(),
            promoted_at: at(100),
            scope: "hosts: api.authentify.it".into(),
            requests: 1,
            time: at(101),
        },
    );
    ec.status = Some(status);
    assert!(purges_due(&ec, &apps).is_empty(), "recorded: not again");
    let again = vec![app("api", routed("api.authentify.it"), promoted("r2", 200))];
    assert_eq!(purges_due(&ec, &again).len(), 1, "the same revision promoted again is a new promotion");

    let none = edge(json!({"purge": {"mode": "none"}}));
    assert!(purges_due(&none, &apps).is_empty());
}

#[test]
fn a_purge_covers_what_the_mode_says() {
    let api = app(
        "api",
        json!({"route": {"host": "api.authentify.it"}, "strategy": {"blueGreen": {"previewHost": "preview.authentify.it"}}}),
        json!([]),
    );
    let hosts = edge(json!({}));
    assert_eq!(
        purge_for(&hosts, Some(&api)),
        Some((Purge::Hosts(vec!["api.authentify.it".into()]), "hosts: api.authentify.it".into()))
    );
    let wildcard = app("w", json!({"route": {"host": "*.authentify.it"}}), json!([]));
    assert_eq!(purge_for(&hosts, Some(&wildcard)), None);
    assert_eq!(purge_for(&hosts, Some(&app("w", json!({}), json!([])))), None);
    assert_eq!(purge_for(&hosts, None), None);
    let prefixes = edge(
        json!({"purge": {"mode": "prefixes", "prefixes": ["authentify.it/_next/", "authentify.it/static/"]}}),
    );
    assert_eq!(
        purge_for(&prefixes, Some(&api)),
        Some((
            Purge::Prefixes(vec!["authentify.it/_next/".into(), "authentify.it/static/".into()]),
            "prefixes: authentify.it/_next/, authentify.it/static/".into()
        ))
    );
    let tags = edge(json!({"purge": {"mode": "tags", "tags": ["web"]}}));
    assert_eq!(purge_for(&tags, None), Some((Purge::Tags(vec!["web".into()]), "tags: web".into())));
    assert_eq!(purge_for(&edge(json!({"purge": {"mode": "none"}})), Some(&api)), None);
}

fn synced() -> Synced {
    Synced {
        zone_id: "z".repeat(32),
        zone_name: Some("authentify.it".into()),
        records: vec![ManagedRecord { host: "api.authentify.it".into(), id: "1".into() }],
        ruleset_id: Some("r".repeat(32)),
        rule_count: 2,
        waiting: vec![],
        conflicts: vec![],
    }
}

#[test]
fn status_when_synced_is_ready_and_stable() {
    let ec = edge(json!({}));
    let (s, notes) = status(&ec, &Outcome::Synced(synced()), &[], &at(200));
    assert_eq!(s.phase, Some(ResourcePhase::Ready));
    assert!(is_true(&s.conditions, READY) && is_true(&s.conditions, REACHABLE));
    assert_eq!(s.zone_id, Some("z".repeat(32)));
    assert_eq!(s.rule_count, Some(2));
    assert_eq!(s.observed_generation, Some(3));
    assert_eq!(
        s.message.as_deref(),
        Some("zone authentify.it: 1 DNS record(s), 2 cache rule(s) of ours, settings as specified")
    );
    assert_eq!(notes.iter().map(|n| (n.reason, n.warning)).collect::<Vec<_>>(), [("Ready", false)]);

    let mut later = ec.clone();
    later.status = Some(s.clone());
    let (again, notes) = status(&later, &Outcome::Synced(synced()), &[], &at(900));
    assert_eq!(again, s, "same observation, same status: no write");
    assert!(notes.is_empty());
    let (not_due, notes) = status(&later, &Outcome::NotDue, &[], &at(900));
    assert_eq!(not_due, s);
    assert!(notes.is_empty());
}

#[test]
fn status_explains_waiting_and_conflicts() {
    let ec = edge(json!({}));
    let waiting = Synced {
        waiting: vec!["App admin (admin.authentify.it): waiting for an address".into()],
        ..synced()
    };
    let (s, _) = status(&ec, &Outcome::Synced(waiting), &[], &at(200));
    assert_eq!(s.phase, Some(ResourcePhase::Pending));
    assert!(s.message.as_deref().unwrap_or_default().contains("waiting for an address"));
    let conflict =
        Synced { conflicts: vec!["taken.authentify.it already has a CNAME record".into()], ..synced() };
    let (s, notes) = status(&ec, &Outcome::Synced(conflict), &[], &at(200));
    assert_eq!(s.phase, Some(ResourcePhase::Degraded));
    assert!(!is_true(&s.conditions, READY));
    assert_eq!(notes.iter().map(|n| (n.reason, n.warning)).collect::<Vec<_>>(), [("RecordConflict", true)]);
}

#[test]
fn status_on_failures_says_what_to_do() {
    let ec = edge(json!({}));
    let refused = Outcome::Cloudflare {
        kind: ErrorKind::Unauthorized,
        message: "Cloudflare rejected the API token: check the API token Secret".into(),
    };
    let (s, notes) = status(&ec, &refused, &[], &at(200));
    assert_eq!(s.phase, Some(ResourcePhase::Failed));
    let ready = s.conditions.iter().find(|c| c.type_ == READY).expect("Ready");
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "TokenRejected"));
    let reachable = s.conditions.iter().find(|c| c.type_ == REACHABLE).expect("Reachable");
    assert_eq!((reachable.status.as_str(), reachable.reason.as_str()), ("False", "TokenRejected"));
    assert_eq!(notes.iter().map(|n| (n.reason, n.warning)).collect::<Vec<_>>(), [("TokenRejected", true)]);

    let busy = Outcome::Cloudflare { kind: ErrorKind::RateLimited, message: "kept rate limiting".into() };
    assert_eq!(status(&ec, &busy, &[], &at(200)).0.phase, Some(ResourcePhase::Degraded));
    let (s, _) = status(&ec, &Outcome::ZoneNotFound("authentify.it".into()), &[], &at(200));
    assert_eq!(s.phase, Some(ResourcePhase::Failed));
    assert!(
        s.message
            .as_deref()
            .unwrap_or_default()
            .starts_with("zone authentify.it not found: check spec.zoneName")
    );
    let (s, notes) =
        status(&ec, &Outcome::Invalid("Secret cf with key token does not exist".into()), &[], &at(200));
    assert_eq!(s.phase, Some(ResourcePhase::Failed));
    assert_eq!(notes[0].reason, "InvalidSpec");
}

#[test]
fn status_records_purges_one_per_app_newest_first() {
    let mut ec = edge(json!({}));
    let rec = |app: &str, rev: &str, t: i64| PurgeRecord {
        app: app.into(),
        revision: rev.into(),
        promoted_at: at(t),
        scope: format!("hosts: {app}.authentify.it"),
        requests: 1,
        time: at(t + 1),
    };
    let (s, _) = status(&ec, &Outcome::NotDue, &[rec("api", "r1", 100), rec("web", "w1", 110)], &at(200));
    assert_eq!(s.purges.iter().map(|p| p.app.as_str()).collect::<Vec<_>>(), ["api", "web"]);
    ec.status = Some(s);
    let (s, _) = status(&ec, &Outcome::NotDue, &[rec("web", "w2", 300)], &at(400));
    assert_eq!(
        s.purges.iter().map(|p| (p.app.as_str(), p.revision.as_str())).collect::<Vec<_>>(),
        [("web", "w2"), ("api", "r1")]
    );
}
