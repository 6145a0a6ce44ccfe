//! The EdgeCache controller's Cloudflare sync against the Cloudflare fake: a first sync creates
//! what the spec asks for and a second writes nothing; drift is corrected; rules, records and
//! settings of others survive every update, including a ruleset change made between the
//! operator's read and its write; a wrong token and 429s; the cleanup removes only ours. Every
//! exchange is checked against the schema.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authentify::api::edge_cache::EdgeCache;
use authentify::controllers::edge::decide;
use authentify::controllers::edge::sync::{self, SyncError, ZonePlan};
use authentify::providers::cloudflare::{
    CACHE_SETTINGS_PHASE, CloudflareApi, CloudflareClient, CloudflareConfig, CloudflareError, DnsRecord,
    DnsRecordFilter, DnsRecordInput, Purge, Rule, Ruleset, Zone, ZoneSetting, ZoneSettingId,
};
use authentify::providers::http::{ErrorKind, ManualClock, Secret};
use authentify_fakes::{CloudflareFake, Fault};
use serde_json::{Value, json};

/// `futures::future::BoxFuture`, which the trait's methods return.
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

const TOKEN: &str = "cf-edge-token-Qw3Er5Ty7";

async fn fake() -> (CloudflareFake, String) {
    let fake = CloudflareFake::start().await.unwrap();
    fake.add_token(TOKEN);
    let zone = fake.add_zone("authentify.it");
    (fake, zone)
}

fn client(fake: &CloudflareFake, token: &str) -> CloudflareClient {
    let mut config = CloudflareConfig::new(Secret::new(token)).with_base_url(fake.base_url());
    config.clock = Arc::new(ManualClock::new());
    config.retry.timeout = Duration::from_secs(10);
    CloudflareClient::new(config).unwrap()
}

fn edge(name: &str) -> EdgeCache {
    serde_json::from_value(json!({
        "apiVersion": "platform.authentify.it/v1alpha1", "kind": "EdgeCache",
        "metadata": {"name": name, "namespace": "prod"},
        "spec": {
            "apiTokenSecret": {"name": "cf", "key": "token"}, "zoneName": "authentify.it",
            "dns": {"target": "203.0.113.7", "extraHosts": ["www.authentify.it"]},
            "cacheRules": [
                {"name": "static", "expression": "starts_with(http.request.uri.path, \"/_next/static/\")", "edgeTtlSeconds": 86400, "ignoreQueryString": true},
                {"name": "api", "expression": "(http.host eq \"api.authentify.it\")", "cache": false},
            ],
            "settings": {"browserCacheTtl": 3600, "cacheLevel": "basic", "alwaysOnline": false, "developmentMode": false, "tieredCaching": true},
        },
    }))
    .unwrap()
}

fn plan(ec: &EdgeCache, hosts: &[&str]) -> ZonePlan {
    let routes: Vec<decide::AppRoute> = hosts
        .iter()
        .map(|h| decide::AppRoute {
            app: h.split('.').next().unwrap_or_default().to_string(),
            hosts: vec![h.to_string()],
            source: decide::AddressSource::Ingress { name: "x".into() },
            address: None,
        })
        .collect();
    let desired = decide::desired_records(ec, &routes);
    ZonePlan {
        zone_id: None,
        zone_name: ec.spec.zone_name.clone(),
        records: desired.records,
        waiting: desired.waiting,
        owned_ids: vec![],
        comment: decide::record_comment(ec),
        rule_prefix: decide::rule_prefix(ec),
        rules: decide::desired_rules(ec),
        settings: decide::desired_settings(ec),
        tiered_caching: Some(true),
    }
}

fn foreign_rule(reference: &str) -> Value {
    json!({"ref": reference, "expression": format!("(http.host eq \"{reference}.authentify.it\")"),
        "action": "set_cache_settings", "action_parameters": {"cache": false}, "enabled": true,
        "description": "made by hand"})
}

