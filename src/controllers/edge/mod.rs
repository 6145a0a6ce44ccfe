//! The EdgeCache controller: observe (the token Secret, the Apps that reference the EdgeCache and
//! the addresses of their Ingresses or Gateways) -> decide (pure, in [`decide`]) -> act on
//! Cloudflare ([`sync`], writing only what differs, and only when the inputs changed or the
//! resync interval passed) -> purge once per App promotion -> status (written once, only when
//! it changed) and Events. A finalizer removes the operator's records and rules (only those)
//! when the EdgeCache is deleted, unless `spec.deletionPolicy` is `Keep`.
//!
//! It must never write the API token anywhere: not in logs, Events, status or error messages.

pub mod decide;
pub mod sync;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch};
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use self::decide::{FINALIZER, Note, Outcome};
use self::sync::{SyncError, ZonePlan};
use super::{Error, FIELD_MANAGER, apply_params};
use crate::api::App;
use crate::api::common::DeletionPolicy;
use crate::api::edge_cache::{EdgeCache, PurgeRecord};
use crate::providers::cloudflare::{CloudflareApi, CloudflareClient, CloudflareConfig};
use crate::providers::http::Secret as Token;

/// How often a failed reconcile, or one waiting for an address, is tried again.
const RETRY: Duration = Duration::from_secs(10);

/// What every EdgeCache reconcile gets.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Event recorder (for Events that repeat, so they fold).
    pub recorder: Recorder,
    /// The clock.
    pub clock: fn() -> Timestamp,
    /// One Cloudflare client per EdgeCache (its rate limiter lives in it), keyed by owner.
    clients: Mutex<HashMap<String, (String, Arc<CloudflareClient>)>>,
    /// When each EdgeCache's zone was last synced, and from which inputs.
    synced: Mutex<HashMap<String, (String, Instant)>>,
}

impl Context {
    /// A context with empty caches.
    pub fn new(client: Client) -> Self {
        let recorder =
            Recorder::new(client.clone(), Reporter { controller: FIELD_MANAGER.into(), instance: None });
        Self { client, recorder, clock: Timestamp::now, clients: Mutex::default(), synced: Mutex::default() }
    }

    /// The EdgeCache's client, made anew when the base URL or the token changed.
    fn cloudflare(&self, owner: &str, base_url: &str, token: Token) -> Result<Arc<CloudflareClient>, String> {
        let key = format!("{base_url}\n{}", digest(token.expose()));
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((k, client)) = clients.get(owner)
            && *k == key
        {
            return Ok(client.clone());
        }
        let client = CloudflareClient::new(CloudflareConfig::new(token).with_base_url(base_url))
            .map(Arc::new)
            .map_err(|e| e.to_string())?;
        clients.insert(owner.to_string(), (key, client.clone()));
        Ok(client)
    }

    /// The client used last for this EdgeCache (to clean up after its Secret is gone).
    fn last_client(&self, owner: &str) -> Option<Arc<CloudflareClient>> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner).get(owner).map(|c| c.1.clone())
    }

    /// `None` when a sync is due now, else how long until it is.
    fn sync_wait(&self, owner: &str, fingerprint: &str, every: Duration) -> Option<Duration> {
        let synced = self.synced.lock().unwrap_or_else(PoisonError::into_inner);
        let (f, at) = synced.get(owner)?;
        let elapsed = at.elapsed();
        (f == fingerprint && elapsed < every).then(|| every - elapsed)
    }

    fn mark_synced(&self, owner: &str, fingerprint: Option<String>) {
        let mut synced = self.synced.lock().unwrap_or_else(PoisonError::into_inner);
        match fingerprint {
            Some(f) => synced.insert(owner.to_string(), (f, Instant::now())),
            None => synced.remove(owner),
        };
    }

    fn forget(&self, owner: &str) {
        self.mark_synced(owner, None);
        self.clients.lock().unwrap_or_else(PoisonError::into_inner).remove(owner);
    }
}

