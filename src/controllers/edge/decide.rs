//! Pure decisions of the EdgeCache controller: which DNS records the Apps' hosts need and what to
//! create, change or delete to get there; the cache rules and zone settings the spec asks for;
//! which promotions still need a purge and what it purges; the status and the Events its changes
//! deserve. No client and no clock (the time is passed in).
//!
//! It must never plan a change to a DNS record or a rule the operator does not own (records carry
//! [`record_comment`] or an id the status lists; rules a `ref` starting with [`rule_prefix`]), and
//! never put the API token anywhere: inputs carry only addresses, names and outcomes.

use std::net::IpAddr;

use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde_json::{Value, json};

use crate::api::App;
use crate::api::common::ResourcePhase;
use crate::api::conditions::{self, REACHABLE, READY};
use crate::api::edge_cache::{
    CacheLevel, CacheRule, EdgeCache, EdgeCacheStatus, ManagedRecord, PurgeMode, PurgeRecord,
};
use crate::controllers::promotion::{self, Promotion};
use crate::providers::cloudflare::{DnsRecord, DnsRecordInput, OWNED_REF_PREFIX, Purge, Rule, ZoneSettingId};
use crate::providers::http::ErrorKind;

/// The finalizer that lets the operator remove its records and rules before the EdgeCache goes.
pub const FINALIZER: &str = "platform.authentify.it/edge-cache";
/// At most this many purge records are kept in status (one per App).
pub const MAX_PURGE_RECORDS: usize = 50;

/// `namespace/name`: who owns a record or a rule in the zone.
pub fn owner(ec: &EdgeCache) -> String {
    format!("{}/{}", ec.namespace().unwrap_or_default(), ec.name_any())
}

/// The comment on every DNS record this EdgeCache manages.
pub fn record_comment(ec: &EdgeCache) -> String {
    format!("managed by authentify-operator for EdgeCache {}", owner(ec))
}

/// The `ref` prefix of this EdgeCache's cache rules, e.g. `authentify:prod/authentify-it/`.
pub fn rule_prefix(ec: &EdgeCache) -> String {
    format!("{OWNED_REF_PREFIX}{}/", owner(ec))
}

/// True when `app` names this EdgeCache in `spec.edgeCache` (same namespace).
pub fn references(app: &App, ec: &EdgeCache) -> bool {
    app.namespace() == ec.namespace() && app.spec.edge_cache.as_ref().is_some_and(|r| r.name == ec.name_any())
}

/// Where an App's address comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressSource {
    /// The App's Ingress (named after the App).
    Ingress {
        /// Ingress name.
        name: String,
    },
    /// The Gateway its HTTPRoute attaches to.
    Gateway {
        /// Gateway name.
        name: String,
        /// Gateway namespace.
        namespace: String,
    },
}

impl std::fmt::Display for AddressSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddressSource::Ingress { name } => write!(f, "Ingress {name}"),
            AddressSource::Gateway { name, namespace } => write!(f, "Gateway {namespace}/{name}"),
        }
    }
}

/// The hosts of an App that references an EdgeCache and where their address comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppRoute {
    /// App name.
    pub app: String,
    /// `spec.route.host`, then the blue-green preview host if any.
    pub hosts: Vec<String>,
    /// Where the address is read.
    pub source: AddressSource,
    /// The address found there (filled in by the controller).
    pub address: Option<String>,
}

/// The App's hosts and address source; `None` when it has no route.
pub fn app_route(app: &App) -> Option<AppRoute> {
    let route = app.spec.route.as_ref()?;
    let mut hosts = vec![route.host.clone()];
    if let Some(preview) =
        app.spec.strategy.as_ref().and_then(|s| s.blue_green.as_ref()).and_then(|b| b.preview_host.clone())
    {
        hosts.push(preview);
    }
    let source = match &route.gateway {
        Some(gw) => AddressSource::Gateway {
            name: gw.name.clone(),
            namespace: gw.namespace.clone().or_else(|| app.namespace()).unwrap_or_default(),
        },
        None => AddressSource::Ingress { name: app.name_any() },
    };
    Some(AppRoute { app: app.name_any(), hosts, source, address: None })
}

