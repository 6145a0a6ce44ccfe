//! EdgeCache on the real control plane, against the Cloudflare fake served in-process (the
//! EdgeCache's `baseUrl` points at it): DNS records for the Apps' hosts from the Ingress's
//! address, cache rules among someone else's, settings, drift corrected on resync, a wrong token
//! and 429s, purge exactly once per promotion across operator restarts, and the finalizer
//! removing only what the operator owns. Every test ends with the fake's violations empty.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use authentify::api::App;
use authentify::api::app::AppPhase;
use authentify::api::common::ResourcePhase;
use authentify::api::edge_cache::EdgeCache;
use authentify::providers::cloudflare::{
    CACHE_SETTINGS_PHASE, CloudflareApi, CloudflareClient, CloudflareConfig, DnsRecordInput, ZoneSettingId,
};
use authentify::providers::http::Secret as Token;
use authentify_fakes::{CloudflareFake, Fault};
use k8s_openapi::api::core::v1::{Event, Secret};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::support::{TestCtx, operator, poll_until};

const LONG: Duration = Duration::from_secs(90);
const TOKEN: &str = "cf-cluster-token-Hj4Kl6Mn8";

async fn fake() -> anyhow::Result<(CloudflareFake, String)> {
    let fake = CloudflareFake::start().await?;
    fake.add_token(TOKEN);
    let zone = fake.add_zone("authentify.it");
    Ok((fake, zone))
}

/// Someone else with API access (the dashboard, a script).
fn someone_else(fake: &CloudflareFake) -> anyhow::Result<CloudflareClient> {
    Ok(CloudflareClient::new(CloudflareConfig::new(Token::new(TOKEN)).with_base_url(fake.base_url()))?)
}

async fn token_secret(ctx: &TestCtx, token: &str) -> anyhow::Result<()> {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "cf"}, "stringData": {"token": token}
    }))?;
    let api = ctx.api::<Secret>();
    match api.get_opt("cf").await? {
        Some(_) => {
            api.patch("cf", &PatchParams::default(), &Patch::Merge(json!({"stringData": {"token": token}})))
                .await?;
        }
        None => {
            api.create(&PostParams::default(), &secret).await?;
        }
    }
    Ok(())
}

fn app_yaml(name: &str, image: &str, host: &str) -> String {
    format!(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: App\nmetadata: {{name: {name}}}\nspec:\n  image: {image}\n  replicas: 1\n  port: 3000\n  route: {{host: {host}}}\n  edgeCache: {{name: edge}}\n"
    )
}

fn edge_yaml(base_url: &str, extra: &str) -> String {
    format!(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: EdgeCache\nmetadata: {{name: edge}}\nspec:\n  apiTokenSecret: {{name: cf, key: token}}\n  zoneName: authentify.it\n  baseUrl: {base_url}\n  resyncIntervalSeconds: 5\n{extra}"
    )
}

fn foreign_rule(reference: &str) -> Value {
    json!({"ref": reference, "expression": format!("(http.host eq \"{reference}.authentify.it\")"),
        "action": "set_cache_settings", "action_parameters": {"cache": false}, "enabled": true,
        "description": "made by hand"})
}

fn rules(fake: &CloudflareFake, zone: &str) -> Vec<Value> {
    fake.ruleset(zone, CACHE_SETTINGS_PHASE).and_then(|r| r["rules"].as_array().cloned()).unwrap_or_default()
}

fn rule(fake: &CloudflareFake, zone: &str, reference: &str) -> Option<Value> {
    rules(fake, zone).into_iter().find(|r| r["ref"] == reference)
}

fn record(fake: &CloudflareFake, zone: &str, name: &str) -> Option<Value> {
    fake.dns_records(zone).into_iter().find(|r| r["name"] == name)
}

fn phase(ec: &EdgeCache) -> Option<ResourcePhase> {
    ec.status.as_ref().and_then(|s| s.phase.clone())
}

fn ready_reason(ec: &EdgeCache) -> Option<(String, String)> {
    let c = ec.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((c.status.clone(), c.reason.clone()))
}

async fn poll(what: &str, check: impl Fn() -> bool) -> anyhow::Result<()> {
    poll_until(what, LONG, || {
        let ok = check();
        async move { Ok(ok) }
    })
    .await
}

/// Deletes the EdgeCache and waits until its finalizer has run and it is gone.
async fn delete_edge(ctx: &TestCtx) -> anyhow::Result<()> {
    ctx.api::<EdgeCache>().delete("edge", &DeleteParams::default()).await?;
    poll_until("the EdgeCache to be gone", LONG, || async {
        Ok(ctx.api::<EdgeCache>().get_opt("edge").await?.is_none())
    })
    .await
}