/// A record someone made by hand in the zone.
fn hand_made_mail() -> DnsRecordInput {
    DnsRecordInput {
        record_type: "A".into(),
        name: "mail.authentify.it".into(),
        content: "198.51.100.25".into(),
        proxied: false,
        ttl: 300,
        comment: Some("made by hand".into()),
    }
}

fn refs(fake: &CloudflareFake, zone: &str) -> Vec<String> {
    fake.ruleset(zone, CACHE_SETTINGS_PHASE)
        .map(|r| {
            r["rules"].as_array().unwrap().iter().map(|r| r["ref"].as_str().unwrap().to_string()).collect()
        })
        .unwrap_or_default()
}

fn rule_by_ref(fake: &CloudflareFake, zone: &str, reference: &str) -> Value {
    let ruleset = fake.ruleset(zone, CACHE_SETTINGS_PHASE).unwrap();
    ruleset["rules"].as_array().unwrap().iter().find(|r| r["ref"] == reference).cloned().unwrap()
}

fn writes(fake: &CloudflareFake) -> usize {
    [
        "dns-records-for-a-zone-create-dns-record",
        "dns-records-for-a-zone-update-dns-record",
        "dns-records-for-a-zone-delete-dns-record",
        "updateZoneEntrypointRuleset",
        "zone-settings-edit-single-setting",
        "tiered-caching-patch-tiered-caching-setting",
    ]
    .iter()
    .map(|op| fake.requests(op))
    .sum()
}

#[tokio::test]
async fn first_sync_creates_everything_and_a_second_writes_nothing() {
    let (fake, zone) = fake().await;
    fake.put_ruleset(&zone, CACHE_SETTINGS_PHASE, vec![foreign_rule("marketing")]);
    let theirs = rule_by_ref(&fake, &zone, "marketing");
    let other = client(&fake, TOKEN);
    other.create_dns_record(&zone, &hand_made_mail()).await.unwrap();

    let ec = edge("edge");
    let cf = client(&fake, TOKEN);
    let report = sync::sync(&cf, &plan(&ec, &["api.authentify.it"])).await.unwrap();
    assert_eq!(report.synced.zone_id, zone);
    assert_eq!(
        report.synced.records.iter().map(|r| r.host.as_str()).collect::<Vec<_>>(),
        ["api.authentify.it", "www.authentify.it"]
    );
    assert_eq!(report.synced.rule_count, 2);
    assert!(report.concurrent.is_empty());

    let records = fake.dns_records(&zone);
    assert_eq!(records.len(), 3);
    let api = records.iter().find(|r| r["name"] == "api.authentify.it").unwrap();
    assert_eq!(
        (api["type"].as_str(), api["content"].as_str(), api["proxied"].as_bool()),
        (Some("A"), Some("203.0.113.7"), Some(true))
    );
    assert_eq!(api["comment"], decide::record_comment(&ec));
    assert_eq!(refs(&fake, &zone), ["marketing", "authentify:prod/edge/static", "authentify:prod/edge/api"]);
    assert_eq!(rule_by_ref(&fake, &zone, "marketing"), theirs, "someone else's rule is untouched");
    assert_eq!(fake.setting(&zone, "browser_cache_ttl"), Some(json!(3600)));
    assert_eq!(fake.setting(&zone, "cache_level"), Some(json!("basic")));
    assert_eq!(fake.setting(&zone, "always_online"), Some(json!("off")));
    assert_eq!(fake.setting(&zone, "development_mode"), Some(json!("off")));
    assert!(fake.tiered_caching(&zone));

    let before = writes(&fake);
    let requests_before: usize = fake.request_counts().values().sum();
    let again = sync::sync(&cf, &plan(&ec, &["api.authentify.it"])).await.unwrap();
    assert_eq!(writes(&fake), before, "nothing differs: nothing written");
    let requests: usize = fake.request_counts().values().sum::<usize>() - requests_before;
    assert_eq!(requests, 8, "a resync without drift: zone, DNS list, ruleset, 4 settings, tiered caching");
    assert!(again.writes.is_empty(), "{:?}", again.writes);
    assert_eq!(again.synced, report.synced);
    fake.assert_no_violations();
}