/// The first address in an Ingress's load-balancer status (IP preferred over host name).
pub fn ingress_address(ingress: &Ingress) -> Option<String> {
    let list = ingress.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref()?;
    list.iter()
        .find_map(|i| i.ip.clone().filter(|s| !s.is_empty()))
        .or_else(|| list.iter().find_map(|i| i.hostname.clone().filter(|s| !s.is_empty())))
}

/// The first address in a Gateway's status (`status.addresses[].value`).
pub fn gateway_address(gateway: &Value) -> Option<String> {
    gateway
        .pointer("/status/addresses")?
        .as_array()?
        .iter()
        .filter_map(|a| a.get("value")?.as_str())
        .find(|v| !v.is_empty())
        .map(str::to_string)
}

/// `A` for an IPv4 address, `AAAA` for IPv6, `CNAME` for a host name.
pub fn record_type_for(target: &str) -> &'static str {
    match target.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => "A",
        Ok(IpAddr::V6(_)) => "AAAA",
        Err(_) => "CNAME",
    }
}

/// The records the spec and the Apps ask for, and a sentence per host that waits for an address.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DesiredRecords {
    /// One per host, sorted by host.
    pub records: Vec<DnsRecordInput>,
    /// Why some hosts have no record yet.
    pub waiting: Vec<String>,
}

/// Records for the hosts of `routes` (the referencing Apps) and `dns.extraHosts`. No `dns` in
/// the spec: none (and the operator's existing ones go).
pub fn desired_records(ec: &EdgeCache, routes: &[AppRoute]) -> DesiredRecords {
    let Some(dns) = &ec.spec.dns else { return DesiredRecords::default() };
    let comment = record_comment(ec);
    let mut out = DesiredRecords::default();
    let mut add = |host: &str, content: &str| {
        let host = host.to_ascii_lowercase();
        if out.records.iter().any(|r| r.name == host) {
            return;
        }
        out.records.push(DnsRecordInput {
            record_type: record_type_for(content).to_string(),
            name: host,
            content: content.to_string(),
            proxied: dns.proxied,
            ttl: 1,
            comment: Some(comment.clone()),
        });
    };
    let mut routes: Vec<&AppRoute> = routes.iter().collect();
    routes.sort_by(|a, b| a.app.cmp(&b.app));
    for route in routes {
        match dns.target.as_deref().or(route.address.as_deref()) {
            Some(content) => route.hosts.iter().for_each(|h| add(h, content)),
            None => out.waiting.push(format!(
                "App {} ({}): waiting for an address in the status of {}; set dns.target to point the hosts elsewhere",
                route.app,
                route.hosts.join(", "),
                route.source
            )),
        }
    }
    if let Some(target) = &dns.target {
        for host in &dns.extra_hosts {
            add(host, target);
        }
    }
    out.records.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// What to do to the zone's DNS records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DnsPlan {
    /// Records to create.
    pub create: Vec<DnsRecordInput>,
    /// Records of ours to overwrite: `(id, wanted)`.
    pub update: Vec<(String, DnsRecordInput)>,
    /// Records of ours no longer wanted.
    pub delete: Vec<DnsRecord>,
    /// Records of ours that are right already.
    pub keep: Vec<ManagedRecord>,
    /// Hosts someone else's record holds: a sentence each.
    pub conflicts: Vec<String>,
}

impl DnsPlan {
    /// Whether anything must be written.
    pub fn writes(&self) -> bool {
        !(self.create.is_empty() && self.update.is_empty() && self.delete.is_empty())
    }
}

fn address_type(t: &str) -> bool {
    matches!(t, "A" | "AAAA" | "CNAME")
}

