//! A fake of the MongoDB Atlas Administration API v2 (database users, one cluster read, the IP
//! access list) with in-memory state, for tests and the local environment.
//!
//! It decides what Atlas would answer: it checks HTTP Digest for API keys for real (challenge,
//! nonce, nonce count, response hash), issues and checks service account tokens
//! (`POST /api/oauth/token`, lifetime 3600 s unless set otherwise), keeps users, clusters and
//! access list entries, and answers with Atlas' error JSON. Every request and answer is checked
//! against `atlas-admin-v2.subset.json`; violations are kept for [`AtlasFake::violations`].
//! It never answers a request it cannot authenticate, and never returns a password.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use md5::Md5;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::openapi::{Spec, Violation, percent_decode, query_pairs};
use crate::server::{self, Core, Fault, Handler, Incoming, Outgoing, Server};

/// The vendor's schema, as shipped beside the project.
pub const SPEC_JSON: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/specs/atlas-admin-v2.subset.json"));

const REALM: &str = "MMS Public API";

/// Loads the Atlas schema (no errata needed).
pub fn spec() -> anyhow::Result<Spec> {
    Spec::from_json(SPEC_JSON, &[])
}

#[derive(Debug, Default)]
struct State {
    api_keys: HashMap<String, String>,
    service_accounts: HashMap<String, String>,
    tokens: HashMap<String, Instant>,
    token_lifetime_secs: u64,
    clock_offset: Duration,
    nonces: HashMap<String, u32>,
    projects: BTreeSet<String>,
    users: BTreeMap<(String, String, String), Value>,
    passwords: BTreeMap<(String, String, String), String>,
    clusters: BTreeMap<(String, String), Value>,
    access: BTreeMap<String, Vec<Value>>,
}

impl State {
    fn now(&self) -> Instant {
        Instant::now() + self.clock_offset
    }
}

#[derive(Debug)]
struct Inner {
    core: Core,
    state: Mutex<State>,
}

/// A running Atlas fake. Stops when dropped.
#[derive(Debug)]
pub struct AtlasFake {
    inner: Arc<Inner>,
    server: Server,
}

impl AtlasFake {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr`.
    pub async fn start_on(addr: SocketAddr) -> anyhow::Result<Self> {
        let state = State { token_lifetime_secs: 3600, ..State::default() };
        let inner = Arc::new(Inner { core: Core::new(spec()?), state: Mutex::new(state) });
        let server = server::serve(addr, inner.clone()).await?;
        Ok(Self { inner, server })
    }

    /// Starts on a free port with one API key pair, one service account and an IDLE cluster
    /// `main` in project `group`: what the tests that drive the client or the controller need.
    pub async fn start_seeded(
        group: &str,
        (public_key, private_key): (&str, &str),
        (client_id, client_secret): (&str, &str),
    ) -> anyhow::Result<Self> {
        let fake = Self::start().await?;
        fake.add_api_key(public_key, private_key);
        fake.add_service_account(client_id, client_secret);
        fake.put_cluster(group, "main", "IDLE");
        Ok(fake)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `http://127.0.0.1:PORT`, the client's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// Accepts an API key pair (HTTP Digest).
    pub fn add_api_key(&self, public_key: &str, private_key: &str) {
        self.state().api_keys.insert(public_key.to_string(), private_key.to_string());
    }

    /// Accepts a service account (OAuth2 client credentials).
    pub fn add_service_account(&self, client_id: &str, client_secret: &str) {
        self.state().service_accounts.insert(client_id.to_string(), client_secret.to_string());
    }