fn digest(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the EdgeCache controller until `shutdown` completes.
pub async fn run(client: Client, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let ctx = Arc::new(Context::new(client.clone()));
    let controller =
        Controller::new(Api::<EdgeCache>::all(client.clone()), watcher::Config::default().any_semantic());
    let store = controller.store();
    controller
        .watches_stream(
            // Apps only map to their EdgeCache here: keep nothing of them but what the mapper reads.
            watcher(Api::<App>::all(client.clone()), watcher::Config::default())
                .modify(|app: &mut App| app.managed_fields_mut().clear())
                .default_backoff()
                .touched_objects(),
            move |app: App| {
                // The EdgeCache it references, and any that holds a record for one of its hosts
                // (an App that stopped referencing it, or was deleted).
                let hosts = decide::app_route(&app).map(|r| r.hosts).unwrap_or_default();
                store
                    .state()
                    .into_iter()
                    .filter(|ec| ec.namespace() == app.namespace())
                    .filter(|ec| {
                        decide::references(&app, ec)
                            || ec
                                .status
                                .as_ref()
                                .is_some_and(|s| s.dns_records.iter().any(|r| hosts.contains(&r.host)))
                    })
                    .map(|ec| ObjectRef::from_obj(&*ec))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| super::log_result("EdgeCache", result))
        .await;
    info!("EdgeCache controller stopped");
}

/// How long to wait before retrying a failed reconcile.
pub fn error_policy(ec: Arc<EdgeCache>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(edge_cache = %ec.name_any(), namespace = ?ec.namespace(), category = error.category(), %error, "EdgeCache reconcile failed; retrying");
    Action::requeue(super::RETRY_AFTER)
}

/// The API token from `spec.apiTokenSecret`, or why it cannot be read (never the value).
async fn read_token(ctx: &Context, ns: &str, ec: &EdgeCache) -> Result<Result<Token, String>, Error> {
    let r = &ec.spec.api_token_secret;
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), ns).get_opt(&r.name).await?;
    let value = secret.and_then(|s| s.data).and_then(|d| d.get(&r.key).cloned());
    Ok(match value.map(|v| String::from_utf8(v.0)) {
        Some(Ok(t)) if !t.trim().is_empty() => Ok(Token::new(t.trim().to_string())),
        Some(Ok(_)) => Err(format!(
            "key {} of Secret {} (spec.apiTokenSecret) is empty; put a Cloudflare API token in it",
            r.key, r.name
        )),
        Some(Err(_)) => Err(format!(
            "key {} of Secret {} (spec.apiTokenSecret) is not UTF-8 text; store the Cloudflare API token as plain text",
            r.key, r.name
        )),
        None => Err(format!(
            "Secret {} with key {} (spec.apiTokenSecret) does not exist in namespace {ns}; create it with a Cloudflare API token (Zone DNS, Cache Rules, Zone Settings and Cache Purge permissions)",
            r.name, r.key
        )),
    })
}

fn gateway_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway"),
        "gateways",
    )
}

/// The routes of the Apps that reference `ec`, with the address of their Ingress or Gateway when
/// the spec gives no target.
async fn routes(
    ctx: &Context,
    ns: &str,
    ec: &EdgeCache,
    apps: &[App],
) -> Result<Vec<decide::AppRoute>, Error> {
    let mut out = vec![];
    let need_address = ec.spec.dns.as_ref().is_some_and(|d| d.target.is_none());
    for app in apps.iter().filter(|a| decide::references(a, ec)) {
        let Some(mut route) = decide::app_route(app) else { continue };
        if need_address {
            route.address = match &route.source {
                decide::AddressSource::Ingress { name } => Api::<Ingress>::namespaced(ctx.client.clone(), ns)
                    .get_opt(name)
                    .await?
                    .as_ref()
                    .and_then(decide::ingress_address),
                decide::AddressSource::Gateway { name, namespace } => {
                    let api: Api<DynamicObject> =
                        Api::namespaced_with(ctx.client.clone(), namespace, &gateway_resource());
                    match api.get_opt(name).await {
                        Ok(gw) => gw.and_then(|g| decide::gateway_address(&serde_json::to_value(g).ok()?)),
                        // Gateway API not installed: no address yet.
                        Err(kube::Error::Api(s)) if s.code == 404 => None,
                        Err(e) => return Err(e.into()),
                    }
                }
            };
        }
        out.push(route);
    }
    Ok(out)
}

