//! Builds the Kubernetes objects an App owns from its spec and the engine's plan: the pod
//! template (and its hash, which names the revision), ReplicaSets, Services, Ingresses, Jobs and
//! the HorizontalPodAutoscaler. Pure: no client, no clock.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvFromSource, EnvVar, HTTPGetAction, PodSpec, PodTemplateSpec, Probe,
    SecretEnvSource, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend,
    IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::api::App;
use crate::rollout::{JobKind, Selector};

/// Label on every object the operator creates for an App: the App's name.
pub const APP_LABEL: &str = "platform.authentify.it/app";
/// Label naming the revision (pod-template hash) of ReplicaSets, pods and jobs.
pub const REVISION_LABEL: &str = "platform.authentify.it/revision";
/// Label that marks a Job's role (`pre-deploy` or `post-deploy`).
pub const JOB_LABEL: &str = "platform.authentify.it/job";
/// Standard managed-by label; the operator's watches select on it.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY`].
pub const MANAGER: &str = "authentify-operator";
/// Pod annotation holding the hash of the connection Secrets, so a changed Secret rolls the App.
pub const CONNECTION_HASH: &str = "platform.authentify.it/connection-hash";
/// Name of the App's main container.
pub const CONTAINER: &str = "app";

/// Labels shared by everything an App owns.
pub fn common_labels(app: &App) -> BTreeMap<String, String> {
    BTreeMap::from([
        (APP_LABEL.to_string(), app.name_any()),
        ("app.kubernetes.io/name".to_string(), app.name_any()),
        (MANAGED_BY.to_string(), MANAGER.to_string()),
    ])
}

/// The label selector of all the App's pods, as a string for the `/scale` subresource.
pub fn selector_string(app: &App) -> String {
    format!("{APP_LABEL}={}", app.name_any())
}

fn owner(app: &App) -> Vec<OwnerReference> {
    app.controller_owner_ref(&()).into_iter().collect()
}

fn meta(app: &App, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: app.namespace(),
        labels: Some(labels),
        owner_references: Some(owner(app)),
        ..ObjectMeta::default()
    }
}

/// Connection Secrets wired into the App, with their data hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connections {
    /// Secret names, in a stable order.
    pub secrets: Vec<String>,
    /// Hash of their contents; empty without connections.
    pub hash: String,
}

/// Hash of Secrets' data (names, keys and values), for [`CONNECTION_HASH`]. Only the hash leaves
/// this function, never a value.
pub fn hash_secret_data<'a>(
    secrets: impl IntoIterator<Item = (&'a str, &'a BTreeMap<String, Vec<u8>>)>,
) -> String {
    let mut h = Sha256::new();
    for (name, data) in secrets {
        h.update(name.as_bytes());
        h.update([0]);
        for (k, v) in data {
            h.update(k.as_bytes());
            h.update([0]);
            h.update(v);
            h.update([0]);
        }
    }
    hex(&h.finalize()[..8])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn probe(app: &App) -> Option<Probe> {
    let hc = app.spec.health_check.as_ref()?;
    Some(Probe {
        http_get: Some(HTTPGetAction {
            path: Some(hc.http_path.clone()),
            port: IntOrString::Int(hc.port.unwrap_or(app.spec.port)),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(hc.initial_delay_seconds),
        period_seconds: Some(hc.period_seconds),
        timeout_seconds: Some(hc.timeout_seconds),
        failure_threshold: Some(hc.failure_threshold),
        ..Probe::default()
    })
}

fn container(app: &App, connections: &Connections) -> Container {
    let mut env =
        vec![EnvVar { name: "PORT".into(), value: Some(app.spec.port.to_string()), ..EnvVar::default() }];
    env.extend(app.spec.env.iter().cloned());
    let env_from: Vec<EnvFromSource> = connections
        .secrets
        .iter()
        .map(|s| EnvFromSource {
            secret_ref: Some(SecretEnvSource { name: s.clone(), optional: Some(false) }),
            ..EnvFromSource::default()
        })
        .collect();
    let probe = probe(app);
    Container {
        name: CONTAINER.into(),
        image: Some(app.spec.image.clone()),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: app.spec.port,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        env: Some(env),
        env_from: (!env_from.is_empty()).then_some(env_from),
        readiness_probe: probe.clone(),
        liveness_probe: probe.map(|p| Probe { failure_threshold: p.failure_threshold.map(|f| f * 2), ..p }),
        resources: app.spec.resources.clone(),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    }
}

/// The pod template of the App's current spec, without the revision label, and its hash.
pub fn pod_template(app: &App, connections: &Connections) -> (PodTemplateSpec, String) {
    let mut labels = app.spec.pod_labels.clone();
    labels.extend(common_labels(app));
    let annotations = (!connections.hash.is_empty())
        .then(|| BTreeMap::from([(CONNECTION_HASH.to_string(), connections.hash.clone())]));
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta { labels: Some(labels), annotations, ..ObjectMeta::default() }),
        spec: Some(PodSpec {
            containers: vec![container(app, connections)],
            termination_grace_period_seconds: Some(30),
            ..PodSpec::default()
        }),
    };
    let json = serde_json::to_vec(&template).unwrap_or_default();
    let hash = hex(&Sha256::digest(&json)[..5]);
    (template, hash)
}

/// Adds the revision label to a template's metadata.
fn with_revision(mut template: PodTemplateSpec, revision: &str) -> PodTemplateSpec {
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    meta.labels.get_or_insert_with(BTreeMap::new).insert(REVISION_LABEL.into(), revision.into());
    template
}

/// The ReplicaSet of one revision.
pub fn replica_set(app: &App, revision: &str, template: PodTemplateSpec, replicas: i32) -> ReplicaSet {
    let mut labels = common_labels(app);
    labels.insert(REVISION_LABEL.into(), revision.into());
    let image = template
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let mut metadata = meta(app, format!("{}-{revision}", app.name_any()), labels);
    metadata.annotations = Some(BTreeMap::from([("platform.authentify.it/image".to_string(), image)]));
    ReplicaSet {
        metadata,
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([
                    (APP_LABEL.to_string(), app.name_any()),
                    (REVISION_LABEL.to_string(), revision.to_string()),
                ])),
                ..LabelSelector::default()
            },
            template: Some(with_revision(template, revision)),
            ..ReplicaSetSpec::default()
        },
        status: None,
    }
}