    /// Lifetime of tokens issued from now on (`expires_in`).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state().token_lifetime_secs = lifetime.as_secs();
    }

    /// Moves the fake's clock forward (tokens expire by it).
    pub fn advance_clock(&self, by: Duration) {
        self.state().clock_offset += by;
    }

    /// Makes a project (group) exist.
    pub fn add_project(&self, group_id: &str) {
        self.state().projects.insert(group_id.to_string());
    }

    /// Creates or replaces a cluster in state `state_name` (`IDLE`, `UPDATING`, ...), with
    /// connection strings derived from its name. Creates the project too.
    pub fn put_cluster(&self, group_id: &str, name: &str, state_name: &str) {
        let host = format!("{}.abcde.mongodb.net", name.to_ascii_lowercase());
        let cluster = json!({
            "id": server::random_hex(12),
            "groupId": group_id,
            "name": name,
            "clusterType": "REPLICASET",
            "stateName": state_name,
            "paused": false,
            "mongoDBMajorVersion": "8.0",
            "mongoDBVersion": "8.0.4",
            "createDate": server::now_rfc3339(),
            "connectionStrings": {
                "standard": format!("mongodb://{name}-shard-00-00.abcde.mongodb.net:27017,{name}-shard-00-01.abcde.mongodb.net:27017,{name}-shard-00-02.abcde.mongodb.net:27017/?ssl=true&authSource=admin&replicaSet=atlas-abcde-shard-0"),
                "standardSrv": format!("mongodb+srv://{host}"),
            },
        });
        let mut state = self.state();
        state.projects.insert(group_id.to_string());
        state.clusters.insert((group_id.to_string(), name.to_string()), cluster);
    }

    /// Changes a cluster's state (`IDLE`, `UPDATING`, ...).
    pub fn set_cluster_state(&self, group_id: &str, name: &str, state_name: &str) {
        if let Some(c) = self.state().clusters.get_mut(&(group_id.to_string(), name.to_string())) {
            c["stateName"] = Value::from(state_name);
        }
    }

    /// Points a cluster's connection strings elsewhere (a local MongoDB wire-protocol server in
    /// tests): `standard`, and `standardSrv` when given (dropped otherwise).
    pub fn set_connection_strings(&self, group_id: &str, name: &str, standard: &str, srv: Option<&str>) {
        if let Some(c) = self.state().clusters.get_mut(&(group_id.to_string(), name.to_string())) {
            let mut strings = json!({"standard": standard});
            if let Some(srv) = srv {
                strings["standardSrv"] = Value::from(srv);
            }
            c["connectionStrings"] = strings;
        }
    }

    /// Every database user of a project (user names).
    pub fn usernames(&self, group_id: &str) -> Vec<String> {
        self.state().users.keys().filter(|(g, _, _)| g == group_id).map(|(_, _, u)| u.clone()).collect()
    }

    /// A stored database user as Atlas would answer it.
    pub fn user(&self, group_id: &str, database_name: &str, username: &str) -> Option<Value> {
        self.state().users.get(&(group_id.into(), database_name.into(), username.into())).cloned()
    }

    /// The password a user was last given (to check what the client sent).
    pub fn user_password(&self, group_id: &str, database_name: &str, username: &str) -> Option<String> {
        self.state().passwords.get(&(group_id.into(), database_name.into(), username.into())).cloned()
    }

    /// Every service account token issued so far.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state().tokens.keys().cloned().collect()
    }

    /// The project's IP access list.
    pub fn access_list(&self, group_id: &str) -> Vec<Value> {
        self.state().access.get(group_id).cloned().unwrap_or_default()
    }

    /// Answers the next `times` authenticated API requests with `fault`.
    pub fn inject(&self, fault: Fault, times: usize) {
        self.inner.core.inject(fault, times);
    }

    /// Requests per operation id (plus `oauthToken` for the token endpoint), authenticated or not.
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
        server::assert_none("Atlas", &self.violations());
    }
}

