//! The EdgeCache controller's calls to Cloudflare, over the [`CloudflareApi`] trait: bring a
//! zone to what [`super::decide`] planned (DNS records, the operator's cache rules among
//! everyone else's, settings, tiered caching), and take the operator's records and rules out
//! again on deletion. It writes only what differs.
//!
//! The cache-rules ruleset is read, merged and written as a whole (Cloudflare's entry-point API
//! has no conditional write), so it re-reads just before writing and starts over when the
//! version moved, and checks the version the write returns: a change by someone else in between
//! is detected and the merge done again on top of it.

use serde_json::Value;

use super::decide::{self, DnsPlan, Synced};
use crate::api::edge_cache::ManagedRecord;
use crate::providers::cloudflare::{
    CACHE_SETTINGS_PHASE, CloudflareApi, CloudflareError, DnsRecordFilter, DnsRecordInput, Rule, Ruleset,
    ZoneSettingId, merge_rules_owned_by,
};

/// How often a ruleset write is attempted when others keep changing the ruleset meanwhile.
pub const RULESET_ATTEMPTS: usize = 4;

/// What to make true in one zone.
#[derive(Clone, Debug, Default)]
pub struct ZonePlan {
    /// `spec.zoneId`.
    pub zone_id: Option<String>,
    /// `spec.zoneName`.
    pub zone_name: Option<String>,
    /// The records wanted (see [`decide::desired_records`]).
    pub records: Vec<DnsRecordInput>,
    /// Hosts waiting for an address.
    pub waiting: Vec<String>,
    /// Record ids the status lists as ours.
    pub owned_ids: Vec<String>,
    /// The comment marking our records.
    pub comment: String,
    /// The `ref` prefix marking our rules.
    pub rule_prefix: String,
    /// The rules wanted.
    pub rules: Vec<Rule>,
    /// Settings wanted.
    pub settings: Vec<(ZoneSettingId, Value)>,
    /// Tiered caching wanted, if set.
    pub tiered_caching: Option<bool>,
}

/// Why a sync stopped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// The token sees no zone of that name.
    #[error("zone {0} not found")]
    ZoneNotFound(String),
    /// Cloudflare refused or failed.
    #[error("{0}")]
    Cloudflare(#[from] CloudflareError),
    /// The ruleset kept changing under the operator's writes.
    #[error(
        "the {CACHE_SETTINGS_PHASE} ruleset of zone {0} changed during each of {RULESET_ATTEMPTS} attempts to write it; the operator will try again"
    )]
    RulesetBusy(String),
}

/// What a sync changed, as sentences for Events and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The state reached.
    pub synced: Synced,
    /// One sentence per write.
    pub writes: Vec<String>,
    /// Concurrent changes seen (someone else wrote the ruleset meanwhile).
    pub concurrent: Vec<String>,
}

/// The zone's id and name (the name only when looked up by it).
pub async fn resolve_zone(
    api: &dyn CloudflareApi,
    zone_id: Option<&str>,
    zone_name: Option<&str>,
) -> Result<(String, Option<String>), SyncError> {
    if let Some(id) = zone_id {
        return Ok((id.to_string(), zone_name.map(str::to_string)));
    }
    let name = zone_name.unwrap_or_default();
    match api.find_zone(name).await? {
        Some(zone) => Ok((zone.id, Some(zone.name))),
        None => Err(SyncError::ZoneNotFound(name.to_string())),
    }
}

/// Brings the zone to `plan`.
pub async fn sync(api: &dyn CloudflareApi, plan: &ZonePlan) -> Result<Report, SyncError> {
    let (zone_id, zone_name) = resolve_zone(api, plan.zone_id.as_deref(), plan.zone_name.as_deref()).await?;
    let mut report = Report::default();

    // DNS records.
    let existing = api.list_dns_records(&zone_id, &DnsRecordFilter::default()).await?;
    let dns = decide::plan_dns(&plan.records, &existing, &plan.owned_ids, &plan.comment);
    let records = apply_dns(api, &zone_id, &dns, &mut report.writes).await?;

    // Cache rules.
    let (ruleset, rule_count) =
        sync_rules(api, &zone_id, &plan.rule_prefix, &plan.rules, &mut report).await?;

    // Settings and tiered caching.
    for (id, want) in &plan.settings {
        let have = api.get_zone_setting(&zone_id, *id).await?;
        if decide::setting_differs(want, &have.value) {
            api.patch_zone_setting(&zone_id, *id, want.clone()).await?;
            report.writes.push(format!("set {} from {} to {want}", id.as_str(), have.value));
        }
    }
    if let Some(on) = plan.tiered_caching
        && api.get_tiered_caching(&zone_id).await? != on
    {
        api.set_tiered_caching(&zone_id, on).await?;
        report.writes.push(format!("turned tiered caching {}", if on { "on" } else { "off" }));
    }

    report.synced = Synced {
        zone_id,
        zone_name,
        records,
        ruleset_id: ruleset,
        rule_count,
        waiting: plan.waiting.clone(),
        conflicts: dns.conflicts,
    };
    Ok(report)
}