async fn events(ctx: &TestCtx) -> anyhow::Result<Vec<(String, String)>> {
    let list = ctx.api::<Event>().list(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("EdgeCache"))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect())
}

pub async fn records_rules_settings_follow_the_apps_and_drift_is_corrected(
    ctx: TestCtx,
) -> anyhow::Result<()> {
    let (fake, zone) = fake().await?;
    fake.put_ruleset(&zone, CACHE_SETTINGS_PHASE, vec![foreign_rule("marketing")]);
    let theirs = rule(&fake, &zone, "marketing").context("their rule")?;
    let other = someone_else(&fake)?;
    let mail = DnsRecordInput {
        record_type: "A".into(),
        name: "mail.authentify.it".into(),
        content: "198.51.100.25".into(),
        proxied: false,
        ttl: 300,
        comment: None,
    };
    other.create_dns_record(&zone, &mail).await?;
    token_secret(&ctx, TOKEN).await?;
    ctx.create_yaml::<App>(&app_yaml("api", "registry.example.com/api:1", "api.authentify.it")).await?;
    let extra = "  dns: {}\n  cacheRules:\n  - {name: static, expression: 'starts_with(http.request.uri.path, \"/_next/static/\")', edgeTtlSeconds: 86400}\n  settings: {browserCacheTtl: 3600, cacheLevel: basic, alwaysOnline: false, developmentMode: false, tieredCaching: true}\n";
    ctx.create_yaml::<EdgeCache>(&edge_yaml(&fake.base_url(), extra)).await?;

    // No address in the Ingress's status yet: a clear wait.
    let waiting = ctx
        .wait_for::<EdgeCache>("edge", "waiting for the Ingress address", LONG, |e| {
            phase(e) == Some(ResourcePhase::Pending)
                && ready_reason(e).is_some_and(|r| r.1 == "WaitingForAddress")
        })
        .await?;
    let message = waiting.status.and_then(|s| s.message).unwrap_or_default();
    ensure!(
        message.contains("App api (api.authentify.it): waiting for an address in the status of Ingress api"),
        "{message}"
    );
    ensure!(record(&fake, &zone, "api.authentify.it").is_none());

    // The load balancer gets an address: the record points at it.
    let ingresses = ctx.api::<Ingress>();
    poll_until("the App's Ingress", LONG, || async { Ok(ingresses.get_opt("api").await?.is_some()) }).await?;
    let lb = json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}});
    ingresses.patch_status("api", &PatchParams::default(), &Patch::Merge(&lb)).await?;
    let ready =
        ctx.wait_for::<EdgeCache>("edge", "Ready", LONG, |e| phase(e) == Some(ResourcePhase::Ready)).await?;
    let status = ready.status.clone().unwrap_or_default();
    ensure!(status.zone_id.as_deref() == Some(zone.as_str()) && status.rule_count == Some(1), "{status:?}");
    let api = record(&fake, &zone, "api.authentify.it").context("api record")?;
    ensure!(api["type"] == "A" && api["content"] == "203.0.113.7" && api["proxied"] == true, "{api}");
    let refs: Vec<Value> = rules(&fake, &zone).iter().map(|r| r["ref"].clone()).collect();
    ensure!(
        refs == [json!("marketing"), json!(format!("authentify:{}/edge/static", ctx.namespace))],
        "{refs:?}"
    );
    ensure!(fake.setting(&zone, "cache_level") == Some(json!("basic")));
    ensure!(fake.setting(&zone, "browser_cache_ttl") == Some(json!(3600)));
    ensure!(fake.setting(&zone, "always_online") == Some(json!("off")));
    ensure!(fake.tiered_caching(&zone));

    // Drift, behind the operator's back: a setting, our record, our rule. Corrected on resync;
    // their rule and record stay exactly as they were.
    other.patch_zone_setting(&zone, ZoneSettingId::CacheLevel, json!("aggressive")).await?;
    let api_id = api["id"].as_str().context("id")?.to_string();
    let mut hijacked = mail.clone();
    hijacked.name = "api.authentify.it".into();
    other.update_dns_record(&zone, &api_id, &hijacked).await?;
    let mut edited = rules(&fake, &zone);
    for r in &mut edited {
        if let Some(m) = r.as_object_mut() {
            m.retain(|k, _| k != "version" && k != "last_updated");
        }
        if r["ref"] != "marketing" {
            r["expression"] = json!("true");
        }
    }
    fake.put_ruleset(&zone, CACHE_SETTINGS_PHASE, edited);
    poll("drift corrected", || {
        fake.setting(&zone, "cache_level") == Some(json!("basic"))
            && record(&fake, &zone, "api.authentify.it").is_some_and(|r| {
                r["content"] == "203.0.113.7" && r["proxied"] == true && r["id"] == api_id.as_str()
            })
            && rule(&fake, &zone, &format!("authentify:{}/edge/static", ctx.namespace))
                .is_some_and(|r| r["expression"] != "true")
    })
    .await?;
    ensure!(rule(&fake, &zone, "marketing") == Some(theirs.clone()), "their rule survives every update");
    ensure!(record(&fake, &zone, "mail.authentify.it").is_some_and(|r| r["content"] == "198.51.100.25"));

    // A second App: its record appears; it stops referencing the EdgeCache: its record goes.
    ctx.create_yaml::<App>(&app_yaml("web", "registry.example.com/web:1", "authentify.it")).await?;
    poll_until("the web Ingress", LONG, || async { Ok(ingresses.get_opt("web").await?.is_some()) }).await?;
    ingresses
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"status": {"loadBalancer": {"ingress": [{"hostname": "lb.example.net"}]}}}),
            ),
        )
        .await?;
    poll("the web record", || {
        record(&fake, &zone, "authentify.it")
            .is_some_and(|r| r["type"] == "CNAME" && r["content"] == "lb.example.net")
    })
    .await?;
    ctx.api::<App>()
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"edgeCache": null}})))
        .await?;
    poll("the web record gone", || record(&fake, &zone, "authentify.it").is_none()).await?;
    ensure!(record(&fake, &zone, "api.authentify.it").is_some());

    // Resyncs with nothing different write nothing.
    let writes = |f: &CloudflareFake| {
        f.requests("updateZoneEntrypointRuleset")
            + f.requests("zone-settings-edit-single-setting")
            + f.requests("dns-records-for-a-zone-update-dns-record")
            + f.requests("dns-records-for-a-zone-create-dns-record")
    };
    let before = (writes(&fake), fake.requests("zone-settings-get-single-setting"));
    poll("two more resyncs", || fake.requests("zone-settings-get-single-setting") >= before.1 + 8).await?;
    ensure!(writes(&fake) == before.0, "a resync without drift wrote to Cloudflare");

    // Deleted: the finalizer removes our records and rules, only those.
    delete_edge(&ctx).await?;
    ensure!(rules(&fake, &zone) == [theirs], "{:?}", rules(&fake, &zone));
    let names: Vec<Value> = fake.dns_records(&zone).iter().map(|r| r["name"].clone()).collect();
    ensure!(names == [json!("mail.authentify.it")], "{names:?}");
    let cleaned = events(&ctx).await?;
    ensure!(
        cleaned
            .iter()
            .any(|e| e.0 == "CleanedUp" && e.1.starts_with("removed 1 DNS record(s) and 1 cache rule(s)")),
        "{cleaned:?}"
    );
    fake.assert_no_violations();
    Ok(())
}