fn error(status: u16, code: &str, detail: &str) -> Outgoing {
    let reason = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        429 => "Too Many Requests",
        _ => "Internal Server Error",
    };
    Outgoing::json(
        status,
        "application/json",
        &json!({"error": status, "errorCode": code, "detail": detail, "reason": reason, "parameters": []}),
    )
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
        if req.path == "/api/oauth/token" {
            // The token endpoint is the schema's `securitySchemes.ServiceAccounts.tokenUrl`, not
            // one of its paths: nothing to check it against.
            self.core.count("oauthToken");
            return self.issue_token(&req);
        }
        let (matched, violations) = self.core.spec.check_request(&req.parts());
        let request_valid = violations.is_empty();
        let first_violation = violations.first().map(|v| v.message.clone());
        self.core.record(violations);
        let Some(matched) = matched else {
            return error(404, "RESOURCE_NOT_FOUND", "Cannot find resource.");
        };
        let op = matched.operation;
        self.core.count(&op.id);

        if let Err(out) = self.authenticate(&req) {
            self.core.check_response(op, &req.path, &out, false);
            return out;
        }
        if let Some(fault) = self.core.next_fault() {
            match fault {
                Fault::TooManyRequests { retry_after_secs } => {
                    let out = error(429, "RATE_LIMITED", "Resource rate limit reached. Try again later.")
                        .with_header("Retry-After", retry_after_secs.to_string());
                    self.core.check_response(op, &req.path, &out, true);
                    return out;
                }
                Fault::ServerError => {
                    let out = error(500, "UNEXPECTED_ERROR", "Unexpected error.");
                    self.core.check_response(op, &req.path, &out, true);
                    return out;
                }
                Fault::Delay(d) => tokio::time::sleep(d).await,
            }
        }
        if !request_valid {
            return error(400, "INVALID_REQUEST", first_violation.as_deref().unwrap_or("Invalid request."));
        }
        // Answers carry the operation's versioned media type; the request check made sure that
        // the client asked for it.
        let success_type = self.core.spec.success_media_type(op).unwrap_or_else(|| "application/json".into());
        let out = self.dispatch(&op.id, &matched.params, &req, &success_type);
        self.core.check_response(op, &req.path, &out, false);
        out
    }

    fn issue_token(&self, req: &Incoming) -> Outgoing {
        let oauth_error =
            |status: u16, code: &str| Outgoing::json(status, "application/json", &json!({"error": code}));
        if req.method != "POST" {
            return oauth_error(405, "invalid_request");
        }
        let form = String::from_utf8_lossy(&req.body);
        let grant = form.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == "grant_type");
        if grant.map(|(_, v)| v) != Some("client_credentials") {
            return oauth_error(400, "unsupported_grant_type");
        }
        let credentials = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.split_once(':').map(|(id, secret)| (percent_decode(id), percent_decode(secret))));
        let mut state = self.state();
        let Some((id, secret)) = credentials else { return oauth_error(401, "invalid_client") };
        if state.service_accounts.get(&id) != Some(&secret) {
            return oauth_error(401, "invalid_client");
        }
        let token = format!("sa_{}", server::random_hex(24));
        let lifetime = state.token_lifetime_secs;
        let expires = state.now() + Duration::from_secs(lifetime);
        state.tokens.insert(token.clone(), expires);
        Outgoing::json(
            200,
            "application/json",
            &json!({"access_token": token, "expires_in": lifetime, "token_type": "Bearer"}),
        )
    }

    fn challenge(&self, stale: bool) -> Outgoing {
        let nonce = server::random_hex(16);
        self.state().nonces.insert(nonce.clone(), 0);
        error(401, "USER_UNAUTHORIZED", "You are not authorized for this resource.").with_header(
            "WWW-Authenticate",
            format!("Digest realm=\"{REALM}\", domain=\"\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\", stale={stale}"),
        )
    }

    fn authenticate(&self, req: &Incoming) -> Result<(), Outgoing> {
        let Some(header) = req.header("authorization") else { return Err(self.challenge(false)) };
        if let Some(token) = header.strip_prefix("Bearer ") {
            let state = self.state();
            return match state.tokens.get(token.trim()) {
                Some(expires) if *expires > state.now() => Ok(()),
                _ => {
                    drop(state);
                    Err(self.challenge(false))
                }
            };
        }
        let Some(params) = header.strip_prefix("Digest ") else { return Err(self.challenge(false)) };
        let params: HashMap<String, String> = parse_auth_params(params).into_iter().collect();
        let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
        let mut state = self.state();
        let Some(password) = state.api_keys.get(get("username")).cloned() else {
            drop(state);
            return Err(self.challenge(false));
        };
        let Some(last_nc) = state.nonces.get(get("nonce")).copied() else {
            drop(state);
            return Err(self.challenge(true));
        };
        let nc = u32::from_str_radix(get("nc"), 16).unwrap_or(0);
        let hash = |s: String| -> String {
            match get("algorithm").to_ascii_uppercase().as_str() {
                "SHA-256" => Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect(),
                _ => Md5::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect(),
            }
        };
        let ha1 = hash(format!("{}:{REALM}:{password}", get("username")));
        let ha2 = hash(format!("{}:{}", req.method, get("uri")));
        let expected =
            hash(format!("{ha1}:{}:{}:{}:{}:{ha2}", get("nonce"), get("nc"), get("cnonce"), get("qop")));
        let ok = get("realm") == REALM
            && get("qop") == "auth"
            && get("uri") == req.target()
            && nc > last_nc
            && expected == get("response");
        if ok {
            state.nonces.insert(get("nonce").to_string(), nc);
            Ok(())
        } else {
            drop(state);
            Err(self.challenge(false))
        }
    }

    fn dispatch(&self, op: &str, params: &BTreeMap<String, String>, req: &Incoming, media: &str) -> Outgoing {
        let group = params.get("groupId").cloned().unwrap_or_default();
        let mut state = self.state();
        if !state.projects.contains(&group) {
            return error(404, "GROUP_NOT_FOUND", &format!("No group with ID {group} exists."));
        }
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let query: HashMap<String, String> = query_pairs(req.query.as_deref()).into_iter().collect();
        let user_key = || {
            (
                group.clone(),
                params.get("databaseName").cloned().unwrap_or_default(),
                params.get("username").cloned().unwrap_or_default(),
            )
        };
        match op {
            "createDatabaseUser" => {
                let key = (
                    group.clone(),
                    body["databaseName"].as_str().unwrap_or("admin").to_string(),
                    body["username"].as_str().unwrap_or_default().to_string(),
                );
                if state.users.contains_key(&key) {
                    return error(409, "USER_ALREADY_EXISTS", &format!("The user {} already exists.", key.2));
                }
                if let Some(unknown) = unknown_cluster_scope(&state, &group, &body) {
                    return error(
                        400,
                        "INVALID_CLUSTER_SCOPE",
                        &format!("Cluster {unknown} does not exist."),
                    );
                }
                if let Some(p) = body["password"].as_str() {
                    state.passwords.insert(key.clone(), p.to_string());
                }
                let user = stored_user(&group, &key, &body);
                state.users.insert(key, user.clone());
                Outgoing::json(201, media, &user)
            }
            "getDatabaseUser" => match state.users.get(&user_key()) {
                Some(u) => Outgoing::json(200, media, u),
                None => error(
                    404,
                    "USERNAME_NOT_FOUND",
                    &format!("No user with username {} exists.", user_key().2),
                ),
            },
            "updateDatabaseUser" => {
                let key = user_key();
                let Some(existing) = state.users.get(&key).cloned() else {
                    return error(
                        404,
                        "USERNAME_NOT_FOUND",
                        &format!("No user with username {} exists.", key.2),
                    );
                };
                if let Some(unknown) = unknown_cluster_scope(&state, &group, &body) {
                    return error(
                        400,
                        "INVALID_CLUSTER_SCOPE",
                        &format!("Cluster {unknown} does not exist."),
                    );
                }
                let mut merged = existing;
                for field in ["roles", "scopes", "labels", "deleteAfterDate"] {
                    if let Some(v) = body.get(field) {
                        merged[field] = v.clone();
                    }
                }
                if let Some(p) = body["password"].as_str() {
                    state.passwords.insert(key.clone(), p.to_string());
                }
                state.users.insert(key, merged.clone());
                Outgoing::json(200, media, &merged)
            }
            "deleteDatabaseUser" => {
                let key = user_key();
                if state.users.remove(&key).is_some() {
                    state.passwords.remove(&key);
                    Outgoing::empty(204)
                } else {
                    error(404, "USERNAME_NOT_FOUND", &format!("No user with username {} exists.", key.2))
                }
            }
            "listDatabaseUsers" => {
                let users: Vec<Value> =
                    state.users.iter().filter(|((g, _, _), _)| *g == group).map(|(_, u)| u.clone()).collect();
                Outgoing::json(200, media, &page(&users, &query))
            }
            "getCluster" => {
                let name = params.get("clusterName").cloned().unwrap_or_default();
                match state.clusters.get(&(group.clone(), name.clone())) {
                    Some(c) => Outgoing::json(200, media, c),
                    None => error(
                        404,
                        "CLUSTER_NOT_FOUND",
                        &format!("No cluster named {name} exists in group {group}."),
                    ),
                }
            }
            "listAccessListEntries" => {
                let entries = state.access.get(&group).cloned().unwrap_or_default();
                Outgoing::json(200, media, &page(&entries, &query))
            }
            "createAccessListEntry" => {
                let list = state.access.entry(group.clone()).or_default();
                for entry in body.as_array().into_iter().flatten() {
                    let stored = stored_entry(&group, entry);
                    list.retain(|e| e["cidrBlock"] != stored["cidrBlock"]);
                    list.push(stored);
                }
                let entries = list.clone();
                Outgoing::json(200, media, &page(&entries, &query))
            }
            "getAccessListEntry" | "deleteAccessListEntry" => {
                let value = params.get("entryValue").cloned().unwrap_or_default();
                let list = state.access.entry(group.clone()).or_default();
                let found = list.iter().position(|e| {
                    e["cidrBlock"] == value.as_str()
                        || e["ipAddress"] == value.as_str()
                        || e["awsSecurityGroup"] == value.as_str()
                });
                match (found, op) {
                    (Some(i), "getAccessListEntry") => Outgoing::json(200, media, &list[i]),
                    (Some(i), _) => {
                        list.remove(i);
                        Outgoing::empty(204)
                    }
                    (None, _) => error(
                        404,
                        "ATLAS_NETWORK_PERMISSION_ENTRY_NOT_FOUND",
                        &format!("IP Address {value} not on Atlas access list for group {group}."),
                    ),
                }
            }
            other => error(500, "UNEXPECTED_ERROR", &format!("The fake does not implement {other}.")),
        }
    }
}

