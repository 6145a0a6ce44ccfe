//! A fake of the Cloudflare API v4 (zones, DNS records, entry-point rulesets, zone settings,
//! tiered caching, cache purges) with in-memory state, for tests and the local environment.
//!
//! It decides what Cloudflare would answer: bearer tokens are checked, rulesets keep every rule
//! they are given (so a client that drops someone else's rule is caught by the test reading the
//! ruleset), rule and ruleset versions move on each write, purges are recorded. Every request and
//! answer is checked against `cloudflare-v4.subset.json` with the [`ERRATA`] applied; violations
//! are kept for [`CloudflareFake::violations`]. It never answers a request without a valid token.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};

use crate::openapi::{Erratum, Spec, Violation, query_pairs};
use crate::server::{self, Core, Fault, Handler, Incoming, Outgoing, Server};

/// The vendor's schema, as shipped beside the project.
pub const SPEC_JSON: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/specs/cloudflare-v4.subset.json"));

/// Mistakes in the 2024 Cloudflare document that the real API contradicts.
pub const ERRATA: &[Erratum] = &[
    Erratum {
        why: "rulesets_RuleAction's pattern ^[a-z]+$ rejects the document's own action names with an \
              underscore (set_cache_settings, managed_challenge, ...), which its discriminator maps; \
              the pattern is widened to ^[a-z_]+$",
        apply: |doc| set(doc, "/components/schemas/rulesets_RuleAction/pattern", json!("^[a-z_]+$")),
    },
    Erratum {
        why: "cache-purge_FlexPurgeByTags declares no properties, though purge by tags takes \
              `tags`, an array of strings (as hosts and prefixes do)",
        apply: |doc| {
            set(
                doc,
                "/components/schemas/cache-purge_FlexPurgeByTags/properties",
                json!({"tags": {"type": "array", "items": {"type": "string"}}}),
            )
        },
    },
    Erratum {
        why: "a DNS record's id is assigned by Cloudflare, yet dns-records_dns-record requires it in \
              create and update bodies; it is marked read-only like created_on and modified_on",
        apply: |doc| {
            set(
                doc,
                "/components/schemas/dns-records_base/properties/id",
                json!({"allOf": [{"$ref": "#/components/schemas/dns-records_identifier"}, {"readOnly": true}]}),
            )
        },
    },
    Erratum {
        why: "several 4XX answers are allOf the success envelope (success: true) and the failure \
              envelope (success: false), which no body can satisfy; they are checked against the \
              failure envelope alone",
        apply: failure_only_4xx,
    },
];

fn set(doc: &mut Value, pointer: &str, value: Value) -> bool {
    let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    match doc.pointer_mut(parent).and_then(Value::as_object_mut) {
        Some(map) if map.get(key) != Some(&value) => {
            map.insert(key.to_string(), value);
            true
        }
        _ => false,
    }
}

fn failure_only_4xx(doc: &mut Value) -> bool {
    let mut changed = false;
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return false };
    for item in paths.values_mut().filter_map(Value::as_object_mut) {
        for op in item.values_mut().filter_map(Value::as_object_mut) {
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else { continue };
            for (code, response) in responses.iter_mut() {
                if !code.starts_with('4') {
                    continue;
                }
                let Some(schema) = response.pointer_mut("/content/application~1json/schema") else {
                    continue;
                };
                let failure = schema.get("allOf").and_then(Value::as_array).and_then(|all| {
                    all.iter()
                        .find(|s| {
                            s.get("$ref")
                                .and_then(Value::as_str)
                                .is_some_and(|r| r.ends_with("api-response-common-failure"))
                        })
                        .cloned()
                });
                if let Some(failure) = failure {
                    *schema = failure;
                    changed = true;
                }
            }
        }
    }
    changed
}

/// Loads the Cloudflare schema with the [`ERRATA`] applied.
pub fn spec() -> anyhow::Result<Spec> {
    Spec::from_json(SPEC_JSON, ERRATA)
}