/// Reconciles one EdgeCache.
pub async fn reconcile(ec: Arc<EdgeCache>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = ec.namespace().ok_or_else(|| Error::Invalid("EdgeCache has no namespace".into()))?;
    let api: Api<EdgeCache> = Api::namespaced(ctx.client.clone(), &ns);
    let owner = decide::owner(&ec);
    if ec.metadata.deletion_timestamp.is_some() {
        return finalize(&ec, &ctx, &api, &ns).await;
    }
    if !ec.finalizers().iter().any(|f| f == FINALIZER) {
        set_finalizer(&api, &ec.name_any(), true).await?;
    }
    let now = Time((ctx.clock)());
    let resync = Duration::from_secs(u64::try_from(ec.spec.resync_interval_seconds.max(5)).unwrap_or(300));
    let apps: Vec<App> =
        Api::<App>::namespaced(ctx.client.clone(), &ns).list(&ListParams::default()).await?.items;
    let routes = routes(&ctx, &ns, &ec, &apps).await?;
    let desired = decide::desired_records(&ec, &routes);

    let mut notes: Vec<Note> = vec![];
    let mut requeue = resync;
    let (outcome, cloudflare) = match read_token(&ctx, &ns, &ec).await? {
        Err(why) => (Outcome::Invalid(why), None),
        Ok(token) => {
            let token_digest = digest(token.expose());
            match ctx.cloudflare(&owner, &ec.spec.base_url, token) {
                Err(why) => (Outcome::Invalid(format!("spec.baseUrl cannot be used: {why}")), None),
                Ok(cf) => {
                    let fingerprint = digest(&format!(
                        "{}\n{:?}\n{token_digest}",
                        serde_json::to_string(&ec.spec)?,
                        desired
                    ));
                    let outcome = match ctx.sync_wait(&owner, &fingerprint, resync) {
                        Some(wait) => {
                            requeue = wait;
                            Outcome::NotDue
                        }
                        None => {
                            let synced = sync_zone(&ec, &cf, &desired, &mut notes).await;
                            ctx.mark_synced(
                                &owner,
                                matches!(synced, Outcome::Synced(_)).then_some(fingerprint),
                            );
                            synced
                        }
                    };
                    (outcome, Some(cf))
                }
            }
        }
    };
    match &outcome {
        Outcome::Synced(_) | Outcome::NotDue => {}
        _ => requeue = RETRY,
    }
    if !desired.waiting.is_empty() {
        // Ingress and Gateway status are not watched: look for the address again soon (a new
        // address changes the inputs, so the next reconcile syncs).
        requeue = requeue.min(RETRY);
    }

    // Purges: decided on a fresh read of the EdgeCache, so a cache that has not seen the last
    // status write yet never causes a second purge of one promotion.
    let mut base = ec.clone();
    let mut purges = vec![];
    if !decide::purges_due(&ec, &apps).is_empty() {
        base = Arc::new(api.get(&ec.name_any()).await?);
        let due = decide::purges_due(&base, &apps);
        match &cloudflare {
            Some(cf) if !due.is_empty() => {
                purges = purge(&base, cf.as_ref(), &outcome, &apps, due, &now, &mut notes).await;
            }
            _ if !due.is_empty() => notes.push(Note {
                warning: true,
                reason: "PurgeDelayed",
                message: format!(
                    "App(s) {} promoted but the purge waits until the EdgeCache can reach Cloudflare",
                    due.iter().map(|d| d.app.as_str()).collect::<Vec<_>>().join(", ")
                ),
            }),
            _ => {}
        }
    }

    let (status, mut status_notes) = decide::status(&base, &outcome, &purges, &now);
    notes.append(&mut status_notes);
    if base.status.as_ref() != Some(&status) {
        let patch = serde_json::json!({
            "apiVersion": EdgeCache::api_version(&()),
            "kind": EdgeCache::kind(&()),
            "status": status,
        });
        api.patch_status(&ec.name_any(), &apply_params(), &Patch::Apply(&patch)).await?;
    }
    for note in &notes {
        publish(&ctx, &ec, note).await;
    }
    debug!(edge_cache = %ec.name_any(), namespace = %ns, phase = ?status.phase, "reconciled");
    Ok(Action::requeue(requeue))
}

