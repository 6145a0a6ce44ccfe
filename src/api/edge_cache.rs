//! The EdgeCache custom resource: Cloudflare in front of one zone (DNS records for the Apps'
//! hosts, the cache rules the operator owns, zone settings, and purges on promotion).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{DeletionPolicy, ResourcePhase, SecretKeyRef, Timestamp};

/// Desired state of an EdgeCache.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "platform.authentify.it",
    version = "v1alpha1",
    kind = "EdgeCache",
    namespaced,
    status = "EdgeCacheStatus",
    shortname = "edge",
    category = "authentify",
    doc = "Cloudflare DNS, cache rules, zone settings and purges for one zone.",
    printcolumn(name = "Zone", type_ = "string", json_path = ".status.zoneName"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Rules", type_ = "integer", json_path = ".status.ruleCount"),
    printcolumn(name = "Last Purge", type_ = "date", json_path = ".status.purges[0].time"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.zoneId) != has(self.zoneName)")
    .message("set exactly one of zoneId or zoneName"))]
#[serde(rename_all = "camelCase")]
pub struct EdgeCacheSpec {
    /// Secret key holding a Cloudflare API token with Zone DNS, Cache Rules, Zone Settings and
    /// Cache Purge permissions on the zone.
    pub api_token_secret: SecretKeyRef,
    /// Cloudflare zone id (32 hexadecimal characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{32}$"))]
    pub zone_id: Option<String>,
    /// Zone name, e.g. `authentify.it`; the operator looks up its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub zone_name: Option<String>,
    /// Proxied DNS records for the hosts of the Apps that reference this EdgeCache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsSettings>,
    /// Cache rules the operator owns in the zone's `http_request_cache_settings` ruleset. Rules
    /// that others own are left untouched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub cache_rules: Vec<CacheRule>,
    /// Zone settings to enforce; settings left out are not touched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<ZoneSettings>,
    /// What is purged when an App that references this EdgeCache promotes.
    #[serde(default)]
    pub purge: PurgePolicy,
    /// Cloudflare API base URL; change only for tests (e.g. `http://127.0.0.1:8787/client/v4`).
    #[serde(default = "default_base_url")]
    #[schemars(length(max = 2048), regex(pattern = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"))]
    pub base_url: String,
    /// How often the zone is read again and drift (a record, rule or setting changed by hand)
    /// corrected, in seconds.
    #[serde(default = "default_resync")]
    #[schemars(range(min = 5, max = 86400))]
    pub resync_interval_seconds: i32,
    /// What happens to the DNS records and cache rules the operator created when the EdgeCache is
    /// deleted: `Delete` removes them (only those, never anyone else's), `Keep` leaves them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn default_resync() -> i32 {
    300
}

fn default_base_url() -> String {
    "https://api.cloudflare.com/client/v4".to_string()
}

/// DNS records for App hosts (`dns: {}` points them at the Apps' Ingress or Gateway address).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("!has(self.extraHosts) || size(self.extraHosts) == 0 || has(self.target)")
    .message("dns.extraHosts need dns.target: extra hosts have no Ingress or Gateway to take an address from"))]
#[serde(rename_all = "camelCase")]
pub struct DnsSettings {
    /// Where the hosts point: an IPv4 address (A record), an IPv6 address (AAAA) or a host name
    /// (CNAME). Absent: the address in the status of each App's Ingress or Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(
            pattern = r"^([0-9a-fA-F:.]+|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$"
        )
    )]
    pub target: Option<String>,
    /// Route through Cloudflare's proxy (orange cloud), which caching needs.
    #[serde(default = "default_true")]
    pub proxied: bool,
    /// Hosts besides the Apps' own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub extra_hosts: Vec<String>,
}

fn default_true() -> bool {
    true
}