#[derive(Debug, Default)]
struct ZoneState {
    zone: Value,
    dns: BTreeMap<String, Value>,
    rulesets: HashMap<String, Value>,
    settings: BTreeMap<String, Value>,
    tiered_caching: Value,
    purges: Vec<Value>,
}

#[derive(Debug, Default)]
struct State {
    tokens: BTreeSet<String>,
    zones: BTreeMap<String, ZoneState>,
}

#[derive(Debug)]
struct Inner {
    core: Core,
    state: Mutex<State>,
}

/// A running Cloudflare fake. Stops when dropped.
#[derive(Debug)]
pub struct CloudflareFake {
    inner: Arc<Inner>,
    server: Server,
}

fn setting(id: &str, value: Value) -> Value {
    json!({"id": id, "value": value, "editable": true, "modified_on": server::now_rfc3339()})
}

impl CloudflareFake {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr`.
    pub async fn start_on(addr: SocketAddr) -> anyhow::Result<Self> {
        let inner = Arc::new(Inner { core: Core::new(spec()?), state: Mutex::new(State::default()) });
        let server = server::serve(addr, inner.clone()).await?;
        Ok(Self { inner, server })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `http://127.0.0.1:PORT/client/v4`, the client's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.server.addr, self.inner.core.spec.base_path())
    }

    /// Accepts an API token.
    pub fn add_token(&self, token: &str) {
        self.state().tokens.insert(token.to_string());
    }

    /// Creates an active zone with default settings; returns its id.
    pub fn add_zone(&self, name: &str) -> String {
        let id = server::random_hex(16);
        let account = server::random_hex(16);
        let now = server::now_rfc3339();
        let zone = json!({
            "id": id, "name": name,
            "account": {"id": account, "name": "Authentify It"},
            "owner": {"id": account, "name": "Authentify It", "type": "organization"},
            "meta": {"step": 2, "custom_certificate_quota": 0, "page_rule_quota": 3, "phishing_detected": false},
            "development_mode": 0,
            "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
            "original_name_servers": null, "original_registrar": null, "original_dnshost": null,
            "created_on": now, "modified_on": now, "activated_on": now,
        });
        let settings = [
            ("browser_cache_ttl", json!(14400)),
            ("cache_level", json!("aggressive")),
            ("always_online", json!("on")),
            ("development_mode", json!("off")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), setting(k, v)))
        .collect();
        let state = ZoneState {
            zone,
            settings,
            tiered_caching: setting("tiered_caching", json!("off")),
            ..ZoneState::default()
        };
        self.state().zones.insert(id.clone(), state);
        id
    }

    /// Writes a phase's entry-point ruleset directly (e.g. rules someone else owns), as a PUT
    /// would.
    pub fn put_ruleset(&self, zone_id: &str, phase: &str, rules: Vec<Value>) {
        if let Some(zone) = self.state().zones.get_mut(zone_id) {
            let previous = zone.rulesets.get(phase).cloned();
            zone.rulesets.insert(phase.to_string(), write_ruleset(previous.as_ref(), phase, &rules));
        }
    }

    /// A phase's entry-point ruleset as stored.
    pub fn ruleset(&self, zone_id: &str, phase: &str) -> Option<Value> {
        self.state().zones.get(zone_id)?.rulesets.get(phase).cloned()
    }

    /// DNS records of a zone.
    pub fn dns_records(&self, zone_id: &str) -> Vec<Value> {
        self.state().zones.get(zone_id).map(|z| z.dns.values().cloned().collect()).unwrap_or_default()
    }

    /// A zone setting's value.
    pub fn setting(&self, zone_id: &str, id: &str) -> Option<Value> {
        Some(self.state().zones.get(zone_id)?.settings.get(id)?["value"].clone())
    }

    /// Whether tiered caching is on.
    pub fn tiered_caching(&self, zone_id: &str) -> bool {
        self.state().zones.get(zone_id).is_some_and(|z| z.tiered_caching["value"] == "on")
    }

    /// Every purge request body a zone received, in order.
    pub fn purges(&self, zone_id: &str) -> Vec<Value> {
        self.state().zones.get(zone_id).map(|z| z.purges.clone()).unwrap_or_default()
    }

    /// Answers the next `times` authenticated requests with `fault`.
    pub fn inject(&self, fault: Fault, times: usize) {
        self.inner.core.inject(fault, times);
    }

    /// Requests per operation id, authenticated or not.
    pub fn request_counts(&self) -> BTreeMap<String, usize> {
        self.inner.core.counts()
    }

    /// Requests to one operation.
    pub fn requests(&self, operation_id: &str) -> usize {
        self.request_counts().get(operation_id).copied().unwrap_or(0)
    }

    /// Every schema violation seen so far.
    pub fn violations(&self) -> Vec<Violation> {
        self.inner.core.violations()
    }

    /// Panics, listing them, if any request or answer broke the schema.
    pub fn assert_no_violations(&self) {
        server::assert_none("Cloudflare", &self.violations());
    }
}