/// Brings the zone to the spec; the outcome for the status, Events for what was written.
async fn sync_zone(
    ec: &EdgeCache,
    cf: &Arc<CloudflareClient>,
    desired: &decide::DesiredRecords,
    notes: &mut Vec<Note>,
) -> Outcome {
    let plan = ZonePlan {
        zone_id: ec.spec.zone_id.clone(),
        zone_name: ec.spec.zone_name.clone(),
        records: desired.records.clone(),
        waiting: desired.waiting.clone(),
        owned_ids: ec.status.iter().flat_map(|s| s.dns_records.iter().map(|r| r.id.clone())).collect(),
        comment: decide::record_comment(ec),
        rule_prefix: decide::rule_prefix(ec),
        rules: decide::desired_rules(ec),
        settings: decide::desired_settings(ec),
        tiered_caching: ec.spec.settings.as_ref().and_then(|s| s.tiered_caching),
    };
    match sync::sync(cf.as_ref(), &plan).await {
        Ok(report) => {
            if !report.writes.is_empty() {
                info!(edge_cache = %ec.name_any(), writes = ?report.writes, "synced the zone");
                notes.push(Note { warning: false, reason: "ZoneUpdated", message: report.writes.join("; ") });
            }
            if !report.concurrent.is_empty() {
                notes.push(Note {
                    warning: true,
                    reason: "ConcurrentChange",
                    message: report.concurrent.join("; "),
                });
            }
            Outcome::Synced(report.synced)
        }
        Err(SyncError::ZoneNotFound(name)) => Outcome::ZoneNotFound(name),
        Err(SyncError::Cloudflare(e)) => Outcome::Cloudflare { kind: e.kind, message: e.to_string() },
        Err(e @ SyncError::RulesetBusy(_)) => {
            Outcome::Cloudflare { kind: crate::providers::http::ErrorKind::Conflict, message: e.to_string() }
        }
    }
}

/// Runs the purges that are due, each once, and returns their records.
async fn purge(
    ec: &EdgeCache,
    cf: &dyn CloudflareApi,
    outcome: &Outcome,
    apps: &[App],
    due: Vec<crate::controllers::promotion::Promotion>,
    now: &Time,
    notes: &mut Vec<Note>,
) -> Vec<PurgeRecord> {
    let status = ec.status.clone().unwrap_or_default();
    let zone_id = match (outcome, &ec.spec.zone_id) {
        (_, Some(id)) => Some(id.clone()),
        (Outcome::Synced(s), _) => Some(s.zone_id.clone()),
        _ if status.zone_name.is_some() && status.zone_name == ec.spec.zone_name => status.zone_id.clone(),
        _ => None,
    };
    let zone_id = match zone_id {
        Some(id) => id,
        None => match sync::resolve_zone(cf, None, ec.spec.zone_name.as_deref()).await {
            Ok((id, _)) => id,
            Err(e) => {
                notes.push(Note {
                    warning: true,
                    reason: "PurgeFailed",
                    message: format!("could not purge after a promotion: {e}; the purge is retried"),
                });
                return vec![];
            }
        },
    };
    let mut records = vec![];
    for due in due {
        let app = apps.iter().find(|a| a.name_any() == due.app);
        let record = |scope: String, requests: usize| PurgeRecord {
            app: due.app.clone(),
            revision: due.revision.clone(),
            promoted_at: due.promoted_at.clone(),
            scope,
            requests: i32::try_from(requests).unwrap_or(i32::MAX),
            time: now.clone(),
        };
        let Some((what, scope)) = decide::purge_for(ec, app) else {
            records.push(record("nothing: the App has no concrete route host".into(), 0));
            continue;
        };
        match cf.purge_cache(&zone_id, &what).await {
            Ok(requests) => {
                info!(edge_cache = %ec.name_any(), app = %due.app, revision = %due.revision, requests, "purged after a promotion");
                notes.push(Note {
                    warning: false,
                    reason: "Purged",
                    message: format!(
                        "purged {scope} after App {} promoted revision {} ({requests} request(s))",
                        due.app, due.revision
                    ),
                });
                records.push(record(scope, requests));
            }
            Err(e) => notes.push(Note {
                warning: true,
                reason: "PurgeFailed",
                message: format!(
                    "could not purge {scope} after App {} promoted revision {}: {e}; the purge is retried",
                    due.app, due.revision
                ),
            }),
        }
    }
    records
}

