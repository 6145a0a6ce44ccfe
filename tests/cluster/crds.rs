//! The API server enforces the CRDs' schemas and CEL rules, applies defaults, and prints the
//! columns `kubectl get` users rely on.

use anyhow::{bail, ensure};
use authentify::api::{App, AtlasConnection, EdgeCache, Redis};
use kube::Api;
use std::time::Duration;

use kube::api::{ApiResource, DynamicObject, PostParams};

use crate::support::TestCtx;

/// Creates `yaml` and requires a 422 whose message contains every fragment.
async fn expect_rejected<K>(ctx: &TestCtx, yaml: &str, fragments: &[&str]) -> anyhow::Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    // Sent untyped, so that what the Rust types would refuse still reaches the API server.
    let object: DynamicObject = serde_yaml_ng::from_str(yaml)?;
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &ctx.namespace, &ApiResource::erase::<K>(&()));
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => bail!("the API server accepted an invalid object:\n{yaml}"),
        Err(kube::Error::Api(status)) => {
            ensure!(status.code == 422, "expected 422 Invalid, got {}: {}", status.code, status.message);
            for fragment in fragments {
                ensure!(
                    status.message.contains(fragment),
                    "rejection message does not mention {fragment:?}: {}",
                    status.message
                );
            }
            Ok(())
        }
        Err(other) => bail!("unexpected error: {other}"),
    }
}

pub async fn invalid_apps_are_rejected_with_a_message_naming_the_field(ctx: TestCtx) -> anyhow::Result<()> {
    let cases: &[(&str, &[&str])] = &[
        (
            "spec: {image: api:1, autoscaling: {minReplicas: 5, maxReplicas: 2, cpuPercent: 70}}",
            &["spec.autoscaling", "minReplicas must be less than or equal"],
        ),
        (
            "spec: {image: api:1, strategy: {canary: {}, blueGreen: {}}}",
            &["spec.strategy", "exactly one of canary"],
        ),
        (
            "spec: {image: api:1, strategy: {canary: {steps: [{setWeight: 150}]}}}",
            &["spec.strategy.canary.steps[0].setWeight", "less than or equal to 100"],
        ),
        (
            "spec: {image: api:1, strategy: {canary: {steps: [{setWeight: 10, pause: {}}]}}}",
            &["spec.strategy.canary.steps[0]", "exactly one of setWeight, pause"],
        ),
        (
            "spec: {image: api:1, strategy: {canary: {steps: [{pause: {duration: 2 minutes}}]}}}",
            &["spec.strategy.canary.steps[0].pause.duration", "such as 30s, 5m or 1h30m"],
        ),
        ("spec: {image: api:1, port: 70000}", &["spec.port", "less than or equal to 65535"]),
        ("spec: {replicas: 1}", &["spec.image", "Required value"]),
        (
            "spec: {image: api:1, strategy: {blueGreen: {previewHost: preview.authentify.it}}}",
            &["previewHost needs spec.route"],
        ),
        ("spec: {image: api:1, route: {host: 'Not A Host'}}", &["spec.route.host"]),
    ];
    for (i, (spec, fragments)) in cases.iter().enumerate() {
        let yaml = format!(
            "apiVersion: platform.authentify.it/v1alpha1\nkind: App\nmetadata: {{name: bad-{i}}}\n{spec}\n"
        );
        expect_rejected::<App>(&ctx, &yaml, fragments).await?;
    }
    Ok(())
}

pub async fn invalid_data_plane_resources_are_rejected(ctx: TestCtx) -> anyhow::Result<()> {
    expect_rejected::<Redis>(
        &ctx,
        "apiVersion: platform.authentify.it/v1alpha1\nkind: Redis\nmetadata: {name: r}\nspec: {mode: external}\n",
        &["spec.external is required when mode is external"],
    )
    .await?;
    expect_rejected::<Redis>(
        &ctx,
        "apiVersion: platform.authentify.it/v1alpha1\nkind: Redis\nmetadata: {name: r}\nspec: {mode: cluster}\n",
        &["spec.mode", "Unsupported value"],
    )
    .await?;
    expect_rejected::<AtlasConnection>(
        &ctx,
        "apiVersion: platform.authentify.it/v1alpha1\nkind: AtlasConnection\nmetadata: {name: m}\n\
         spec: {credentials: {secretName: atlas}, projectId: not-hex, clusterName: main, database: app}\n",
        &["spec.projectId"],
    )
    .await?;
    expect_rejected::<AtlasConnection>(
        &ctx,
        "apiVersion: platform.authentify.it/v1alpha1\nkind: AtlasConnection\nmetadata: {name: m}\n\
         spec: {credentials: {secretName: atlas}, projectId: 0123456789abcdef01234567, clusterName: main,\n\
         database: app, ipAccessList: [{cidrBlock: 10.0.0.0/8, ipAddress: 10.0.0.1}]}\n",
        &["exactly one of cidrBlock or ipAddress"],
    )
    .await?;
    expect_rejected::<EdgeCache>(
        &ctx,
        "apiVersion: platform.authentify.it/v1alpha1\nkind: EdgeCache\nmetadata: {name: e}\n\
         spec: {apiTokenSecret: {name: cf, key: token}}\n",
        &["exactly one of zoneId or zoneName"],
    )
    .await?;
    expect_rejected::<EdgeCache>(
        &ctx,
        "apiVersion: platform.authentify.it/v1alpha1\nkind: EdgeCache\nmetadata: {name: e}\n\
         spec: {apiTokenSecret: {name: cf, key: token}, zoneName: a.it,\n\
         cacheRules: [{name: static, expression: 'true'}, {name: static, expression: 'false'}]}\n",
        &["spec.cacheRules[1]", "Duplicate value"],
    )
    .await?;
    Ok(())
}