/// A revision's ReplicaSet rebuilt from what was observed, at a new size (for old revisions,
/// whose template the current spec no longer describes).
pub fn resize(app: &App, observed: &ReplicaSet, replicas: i32) -> Option<ReplicaSet> {
    let revision = observed.labels().get(REVISION_LABEL)?.clone();
    let mut template = observed.spec.template.clone()?;
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(REVISION_LABEL);
    }
    Some(replica_set(app, &revision, template, replicas))
}

/// Name of the Service that carries the new revision: `-preview` for blue-green, else `-canary`.
pub fn preview_service_name(app: &App) -> String {
    let bg = app.spec.strategy.as_ref().is_some_and(|s| s.blue_green.is_some());
    format!("{}-{}", app.name_any(), if bg { "preview" } else { "canary" })
}

/// A Service selecting `selector`'s pods.
pub fn service(app: &App, name: String, selector: &Selector) -> Service {
    let mut sel = BTreeMap::from([(APP_LABEL.to_string(), app.name_any())]);
    if let Selector::Revision(r) = selector {
        sel.insert(REVISION_LABEL.into(), r.clone());
    }
    Service {
        metadata: meta(app, name, common_labels(app)),
        spec: Some(ServiceSpec {
            selector: Some(sel),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The Ingresses of the App: the main host, and the blue-green preview host.
pub fn ingresses(app: &App) -> Vec<Ingress> {
    let Some(route) = app.spec.route.as_ref().filter(|r| r.gateway.is_none()) else { return vec![] };
    let ingress = |name: String, host: &str, service: String| Ingress {
        metadata: meta(app, name, common_labels(app)),
        spec: Some(IngressSpec {
            ingress_class_name: route.ingress_class_name.clone(),
            tls: route.tls_secret_name.as_ref().map(|s| {
                vec![IngressTLS { hosts: Some(vec![host.to_string()]), secret_name: Some(s.clone()) }]
            }),
            rules: Some(vec![IngressRule {
                host: Some(host.to_string()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some(route.path.clone()),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: service,
                                port: Some(ServiceBackendPort { name: Some("http".into()), number: None }),
                            }),
                            resource: None,
                        },
                    }],
                }),
            }]),
            ..IngressSpec::default()
        }),
        status: None,
    };
    let mut out = vec![ingress(app.name_any(), &route.host, app.name_any())];
    if let Some(preview) =
        app.spec.strategy.as_ref().and_then(|s| s.blue_green.as_ref()).and_then(|b| b.preview_host.as_ref())
    {
        out.push(ingress(format!("{}-preview", app.name_any()), preview, preview_service_name(app)));
    }
    out
}