/// The v4 failure envelope.
fn failure(status: u16, code: u32, message: &str) -> Outgoing {
    Outgoing::json(
        status,
        "application/json",
        &json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null}),
    )
}

fn success(result: Value) -> Outgoing {
    Outgoing::json(
        200,
        "application/json",
        &json!({"success": true, "errors": [], "messages": [], "result": result}),
    )
}

/// A successful list: the envelope with `result_info`.
fn listing(result: Vec<Value>, result_info: Value) -> Outgoing {
    Outgoing::json(
        200,
        "application/json",
        &json!({"success": true, "errors": [], "messages": [], "result": result, "result_info": result_info}),
    )
}

/// Stores a ruleset write: rules keep known ids (else get new ones), `ref` defaults to the id,
/// versions move for changed rules and for the ruleset.
fn write_ruleset(previous: Option<&Value>, phase: &str, rules: &[Value]) -> Value {
    let now = server::now_rfc3339();
    let old_rules: Vec<Value> = previous.and_then(|p| p["rules"].as_array().cloned()).unwrap_or_default();
    let version = previous.and_then(|p| p["version"].as_str()?.parse::<u64>().ok()).map_or(1, |v| v + 1);
    let stored: Vec<Value> = rules
        .iter()
        .map(|rule| {
            let mut rule = rule.clone();
            let old = rule["id"].as_str().and_then(|id| old_rules.iter().find(|o| o["id"] == id)).cloned();
            if old.is_none() {
                rule["id"] = server::random_hex(16).into();
            }
            if rule.get("ref").is_none() {
                rule["ref"] = rule["id"].clone();
            }
            if rule.get("enabled").is_none() {
                rule["enabled"] = true.into();
            }
            let semantic = |r: &Value| {
                let mut r = r.clone();
                if let Some(m) = r.as_object_mut() {
                    m.remove("version");
                    m.remove("last_updated");
                }
                r
            };
            match old {
                Some(old) if semantic(&old) == semantic(&rule) => {
                    rule["version"] = old["version"].clone();
                    rule["last_updated"] = old["last_updated"].clone();
                }
                Some(old) => {
                    let v = old["version"].as_str().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + 1;
                    rule["version"] = v.to_string().into();
                    rule["last_updated"] = now.clone().into();
                }
                None => {
                    rule["version"] = "1".into();
                    rule["last_updated"] = now.clone().into();
                }
            }
            rule
        })
        .collect();
    json!({
        "id": previous.map_or_else(|| server::random_hex(16).into(), |p| p["id"].clone()),
        "name": "default",
        "kind": "zone",
        "phase": phase,
        "version": version.to_string(),
        "last_updated": now,
        "rules": stored,
    })
}

