//! `import app-spec`: converts a DigitalOcean App Platform app spec (`.do/app.yaml`) into our
//! resources — services to Apps, workers to Apps without a route, PRE_DEPLOY/POST_DEPLOY jobs to
//! App jobs, envs (SECRET ones to Secret references), health checks, instance counts and sizes,
//! autoscaling, routes and domains to routes and EdgeCaches, REDIS and MONGODB databases to Redis
//! and AtlasConnection — and reports every field it could not map, and why.
//!
//! Pure: text in, YAML and report out. It must never copy a SECRET env's value (App Platform
//! stores it encrypted; the output only names the Secret key to create) and never contacts a
//! cluster or DigitalOcean.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::api::{GROUP, VERSION};

/// The converted resources and the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// Multi-document YAML of the resources.
    pub yaml: String,
    /// What was not mapped and why, and what to do by hand.
    pub report: String,
}

/// Placeholder image for components App Platform builds from source.
const SOURCE_IMAGE_PLACEHOLDER: &str = "registry.example.com/change-me";
/// Secret the EdgeCaches read the Cloudflare token from.
const CLOUDFLARE_SECRET: &str = "cloudflare-api-token";
/// Secret the AtlasConnections read the Atlas API key from.
const ATLAS_SECRET: &str = "atlas-api";

#[derive(Default)]
struct Report {
    unmapped: Vec<(String, String)>,
    todo: Vec<String>,
    secrets: BTreeMap<String, BTreeSet<String>>,
}

impl Report {
    fn skip(&mut self, path: impl Into<String>, why: impl Into<String>) {
        self.unmapped.push((path.into(), why.into()));
    }
    fn todo(&mut self, what: impl Into<String>) {
        self.todo.push(what.into());
    }
    fn render(&self) -> String {
        let mut out = String::new();
        if self.unmapped.is_empty() {
            out.push_str("Every field of the app spec was mapped.\n");
        } else {
            let _ = writeln!(out, "Fields not mapped ({}):", self.unmapped.len());
            for (path, why) in &self.unmapped {
                let _ = writeln!(out, "  - {path}: {why}");
            }
        }
        if !self.secrets.is_empty() {
            out.push_str("Secrets to create before applying (values are not in the app spec; copy them from App Platform):\n");
            for (name, keys) in &self.secrets {
                let args: Vec<String> = keys.iter().map(|k| format!("--from-literal={k}=...")).collect();
                let _ = writeln!(out, "  - kubectl create secret generic {name} {}", args.join(" "));
            }
        }
        if !self.todo.is_empty() {
            out.push_str("To do by hand:\n");
            for t in &self.todo {
                let _ = writeln!(out, "  - {t}");
            }
        }
        out
    }
}