#[tokio::test]
async fn drift_is_corrected_and_only_what_differs_is_written() {
    let (fake, zone) = fake().await;
    let ec = edge("edge");
    let cf = client(&fake, TOKEN);
    let first = sync::sync(&cf, &plan(&ec, &["api.authentify.it"])).await.unwrap();

    // Behind the operator's back: a setting, one of our records, one of our rules; and someone
    // adds a rule of their own.
    let other = client(&fake, TOKEN);
    other.patch_zone_setting(&zone, ZoneSettingId::CacheLevel, json!("aggressive")).await.unwrap();
    let api_id = first.synced.records.iter().find(|r| r.host == "api.authentify.it").unwrap().id.clone();
    let hijacked = DnsRecordInput {
        record_type: "CNAME".into(),
        name: "api.authentify.it".into(),
        content: "evil.example.net".into(),
        proxied: false,
        ttl: 1,
        comment: Some(decide::record_comment(&ec)),
    };
    other.update_dns_record(&zone, &api_id, &hijacked).await.unwrap();
    let mut rules: Vec<Value> =
        fake.ruleset(&zone, CACHE_SETTINGS_PHASE).unwrap()["rules"].as_array().unwrap().clone();
    rules[0]["expression"] = json!("true");
    rules.push(foreign_rule("late"));
    for r in &mut rules {
        r.as_object_mut().unwrap().remove("version");
        r.as_object_mut().unwrap().remove("last_updated");
    }
    fake.put_ruleset(&zone, CACHE_SETTINGS_PHASE, rules);
    let late = rule_by_ref(&fake, &zone, "late");

    let before = writes(&fake);
    let report = sync::sync(&cf, &plan(&ec, &["api.authentify.it"])).await.unwrap();
    assert_eq!(writes(&fake) - before, 3, "one record, one ruleset write, one setting: {:?}", report.writes);
    assert_eq!(fake.setting(&zone, "cache_level"), Some(json!("basic")));
    let api = fake.dns_records(&zone).into_iter().find(|r| r["name"] == "api.authentify.it").unwrap();
    assert_eq!((api["type"].as_str(), api["content"].as_str()), (Some("A"), Some("203.0.113.7")));
    assert_eq!(api["id"].as_str(), Some(api_id.as_str()), "corrected in place");
    assert_eq!(
        rule_by_ref(&fake, &zone, "authentify:prod/edge/static")["expression"],
        "starts_with(http.request.uri.path, \"/_next/static/\")"
    );
    assert_eq!(rule_by_ref(&fake, &zone, "late"), late, "a rule added meanwhile survives");

    // An App gone: its record goes, the rest stays.
    let report = sync::sync(&cf, &plan(&ec, &[])).await.unwrap();
    assert_eq!(
        report.synced.records.iter().map(|r| r.host.as_str()).collect::<Vec<_>>(),
        ["www.authentify.it"]
    );
    assert_eq!(fake.dns_records(&zone).len(), 1);
    fake.assert_no_violations();
}

/// The real client, but someone else writes the ruleset once, right when the operator reads it
/// for the second time (between its first read and its write).
struct Interfering<'a> {
    inner: CloudflareClient,
    fake: &'a CloudflareFake,
    zone: String,
    reads: AtomicUsize,
    extra: Mutex<Option<Value>>,
}

