//! The Cloudflare client against the Cloudflare fake: every operation, the rules merge, purge
//! chunks, rate limits, retries and error messages, with every exchange checked against the
//! schema.

use std::sync::Arc;
use std::time::Duration;

use authentify::providers::cloudflare::{
    CACHE_SETTINGS_PHASE, CloudflareApi, CloudflareClient, CloudflareConfig, DnsRecordFilter, DnsRecordInput,
    Purge, Rule, ZoneSettingId, merge_owned_rules,
};
use authentify::providers::http::{ErrorKind, ManualClock, Secret};
use authentify_fakes::{CloudflareFake, Fault};
use serde_json::{Value, json};

const TOKEN: &str = "cf-token-Xy7Pq2Rs9Tu4";

async fn fake() -> (CloudflareFake, String) {
    let fake = CloudflareFake::start().await.unwrap();
    fake.add_token(TOKEN);
    let zone = fake.add_zone("authentify.it");
    (fake, zone)
}

fn client_with(fake: &CloudflareFake, token: &str, clock: &Arc<ManualClock>) -> CloudflareClient {
    let mut config = CloudflareConfig::new(Secret::new(token)).with_base_url(fake.base_url());
    config.clock = clock.clone();
    config.retry.timeout = Duration::from_secs(10);
    CloudflareClient::new(config).unwrap()
}

fn cname(name: &str, target: &str) -> DnsRecordInput {
    DnsRecordInput {
        record_type: "CNAME".into(),
        name: name.into(),
        content: target.into(),
        proxied: true,
        ttl: 1,
        comment: Some("managed by authentify".into()),
    }
}

#[tokio::test]
async fn zone_lookup_and_dns_record_lifecycle() {
    let (fake, zone_id) = fake().await;
    fake.add_zone("example.org");
    let clock = Arc::new(ManualClock::new());
    let client = client_with(&fake, TOKEN, &clock);

    let zone = client.find_zone("authentify.it").await.unwrap().unwrap();
    assert_eq!(zone.id, zone_id);
    assert_eq!(client.find_zone("nope.example").await.unwrap(), None);

    let created =
        client.create_dns_record(&zone_id, &cname("app.authentify.it", "lb.example.net")).await.unwrap();
    assert!(cname("app.authentify.it", "lb.example.net").matches(&created));
    let mut changed = cname("app.authentify.it", "lb2.example.net");
    changed.proxied = false;
    let updated = client.update_dns_record(&zone_id, &created.id, &changed).await.unwrap();
    assert!(changed.matches(&updated));
    let a = DnsRecordInput {
        record_type: "A".into(),
        content: "203.0.113.10".into(),
        ..cname("api.authentify.it", "")
    };
    client.create_dns_record(&zone_id, &a).await.unwrap();

    let filter = DnsRecordFilter { name: Some("app.authentify.it".into()), record_type: None };
    let listed = client.list_dns_records(&zone_id, &filter).await.unwrap();
    assert_eq!(listed, vec![updated.clone()]);
    assert_eq!(client.list_dns_records(&zone_id, &DnsRecordFilter::default()).await.unwrap().len(), 2);

    // A second CNAME for the same host is refused as a conflict.
    let err =
        client.create_dns_record(&zone_id, &cname("app.authentify.it", "x.example.net")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict);

    assert!(client.delete_dns_record(&zone_id, &created.id).await.unwrap());
    assert!(!client.delete_dns_record(&zone_id, &created.id).await.unwrap());
    assert_eq!(fake.dns_records(&zone_id).len(), 1);
    fake.assert_no_violations();
}

#[tokio::test]
async fn dns_listing_follows_pages() {
    let (fake, zone_id) = fake().await;
    let clock = Arc::new(ManualClock::new());
    let mut config = CloudflareConfig::new(Secret::new(TOKEN)).with_base_url(fake.base_url());
    config.clock = clock.clone();
    config.page_size = 2;
    let client = CloudflareClient::new(config).unwrap();
    for i in 0..5 {
        client
            .create_dns_record(&zone_id, &cname(&format!("h{i}.authentify.it"), "lb.example.net"))
            .await
            .unwrap();
    }
    let all = client.list_dns_records(&zone_id, &DnsRecordFilter::default()).await.unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(fake.requests("dns-records-for-a-zone-list-dns-records"), 3);
    fake.assert_no_violations();
}

fn foreign_rule(reference: &str, expression: &str) -> Value {
    json!({
        "ref": reference, "expression": expression, "action": "set_cache_settings",
        "action_parameters": {"cache": false}, "enabled": true
    })
}

fn our_rule(name: &str, path: &str, ttl: u64) -> Rule {
    Rule::owned_cache_rule(
        name,
        format!("(http.host eq \"app.authentify.it\" and starts_with(http.request.uri.path, \"{path}\"))"),
        json!({"cache": true, "edge_ttl": {"mode": "override_origin", "default": ttl, "status_code_ttl": []}}),
    )
}

