//! Client-side evaluation of the CRDs' CEL rules, for fast unit tests and offline linting. The API
//! server remains the authority; this runs the very rules it runs, from the generated schemas.

use kube::core::cel::Validator;
use serde_json::Value;

use super::crds;

/// One broken rule: where, and the message the API server would give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON path of the field, e.g. `spec.strategy`.
    pub field: String,
    /// The rule's message.
    pub message: String,
}

/// Evaluates the CEL rules of the CRD that serves `object`'s kind. Returns `None` when the kind is
/// not one of ours.
pub fn check_cel(object: &Value) -> Option<Vec<Violation>> {
    let kind = object.get("kind")?.as_str()?;
    let crd = crds().into_iter().find(|c| c.spec.names.kind == kind)?;
    let schema = crd.spec.versions.first()?.schema.as_ref()?.open_api_v3_schema.as_ref()?;
    let schema = serde_json::to_value(schema).ok()?;
    Some(match Validator::new().validate(&schema, object, None) {
        Ok(()) => vec![],
        Err(errors) => errors
            .iter()
            .map(|e| Violation { field: e.field_path.clone(), message: e.message.clone() })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app(spec: Value) -> Value {
        json!({"apiVersion": "platform.authentify.it/v1alpha1", "kind": "App",
               "metadata": {"name": "api", "namespace": "t"}, "spec": spec})
    }

    fn messages(object: Value) -> Vec<String> {
        check_cel(&object).expect("our kind").into_iter().map(|v| v.message).collect()
    }

    /// (description, spec, expected message fragment or None when valid)
    fn app_cases() -> Vec<(&'static str, Value, Option<&'static str>)> {
        vec![
            ("minimal", json!({"image": "api:1"}), None),
            (
                "replicas with autoscaling (the HPA writes replicas through /scale)",
                json!({"image": "a:1", "replicas": 2,
                "autoscaling": {"minReplicas": 1, "maxReplicas": 3, "cpuPercent": 70}}),
                None,
            ),
            (
                "autoscaling min above max",
                json!({"image": "a:1",
                "autoscaling": {"minReplicas": 5, "maxReplicas": 3, "cpuPercent": 70}}),
                Some("minReplicas must be less than or equal"),
            ),
            (
                "autoscaling without target",
                json!({"image": "a:1",
                "autoscaling": {"minReplicas": 1, "maxReplicas": 3}}),
                Some("autoscaling needs a target"),
            ),
            (
                "both strategies",
                json!({"image": "a:1", "strategy": {"canary": {}, "blueGreen": {}}}),
                Some("exactly one of canary or blueGreen"),
            ),
            (
                "no strategy inside strategy",
                json!({"image": "a:1", "strategy": {}}),
                Some("exactly one of canary or blueGreen"),
            ),
            (
                "canary steps ok",
                json!({"image": "a:1", "strategy": {"canary": {"steps": [
                {"setWeight": 10}, {"pause": {"duration": "2m"}}, {"pause": {}},
                {"analysis": {"templates": ["error-rate"]}}, {"setCanaryScale": {"replicas": 2}}]}}}),
                None,
            ),
            (
                "step with two actions",
                json!({"image": "a:1", "strategy": {"canary": {"steps": [
                {"setWeight": 10, "pause": {}}]}}}),
                Some("exactly one of setWeight, pause"),
            ),
            (
                "empty step",
                json!({"image": "a:1", "strategy": {"canary": {"steps": [{}]}}}),
                Some("exactly one of setWeight, pause"),
            ),
            (
                "bad duration",
                json!({"image": "a:1", "strategy": {"canary": {"steps": [
                {"pause": {"duration": "2 minutes"}}]}}}),
                Some("pause.duration must be a duration"),
            ),
            (
                "compound duration",
                json!({"image": "a:1", "strategy": {"canary": {"steps": [
                {"pause": {"duration": "1h30m"}}]}}}),
                None,
            ),
            (
                "canary scale two ways",
                json!({"image": "a:1", "strategy": {"canary": {"steps": [
                {"setCanaryScale": {"replicas": 1, "weight": 20}}]}}}),
                Some("setCanaryScale sets exactly one"),
            ),
            (
                "match traffic weight false is nothing",
                json!({"image": "a:1", "strategy": {"canary": {"steps": [
                {"setCanaryScale": {"matchTrafficWeight": false}}]}}}),
                Some("setCanaryScale sets exactly one"),
            ),
            (
                "two routers",
                json!({"image": "a:1", "strategy": {"canary": {
                "trafficRouting": {"nginx": {}, "gatewayAPI": {}}}}}),
                Some("one router"),
            ),
            (
                "preview host without route",
                json!({"image": "a:1",
                "strategy": {"blueGreen": {"previewHost": "preview.example.com"}}}),
                Some("previewHost needs spec.route"),
            ),
            (
                "preview host with route",
                json!({"image": "a:1", "route": {"host": "api.example.com"},
                "strategy": {"blueGreen": {"previewHost": "preview.example.com"}}}),
                None,
            ),
            (
                "ingress and gateway",
                json!({"image": "a:1", "route": {"host": "api.example.com",
                "ingressClassName": "nginx", "gateway": {"name": "gw"}}}),
                Some("exclude each other"),
            ),
            (
                "relative route path",
                json!({"image": "a:1", "route": {"host": "api.example.com", "path": "api"}}),
                Some("route.path must start with '/'"),
            ),
            (
                "relative health path",
                json!({"image": "a:1", "healthCheck": {"httpPath": "health"}}),
                Some("httpPath must start with '/'"),
            ),
        ]
    }

    #[test]
    fn app_rules() {
        for (what, spec, expected) in app_cases() {
            let got = messages(app(spec));
            match expected {
                None => assert!(got.is_empty(), "{what}: expected valid, got {got:?}"),
                Some(fragment) => assert!(
                    got.iter().any(|m| m.contains(fragment)),
                    "{what}: expected a message containing {fragment:?}, got {got:?}"
                ),
            }
        }
    }

    #[test]
    fn data_plane_rules() {
        let redis = |spec: Value| json!({"kind": "Redis", "metadata": {"name": "r"}, "spec": spec});
        assert!(messages(redis(json!({}))).is_empty());
        assert!(messages(redis(json!({"mode": "external"})))[0].contains("spec.external is required"));
        assert!(
            messages(redis(json!({"mode": "standalone", "external": {"host": "h"}})))[0]
                .contains("spec.external is required")
        );
        assert!(messages(redis(json!({"sentinel": {}})))[0].contains("only to mode: replicated"));
        assert!(
            messages(redis(json!({"mode": "replicated", "sentinel": {"replicas": 1, "quorum": 2}})))[0]
                .contains("quorum cannot exceed")
        );
        assert!(messages(redis(json!({"purgeOnPromote": {"patterns": ["*"]}})))[0].contains("'*' alone"));
        assert!(messages(redis(json!({"purgeOnPromote": {"patterns": ["api:cache:*"]}}))).is_empty());

        let atlas = |entry: Value| {
            json!({"kind": "AtlasConnection", "metadata": {"name": "m"}, "spec": {
                "credentials": {"secretName": "atlas"}, "projectId": "0123456789abcdef01234567",
                "clusterName": "main", "database": "authentify", "ipAccessList": [entry]}})
        };
        assert!(messages(atlas(json!({"cidrBlock": "203.0.113.0/24"}))).is_empty());
        assert!(
            messages(atlas(json!({"cidrBlock": "203.0.113.0/24", "ipAddress": "203.0.113.1"})))[0]
                .contains("exactly one of cidrBlock or ipAddress")
        );
        assert!(messages(atlas(json!({"cidrBlock": "not-a-cidr"})))[0].contains("CIDR block"));

        let edge = |spec: Value| json!({"kind": "EdgeCache", "metadata": {"name": "e"}, "spec": spec});
        let token = json!({"name": "cf", "key": "token"});
        assert!(messages(edge(json!({"apiTokenSecret": token, "zoneName": "authentify.it"}))).is_empty());
        assert!(
            messages(edge(json!({"apiTokenSecret": token})))[0].contains("exactly one of zoneId or zoneName")
        );
        assert!(
            messages(edge(json!({"apiTokenSecret": token, "zoneName": "a.it",
            "purge": {"mode": "tags"}})))[0]
                .contains("purge.tags")
        );
    }

    #[test]
    fn unknown_kinds_are_not_ours() {
        assert!(check_cel(&json!({"kind": "Deployment"})).is_none());
    }
}

#[cfg(test)]
mod environment_tests {
    use super::*;

    /// Every manifest under `environments/` parses into our types and passes the CEL rules.
    #[test]
    fn environments_are_valid() {
        // Each environment is a kustomize overlay; build it offline with kubectl's kustomize and
        // check every custom resource it yields against the CRD schema, the CEL rules and the types.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("environments");
        let kubectl = kubectl_bin();
        let mut checked = 0;
        for env in ["local", "staging", "production"] {
            let out = std::process::Command::new(&kubectl)
                .arg("kustomize")
                .arg(root.join(env))
                .output()
                .unwrap_or_else(|e| {
                    panic!("running {} (scripts/setup.sh builds it): {e}", kubectl.display())
                });
            assert!(
                out.status.success(),
                "kubectl kustomize environments/{env}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8(out.stdout).expect("UTF-8");
            let mut kinds = vec![];
            for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                let value = serde_json::to_value(serde_yaml_ng::Value::deserialize(doc).expect("valid YAML"))
                    .expect("JSON-compatible");
                let kind = value["kind"].as_str().unwrap_or_default().to_string();
                let name = value["metadata"]["name"].as_str().unwrap_or_default().to_string();
                assert_eq!(
                    value["metadata"]["namespace"]
                        .as_str()
                        .or(value["metadata"]["name"].as_str().filter(|_| kind == "Namespace")),
                    Some(format!("authentify-{env}").as_str()),
                    "environments/{env}: {kind} {name} is outside the environment's namespace"
                );
                if matches!(kind.as_str(), "Namespace" | "Secret") {
                    continue;
                }
                let violations = check_cel(&value)
                    .unwrap_or_else(|| panic!("environments/{env}: {kind} {name} is not one of our kinds"));
                assert!(violations.is_empty(), "environments/{env}: {kind} {name}: {violations:?}");
                // Typed, and back: a field the types do not know (the API server would refuse it)
                // is lost on the way.
                fn round_trip<K: serde::de::DeserializeOwned + serde::Serialize>(
                    v: &serde_json::Value,
                ) -> Result<serde_json::Value, serde_json::Error> {
                    serde_json::to_value(serde_json::from_value::<K>(v.clone())?)
                }
                let typed = match kind.as_str() {
                    "App" => round_trip::<crate::api::App>(&value),
                    "Redis" => round_trip::<crate::api::Redis>(&value),
                    "AtlasConnection" => round_trip::<crate::api::AtlasConnection>(&value),
                    "EdgeCache" => round_trip::<crate::api::EdgeCache>(&value),
                    "AnalysisTemplate" => round_trip::<crate::api::AnalysisTemplate>(&value),
                    other => panic!("unexpected kind {other}"),
                };
                let typed = typed.unwrap_or_else(|e| panic!("environments/{env}: {kind} {name}: {e}"));
                assert!(
                    crate::controllers::json_contains(&typed, &value),
                    "environments/{env}: {kind} {name} has fields the CRD does not declare:\n{value:#}\nknown:\n{typed:#}"
                );
                kinds.push(format!("{kind}/{name}"));
                checked += 1;
            }
            for wanted in [
                "App/api",
                "App/app-web",
                "App/studio-web",
                "Redis/cache",
                "AtlasConnection/main",
                "EdgeCache/authentify",
            ] {
                assert!(kinds.iter().any(|k| k == wanted), "environments/{env} has no {wanted}: {kinds:?}");
            }
        }
        assert!(
            checked >= 18,
            "expected Authentify's platform in each environment, found {checked} resources"
        );
    }

    /// The kubectl the platform build provides (`~/.cache/authentify/path`), else PATH's.
    fn kubectl_bin() -> std::path::PathBuf {
        let cache = std::env::var_os("AUTHENTIFY_CACHE").map(std::path::PathBuf::from).or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/authentify"))
        });
        match cache.map(|c| c.join("path/kubectl")) {
            Some(path) if path.exists() => path,
            _ => std::path::PathBuf::from("kubectl"),
        }
    }

    use serde::Deserialize;
}
