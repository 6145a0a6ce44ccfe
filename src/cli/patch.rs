//! The merge patches the user-facing verbs write to an App: image, control annotations (a fresh
//! token per request, so the operator acts once), `spec.paused`, `spec.restartAt`, and the spec
//! fields that bring back an old revision's pod template for `undo`.
//!
//! Pure: builds JSON from its inputs. It never writes `status` and never reads the clock itself.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::api::App;
use crate::controllers::app::build::{APP_LABEL, CONTAINER, MANAGED_BY, REVISION_LABEL};

/// The field manager of every write the plugin makes.
pub const FIELD_MANAGER: &str = "kubectl-authentify";

/// A control request: the annotation to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Promote the current step.
    Promote,
    /// Skip every remaining step.
    PromoteFull,
    /// Abort the rollout.
    Abort,
    /// Retry an aborted rollout.
    Retry,
}

impl Control {
    /// The annotation key.
    pub fn annotation(self) -> &'static str {
        match self {
            Self::Promote => crate::rollout::PROMOTE,
            Self::PromoteFull => crate::rollout::PROMOTE_FULL,
            Self::Abort => crate::rollout::ABORT,
            Self::Retry => crate::rollout::RETRY,
        }
    }
}

/// A token unique per request: the time with nanoseconds.
pub fn token(now: Timestamp) -> String {
    now.strftime("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// Sets a control annotation to a fresh token.
pub fn control(kind: Control, now: Timestamp) -> Value {
    json!({"metadata": {"annotations": {kind.annotation(): token(now)}}})
}

/// Splits `[CONTAINER=]IMAGE` and checks the container is the App's (`app`).
pub fn parse_image_arg(arg: &str) -> Result<String, String> {
    let (container, image) = match arg.split_once('=') {
        Some((c, i)) => (Some(c), i),
        None => (None, arg),
    };
    if let Some(c) = container
        && c != CONTAINER
    {
        return Err(format!(
            "an App has one container, named `{CONTAINER}`, not `{c}`: write `{CONTAINER}={image}` or just `{image}`"
        ));
    }
    if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
        return Err(format!(
            "`{arg}` is not an image reference: give one like registry.example.com/api:1.43.0"
        ));
    }
    Ok(image.to_string())
}

/// Sets the image.
pub fn set_image(image: &str) -> Value {
    json!({"spec": {"image": image}})
}

/// Pauses or resumes the App.
pub fn paused(paused: bool) -> Value {
    json!({"spec": {"paused": paused}})
}

/// Restarts the stable pods: `restartAt` is the next whole second (Kubernetes timestamps have
/// second precision, so every pod created until now is older).
pub fn restart(now: Timestamp) -> Value {
    let secs = now.as_second() + 1;
    let at = Timestamp::from_second(secs).unwrap_or(now);
    json!({"spec": {"restartAt": at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}})
}

/// The spec fields that make the App's pod template equal to `template` (an old ReplicaSet's), so
/// the operator finds that revision again: image, port, env, resources, health check and pod
/// labels. Labels the App has now but the old template lacks are removed (`null`).
pub fn undo_to_template(app: &App, template: &PodTemplateSpec) -> Result<Value, String> {
    let pod = template.spec.as_ref().ok_or("the old ReplicaSet has no pod template")?;
    let container = pod
        .containers
        .iter()
        .find(|c| c.name == CONTAINER)
        .ok_or("the old ReplicaSet's pod template has no `app` container")?;
    let image = container.image.clone().ok_or("the old revision's container has no image")?;
    let port = container.ports.as_ref().and_then(|p| p.first()).map_or(app.spec.port, |p| p.container_port);
    let mut env = container.env.clone().unwrap_or_default();
    if env.first().is_some_and(|e| e.name == "PORT") {
        env.remove(0);
    }
    let health_check = container.readiness_probe.as_ref().and_then(|p| {
        let get = p.http_get.as_ref()?;
        let probe_port = match &get.port {
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => Some(*n),
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(_) => None,
        };
        let mut hc = json!({
            "httpPath": get.path.clone().unwrap_or_else(|| "/".into()),
            "initialDelaySeconds": p.initial_delay_seconds.unwrap_or(0),
            "periodSeconds": p.period_seconds.unwrap_or(10),
            "timeoutSeconds": p.timeout_seconds.unwrap_or(1),
            "failureThreshold": p.failure_threshold.unwrap_or(3),
        });
        if let Some(pp) = probe_port.filter(|pp| *pp != port) {
            hc["port"] = json!(pp);
        }
        Some(hc)
    });
    let old_labels: BTreeMap<String, String> = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| {
            k != APP_LABEL && k != REVISION_LABEL && k != MANAGED_BY && k != "app.kubernetes.io/name"
        })
        .collect();
    let mut labels = serde_json::Map::new();
    for key in app.spec.pod_labels.keys() {
        if !old_labels.contains_key(key) {
            labels.insert(key.clone(), Value::Null);
        }
    }
    for (k, v) in old_labels {
        labels.insert(k, Value::String(v));
    }
    Ok(json!({"spec": {
        "image": image,
        "port": port,
        "env": env,
        // The API server defaults an absent `resources` to `{}`; the App's spec had none then.
        "resources": container.resources.clone().filter(|r| {
            r.limits.as_ref().is_some_and(|l| !l.is_empty())
                || r.requests.as_ref().is_some_and(|l| !l.is_empty())
                || r.claims.as_ref().is_some_and(|c| !c.is_empty())
        }),
        "healthCheck": health_check,
        "podLabels": Value::Object(labels),
    }}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::app::build::{Connections, pod_template};

    fn app(yaml: &str) -> App {
        serde_yaml_ng::from_str(yaml).expect("fixture")
    }

    #[test]
    fn image_argument_accepts_the_app_container_only() {
        assert_eq!(parse_image_arg("r/api:2").as_deref(), Ok("r/api:2"));
        assert_eq!(parse_image_arg("app=r/api:2").as_deref(), Ok("r/api:2"));
        let err = parse_image_arg("web=r/api:2").expect_err("other container");
        assert!(err.contains("named `app`"), "{err}");
        assert!(parse_image_arg("app=").is_err());
        assert!(parse_image_arg("a b").is_err());
    }

    #[test]
    fn tokens_are_unique_per_nanosecond_and_controls_set_one_annotation() {
        let t = Timestamp::from_nanosecond(1_700_000_000_123_456_789).expect("ts");
        assert_eq!(token(t), "2023-11-14T22:13:20.123456789Z");
        let p = control(Control::PromoteFull, t);
        assert_eq!(p["metadata"]["annotations"]["platform.authentify.it/promote-full"], json!(token(t)));
        assert_ne!(token(t), token(Timestamp::from_nanosecond(1_700_000_000_123_456_790).expect("ts")));
    }

    #[test]
    fn restart_is_after_every_pod_created_until_now() {
        let t = Timestamp::from_nanosecond(1_700_000_000_900_000_000).expect("ts");
        assert_eq!(restart(t)["spec"]["restartAt"], json!("2023-11-14T22:13:21Z"));
        assert_eq!(paused(true), json!({"spec": {"paused": true}}));
    }

    /// Undo must give the very pod template (and so the very revision hash) of the old
    /// ReplicaSet, or the rollback would create a new ReplicaSet instead of reusing the old one.
    #[test]
    fn undo_restores_the_old_revision_hash() {
        let old = app(
            "apiVersion: platform.authentify.it/v1alpha1\nkind: App\nmetadata: {name: api, namespace: p}\n\
spec:\n  image: r/api:1\n  port: 3000\n  env: [{name: A, value: '1'}]\n  healthCheck: {httpPath: /health}\n  podLabels: {team: core}\n",
        );
        let new = app(
            "apiVersion: platform.authentify.it/v1alpha1\nkind: App\nmetadata: {name: api, namespace: p}\n\
spec:\n  image: r/api:2\n  port: 3000\n  env: [{name: A, value: '2'}]\n  podLabels: {team: core, sim.authentify.it/crash: 'true'}\n  \
resources: {limits: {cpu: '1'}}\n",
        );
        let (old_template, old_hash) = pod_template(&old, &Connections::default());
        let patch = undo_to_template(&new, &old_template).expect("patch");
        let mut merged = serde_json::to_value(&new).expect("json");
        json_merge(&mut merged, &patch);
        let restored: App = serde_json::from_value(merged).expect("app");
        let (_, hash) = pod_template(&restored, &Connections::default());
        assert_eq!(hash, old_hash, "{patch:#}");
    }

    /// RFC 7386 merge, as the API server applies it.
    fn json_merge(target: &mut Value, patch: &Value) {
        match (target, patch) {
            (Value::Object(t), Value::Object(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        json_merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
            (t, p) => *t = p.clone(),
        }
    }
}