pub async fn wrong_token_is_a_clear_condition_and_rate_limits_are_waited_out(
    ctx: TestCtx,
) -> anyhow::Result<()> {
    let (fake, zone) = fake().await?;
    let wrong = "cf-wrong-token-Pq1Rs2Tu3";
    token_secret(&ctx, wrong).await?;
    let extra =
        "  dns: {target: lb.example.net, extraHosts: [www.authentify.it]}\n  deletionPolicy: Delete\n";
    ctx.create_yaml::<EdgeCache>(&edge_yaml(&fake.base_url(), extra)).await?;
    let refused = ctx
        .wait_for::<EdgeCache>("edge", "refused", LONG, |e| {
            ready_reason(e).is_some_and(|r| r == ("False".into(), "TokenRejected".into()))
        })
        .await?;
    ensure!(phase(&refused) == Some(ResourcePhase::Failed));
    let message = refused.status.and_then(|s| s.message).unwrap_or_default();
    ensure!(
        message.contains("rejected the API token") && message.contains("check the API token Secret"),
        "{message}"
    );
    poll_until("the TokenRejected event", LONG, || async {
        Ok(events(&ctx).await?.iter().any(|e| e.0 == "TokenRejected"))
    })
    .await?;
    let yaml = ctx.kubectl_ok(&["get", "edgecaches.platform.authentify.it", "edge", "-o", "yaml"])?;
    let events_yaml = ctx.kubectl_ok(&["get", "events", "-o", "yaml"])?;
    ensure!(!yaml.contains(wrong) && !events_yaml.contains(wrong), "the token leaked into status or events");

    // The right token, and Cloudflare answers 429 a few times first: waited out, then Ready.
    fake.inject(Fault::TooManyRequests { retry_after_secs: 1 }, 3);
    token_secret(&ctx, TOKEN).await?;
    ctx.wait_for::<EdgeCache>("edge", "Ready", LONG, |e| phase(e) == Some(ResourcePhase::Ready)).await?;
    ensure!(record(&fake, &zone, "www.authentify.it").is_some_and(|r| r["content"] == "lb.example.net"));
    delete_edge(&ctx).await?;
    ensure!(fake.dns_records(&zone).is_empty());
    fake.assert_no_violations();
    Ok(())
}