#[tokio::test]
async fn cache_rules_merge_keeps_foreign_rules_untouched() {
    let (fake, zone_id) = fake().await;
    let clock = Arc::new(ManualClock::new());
    let client = client_with(&fake, TOKEN, &clock);

    // No entry point yet: ours alone create it.
    assert_eq!(client.get_entrypoint_ruleset(&zone_id, CACHE_SETTINGS_PHASE).await.unwrap(), None);
    fake.put_ruleset(
        &zone_id,
        CACHE_SETTINGS_PHASE,
        vec![
            foreign_rule("marketing-bypass", "(http.host eq \"www.authentify.it\")"),
            foreign_rule("api-bypass", "(http.host eq \"api.authentify.it\")"),
        ],
    );
    let before = fake.ruleset(&zone_id, CACHE_SETTINGS_PHASE).unwrap();
    let foreign_before: Vec<Value> = before["rules"].as_array().unwrap().clone();

    // Add two of ours.
    let existing = client.get_entrypoint_ruleset(&zone_id, CACHE_SETTINGS_PHASE).await.unwrap().unwrap();
    let desired = vec![our_rule("static", "/_next/static/", 31536000), our_rule("images", "/images/", 86400)];
    let merged = merge_owned_rules(&existing.rules, &desired);
    assert!(merged.changed);
    let written = client.put_entrypoint_ruleset(&zone_id, CACHE_SETTINGS_PHASE, &merged.rules).await.unwrap();
    assert_eq!(written.rules.len(), 4);

    // Change one of ours, drop the other.
    let existing = client.get_entrypoint_ruleset(&zone_id, CACHE_SETTINGS_PHASE).await.unwrap().unwrap();
    let static_id = existing
        .rules
        .iter()
        .find(|r| r.reference.as_deref() == Some("authentify:static"))
        .unwrap()
        .id
        .clone();
    let merged = merge_owned_rules(&existing.rules, &[our_rule("static", "/_next/static/", 600)]);
    client.put_entrypoint_ruleset(&zone_id, CACHE_SETTINGS_PHASE, &merged.rules).await.unwrap();

    let after = fake.ruleset(&zone_id, CACHE_SETTINGS_PHASE).unwrap();
    let rules = after["rules"].as_array().unwrap();
    let refs: Vec<&str> = rules.iter().map(|r| r["ref"].as_str().unwrap()).collect();
    assert_eq!(refs, ["marketing-bypass", "api-bypass", "authentify:static"]);
    // Someone else's rules are exactly as they were: same id, version and content.
    assert_eq!(&rules[..2], &foreign_before[..]);
    assert_eq!(rules[2]["id"].as_str(), static_id.as_deref(), "our rule keeps its id");
    assert_eq!(rules[2]["action_parameters"]["edge_ttl"]["default"], 600);

    // Nothing to do when ours are already there.
    let existing = client.get_entrypoint_ruleset(&zone_id, CACHE_SETTINGS_PHASE).await.unwrap().unwrap();
    assert!(!merge_owned_rules(&existing.rules, &[our_rule("static", "/_next/static/", 600)]).changed);
    fake.assert_no_violations();
}