impl Handler for Inner {
    fn handle(self: Arc<Self>, req: Incoming) -> Pin<Box<dyn Future<Output = Outgoing> + Send>> {
        Box::pin(async move { self.answer(req).await })
    }
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn answer(&self, req: Incoming) -> Outgoing {
        let (matched, violations) = self.core.spec.check_request(&req.parts());
        let request_valid = violations.is_empty();
        let first_violation = violations.first().map(|v| v.message.clone());
        self.core.record(violations);
        let Some(matched) = matched else {
            return failure(404, 7003, "Could not route to the requested path.");
        };
        let op = matched.operation;
        self.core.count(&op.id);

        let token = req.header("authorization").and_then(|h| h.strip_prefix("Bearer ")).map(str::trim);
        if !token.is_some_and(|t| self.state().tokens.contains(t)) {
            let out = failure(401, 10000, "Authentication error");
            self.core.check_response(op, &req.path, &out, false);
            return out;
        }
        if let Some(fault) = self.core.next_fault() {
            match fault {
                Fault::TooManyRequests { retry_after_secs } => {
                    let out = failure(429, 1015, "You are being rate limited")
                        .with_header("Retry-After", retry_after_secs.to_string());
                    self.core.check_response(op, &req.path, &out, true);
                    return out;
                }
                Fault::ServerError => {
                    let out = failure(500, 10002, "Internal server error");
                    self.core.check_response(op, &req.path, &out, true);
                    return out;
                }
                Fault::Delay(d) => tokio::time::sleep(d).await,
            }
        }
        if !request_valid {
            return failure(400, 1004, first_violation.as_deref().unwrap_or("Invalid request"));
        }
        let out = self.dispatch(&op.id, &matched.params, &req);
        self.core.check_response(op, &req.path, &out, false);
        out
    }