impl CloudflareApi for Interfering<'_> {
    fn find_zone<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Zone>, CloudflareError>> {
        self.inner.find_zone(name)
    }
    fn list_dns_records<'a>(
        &'a self,
        z: &'a str,
        f: &'a DnsRecordFilter,
    ) -> BoxFuture<'a, Result<Vec<DnsRecord>, CloudflareError>> {
        self.inner.list_dns_records(z, f)
    }
    fn create_dns_record<'a>(
        &'a self,
        z: &'a str,
        r: &'a DnsRecordInput,
    ) -> BoxFuture<'a, Result<DnsRecord, CloudflareError>> {
        self.inner.create_dns_record(z, r)
    }
    fn update_dns_record<'a>(
        &'a self,
        z: &'a str,
        id: &'a str,
        r: &'a DnsRecordInput,
    ) -> BoxFuture<'a, Result<DnsRecord, CloudflareError>> {
        self.inner.update_dns_record(z, id, r)
    }
    fn delete_dns_record<'a>(
        &'a self,
        z: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, CloudflareError>> {
        self.inner.delete_dns_record(z, id)
    }
    fn get_entrypoint_ruleset<'a>(
        &'a self,
        z: &'a str,
        p: &'a str,
    ) -> BoxFuture<'a, Result<Option<Ruleset>, CloudflareError>> {
        if self.reads.fetch_add(1, Ordering::SeqCst) == 1
            && let Some(extra) = self.extra.lock().unwrap().take()
        {
            let mut rules: Vec<Value> = self
                .fake
                .ruleset(&self.zone, CACHE_SETTINGS_PHASE)
                .map(|r| r["rules"].as_array().unwrap().clone())
                .unwrap_or_default();
            rules.insert(0, extra);
            self.fake.put_ruleset(&self.zone, CACHE_SETTINGS_PHASE, rules);
        }
        self.inner.get_entrypoint_ruleset(z, p)
    }
    fn put_entrypoint_ruleset<'a>(
        &'a self,
        z: &'a str,
        p: &'a str,
        r: &'a [Rule],
    ) -> BoxFuture<'a, Result<Ruleset, CloudflareError>> {
        self.inner.put_entrypoint_ruleset(z, p, r)
    }
    fn get_zone_setting<'a>(
        &'a self,
        z: &'a str,
        s: ZoneSettingId,
    ) -> BoxFuture<'a, Result<ZoneSetting, CloudflareError>> {
        self.inner.get_zone_setting(z, s)
    }
    fn patch_zone_setting<'a>(
        &'a self,
        z: &'a str,
        s: ZoneSettingId,
        v: Value,
    ) -> BoxFuture<'a, Result<ZoneSetting, CloudflareError>> {
        self.inner.patch_zone_setting(z, s, v)
    }
    fn get_tiered_caching<'a>(&'a self, z: &'a str) -> BoxFuture<'a, Result<bool, CloudflareError>> {
        self.inner.get_tiered_caching(z)
    }
    fn set_tiered_caching<'a>(
        &'a self,
        z: &'a str,
        on: bool,
    ) -> BoxFuture<'a, Result<bool, CloudflareError>> {
        self.inner.set_tiered_caching(z, on)
    }
    fn purge_cache<'a>(&'a self, z: &'a str, p: &'a Purge) -> BoxFuture<'a, Result<usize, CloudflareError>> {
        self.inner.purge_cache(z, p)
    }
}

#[tokio::test]
async fn a_ruleset_change_between_read_and_write_is_merged_not_lost() {
    let (fake, zone) = fake().await;
    fake.put_ruleset(&zone, CACHE_SETTINGS_PHASE, vec![foreign_rule("marketing")]);
    let api = Interfering {
        inner: client(&fake, TOKEN),
        fake: &fake,
        zone: zone.clone(),
        reads: AtomicUsize::new(0),
        extra: Mutex::new(Some(foreign_rule("concurrent"))),
    };
    let ec = edge("edge");
    let report = sync::sync(&api, &plan(&ec, &[])).await.unwrap();
    assert_eq!(report.concurrent.len(), 1, "{:?}", report.concurrent);
    assert!(report.concurrent[0].contains("changed between the operator's read and its write"));
    assert_eq!(
        refs(&fake, &zone),
        ["concurrent", "marketing", "authentify:prod/edge/static", "authentify:prod/edge/api"]
    );
    fake.assert_no_violations();
}