/// Compares `desired` with the zone's records. Ours carry `comment` or an id in `owned_ids`
/// (the status's list, so a record whose comment someone edited is still recognised and fixed).
/// Someone else's A/AAAA/CNAME record on a wanted host is a conflict, never overwritten.
pub fn plan_dns(
    desired: &[DnsRecordInput],
    existing: &[DnsRecord],
    owned_ids: &[String],
    comment: &str,
) -> DnsPlan {
    let ours = |r: &DnsRecord| r.comment.as_deref() == Some(comment) || owned_ids.contains(&r.id);
    let same_name = |r: &DnsRecord, name: &str| r.name.eq_ignore_ascii_case(name);
    let mut plan = DnsPlan::default();
    for want in desired {
        let mine: Vec<&DnsRecord> = existing.iter().filter(|r| ours(r) && same_name(r, &want.name)).collect();
        let keep = mine.iter().find(|r| want.matches(r)).or(mine.first()).copied();
        match keep {
            Some(record) => {
                if want.matches(record) {
                    plan.keep.push(ManagedRecord { host: want.name.clone(), id: record.id.clone() });
                } else {
                    plan.update.push((record.id.clone(), want.clone()));
                }
                plan.delete.extend(mine.iter().filter(|r| r.id != record.id).map(|r| (*r).clone()));
            }
            None => {
                let foreign = existing
                    .iter()
                    .find(|r| !ours(r) && same_name(r, &want.name) && address_type(&r.record_type));
                match foreign {
                    Some(r) => plan.conflicts.push(format!(
                        "{} already has a {} record to {} that the operator does not manage; delete it in Cloudflare (or take the host out) so the operator can create its own",
                        want.name, r.record_type, r.content
                    )),
                    None => plan.create.push(want.clone()),
                }
            }
        }
    }
    plan.delete.extend(
        existing.iter().filter(|r| ours(r) && !desired.iter().any(|w| same_name(r, &w.name))).cloned(),
    );
    plan
}

/// The cache rules the spec asks for, in its order, each with this EdgeCache's `ref`.
pub fn desired_rules(ec: &EdgeCache) -> Vec<Rule> {
    let owner = owner(ec);
    ec.spec
        .cache_rules
        .iter()
        .map(|r| {
            let mut rule =
                Rule::owned_cache_rule(&format!("{owner}/{}", r.name), &r.expression, action_parameters(r));
            rule.other.insert("description".into(), json!(format!("EdgeCache {owner}: {}", r.name)));
            rule
        })
        .collect()
}

fn action_parameters(rule: &CacheRule) -> Value {
    if !rule.cache {
        return json!({"cache": false});
    }
    let mut params = json!({"cache": true});
    if let Some(ttl) = rule.edge_ttl_seconds {
        params["edge_ttl"] = json!({"mode": "override_origin", "default": ttl, "status_code_ttl": []});
    }
    if let Some(ttl) = rule.browser_ttl_seconds {
        params["browser_ttl"] = json!({"mode": "override_origin", "default": ttl});
    }
    if rule.ignore_query_string {
        params["cache_key"] = json!({"custom_key": {"query_string": {"exclude": {"all": true}}}});
    }
    params
}

fn on_off(on: bool) -> Value {
    json!(if on { "on" } else { "off" })
}

/// The zone settings the spec sets, with their API values; settings left out are not touched.
pub fn desired_settings(ec: &EdgeCache) -> Vec<(ZoneSettingId, Value)> {
    let Some(s) = &ec.spec.settings else { return vec![] };
    let mut out = vec![];
    if let Some(ttl) = s.browser_cache_ttl {
        out.push((ZoneSettingId::BrowserCacheTtl, json!(ttl)));
    }
    if let Some(level) = &s.cache_level {
        let v = match level {
            CacheLevel::Basic => "basic",
            CacheLevel::Simplified => "simplified",
            CacheLevel::Aggressive => "aggressive",
        };
        out.push((ZoneSettingId::CacheLevel, json!(v)));
    }
    if let Some(on) = s.always_online {
        out.push((ZoneSettingId::AlwaysOnline, on_off(on)));
    }
    if let Some(on) = s.development_mode {
        out.push((ZoneSettingId::DevelopmentMode, on_off(on)));
    }
    out
}