    fn dispatch(&self, op: &str, params: &BTreeMap<String, String>, req: &Incoming) -> Outgoing {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let query: HashMap<String, String> = query_pairs(req.query.as_deref()).into_iter().collect();
        let mut state = self.state();
        if op == "zones-get" {
            let zones: Vec<Value> = state
                .zones
                .values()
                .map(|z| z.zone.clone())
                .filter(|z| query.get("name").is_none_or(|n| z["name"] == n.as_str()))
                .collect();
            let info = json!({"page": 1, "per_page": 20, "count": zones.len(), "total_count": zones.len()});
            return listing(zones, info);
        }
        let zone_id = params.get("zone_id").cloned().unwrap_or_default();
        let Some(zone) = state.zones.get_mut(&zone_id) else {
            return failure(404, 1001, "Invalid zone identifier");
        };
        let zone_name = zone.zone["name"].as_str().unwrap_or_default().to_string();
        let record_id = params.get("dns_record_id").cloned().unwrap_or_default();
        let now = server::now_rfc3339();
        match op {
            "dns-records-for-a-zone-list-dns-records" => {
                let matching: Vec<Value> = zone
                    .dns
                    .values()
                    .filter(|r| query.get("name").is_none_or(|n| r["name"] == n.as_str()))
                    .filter(|r| query.get("type").is_none_or(|t| r["type"] == t.as_str()))
                    .cloned()
                    .collect();
                let per_page =
                    query.get("per_page").and_then(|v| v.parse::<usize>().ok()).unwrap_or(100).max(1);
                let page = query.get("page").and_then(|v| v.parse::<usize>().ok()).unwrap_or(1).max(1);
                let result: Vec<Value> =
                    matching.iter().skip((page - 1) * per_page).take(per_page).cloned().collect();
                Outgoing::json(
                    200,
                    "application/json",
                    &json!({
                        "success": true, "errors": [], "messages": [],
                        "result_info": {"page": page, "per_page": per_page, "count": result.len(), "total_count": matching.len()},
                        "result": result,
                    }),
                )
            }
            "dns-records-for-a-zone-create-dns-record" => {
                let name = body["name"].as_str().unwrap_or_default();
                if !(name == zone_name || name.ends_with(&format!(".{zone_name}"))) {
                    return failure(400, 1004, &format!("DNS name {name} is not in zone {zone_name}"));
                }
                let duplicate = zone
                    .dns
                    .values()
                    .any(|r| r["name"] == body["name"] && (r["type"] == "CNAME" || body["type"] == "CNAME"));
                if duplicate {
                    return failure(400, 81053, "An A, AAAA, or CNAME record with that host already exists.");
                }
                let id = server::random_hex(16);
                let record = dns_record(&id, &body, &now, &now);
                zone.dns.insert(id, record.clone());
                success(record)
            }
            "dns-records-for-a-zone-dns-record-details" => match zone.dns.get(&record_id) {
                Some(r) => success(r.clone()),
                None => failure(404, 81044, "Record does not exist."),
            },
            "dns-records-for-a-zone-update-dns-record" | "dns-records-for-a-zone-patch-dns-record" => {
                let Some(old) = zone.dns.get(&record_id).cloned() else {
                    return failure(404, 81044, "Record does not exist.");
                };
                let mut merged = if op.ends_with("patch-dns-record") { old.clone() } else { json!({}) };
                if let (Some(m), Some(b)) = (merged.as_object_mut(), body.as_object()) {
                    m.extend(b.clone());
                }
                let created = old["created_on"].as_str().unwrap_or(&now).to_string();
                let record = dns_record(&record_id, &merged, &created, &now);
                zone.dns.insert(record_id, record.clone());
                success(record)
            }
            "dns-records-for-a-zone-delete-dns-record" => match zone.dns.remove(&record_id) {
                // The schema's answer is only `result.id`.
                Some(_) => Outgoing::json(200, "application/json", &json!({"result": {"id": record_id}})),
                None => failure(404, 81044, "Record does not exist."),
            },
            "getZoneEntrypointRuleset" => {
                let phase = params.get("ruleset_phase").cloned().unwrap_or_default();
                match zone.rulesets.get(&phase) {
                    Some(r) => success(r.clone()),
                    None => failure(
                        404,
                        10003,
                        &format!("could not find entrypoint ruleset in the {phase} phase"),
                    ),
                }
            }
            "updateZoneEntrypointRuleset" => {
                let phase = params.get("ruleset_phase").cloned().unwrap_or_default();
                let rules = body["rules"].as_array().cloned().unwrap_or_default();
                let stored = write_ruleset(zone.rulesets.get(&phase), &phase, &rules);
                zone.rulesets.insert(phase, stored.clone());
                success(stored)
            }
            "zone-settings-get-single-setting" | "zone-settings-edit-single-setting" => {
                let id = params.get("setting_id").cloned().unwrap_or_default();
                let Some(current) = zone.settings.get_mut(&id) else {
                    return failure(404, 1003, &format!("Invalid or missing zone setting {id}"));
                };
                if op == "zone-settings-edit-single-setting" {
                    *current = setting(&id, body["value"].clone());
                }
                success(current.clone())
            }
            "tiered-caching-get-tiered-caching-setting" => success(zone.tiered_caching.clone()),
            "tiered-caching-patch-tiered-caching-setting" => {
                zone.tiered_caching = setting("tiered_caching", body["value"].clone());
                success(zone.tiered_caching.clone())
            }
            "zone-purge" => {
                let items = ["hosts", "prefixes", "tags", "files"]
                    .iter()
                    .filter_map(|k| body.get(*k).and_then(Value::as_array))
                    .map(Vec::len)
                    .sum::<usize>();
                if items > 100 {
                    return failure(400, 1089, "Purge requests are limited to 100 items.");
                }
                zone.purges.push(body);
                success(json!({"id": server::random_hex(16)}))
            }
            other => failure(400, 1000, &format!("The fake does not implement {other}")),
        }
    }
}

/// A record as Cloudflare answers it.
fn dns_record(id: &str, body: &Value, created_on: &str, modified_on: &str) -> Value {
    let mut record = json!({
        "id": id,
        "type": body["type"],
        "name": body["name"],
        "content": body["content"],
        "proxied": body.get("proxied").cloned().unwrap_or(json!(false)),
        "ttl": body.get("ttl").cloned().unwrap_or(json!(1)),
        "proxiable": true,
        "created_on": created_on,
        "modified_on": modified_on,
        "meta": {"auto_added": false, "source": "primary"},
    });
    if let Some(comment) = body.get("comment") {
        record["comment"] = comment.clone();
    }
    record
}