/// A Kubernetes name from an App Platform name (lower case, `-` for anything else).
fn k8s_name(name: &str) -> String {
    let mut s: String =
        name.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    s.truncate(63);
    s.trim_matches('-').to_string()
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn int_of(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

/// Container limits of App Platform instance sizes.
fn size(slug: &str) -> Option<(&'static str, &'static str)> {
    Some(match slug {
        "basic-xxs" | "apps-s-1vcpu-0.5gb" => ("1", "512Mi"),
        "basic-xs" | "apps-s-1vcpu-1gb" | "apps-s-1vcpu-1gb-fixed" => ("1", "1Gi"),
        "basic-s" | "apps-s-1vcpu-2gb" => ("1", "2Gi"),
        "basic-m" | "apps-s-2vcpu-4gb" => ("2", "4Gi"),
        "professional-xs" | "apps-d-1vcpu-0.5gb" => ("1", "512Mi"),
        "apps-d-1vcpu-1gb" => ("1", "1Gi"),
        "professional-s" | "apps-d-1vcpu-2gb" => ("1", "2Gi"),
        "apps-d-1vcpu-4gb" => ("1", "4Gi"),
        "professional-m" | "apps-d-2vcpu-4gb" => ("2", "4Gi"),
        "apps-d-2vcpu-8gb" => ("2", "8Gi"),
        "professional-l" | "apps-d-4vcpu-8gb" => ("4", "8Gi"),
        "apps-d-4vcpu-16gb" => ("4", "16Gi"),
        "professional-xl" | "apps-d-8vcpu-32gb" => ("8", "32Gi"),
        _ => return None,
    })
}

/// The image reference of an App Platform `image` block.
fn image_ref(image: &Value) -> Option<String> {
    let repository = str_of(image, "repository")?;
    let registry = str_of(image, "registry");
    let host_and_path = match str_of(image, "registry_type").unwrap_or("DOCR") {
        "DOCR" => match registry {
            Some(r) => format!("registry.digitalocean.com/{r}/{repository}"),
            None => format!("registry.digitalocean.com/{repository}"),
        },
        "GHCR" => format!("ghcr.io/{}/{repository}", registry.unwrap_or_default()),
        _ => match registry {
            Some(r) => format!("docker.io/{r}/{repository}"),
            None => format!("docker.io/library/{repository}"),
        },
    };
    Some(match (str_of(image, "digest"), str_of(image, "tag")) {
        (Some(d), _) => format!("{host_and_path}@{d}"),
        (None, Some(t)) => format!("{host_and_path}:{t}"),
        (None, None) => format!("{host_and_path}:latest"),
    })
}

/// Databases of the spec by name: `(engine, resource name)`.
struct Databases {
    by_name: BTreeMap<String, (String, String)>,
}

impl Databases {
    fn connection_secret(&self, db: &str) -> Option<(String, &'static str)> {
        let (engine, resource) = self.by_name.get(db)?;
        match engine.as_str() {
            "REDIS" | "VALKEY" => Some((format!("{resource}-redis"), "redis")),
            "MONGODB" => Some((format!("{resource}-mongodb"), "mongodb")),
            _ => None,
        }
    }
}

/// What an App Platform `${db.VAR}` binding becomes in a connection Secret.
fn binding_key(kind: &str, var: &str) -> Option<&'static str> {
    match (kind, var) {
        ("redis", "DATABASE_URL" | "REDIS_URL") => Some("REDIS_URL"),
        ("redis", "HOSTNAME" | "HOST") => Some("REDIS_HOST"),
        ("redis", "PORT") => Some("REDIS_PORT"),
        ("redis", "PASSWORD") => Some("REDIS_PASSWORD"),
        ("mongodb", "DATABASE_URL" | "MONGODB_URI") => Some("MONGODB_URI"),
        ("mongodb", "USERNAME") => Some("MONGODB_USERNAME"),
        ("mongodb", "PASSWORD") => Some("MONGODB_PASSWORD"),
        _ => None,
    }
}

struct Converter<'a> {
    report: Report,
    dbs: Databases,
    app_name: String,
    namespace: Option<&'a str>,
}