/// Whether a setting's current value differs from the wanted one (numbers compared as numbers).
pub fn setting_differs(want: &Value, have: &Value) -> bool {
    match (want.as_f64(), have.as_f64()) {
        (Some(w), Some(h)) => (w - h).abs() > f64::EPSILON,
        _ => want != have,
    }
}

/// Promotions of referencing Apps (with `purgeOnPromote`) that still need a purge.
pub fn purges_due(ec: &EdgeCache, apps: &[App]) -> Vec<Promotion> {
    if ec.spec.purge.mode == PurgeMode::None {
        return vec![];
    }
    let records = ec.status.as_ref().map(|s| s.purges.as_slice()).unwrap_or_default();
    promotion::pending(
        apps.iter()
            .filter(|a| references(a, ec) && a.spec.edge_cache.as_ref().is_some_and(|r| r.purge_on_promote)),
        ec.metadata.creation_timestamp.as_ref(),
        |p| {
            records
                .iter()
                .any(|r| r.app == p.app && r.revision == p.revision && r.promoted_at == p.promoted_at)
        },
    )
}

/// What a promotion of `app` purges, and the sentence for the record; `None` when there is
/// nothing to purge (mode `hosts` and the App has no concrete host).
pub fn purge_for(ec: &EdgeCache, app: Option<&App>) -> Option<(Purge, String)> {
    let spec = &ec.spec.purge;
    let (purge, items) = match spec.mode {
        PurgeMode::None => return None,
        PurgeMode::Hosts => {
            let route = app.and_then(app_route)?;
            let hosts: Vec<String> =
                route.hosts.into_iter().take(1).filter(|h| !h.starts_with("*.")).collect();
            if hosts.is_empty() {
                return None;
            }
            (Purge::Hosts(hosts.clone()), ("hosts", hosts))
        }
        PurgeMode::Prefixes => (Purge::Prefixes(spec.prefixes.clone()), ("prefixes", spec.prefixes.clone())),
        PurgeMode::Tags => (Purge::Tags(spec.tags.clone()), ("tags", spec.tags.clone())),
    };
    Some((purge, format!("{}: {}", items.0, items.1.join(", "))))
}

/// Records a purge: one entry per App (the newest), at most [`MAX_PURGE_RECORDS`].
pub fn record_purge(records: &mut Vec<PurgeRecord>, record: PurgeRecord) {
    promotion::record(records, record, |r| r.app.as_str(), MAX_PURGE_RECORDS);
}

/// What a zone sync found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Synced {
    /// Zone id.
    pub zone_id: String,
    /// Zone name, when known.
    pub zone_name: Option<String>,
    /// The records the operator manages now.
    pub records: Vec<ManagedRecord>,
    /// Entry-point ruleset id, when the zone has one.
    pub ruleset_id: Option<String>,
    /// Rules the operator owns in it.
    pub rule_count: i32,
    /// Hosts waiting for an address.
    pub waiting: Vec<String>,
    /// Hosts someone else's record holds.
    pub conflicts: Vec<String>,
}

/// How the reconcile went, as far as the status is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The spec cannot be carried out (a missing token Secret): the sentence says why.
    Invalid(String),
    /// The token sees no zone of that name.
    ZoneNotFound(String),
    /// Cloudflare refused or failed: its kind and the sentence (never holding the token).
    Cloudflare {
        /// The failure's kind.
        kind: ErrorKind,
        /// The sentence.
        message: String,
    },
    /// The zone matches the spec.
    Synced(Synced),
    /// No sync was due: the zone was synced recently with the same inputs.
    NotDue,
}

/// A status change worth an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Warning or Normal.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// The sentence.
    pub message: String,
}

fn reason_for(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Unauthorized => "TokenRejected",
        ErrorKind::Forbidden => "PermissionDenied",
        ErrorKind::NotFound => "NotFound",
        ErrorKind::RateLimited => "RateLimited",
        ErrorKind::Invalid => "RequestRefused",
        _ => "CloudflareUnavailable",
    }
}