/// One cache rule.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CacheRule {
    /// Unique name; the operator recognises its rules by it.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9][a-z0-9-]*$"))]
    pub name: String,
    /// Cloudflare rules-language filter, e.g.
    /// `(http.host eq "app.authentify.it" and starts_with(http.request.uri.path, "/_next/static/"))`.
    #[schemars(length(min = 1, max = 4096))]
    pub expression: String,
    /// Cache matching responses (true) or bypass the cache (false).
    #[serde(default = "default_true")]
    pub cache: bool,
    /// Edge TTL in seconds, overriding the origin's headers; absent respects the origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 31536000))]
    pub edge_ttl_seconds: Option<i32>,
    /// Browser TTL in seconds, overriding the origin's headers; absent respects the origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 31536000))]
    pub browser_ttl_seconds: Option<i32>,
    /// Leave the query string out of the cache key.
    #[serde(default)]
    pub ignore_query_string: bool,
}

/// Zone settings. Each one left out is not touched.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ZoneSettings {
    /// Browser cache TTL in seconds (0 respects the origin's headers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 31536000))]
    pub browser_cache_ttl: Option<i32>,
    /// Tiered caching (Argo Tiered Cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiered_caching: Option<bool>,
    /// Always Online.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub always_online: Option<bool>,
    /// Cache level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_level: Option<CacheLevel>,
    /// Development mode (bypasses the cache for three hours when on; Cloudflare turns it off by
    /// itself, and the operator turns it on again while this says `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub development_mode: Option<bool>,
}

/// Cloudflare cache levels.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CacheLevel {
    /// Ignore the query string.
    Basic,
    /// Cache per query string, ignoring order.
    Simplified,
    /// Cache per full URL.
    Aggressive,
}

/// What a promotion purges.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("self.mode != 'prefixes' || size(self.prefixes) > 0")
    .message("purge.mode prefixes needs at least one entry in purge.prefixes"))]
#[x_kube(validation = Rule::new("self.mode != 'tags' || size(self.tags) > 0")
    .message("purge.mode tags needs at least one entry in purge.tags"))]
#[serde(rename_all = "camelCase")]
pub struct PurgePolicy {
    /// `hosts` purges everything under the promoted App's host; `prefixes` the listed URL
    /// prefixes; `tags` the listed Cache-Tag values; `none` nothing.
    #[serde(default)]
    pub mode: PurgeMode,
    /// URL prefixes without scheme, e.g. `app.authentify.it/_next/`.
    #[serde(default)]
    #[schemars(length(max = 30))]
    pub prefixes: Vec<String>,
    /// Cache tags.
    #[serde(default)]
    #[schemars(length(max = 30))]
    pub tags: Vec<String>,
}

impl Default for PurgePolicy {
    fn default() -> Self {
        Self { mode: PurgeMode::Hosts, prefixes: vec![], tags: vec![] }
    }
}

/// Purge modes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum PurgeMode {
    #[default]
    Hosts,
    Prefixes,
    Tags,
    None,
}

/// Observed state of an EdgeCache. Never holds the token.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EdgeCacheStatus {
    /// Pending, Ready, Degraded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ResourcePhase>,
    /// A sentence for people about the current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Resolved zone id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_id: Option<String>,
    /// Resolved zone name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
    /// DNS record ids the operator manages, by host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_records: Vec<ManagedRecord>,
    /// Id of the zone's cache-settings ruleset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ruleset_id: Option<String>,
    /// Number of rules the operator owns in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_count: Option<i32>,
    /// The purges after promotions, newest first, one per App: the record that keeps a
    /// promotion from being purged twice (across operator restarts too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purges: Vec<PurgeRecord>,
    /// Ready and Reachable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A DNS record the operator manages.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRecord {
    /// Host name.
    pub host: String,
    /// Cloudflare record id.
    pub id: String,
}

/// One purge after an App's promotion.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PurgeRecord {
    /// The App whose promotion caused it.
    pub app: String,
    /// The revision it promoted.
    pub revision: String,
    /// When the promotion finished (the App's `status.history[0].finishedAt`).
    pub promoted_at: Timestamp,
    /// What was purged, e.g. `hosts: api.authentify.it`.
    pub scope: String,
    /// Purge requests sent (at most 100 items each).
    pub requests: i32,
    /// When it ran.
    pub time: Timestamp,
}