impl Converter<'_> {
    fn metadata(&self, name: &str) -> Value {
        let mut m = json!({"name": name, "labels": {"app.kubernetes.io/part-of": self.app_name}});
        if let Some(ns) = self.namespace {
            m["namespace"] = json!(ns);
        }
        m
    }

    /// Converts envs into EnvVars, connections and report lines.
    fn envs(
        &mut self,
        envs: &Value,
        path: &str,
        secret_name: &str,
        connections: &mut Map<String, Value>,
    ) -> Vec<Value> {
        let mut out = vec![];
        for (i, env) in envs.as_array().into_iter().flatten().enumerate() {
            let Some(key) = str_of(env, "key") else {
                self.report.skip(format!("{path}[{i}]"), "an env without a key cannot be set");
                continue;
            };
            let here = format!("{path}[{key}]");
            let scope = str_of(env, "scope").unwrap_or("RUN_AND_BUILD_TIME");
            if scope == "BUILD_TIME" {
                self.report.skip(
                    &here,
                    "a BUILD_TIME variable belongs to the image build in CI, not to the running App",
                );
                continue;
            }
            if str_of(env, "type") == Some("SECRET") {
                self.report.secrets.entry(secret_name.to_string()).or_default().insert(key.to_string());
                out.push(
                    json!({"name": key, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}}),
                );
                continue;
            }
            let value = str_of(env, "value").unwrap_or_default();
            if let Some(inner) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
                if let Some((component, var)) = inner.split_once('.')
                    && let Some((secret, kind)) = self.dbs.connection_secret(component)
                {
                    let resource =
                        self.dbs.by_name.get(component).map(|(_, r)| r.clone()).unwrap_or_default();
                    connections.insert(kind.to_string(), json!(resource));
                    match binding_key(kind, var) {
                        Some(target) if target == key => {
                            // The connection Secret already provides it under the same name.
                        }
                        Some(target) => out.push(json!({"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": target}}})),
                        None => self.report.skip(
                            &here,
                            format!("the binding {value} has no counterpart in the {kind} connection Secret {secret}"),
                        ),
                    }
                    continue;
                }
                self.report.skip(
                    &here,
                    format!("the App Platform binding {value} has no equivalent here; set the value by hand"),
                );
                continue;
            }
            out.push(json!({"name": key, "value": value}));
        }
        out
    }

    fn component(
        &mut self,
        c: &Value,
        path: &str,
        routes: &BTreeMap<String, Vec<String>>,
        host: Option<&str>,
        worker: bool,
    ) -> Option<(String, Map<String, Value>)> {
        let Some(raw_name) = str_of(c, "name") else {
            self.report.skip(path, "a component without a name cannot be imported");
            return None;
        };
        let name = k8s_name(raw_name);
        let here = format!("{path}({raw_name})");
        let mut spec = Map::new();
        let mut connections = Map::new();
        let secret_name = format!("{name}-env");
        for (key, v) in c.as_object().into_iter().flatten() {
            let field = format!("{here}.{key}");
            match key.as_str() {
                "name" => {}
                "image" => match image_ref(v) {
                    Some(i) => {
                        spec.insert("image".into(), json!(i));
                        if v.get("deploy_on_push").is_some() {
                            self.report.skip(
                                format!("{field}.deploy_on_push"),
                                "CI ships new images with `kubectl authentify set image`",
                            );
                        }
                    }
                    None => self.report.skip(&field, "the image has no repository"),
                },
                "github" | "gitlab" | "git" | "bitbucket" | "source_dir" | "dockerfile_path"
                | "build_command" | "environment_slug" => {
                    self.report.skip(&field, "App Platform builds from source; here CI builds the image and `kubectl authentify set image` ships it");
                }
                "run_command" => self.report.skip(
                    &field,
                    "an App runs its image's own command: bake the run command into the image (CMD)",
                ),
                "http_port" => {
                    spec.insert("port".into(), v.clone());
                }
                "internal_ports" => {
                    self.report.skip(&field, "an App serves one port; other in-cluster ports are not exposed")
                }
                "instance_count" => {
                    spec.insert("replicas".into(), v.clone());
                }
                "instance_size_slug" => match v.as_str().and_then(size) {
                    Some((cpu, memory)) => {
                        spec.insert(
                            "resources".into(),
                            json!({"limits": {"cpu": cpu, "memory": memory}, "requests": {"cpu": cpu, "memory": memory}}),
                        );
                    }
                    None => self
                        .report
                        .skip(&field, format!("unknown instance size {v}; set spec.resources by hand")),
                },
                "autoscaling" => {
                    let min = int_of(v, "min_instance_count").unwrap_or(1);
                    let max = int_of(v, "max_instance_count").unwrap_or(min);
                    let mut a = json!({"minReplicas": min, "maxReplicas": max});
                    match v.pointer("/metrics/cpu/percent").and_then(Value::as_i64) {
                        Some(p) => a["cpuPercent"] = json!(p),
                        None => {
                            a["cpuPercent"] = json!(80);
                            self.report.skip(
                                format!("{field}.metrics"),
                                "only CPU autoscaling maps; cpuPercent 80 (App Platform's default) was set",
                            );
                        }
                    }
                    spec.insert("replicas".into(), json!(min));
                    spec.insert("autoscaling".into(), a);
                }
                "health_check" => {
                    if let Some(hc) = self.health_check(v, &field) {
                        spec.insert("healthCheck".into(), hc);
                    }
                }
                "envs" => {
                    let env = self.envs(v, &field, &secret_name, &mut connections);
                    if let Some(a) = spec.entry("env").or_insert_with(|| json!([])).as_array_mut() {
                        a.extend(env);
                    }
                }
                "routes" => {} // collected with the ingress rules
                "cors" => self
                    .report
                    .skip(&field, "CORS headers are the App's own job here (or an ingress annotation)"),
                "alerts" => {
                    self.report.skip(&field, "alerts come from Prometheus rules on the operator's metrics")
                }
                "log_destinations" => {
                    self.report.skip(&field, "logs are collected by the cluster's log pipeline")
                }
                "termination" => {
                    self.report.skip(&field, "the pods' termination grace period is fixed at 30s")
                }
                "liveness_health_check" => {
                    self.report.skip(&field, "the App's healthCheck is used for both readiness and liveness")
                }
                other => self.report.skip(&field, format!("`{other}` has no counterpart in an App")),
            }
        }
        if !spec.contains_key("image") {
            spec.insert("image".into(), json!(format!("{SOURCE_IMAGE_PLACEHOLDER}/{name}:latest")));
            self.report.todo(format!(
                "App {name}: spec.image is a placeholder; build the image in CI and set it with `kubectl authentify set image {name} IMAGE`"
            ));
        }
        if !worker {
            let paths = routes.get(raw_name).cloned().unwrap_or_default();
            match (host, paths.first()) {
                (_, None) => self.report.skip(
                    format!("{here}.routes"),
                    "the service has no route; it is reachable only inside the cluster",
                ),
                (Some(h), Some(p)) => {
                    spec.insert("route".into(), json!({"host": h, "path": p}));
                    for extra in paths.iter().skip(1) {
                        self.report.skip(
                            format!("{here}.routes[{extra}]"),
                            format!("an App has one route path; {p} was kept"),
                        );
                    }
                }
                (None, Some(p)) => {
                    let h = format!("{name}.{}.invalid", k8s_name(&self.app_name));
                    spec.insert("route".into(), json!({"host": h, "path": p}));
                    self.report.todo(format!(
                        "App {name}: the spec has no custom domain; replace the placeholder host {h}"
                    ));
                }
            }
        }
        if !connections.is_empty() {
            spec.insert("connections".into(), Value::Object(connections));
        }
        if spec.get("env").and_then(Value::as_array).is_some_and(Vec::is_empty) {
            spec.remove("env");
        }
        Some((name, spec))
    }

    fn health_check(&mut self, v: &Value, field: &str) -> Option<Value> {
        let Some(path) = str_of(v, "http_path") else {
            self.report
                .skip(field, "only HTTP health checks map (set http_path); a TCP check has no counterpart");
            return None;
        };
        let mut hc = json!({"httpPath": path});
        for (from, to) in [
            ("initial_delay_seconds", "initialDelaySeconds"),
            ("period_seconds", "periodSeconds"),
            ("timeout_seconds", "timeoutSeconds"),
            ("failure_threshold", "failureThreshold"),
            ("port", "port"),
        ] {
            if let Some(n) = v.get(from) {
                hc[to] = n.clone();
            }
        }
        for key in v.as_object().into_iter().flatten().map(|(k, _)| k.as_str()) {
            match key {
                "http_path"
                | "initial_delay_seconds"
                | "period_seconds"
                | "timeout_seconds"
                | "failure_threshold"
                | "port" => {}
                "success_threshold" => self
                    .report
                    .skip(format!("{field}.success_threshold"), "one successful probe marks a pod ready"),
                other => self.report.skip(format!("{field}.{other}"), "no counterpart in healthCheck"),
            }
        }
        Some(hc)
    }

    fn database(&mut self, db: &Value, i: usize) -> Option<Value> {
        let raw = str_of(db, "name").unwrap_or("db");
        let path = format!("databases[{i}]({raw})");
        let name = k8s_name(raw);
        let engine = str_of(db, "engine").unwrap_or("PG");
        let production = db.get("production").and_then(Value::as_bool).unwrap_or(false);
        for key in db.as_object().into_iter().flatten().map(|(k, _)| k.as_str()) {
            match key {
                "name" | "engine" | "production" | "cluster_name" | "db_name" | "version" => {}
                "db_user" if engine == "MONGODB" => self.report.skip(
                    format!("{path}.db_user"),
                    "the operator creates its own database user per AtlasConnection (and rotates it)",
                ),
                other => self.report.skip(format!("{path}.{other}"), "no counterpart"),
            }
        }
        match engine {
            "REDIS" | "VALKEY" => {
                if production {
                    self.report
                        .secrets
                        .entry(format!("{name}-redis-password"))
                        .or_default()
                        .insert("password".into());
                    self.report.todo(format!(
                        "Redis {name}: external mode; set spec.external.host to the host of the managed database {}",
                        str_of(db, "cluster_name").unwrap_or(raw)
                    ));
                    Some(
                        json!({"apiVersion": format!("{GROUP}/{VERSION}"), "kind": "Redis", "metadata": self.metadata(&name),
                        "spec": {"mode": "external", "external": {"host": "change-me.db.ondigitalocean.com", "port": 25061, "tls": true,
                            "passwordSecret": {"name": format!("{name}-redis-password"), "key": "password"}}}}),
                    )
                } else {
                    let version = match str_of(db, "version") {
                        Some(v) if v.contains('.') => v.to_string(),
                        Some(v) => {
                            self.report.skip(
                                format!("{path}.version"),
                                format!("version {v} is not major.minor; 7.2 was used"),
                            );
                            "7.2".to_string()
                        }
                        None => "7.2".to_string(),
                    };
                    Some(
                        json!({"apiVersion": format!("{GROUP}/{VERSION}"), "kind": "Redis", "metadata": self.metadata(&name),
                        "spec": {"mode": "standalone", "version": version}}),
                    )
                }
            }
            "MONGODB" => {
                self.report
                    .secrets
                    .entry(ATLAS_SECRET.into())
                    .or_default()
                    .extend(["publicKey".to_string(), "privateKey".to_string()]);
                self.report.todo(format!(
                    "AtlasConnection {name}: App Platform's MongoDB is not Atlas; move the data to an Atlas cluster and set spec.projectId (a placeholder) and spec.clusterName"
                ));
                if str_of(db, "version").is_some() {
                    self.report
                        .skip(format!("{path}.version"), "the Atlas cluster's version is managed in Atlas");
                }
                Some(
                    json!({"apiVersion": format!("{GROUP}/{VERSION}"), "kind": "AtlasConnection", "metadata": self.metadata(&name),
                    "spec": {"credentials": {"secretName": ATLAS_SECRET}, "projectId": "000000000000000000000000",
                        "clusterName": str_of(db, "cluster_name").unwrap_or(raw), "database": str_of(db, "db_name").unwrap_or(raw)}}),
                )
            }
            other => {
                self.report.skip(&path, format!("{other} databases are not managed by the operator; keep the managed database and pass its URL as a Secret env"));
                None
            }
        }
    }
}