fn newest_promotion(app: &App) -> Option<String> {
    let last = app.status.as_ref()?.history.first()?;
    (last.outcome == "Promoted" && last.finished_at.is_some()).then(|| last.revision.clone())
}

fn purged(ec: &EdgeCache, revision: &str) -> bool {
    ec.status.as_ref().is_some_and(|s| s.purges.iter().any(|p| p.revision == revision))
}

pub async fn purge_exactly_once_per_promotion_across_restarts(ctx: TestCtx) -> anyhow::Result<()> {
    let (fake, zone) = fake().await?;
    token_secret(&ctx, TOKEN).await?;
    ctx.create_yaml::<EdgeCache>(&edge_yaml(
        &fake.base_url(),
        "  dns: {target: lb.example.net}\n  purge: {mode: hosts}\n",
    ))
    .await?;
    ctx.create_yaml::<App>(&app_yaml("api", "registry.example.com/api:1", "api.authentify.it")).await?;
    let v1 = ctx
        .wait_for::<App>("api", "Healthy", LONG, |a| {
            a.status.as_ref().and_then(|s| s.phase.clone()) == Some(AppPhase::Healthy)
                && newest_promotion(a).is_some()
        })
        .await?;
    let rev1 = newest_promotion(&v1).context("rev1")?;
    ctx.wait_for::<EdgeCache>("edge", "purge of the first deploy recorded", LONG, |e| purged(e, &rev1))
        .await?;
    ensure!(fake.purges(&zone) == [json!({"hosts": ["api.authentify.it"]})], "{:?}", fake.purges(&zone));

    // A new release; the operator is killed the moment the promotion is in the App's status.
    ctx.api::<App>()
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"image": "registry.example.com/api:2"}})),
        )
        .await?;
    let v2 = ctx
        .wait_for::<App>("api", "promoted again", LONG, |a| newest_promotion(a).is_some_and(|r| r != rev1))
        .await?;
    let client = operator::kill().context("operator running")?;
    let rev2 = newest_promotion(&v2).context("rev2")?;
    operator::restart(client);
    let done = ctx
        .wait_for::<EdgeCache>("edge", "purge of the promotion recorded", LONG, |e| purged(e, &rev2))
        .await?;
    ensure!(fake.purges(&zone).len() == 2, "one purge per promotion: {:?}", fake.purges(&zone));
    let entry =
        done.status.unwrap_or_default().purges.into_iter().find(|p| p.revision == rev2).context("record")?;
    ensure!(
        entry.app == "api" && entry.scope == "hosts: api.authentify.it" && entry.requests == 1,
        "{entry:?}"
    );

    // Restarted again and reconciled with a new generation: no second purge of either.
    operator::kill_and_restart();
    let keep = json!({"spec": {"resyncIntervalSeconds": 6, "deletionPolicy": "Keep"}});
    ctx.api::<EdgeCache>().patch("edge", &PatchParams::default(), &Patch::Merge(keep)).await?;
    let generation = ctx.api::<EdgeCache>().get("edge").await?.metadata.generation;
    ctx.wait_for::<EdgeCache>("edge", "reconciled after the restart", LONG, |e| {
        e.status.as_ref().and_then(|s| s.observed_generation) == generation
    })
    .await?;
    ensure!(fake.purges(&zone).len() == 2, "a promotion was purged twice: {:?}", fake.purges(&zone));
    let purged_events: Vec<_> = events(&ctx).await?.into_iter().filter(|e| e.0 == "Purged").collect();
    ensure!(purged_events.len() == 2, "{purged_events:?}");

    // deletionPolicy Keep: the EdgeCache goes, its record stays in Cloudflare.
    delete_edge(&ctx).await?;
    ensure!(record(&fake, &zone, "api.authentify.it").is_some_and(|r| r["content"] == "lb.example.net"));
    ensure!(events(&ctx).await?.iter().any(|e| e.0 == "Kept"));
    fake.assert_no_violations();
    Ok(())
}