async fn apply_dns(
    api: &dyn CloudflareApi,
    zone_id: &str,
    plan: &DnsPlan,
    writes: &mut Vec<String>,
) -> Result<Vec<ManagedRecord>, SyncError> {
    let mut records = plan.keep.clone();
    for old in &plan.delete {
        api.delete_dns_record(zone_id, &old.id).await?;
        writes.push(format!("deleted {} record {} -> {}", old.record_type, old.name, old.content));
    }
    for (id, want) in &plan.update {
        let done = api.update_dns_record(zone_id, id, want).await?;
        writes.push(format!("corrected {} record {} -> {}", want.record_type, want.name, want.content));
        records.push(ManagedRecord { host: want.name.clone(), id: done.id });
    }
    for want in &plan.create {
        let done = api.create_dns_record(zone_id, want).await?;
        writes.push(format!("created {} record {} -> {}", want.record_type, want.name, want.content));
        records.push(ManagedRecord { host: want.name.clone(), id: done.id });
    }
    records.sort_by(|a, b| a.host.cmp(&b.host));
    Ok(records)
}

fn version(ruleset: Option<&Ruleset>) -> Option<u64> {
    ruleset?.version.as_deref()?.parse().ok()
}

fn owned_count(rules: &[Rule], prefix: &str) -> i32 {
    let n = rules.iter().filter(|r| r.reference.as_deref().is_some_and(|x| x.starts_with(prefix))).count();
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Read, merge, write the entry-point ruleset, keeping every rule we do not own; returns the
/// ruleset id and how many rules we own in it.
pub async fn sync_rules(
    api: &dyn CloudflareApi,
    zone_id: &str,
    prefix: &str,
    desired: &[Rule],
    report: &mut Report,
) -> Result<(Option<String>, i32), SyncError> {
    for _ in 0..RULESET_ATTEMPTS {
        let current = api.get_entrypoint_ruleset(zone_id, CACHE_SETTINGS_PHASE).await?;
        let existing = current.as_ref().map(|r| r.rules.as_slice()).unwrap_or_default();
        let merged = merge_rules_owned_by(existing, desired, prefix);
        if !merged.changed {
            let count = owned_count(existing, prefix);
            return Ok((current.map(|r| r.id), count));
        }
        if current.is_none() && desired.is_empty() {
            return Ok((None, 0));
        }
        // Re-read just before writing: a change since the first read means merging again.
        let again = api.get_entrypoint_ruleset(zone_id, CACHE_SETTINGS_PHASE).await?;
        if version(again.as_ref()) != version(current.as_ref())
            || again.as_ref().map(|r| &r.rules) != current.as_ref().map(|r| &r.rules)
        {
            report.concurrent.push(format!(
                "the {CACHE_SETTINGS_PHASE} ruleset changed between the operator's read and its write (version {} -> {}); merged again on top of the change",
                version(current.as_ref()).map_or("none".into(), |v| v.to_string()),
                version(again.as_ref()).map_or("none".into(), |v| v.to_string()),
            ));
            continue;
        }
        let written = api.put_entrypoint_ruleset(zone_id, CACHE_SETTINGS_PHASE, &merged.rules).await?;
        let expected = version(current.as_ref()).map(|v| v + 1);
        if expected.is_some() && version(Some(&written)) != expected {
            // Someone wrote in the instant between our re-read and our write: our write may have
            // undone theirs. Read and merge again; report it.
            report.concurrent.push(format!(
                "the {CACHE_SETTINGS_PHASE} ruleset moved to version {} while the operator wrote version {}: another writer changed it at the same moment; re-checked the operator's rules, and the other writer should check theirs",
                version(Some(&written)).map_or("?".into(), |v| v.to_string()),
                expected.map_or("?".into(), |v| v.to_string()),
            ));
            continue;
        }
        report.writes.push(format!(
            "wrote the {CACHE_SETTINGS_PHASE} ruleset: {} rule(s) of ours among {} in all",
            owned_count(&written.rules, prefix),
            written.rules.len()
        ));
        return Ok((Some(written.id), owned_count(&written.rules, prefix)));
    }
    Err(SyncError::RulesetBusy(zone_id.to_string()))
}

/// What a cleanup removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cleanup {
    /// Records deleted.
    pub records: usize,
    /// Rules removed.
    pub rules: i32,
}

/// Removes the operator's records and rules (only those) from the zone.
pub async fn cleanup(
    api: &dyn CloudflareApi,
    zone_id: Option<&str>,
    zone_name: Option<&str>,
    owned_ids: &[String],
    comment: &str,
    prefix: &str,
) -> Result<Cleanup, SyncError> {
    let zone_id = match resolve_zone(api, zone_id, zone_name).await {
        Ok((id, _)) => id,
        // No such zone (any more): nothing of ours can be in it.
        Err(SyncError::ZoneNotFound(_)) => return Ok(Cleanup::default()),
        Err(e) => return Err(e),
    };
    let existing = api.list_dns_records(&zone_id, &DnsRecordFilter::default()).await?;
    let plan = decide::plan_dns(&[], &existing, owned_ids, comment);
    let mut report = Report::default();
    apply_dns(api, &zone_id, &plan, &mut report.writes).await?;
    let before = api.get_entrypoint_ruleset(&zone_id, CACHE_SETTINGS_PHASE).await?;
    let owned_before = before.as_ref().map_or(0, |r| owned_count(&r.rules, prefix));
    sync_rules(api, &zone_id, prefix, &[], &mut report).await?;
    Ok(Cleanup { records: plan.delete.len(), rules: owned_before })
}