/// Adds or removes the finalizer (server-side apply: only our entry in the list).
async fn set_finalizer(api: &Api<EdgeCache>, name: &str, present: bool) -> Result<(), Error> {
    let finalizers: Vec<&str> = if present { vec![FINALIZER] } else { vec![] };
    let patch = serde_json::json!({
        "apiVersion": EdgeCache::api_version(&()),
        "kind": EdgeCache::kind(&()),
        "metadata": {"name": name, "finalizers": finalizers},
    });
    match api.patch(name, &apply_params(), &Patch::Apply(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 && !present => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletion: remove the operator's records and rules (policy `Delete`), then the finalizer.
async fn finalize(ec: &EdgeCache, ctx: &Context, api: &Api<EdgeCache>, ns: &str) -> Result<Action, Error> {
    if !ec.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let owner = decide::owner(ec);
    let comment = decide::record_comment(ec);
    let prefix = decide::rule_prefix(ec);
    if ec.spec.deletion_policy == DeletionPolicy::Keep {
        let message = format!(
            "deletionPolicy Keep: left the DNS records (comment \"{comment}\") and cache rules (ref {prefix}*) in Cloudflare"
        );
        return release(ctx, api, ec, Note { warning: false, reason: "Kept", message }).await;
    }
    let cf = match read_token(ctx, ns, ec).await? {
        Ok(token) => ctx.cloudflare(&owner, &ec.spec.base_url, token).ok(),
        Err(_) => None,
    }
    .or_else(|| ctx.last_client(&owner));
    let Some(cf) = cf else {
        let message = format!(
            "could not remove the DNS records and cache rules of this EdgeCache: its API token Secret is gone; remove the records commented \"{comment}\" and the rules whose ref starts with {prefix} by hand"
        );
        return release(ctx, api, ec, Note { warning: true, reason: "CleanupSkipped", message }).await;
    };
    let status = ec.status.clone().unwrap_or_default();
    let owned: Vec<String> = status.dns_records.iter().map(|r| r.id.clone()).collect();
    let zone_id =
        ec.spec.zone_id.clone().or(status.zone_id.filter(|_| status.zone_name == ec.spec.zone_name));
    match sync::cleanup(
        cf.as_ref(),
        zone_id.as_deref(),
        ec.spec.zone_name.as_deref(),
        &owned,
        &comment,
        &prefix,
    )
    .await
    {
        Ok(done) => {
            let message = format!(
                "removed {} DNS record(s) and {} cache rule(s) of this EdgeCache from Cloudflare; everyone else's are untouched",
                done.records, done.rules
            );
            release(ctx, api, ec, Note { warning: false, reason: "CleanedUp", message }).await
        }
        Err(e) => {
            let message = format!(
                "could not remove this EdgeCache's records and rules from Cloudflare: {e}; the operator retries (set spec.deletionPolicy: Keep to let the EdgeCache go without cleaning up)"
            );
            publish(ctx, ec, &Note { warning: true, reason: "CleanupFailed", message }).await;
            Ok(Action::requeue(RETRY))
        }
    }
}

/// Lets the EdgeCache go: the Event saying what happened in Cloudflare, then the finalizer.
async fn release(ctx: &Context, api: &Api<EdgeCache>, ec: &EdgeCache, note: Note) -> Result<Action, Error> {
    publish(ctx, ec, &note).await;
    set_finalizer(api, &ec.name_any(), false).await?;
    ctx.forget(&decide::owner(ec));
    Ok(Action::await_change())
}

async fn publish(ctx: &Context, ec: &EdgeCache, note: &Note) {
    let fold = matches!(note.reason, "PurgeDelayed" | "PurgeFailed" | "CleanupFailed" | "ConcurrentChange");
    let parts = (note.warning, note.reason, note.message.as_str());
    super::publish_event(&ctx.client, &ctx.recorder, &ec.object_ref(&()), parts, fold).await;
}