/// Converts an app spec. `namespace`, when given, is written into every resource.
pub fn convert(text: &str, namespace: Option<&str>) -> Result<Imported, String> {
    let spec: Value = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text)
        .map_err(|e| format!("invalid YAML: {e}"))
        .and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string()))?;
    // `doctl apps spec get` wraps the spec; accept both forms.
    let spec = spec.get("spec").filter(|s| s.is_object()).cloned().unwrap_or(spec);
    if !spec.is_object() || (spec.get("services").is_none() && spec.get("workers").is_none()) {
        return Err("it has neither services nor workers".into());
    }
    let app_name = str_of(&spec, "name").unwrap_or("app").to_string();
    let mut dbs = Databases { by_name: BTreeMap::new() };
    for db in spec.get("databases").and_then(Value::as_array).into_iter().flatten() {
        if let Some(n) = str_of(db, "name") {
            dbs.by_name
                .insert(n.to_string(), (str_of(db, "engine").unwrap_or("PG").to_string(), k8s_name(n)));
        }
    }
    let mut cv = Converter { report: Report::default(), dbs, app_name: app_name.clone(), namespace };
    let mut resources: Vec<Value> = vec![];

    // Routes: ingress rules (current form) and per-component routes (older form).
    let mut routes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, rule) in
        spec.pointer("/ingress/rules").and_then(Value::as_array).into_iter().flatten().enumerate()
    {
        let here = format!("ingress.rules[{i}]");
        let Some(component) = rule.pointer("/component/name").and_then(Value::as_str) else {
            if rule.get("redirect").is_some() {
                cv.report.skip(
                    format!("{here}.redirect"),
                    "redirects are not managed; add an ingress redirect or a Cloudflare redirect rule",
                );
            } else {
                cv.report.skip(&here, "a rule without a component cannot be mapped");
            }
            continue;
        };
        let prefix = rule.pointer("/match/path/prefix").and_then(Value::as_str).unwrap_or("/").to_string();
        if prefix != "/"
            && rule.pointer("/component/preserve_path_prefix").and_then(Value::as_bool) != Some(true)
        {
            cv.report.skip(format!("{here}.component.preserve_path_prefix"), format!("App Platform strips {prefix} before the request reaches {component}; our route keeps it, so the service must serve under {prefix}"));
        }
        if rule.pointer("/component/rewrite").is_some() {
            cv.report
                .skip(format!("{here}.component.rewrite"), "path rewrites are not supported by an App route");
        }
        if rule.get("cors").is_some() {
            cv.report.skip(format!("{here}.cors"), "CORS headers are the App's own job here");
        }
        if rule.pointer("/match/authority").is_some() {
            cv.report
                .skip(format!("{here}.match.authority"), "an App's route has one host (the primary domain)");
        }
        routes.entry(component.to_string()).or_default().push(prefix);
    }
    for kind in ["services"] {
        for c in spec.get(kind).and_then(Value::as_array).into_iter().flatten() {
            let Some(name) = str_of(c, "name") else { continue };
            for r in c.get("routes").and_then(Value::as_array).into_iter().flatten() {
                let path = str_of(r, "path").unwrap_or("/").to_string();
                if path != "/" && r.get("preserve_path_prefix").and_then(Value::as_bool) != Some(true) {
                    cv.report.skip(format!("services({name}).routes[{path}].preserve_path_prefix"), format!("App Platform strips {path} before the request reaches {name}; our route keeps it, so the service must serve under {path}"));
                }
                routes.entry(name.to_string()).or_default().push(path);
            }
        }
    }

    // Domains: the primary is every routed App's host; aliases and zones go to EdgeCaches.
    let mut primary: Option<String> = None;
    let mut zones: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, d) in spec.get("domains").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let Some(domain) = str_of(d, "domain") else { continue };
        let here = format!("domains[{i}]({domain})");
        let zone = str_of(d, "zone").map(str::to_string).unwrap_or_else(|| {
            let parts: Vec<&str> = domain.split('.').collect();
            parts[parts.len().saturating_sub(2)..].join(".")
        });
        match str_of(d, "type").unwrap_or("PRIMARY") {
            "PRIMARY" if primary.is_none() => primary = Some(domain.to_string()),
            "ALIAS" => cv.report.skip(
                format!("{here}.type"),
                "an App's route serves one host (the primary domain): the alias gets a DNS record on its EdgeCache; add it to an Ingress or a Cloudflare redirect to serve it",
            ),
            "DEFAULT" => {
                cv.report
                    .skip(&here, "the ondigitalocean.app default domain does not exist off App Platform");
                continue;
            }
            _ => {}
        }
        if d.get("wildcard").and_then(Value::as_bool) == Some(true) {
            cv.report.skip(
                format!("{here}.wildcard"),
                "wildcard domains need a wildcard certificate and DNS record made by hand",
            );
        }
        if d.get("minimum_tls_version").is_some() {
            cv.report.skip(
                format!("{here}.minimum_tls_version"),
                "set the minimum TLS version in the Cloudflare zone's settings",
            );
        }
        zones.entry(zone).or_default().push(domain.to_string());
    }

    let mut apps: Vec<(String, Map<String, Value>)> = vec![];
    for (kind, worker) in [("services", false), ("workers", true)] {
        for (i, c) in spec.get(kind).and_then(Value::as_array).into_iter().flatten().enumerate() {
            if let Some(app) = cv.component(c, &format!("{kind}[{i}]"), &routes, primary.as_deref(), worker) {
                apps.push(app);
            }
        }
    }

    let service_names: BTreeSet<&str> = spec
        .get("services")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| str_of(c, "name"))
        .collect();
    for (component, paths) in &routes {
        if !service_names.contains(component.as_str()) {
            cv.report.skip(
                format!("ingress.rules({component})"),
                format!(
                    "{component} is not a service, so its routes {} have no App to go to",
                    paths.join(", ")
                ),
            );
        }
    }

    // Jobs: PRE_DEPLOY and POST_DEPLOY become App jobs of the App that runs the same image.
    for (i, j) in spec.get("jobs").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let raw = str_of(j, "name").unwrap_or("job");
        let here = format!("jobs[{i}]({raw})");
        let kind = match str_of(j, "kind").unwrap_or("UNSPECIFIED") {
            "PRE_DEPLOY" => "preDeploy",
            "POST_DEPLOY" | "UNSPECIFIED" => "postDeploy",
            other => {
                cv.report.skip(
                    &here,
                    format!("{other} jobs have no counterpart; use a Kubernetes Job or CronJob"),
                );
                continue;
            }
        };
        let image = j.get("image").and_then(image_ref);
        let target = apps
            .iter()
            .position(|(_, s)| image.is_some() && s.get("image").and_then(Value::as_str) == image.as_deref())
            .or_else(|| apps.iter().position(|(_, s)| s.get("route").is_some()))
            .or(if apps.is_empty() { None } else { Some(0) });
        let Some(target) = target else {
            cv.report.skip(&here, "there is no service or worker to run the job with");
            continue;
        };
        let Some(run) = str_of(j, "run_command") else {
            cv.report.skip(&here, "a job without run_command cannot be mapped");
            continue;
        };
        let app_name = apps[target].0.clone();
        if image.is_some() && apps[target].1.get("image").and_then(Value::as_str) != image.as_deref() {
            cv.report.skip(
                format!("{here}.image"),
                format!("App jobs run with the App's image; this one now runs with App {app_name}'s"),
            );
        }
        let mut job = json!({"command": ["sh", "-c", run]});
        let mut connections = Map::new();
        let env = cv.envs(
            j.get("envs").unwrap_or(&Value::Null),
            &format!("{here}.envs"),
            &format!("{app_name}-env"),
            &mut connections,
        );
        if !env.is_empty() {
            job["env"] = json!(env);
        }
        for key in j.as_object().into_iter().flatten().map(|(k, _)| k.as_str()) {
            match key {
                "name" | "kind" | "image" | "run_command" | "envs" => {}
                "github" | "gitlab" | "git" | "bitbucket" | "source_dir" | "dockerfile_path"
                | "build_command" | "environment_slug" => {
                    cv.report.skip(format!("{here}.{key}"), "App jobs run with the App's image, built in CI");
                }
                "instance_size_slug" | "instance_count" => {
                    cv.report.skip(format!("{here}.{key}"), "App jobs run with the App's resources")
                }
                other => cv.report.skip(format!("{here}.{other}"), "no counterpart in an App job"),
            }
        }
        let spec = &mut apps[target].1;
        let jobs = spec.entry("jobs").or_insert_with(|| json!({}));
        if jobs.get(kind).is_some() {
            cv.report
                .skip(&here, format!("App {app_name} already has a {kind} job; an App runs one of each"));
            continue;
        }
        jobs[kind] = job;
        if !connections.is_empty() {
            let c = spec.entry("connections").or_insert_with(|| json!({}));
            for (k, v) in connections {
                c[k] = v;
            }
        }
    }

    // App-wide envs go to every App.
    if let Some(envs) = spec.get("envs") {
        for (name, app_spec) in &mut apps {
            let mut connections = Map::new();
            let env = cv.envs(envs, "envs", "app-env", &mut connections);
            if let Some(a) = app_spec.entry("env").or_insert_with(|| json!([])).as_array_mut() {
                a.extend(env);
            }
            if !connections.is_empty() {
                let c = app_spec.entry("connections").or_insert_with(|| json!({}));
                for (k, v) in connections {
                    c[k] = v;
                }
            }
            let _ = name;
        }
        // The same envs were reported once per App; keep one report line each.
        let mut seen = BTreeSet::new();
        cv.report.unmapped.retain(|(p, w)| !p.starts_with("envs[") || seen.insert((p.clone(), w.clone())));
    }

    // EdgeCaches: one per zone, in front of the routed Apps of that zone.
    let mut edge_for_host: BTreeMap<String, String> = BTreeMap::new();
    for (zone, domains) in &zones {
        let name = k8s_name(zone);
        let extra: Vec<&String> = domains.iter().filter(|d| Some(*d) != primary.as_ref()).collect();
        let mut dns = json!({"target": "change-me.ingress.example.com"});
        if !extra.is_empty() {
            dns["extraHosts"] = json!(extra);
        }
        for d in domains {
            edge_for_host.insert(d.clone(), name.clone());
        }
        resources.push(json!({"apiVersion": format!("{GROUP}/{VERSION}"), "kind": "EdgeCache", "metadata": cv.metadata(&name),
            "spec": {"apiTokenSecret": {"name": CLOUDFLARE_SECRET, "key": "token"}, "zoneName": zone, "dns": dns}}));
        cv.report.secrets.entry(CLOUDFLARE_SECRET.into()).or_default().insert("token".into());
        cv.report.todo(format!("EdgeCache {name}: set spec.dns.target to the ingress load balancer's host name, and move the zone's DNS to Cloudflare if it is not there"));
    }

    for (name, mut app_spec) in apps {
        if let Some(edge) = app_spec
            .get("route")
            .and_then(|r| r.get("host"))
            .and_then(Value::as_str)
            .and_then(|h| edge_for_host.get(h))
        {
            app_spec.insert("edgeCache".into(), json!({"name": edge}));
        }
        resources.insert(
            resources.iter().filter(|r| r["kind"] == "App").count(),
            json!({"apiVersion": format!("{GROUP}/{VERSION}"), "kind": "App", "metadata": cv.metadata(&name), "spec": Value::Object(app_spec)}),
        );
    }
    for (i, db) in spec.get("databases").and_then(Value::as_array).into_iter().flatten().enumerate() {
        if let Some(r) = cv.database(db, i) {
            resources.push(r);
        }
    }

    for key in spec.as_object().into_iter().flatten().map(|(k, _)| k) {
        let why = match key.as_str() {
            "name" | "services" | "workers" | "jobs" | "databases" | "domains" | "ingress" | "envs" => continue,
            "region" => "the cluster decides where the Apps run".to_string(),
            "static_sites" => "static sites are not Apps: serve them from object storage behind Cloudflare, or as an App with a web server image".to_string(),
            "functions" => "functions have no counterpart; deploy them as an App or keep them on DigitalOcean Functions".to_string(),
            "alerts" => "alerts come from Prometheus rules on the operator's metrics".to_string(),
            "features" => "App Platform feature flags have no meaning here".to_string(),
            "maintenance" => "maintenance mode has no counterpart; pause or scale the App instead".to_string(),
            "egress" => "dedicated egress IPs are configured on the cluster's network, not per App".to_string(),
            "vpc" => "the cluster's network decides VPC membership".to_string(),
            "disable_edge_cache" | "disable_email_obfuscation" | "enhanced_threat_control_enabled" => {
                "edge behaviour is configured on the EdgeCache (Cloudflare zone settings)".to_string()
            }
            other => format!("`{other}` has no counterpart"),
        };
        cv.report.skip(key.clone(), why);
    }

    let mut yaml = String::new();
    let _ = writeln!(
        yaml,
        "# Imported from the App Platform app spec {app_name:?} by `kubectl authentify import app-spec`."
    );
    for r in &resources {
        yaml.push_str("---\n");
        yaml.push_str(&serde_yaml_ng::to_string(r).map_err(|e| e.to_string())?);
    }
    Ok(Imported { yaml, report: cv.report.render() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name: shop\nservices:\n- name: api\n  image: {registry_type: DOCR, registry: acme, repository: api, tag: '1.2'}\n  \
http_port: 3000\n  envs:\n  - {key: JWT_SECRET, type: SECRET, value: 'EV[1:abc:def]'}\n  - {key: MODE, value: prod, scope: RUN_TIME}\n";

    #[test]
    fn secret_values_never_reach_the_output() {
        let out = convert(MINIMAL, None).expect("converts");
        assert!(
            !out.yaml.contains("EV[1:abc:def]") && !out.report.contains("EV[1"),
            "{}\n{}",
            out.yaml,
            out.report
        );
        assert!(out.yaml.contains("secretKeyRef") && out.yaml.contains("api-env"), "{}", out.yaml);
        assert!(
            out.report.contains("kubectl create secret generic api-env --from-literal=JWT_SECRET=..."),
            "{}",
            out.report
        );
        assert!(out.yaml.contains("registry.digitalocean.com/acme/api:1.2"), "{}", out.yaml);
    }

    #[test]
    fn images_of_each_registry() {
        let r = |v: Value| image_ref(&v).expect("image");
        assert_eq!(
            r(json!({"registry_type": "DOCKER_HUB", "repository": "nginx", "tag": "1"})),
            "docker.io/library/nginx:1"
        );
        assert_eq!(
            r(
                json!({"registry_type": "GHCR", "registry": "acme", "repository": "web", "digest": "sha256:ab"})
            ),
            "ghcr.io/acme/web@sha256:ab"
        );
    }

    /// Golden files: each `tests/golden/import/NAME.app.yaml` converts to `NAME.expected.yaml`
    /// with the report `NAME.report.txt`. Regenerate with `AUTHENTIFY_UPDATE_GOLDEN=1`, then
    /// review the diff. Every output must also pass offline lint.
    #[test]
    fn golden_app_specs() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/import");
        let update = std::env::var_os("AUTHENTIFY_UPDATE_GOLDEN").is_some();
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .expect("tests/golden/import exists")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.to_string_lossy().ends_with(".app.yaml"))
            .collect();
        inputs.sort();
        assert!(inputs.len() >= 3, "expected several app specs in {}", dir.display());
        let mut diffs = vec![];
        for input in inputs {
            let base = input.to_string_lossy().trim_end_matches(".app.yaml").to_string();
            let text = std::fs::read_to_string(&input).expect("readable");
            let out = convert(&text, None).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
            let findings = crate::cli::lint::lint_text(&out.yaml);
            assert!(
                findings.is_empty(),
                "{}: the import does not lint: {findings:#?}\n{}",
                input.display(),
                out.yaml
            );
            for (path, actual) in
                [(format!("{base}.expected.yaml"), &out.yaml), (format!("{base}.report.txt"), &out.report)]
            {
                if update {
                    std::fs::write(&path, actual).expect("writable");
                    continue;
                }
                let expected = std::fs::read_to_string(&path).unwrap_or_default();
                if &expected != actual {
                    diffs.push(format!("{path} differs; got:\n{actual}"));
                }
            }
        }
        assert!(
            diffs.is_empty(),
            "{}\nRegenerate with AUTHENTIFY_UPDATE_GOLDEN=1 after checking the change.",
            diffs.join("\n")
        );
    }

    #[test]
    fn not_an_app_spec_is_an_error() {
        assert!(convert("kind: Deployment\n", None).is_err());
        assert!(convert("a: [", None).is_err());
    }
}