#[tokio::test]
async fn zone_settings_and_tiered_caching() {
    let (fake, zone_id) = fake().await;
    let clock = Arc::new(ManualClock::new());
    let client = client_with(&fake, TOKEN, &clock);
    let ttl = client.get_zone_setting(&zone_id, ZoneSettingId::BrowserCacheTtl).await.unwrap();
    assert_eq!(ttl.value, json!(14400));
    for (id, value) in [
        (ZoneSettingId::BrowserCacheTtl, json!(3600)),
        (ZoneSettingId::CacheLevel, json!("basic")),
        (ZoneSettingId::AlwaysOnline, json!("off")),
        (ZoneSettingId::DevelopmentMode, json!("on")),
    ] {
        let set = client.patch_zone_setting(&zone_id, id, value.clone()).await.unwrap();
        assert_eq!(set.value, value);
        assert_eq!(client.get_zone_setting(&zone_id, id).await.unwrap().value, value);
        assert_eq!(fake.setting(&zone_id, id.as_str()), Some(value));
    }
    // A value the schema does not allow is refused before it reaches the state.
    let err =
        client.patch_zone_setting(&zone_id, ZoneSettingId::BrowserCacheTtl, json!(1234)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert_eq!(fake.setting(&zone_id, "browser_cache_ttl"), Some(json!(3600)));
    assert_eq!(fake.violations().len(), 1, "{:?}", fake.violations());

    assert!(!client.get_tiered_caching(&zone_id).await.unwrap());
    assert!(client.set_tiered_caching(&zone_id, true).await.unwrap());
    assert!(fake.tiered_caching(&zone_id));
}

#[tokio::test]
async fn purge_of_250_items_takes_three_requests() {
    let (fake, zone_id) = fake().await;
    let clock = Arc::new(ManualClock::new());
    let client = client_with(&fake, TOKEN, &clock);
    let tags: Vec<String> = (0..250).map(|i| format!("tag-{i}")).collect();
    assert_eq!(client.purge_cache(&zone_id, &Purge::Tags(tags.clone())).await.unwrap(), 3);
    let purges = fake.purges(&zone_id);
    let sizes: Vec<usize> = purges.iter().map(|p| p["tags"].as_array().unwrap().len()).collect();
    assert_eq!(sizes, [100, 100, 50]);
    let sent: Vec<String> = purges
        .iter()
        .flat_map(|p| p["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()))
        .collect();
    assert_eq!(sent, tags);

    client.purge_cache(&zone_id, &Purge::Hosts(vec!["app.authentify.it".into()])).await.unwrap();
    client.purge_cache(&zone_id, &Purge::Prefixes(vec!["app.authentify.it/_next/".into()])).await.unwrap();
    assert_eq!(fake.purges(&zone_id)[3], json!({"hosts": ["app.authentify.it"]}));
    assert_eq!(fake.purges(&zone_id)[4], json!({"prefixes": ["app.authentify.it/_next/"]}));
    assert_eq!(fake.requests("zone-purge"), 5);
    fake.assert_no_violations();
}

#[tokio::test]
async fn rate_limited_answers_wait_retry_after() {
    let (fake, zone_id) = fake().await;
    let clock = Arc::new(ManualClock::new());
    let client = client_with(&fake, TOKEN, &clock);
    fake.inject(Fault::TooManyRequests { retry_after_secs: 3 }, 1);
    fake.inject(Fault::ServerError, 1);
    assert!(!client.get_tiered_caching(&zone_id).await.unwrap());
    let sleeps = clock.sleeps();
    assert_eq!(sleeps[0], Duration::from_secs(3), "Retry-After honoured: {sleeps:?}");
    assert!(
        sleeps[1] >= Duration::from_millis(500) && sleeps[1] <= Duration::from_secs(1),
        "backoff: {sleeps:?}"
    );
    assert_eq!(fake.requests("tiered-caching-get-tiered-caching-setting"), 3);
    fake.assert_no_violations();
}

#[tokio::test]
async fn client_side_limit_spreads_requests_over_the_window() {
    let (fake, zone_id) = fake().await;
    let clock = Arc::new(ManualClock::new());
    let mut config = CloudflareConfig::new(Secret::new(TOKEN)).with_base_url(fake.base_url());
    config.clock = clock.clone();
    config.rate_limit = (3, Duration::from_secs(300));
    let client = CloudflareClient::new(config).unwrap();
    for _ in 0..7 {
        client.get_zone_setting(&zone_id, ZoneSettingId::CacheLevel).await.unwrap();
    }
    // 7 requests at 3 per 5 minutes: two waits of a full window.
    assert_eq!(clock.sleeps(), [Duration::from_secs(300), Duration::from_secs(300)]);
    assert_eq!(fake.requests("zone-settings-get-single-setting"), 7);
    fake.assert_no_violations();
}

#[tokio::test]
async fn wrong_token_is_a_clear_error_without_the_token() {
    let (fake, zone_id) = fake().await;
    let clock = Arc::new(ManualClock::new());
    let client = client_with(&fake, "wrong-token-Ab12Cd34", &clock);
    let err = client.get_zone_setting(&zone_id, ZoneSettingId::CacheLevel).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    let text = err.to_string();
    assert_eq!(
        text,
        format!(
            "Cloudflare rejected the API token (401 10000: Authentication error) while trying to read setting \
             cache_level of zone {zone_id}: check the API token Secret: the token may be wrong, expired or revoked"
        )
    );
    for shown in [text, format!("{err:?}"), format!("{client:?}")] {
        assert!(!shown.contains("wrong-token-Ab12Cd34") && !shown.contains(TOKEN), "{shown}");
    }
    fake.assert_no_violations();
}

#[tokio::test]
async fn unknown_zone_is_not_found() {
    let (fake, _) = fake().await;
    let clock = Arc::new(ManualClock::new());
    let client = client_with(&fake, TOKEN, &clock);
    let missing = "0123456789abcdef0123456789abcdef";
    let err = client.get_zone_setting(missing, ZoneSettingId::CacheLevel).await.unwrap_err();
    assert!(err.is_not_found());
    assert!(err.to_string().contains("check the project/zone id"), "{err}");
    fake.assert_no_violations();
}