fn unknown_cluster_scope(state: &State, group: &str, body: &Value) -> Option<String> {
    body["scopes"].as_array().into_iter().flatten().find_map(|s| {
        let name = s["name"].as_str()?;
        (s["type"] == "CLUSTER" && !state.clusters.contains_key(&(group.to_string(), name.to_string())))
            .then(|| name.to_string())
    })
}

/// A user as Atlas answers it: no password, no groupId (both write-only).
fn stored_user(group: &str, key: &(String, String, String), body: &Value) -> Value {
    let mut user = json!({
        "databaseName": key.1,
        "username": key.2,
        "roles": body.get("roles").cloned().unwrap_or(json!([])),
        "scopes": body.get("scopes").cloned().unwrap_or(json!([])),
        "labels": body.get("labels").cloned().unwrap_or(json!([])),
        "awsIAMType": "NONE",
        "ldapAuthType": "NONE",
        "oidcAuthType": "NONE",
        "x509Type": "NONE",
        "links": [{"rel": "self", "href": format!("/api/atlas/v2/groups/{group}/databaseUsers/{}/{}", key.1, key.2)}],
    });
    if let Some(d) = body.get("deleteAfterDate") {
        user["deleteAfterDate"] = d.clone();
    }
    user
}

/// An access list entry as Atlas stores it: an address becomes a /32 (or /128) block.
fn stored_entry(group: &str, entry: &Value) -> Value {
    let mut stored = json!({"groupId": group});
    if let Some(ip) = entry["ipAddress"].as_str() {
        stored["ipAddress"] = ip.into();
        stored["cidrBlock"] = format!("{ip}/{}", if ip.contains(':') { 128 } else { 32 }).into();
    }
    for field in ["cidrBlock", "awsSecurityGroup", "comment", "deleteAfterDate"] {
        if let Some(v) = entry.get(field) {
            stored[field] = v.clone();
        }
    }
    stored
}