#[tokio::test]
async fn two_edge_caches_share_a_zone_without_touching_each_other() {
    let (fake, zone) = fake().await;
    let cf = client(&fake, TOKEN);
    let (prod, staging) = (edge("prod-edge"), edge("staging-edge"));
    sync::sync(&cf, &plan(&prod, &["api.authentify.it"])).await.unwrap();
    let mut staging_plan = plan(&staging, &["api.staging.authentify.it"]);
    staging_plan.records.retain(|r| r.name != "www.authentify.it");
    sync::sync(&cf, &staging_plan).await.unwrap();
    assert_eq!(refs(&fake, &zone).len(), 4);
    assert_eq!(fake.dns_records(&zone).len(), 3);
    let done = sync::cleanup(
        &cf,
        None,
        Some("authentify.it"),
        &[],
        &decide::record_comment(&prod),
        &decide::rule_prefix(&prod),
    )
    .await
    .unwrap();
    assert_eq!((done.records, done.rules), (2, 2));
    assert_eq!(
        refs(&fake, &zone),
        ["authentify:prod/staging-edge/static", "authentify:prod/staging-edge/api"]
    );
    let names: Vec<Value> = fake.dns_records(&zone).iter().map(|r| r["name"].clone()).collect();
    assert_eq!(names, [json!("api.staging.authentify.it")]);
    fake.assert_no_violations();
}

#[tokio::test]
async fn cleanup_removes_only_what_the_operator_owns() {
    let (fake, zone) = fake().await;
    fake.put_ruleset(&zone, CACHE_SETTINGS_PHASE, vec![foreign_rule("marketing")]);
    let other = client(&fake, TOKEN);
    other.create_dns_record(&zone, &hand_made_mail()).await.unwrap();
    let ec = edge("edge");
    let cf = client(&fake, TOKEN);
    sync::sync(&cf, &plan(&ec, &["api.authentify.it"])).await.unwrap();
    let done = sync::cleanup(
        &cf,
        None,
        Some("authentify.it"),
        &[],
        &decide::record_comment(&ec),
        &decide::rule_prefix(&ec),
    )
    .await
    .unwrap();
    assert_eq!((done.records, done.rules), (2, 2));
    assert_eq!(refs(&fake, &zone), ["marketing"]);
    let left = fake.dns_records(&zone);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["name"], "mail.authentify.it");
    // Settings are the zone's, not the EdgeCache's: they stay as they were set.
    assert_eq!(fake.setting(&zone, "cache_level"), Some(json!("basic")));
    fake.assert_no_violations();
}

#[tokio::test]
async fn a_wrong_token_is_a_clear_error_without_the_token() {
    let (fake, _) = fake().await;
    let wrong = "cf-wrong-token-Zx9Cv8Bn7";
    let cf = client(&fake, wrong);
    let err = sync::sync(&cf, &plan(&edge("edge"), &[])).await.unwrap_err();
    let SyncError::Cloudflare(e) = &err else { panic!("{err:?}") };
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    let text = err.to_string();
    assert!(text.contains("rejected the API token") && text.contains("check the API token Secret"), "{text}");
    assert!(!text.contains(wrong) && !format!("{err:?}").contains(wrong));
    fake.assert_no_violations();
}

#[tokio::test]
async fn rate_limited_answers_are_waited_out() {
    let (fake, zone) = fake().await;
    fake.inject(Fault::TooManyRequests { retry_after_secs: 2 }, 3);
    let cf = client(&fake, TOKEN);
    let report = sync::sync(&cf, &plan(&edge("edge"), &["api.authentify.it"])).await.unwrap();
    assert_eq!(report.synced.zone_id, zone);
    assert_eq!(fake.dns_records(&zone).len(), 2);
    fake.assert_no_violations();
}

#[tokio::test]
async fn an_unknown_zone_is_reported_by_name() {
    let (fake, _) = fake().await;
    let cf = client(&fake, TOKEN);
    let mut p = plan(&edge("edge"), &[]);
    p.zone_name = Some("nope.example".into());
    assert_eq!(sync::sync(&cf, &p).await.unwrap_err(), SyncError::ZoneNotFound("nope.example".into()));
    fake.assert_no_violations();
}