/// Name of a revision's job.
pub fn job_name(app: &App, kind: JobKind, revision: &str) -> String {
    let k = match kind {
        JobKind::PreDeploy => "pre",
        JobKind::PostDeploy => "post",
    };
    format!("{}-{k}-{revision}", app.name_any())
}

/// The pre- or post-deploy Job of a revision: the App's pod template with the job's command.
pub fn job(app: &App, kind: JobKind, revision: &str, template: &PodTemplateSpec) -> Option<Job> {
    let jobs = app.spec.jobs.as_ref()?;
    let spec = match kind {
        JobKind::PreDeploy => jobs.pre_deploy.as_ref()?,
        JobKind::PostDeploy => jobs.post_deploy.as_ref()?,
    };
    let mut template = with_revision(template.clone(), revision);
    let role = match kind {
        JobKind::PreDeploy => "pre-deploy",
        JobKind::PostDeploy => "post-deploy",
    };
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.insert(JOB_LABEL.into(), role.into());
    }
    if let Some(pod) = template.spec.as_mut() {
        pod.restart_policy = Some("Never".into());
        if let Some(c) = pod.containers.first_mut() {
            c.command = Some(spec.command.clone());
            c.readiness_probe = None;
            c.liveness_probe = None;
            c.ports = None;
            c.env.get_or_insert_with(Vec::new).extend(spec.env.iter().cloned());
        }
    }
    let mut labels = common_labels(app);
    labels.insert(REVISION_LABEL.into(), revision.into());
    labels.insert(JOB_LABEL.into(), role.into());
    Some(Job {
        metadata: meta(app, job_name(app, kind, revision), labels),
        spec: Some(JobSpec {
            backoff_limit: Some(spec.backoff_limit),
            active_deadline_seconds: Some(i64::from(spec.timeout_seconds)),
            template,
            ..JobSpec::default()
        }),
        status: None,
    })
}