/// One page of `items` as Atlas lists them.
fn page(items: &[Value], query: &HashMap<String, String>) -> Value {
    let per_page = query.get("itemsPerPage").and_then(|v| v.parse::<usize>().ok()).unwrap_or(100).max(1);
    let page_num = query.get("pageNum").and_then(|v| v.parse::<usize>().ok()).unwrap_or(1).max(1);
    let results: Vec<Value> = items.iter().skip((page_num - 1) * per_page).take(per_page).cloned().collect();
    let mut out = json!({"results": results, "links": []});
    if query.get("includeCount").map(String::as_str) != Some("false") {
        out["totalCount"] = items.len().into();
    }
    out
}

/// Splits `k=v, k="v"` (Digest parameters) into pairs. Written apart from the client's parser on
/// purpose: a fake that shared the client's code would agree with its bugs.
fn parse_auth_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        let Some(eq) = rest.find('=') else { return out };
        let key = rest[..eq].trim().to_ascii_lowercase();
        rest = &rest[eq + 1..];
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut escaped = false;
            let mut end = quoted.len();
            for (i, c) in quoted.char_indices() {
                match (escaped, c) {
                    (true, c) => {
                        value.push(c);
                        escaped = false;
                    }
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        end = i + 1;
                        break;
                    }
                    (false, c) => value.push(c),
                }
            }
            out.push((key, value));
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            out.push((key, rest[..end].trim().to_string()));
            rest = &rest[end..];
        }
    }
}