/// The new status from the old one, the outcome and this reconcile's purges, and the Events its
/// changes deserve.
pub fn status(
    ec: &EdgeCache,
    outcome: &Outcome,
    purges: &[PurgeRecord],
    now: &Time,
) -> (EdgeCacheStatus, Vec<Note>) {
    let old = ec.status.clone().unwrap_or_default();
    let generation = ec.metadata.generation;
    let mut s = EdgeCacheStatus { observed_generation: generation, ..old.clone() };
    for record in purges.iter().rev() {
        record_purge(&mut s.purges, record.clone());
    }
    let zone = |s: &EdgeCacheStatus| {
        s.zone_name.clone().or_else(|| s.zone_id.clone()).unwrap_or_else(|| "the zone".into())
    };
    let (phase, ready, reason, message) = match outcome {
        Outcome::NotDue => {
            s.observed_generation = old.observed_generation;
            return (s, vec![]);
        }
        Outcome::Invalid(why) => {
            let msg =
                "the operator has not called Cloudflare: the spec cannot be carried out yet".to_string();
            conditions::set(&mut s.conditions, REACHABLE, false, "NotChecked", msg, generation, now);
            (ResourcePhase::Failed, false, "InvalidSpec", why.clone())
        }
        Outcome::ZoneNotFound(name) => {
            let msg = format!("Cloudflare accepted the token but shows it no zone named {name}");
            conditions::set(&mut s.conditions, REACHABLE, true, "TokenAccepted", msg, generation, now);
            (
                ResourcePhase::Failed,
                false,
                "ZoneNotFound",
                format!(
                    "zone {name} not found: check spec.zoneName and that the API token's zone resources include it"
                ),
            )
        }
        Outcome::Cloudflare { kind, message } => {
            let reason = reason_for(*kind);
            conditions::set(&mut s.conditions, REACHABLE, false, reason, message.clone(), generation, now);
            let phase = if kind.is_transient() { ResourcePhase::Degraded } else { ResourcePhase::Failed };
            (phase, false, reason, message.clone())
        }
        Outcome::Synced(synced) => {
            s.zone_id = Some(synced.zone_id.clone());
            s.zone_name = synced.zone_name.clone();
            s.dns_records = synced.records.clone();
            s.ruleset_id = synced.ruleset_id.clone();
            s.rule_count = Some(synced.rule_count);
            let msg = format!("Cloudflare answers for zone {}", zone(&s));
            conditions::set(&mut s.conditions, REACHABLE, true, "Answered", msg, generation, now);
            let summary = format!(
                "zone {}: {} DNS record(s), {} cache rule(s) of ours, settings as specified",
                zone(&s),
                synced.records.len(),
                synced.rule_count
            );
            if !synced.conflicts.is_empty() {
                (
                    ResourcePhase::Degraded,
                    false,
                    "RecordConflict",
                    format!("{summary}; {}", synced.conflicts.join("; ")),
                )
            } else if !synced.waiting.is_empty() {
                (
                    ResourcePhase::Pending,
                    false,
                    "WaitingForAddress",
                    format!("{summary}; {}", synced.waiting.join("; ")),
                )
            } else {
                (ResourcePhase::Ready, true, "Synced", summary)
            }
        }
    };
    conditions::set(&mut s.conditions, READY, ready, reason, message.clone(), generation, now);
    s.phase = Some(phase);
    s.message = Some(message);

    let mut notes = vec![];
    let was = |kind: &str| {
        old.conditions.iter().find(|c| c.type_ == kind).map(|c| (c.status == "True", c.reason.clone()))
    };
    let ready_now = conditions::is_true(&s.conditions, READY);
    if was(READY) != Some((ready_now, reason.to_string())) {
        notes.push(Note {
            warning: !ready_now && !matches!(outcome, Outcome::Synced(_)) || reason == "RecordConflict",
            reason: if ready_now { "Ready" } else { reason },
            message: s.message.clone().unwrap_or_default(),
        });
    }
    (s, notes)
}