/// The HorizontalPodAutoscaler targeting the App's `/scale` subresource.
pub fn hpa(app: &App) -> Option<HorizontalPodAutoscaler> {
    let a = app.spec.autoscaling.as_ref()?;
    let metric = |name: &str, pct: i32| MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: name.into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(pct),
                ..MetricTarget::default()
            },
        }),
        ..MetricSpec::default()
    };
    let metrics: Vec<MetricSpec> =
        [a.cpu_percent.map(|p| metric("cpu", p)), a.memory_percent.map(|p| metric("memory", p))]
            .into_iter()
            .flatten()
            .collect();
    Some(HorizontalPodAutoscaler {
        metadata: meta(app, app.name_any(), common_labels(app)),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some(App::api_version(&()).to_string()),
                kind: App::kind(&()).to_string(),
                name: app.name_any(),
            },
            min_replicas: Some(a.min_replicas),
            max_replicas: a.max_replicas,
            metrics: Some(metrics),
            ..HorizontalPodAutoscalerSpec::default()
        },
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(yaml: &str) -> App {
        let mut app: App = serde_yaml_ng::from_str(yaml).expect("fixture");
        app.metadata.uid = Some("uid-1".into());
        app
    }

    const API: &str = "apiVersion: platform.authentify.it/v1alpha1\nkind: App\nmetadata: {name: api, namespace: prod}\nspec:\n  image: api:1\n  port: 3000\n  healthCheck: {httpPath: /health}\n";

    #[test]
    fn template_hash_changes_with_what_matters_only() {
        let a = app(API);
        let (_, h1) = pod_template(&a, &Connections::default());
        let (_, h1_again) = pod_template(&a, &Connections::default());
        assert_eq!(h1, h1_again, "the hash is deterministic");
        assert_eq!(h1.len(), 10);
        let mut b = a.clone();
        b.spec.image = "api:2".into();
        assert_ne!(pod_template(&b, &Connections::default()).1, h1, "image changes the revision");
        let mut c = a.clone();
        c.spec.replicas = Some(9);
        assert_eq!(pod_template(&c, &Connections::default()).1, h1, "replicas do not");
        let conn = Connections { secrets: vec!["cache-redis".into()], hash: "abc".into() };
        assert_ne!(pod_template(&a, &conn).1, h1, "connection secrets do");
        let conn2 = Connections { secrets: vec!["cache-redis".into()], hash: "abd".into() };
        assert_ne!(pod_template(&a, &conn).1, pod_template(&a, &conn2).1, "a changed secret rolls the App");
    }

    #[test]
    fn secret_hash_covers_values_but_reveals_none() {
        let data = BTreeMap::from([("REDIS_PASSWORD".to_string(), b"hunter2".to_vec())]);
        let other = BTreeMap::from([("REDIS_PASSWORD".to_string(), b"hunter3".to_vec())]);
        let h = hash_secret_data([("s", &data)]);
        assert_ne!(h, hash_secret_data([("s", &other)]));
        assert!(!h.contains("hunter"));
    }

    #[test]
    fn replica_set_is_named_by_revision_and_owned() {
        let a = app(API);
        let (t, h) = pod_template(&a, &Connections::default());
        let rs = replica_set(&a, &h, t, 3);
        assert_eq!(rs.metadata.name.as_deref(), Some(format!("api-{h}").as_str()));
        assert_eq!(rs.metadata.owner_references.as_ref().map(|o| o[0].controller), Some(Some(true)));
        let spec = &rs.spec;
        assert_eq!(spec.replicas, Some(3));
        let pod_labels = spec
            .template
            .as_ref()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        assert_eq!(pod_labels.get(REVISION_LABEL), Some(&h));
        let c = &spec.template.as_ref().and_then(|t| t.spec.as_ref()).expect("pod").containers[0];
        assert_eq!(
            c.readiness_probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .and_then(|g| g.path.clone())
                .as_deref(),
            Some("/health")
        );
        // Resizing an observed ReplicaSet keeps its template and revision.
        let resized = resize(&a, &rs, 0).expect("resizable");
        assert_eq!(resized.spec.replicas, Some(0));
        assert_eq!(resized.spec.template, spec.template);
    }

    #[test]
    fn services_select_by_plan() {
        let a = app(API);
        let all = service(&a, "api".into(), &Selector::AllRevisions);
        assert_eq!(all.spec.as_ref().and_then(|s| s.selector.clone()).map(|s| s.len()), Some(1));
        let one = service(&a, "api".into(), &Selector::Revision("abc".into()));
        assert_eq!(
            one.spec
                .as_ref()
                .and_then(|s| s.selector.clone())
                .and_then(|s| s.get(REVISION_LABEL).cloned())
                .as_deref(),
            Some("abc")
        );
    }

    #[test]
    fn jobs_run_the_command_with_the_new_image() {
        let a = app(&format!("{API}  jobs: {{preDeploy: {{command: [npm, run, migrate]}}}}\n"));
        let (t, h) = pod_template(&a, &Connections::default());
        let job = job(&a, JobKind::PreDeploy, &h, &t).expect("configured");
        assert_eq!(job.metadata.name, Some(format!("api-pre-{h}")));
        let pod = job.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod");
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.containers[0].command, Some(vec!["npm".into(), "run".into(), "migrate".into()]));
        assert_eq!(pod.containers[0].image.as_deref(), Some("api:1"));
        assert!(super::job(&a, JobKind::PostDeploy, &h, &t).is_none());
    }

    #[test]
    fn hpa_targets_the_app_scale_subresource() {
        let a = app(&format!("{API}  autoscaling: {{minReplicas: 2, maxReplicas: 8, cpuPercent: 70}}\n"));
        let h = hpa(&a).expect("autoscaled");
        let spec = h.spec;
        assert_eq!(spec.scale_target_ref.kind, "App");
        assert_eq!(spec.scale_target_ref.api_version.as_deref(), Some("platform.authentify.it/v1alpha1"));
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 8));
        assert!(hpa(&app(API)).is_none());
    }

    #[test]
    fn ingress_for_route_and_preview_host() {
        let a = app(&format!(
            "{API}  route: {{host: api.authentify.it, ingressClassName: nginx}}\n  strategy: {{blueGreen: {{previewHost: preview.authentify.it}}}}\n"
        ));
        let list = ingresses(&a);
        assert_eq!(list.len(), 2);
        let backend = |i: &Ingress| {
            i.spec
                .as_ref()
                .and_then(|s| s.rules.clone())
                .and_then(|r| r[0].http.clone())
                .and_then(|h| h.paths[0].backend.service.clone())
                .map(|s| s.name)
        };
        assert_eq!(backend(&list[0]).as_deref(), Some("api"));
        assert_eq!(backend(&list[1]).as_deref(), Some("api-preview"));
        assert!(ingresses(&app(API)).is_empty());
    }
}