const VALID_APP: &str = r#"
apiVersion: platform.authentify.it/v1alpha1
kind: App
metadata: {name: api}
spec:
  image: registry.example.com/authentify/api:1.42.0
  replicas: 4
  route: {host: api.authentify.it, ingressClassName: nginx}
  strategy:
    canary:
      steps:
        - setWeight: 10
        - pause: {duration: 2m}
        - setWeight: 50
        - pause: {}
"#;

pub async fn valid_app_is_accepted_with_defaults_and_printer_columns(ctx: TestCtx) -> anyhow::Result<()> {
    let app: App = ctx.create_yaml(VALID_APP).await?;
    // Defaults come from the schema, applied by the API server.
    ensure!(app.spec.port == 8080, "port default: {}", app.spec.port);
    ensure!(app.spec.progress_deadline_seconds == 600);
    ensure!(app.spec.revision_history_limit == 5);
    ensure!(app.spec.auto_rollback.enabled, "automatic rollback must be on by default");
    let canary = app.spec.strategy.as_ref().and_then(|s| s.canary.as_ref()).expect("canary");
    ensure!(
        canary.max_surge == k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("25%".into())
    );
    ensure!(app.spec.route.as_ref().map(|r| r.path.as_str()) == Some("/"));

    let table = ctx.kubectl_ok(&["get", "apps.platform.authentify.it"])?;
    let header = table.lines().next().unwrap_or_default();
    for column in ["NAME", "READY", "PHASE", "STRATEGY", "STEP", "WEIGHT", "IMAGE", "AGE"] {
        ensure!(header.split_whitespace().any(|c| c == column), "column {column} missing from:\n{table}");
    }
    ensure!(table.contains("registry.example.com/authentify/api:1.42.0"), "image column empty:\n{table}");
    Ok(())
}

pub async fn kubectl_explain_and_category_work(ctx: TestCtx) -> anyhow::Result<()> {
    let explain = ctx.kubectl_ok(&["explain", "apps.platform.authentify.it.spec.strategy.canary.steps"])?;
    ensure!(explain.contains("setWeight"), "explain lacks setWeight:\n{explain}");
    ensure!(explain.contains("Steps run in order"), "explain lacks the field description:\n{explain}");

    ctx.create_yaml::<App>(VALID_APP).await?;
    ctx.create_yaml::<Redis>(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: Redis\nmetadata: {name: cache}\nspec: {}\n",
    )
    .await?;
    let all = ctx.kubectl_ok(&["get", "authentify", "-o", "name"])?;
    ensure!(all.contains("app.platform.authentify.it/api"), "category misses the App:\n{all}");
    ensure!(all.contains("redis.platform.authentify.it/cache"), "category misses the Redis:\n{all}");
    let short = ctx.kubectl_ok(&["get", "rds", "-o", "name"])?;
    ensure!(short.trim() == "redis.platform.authentify.it/cache", "short name rds: {short}");
    Ok(())
}

pub async fn scale_subresource_sets_replicas(ctx: TestCtx) -> anyhow::Result<()> {
    ctx.create_yaml::<App>(VALID_APP).await?;
    ctx.kubectl_ok(&["scale", "apps.platform.authentify.it/api", "--replicas", "7"])?;
    let app = ctx.api::<App>().get("api").await?;
    ensure!(app.spec.replicas == Some(7), "scale did not set spec.replicas: {:?}", app.spec.replicas);
    // The operator publishes the pods' selector in status; the /scale subresource serves it (the HPA needs it).
    ctx.wait_for::<App>("api", "given a selector", Duration::from_secs(60), |a| {
        a.status.as_ref().and_then(|s| s.selector.clone()).is_some()
    })
    .await?;
    let scale = ctx.kubectl_ok(&[
        "get",
        "--raw",
        &format!("/apis/platform.authentify.it/v1alpha1/namespaces/{}/apps/api/scale", ctx.namespace),
    ])?;
    ensure!(
        scale.contains("\"selector\":\"platform.authentify.it/app=api\""),
        "scale subresource lacks the selector: {scale}"
    );
    ensure!(scale.contains("\"replicas\":7"), "{scale}");
    Ok(())
}
