//! `environments/local` (what `make up` applies) on the real control plane, against the Atlas and
//! Cloudflare fakes: every App, the Redis, the AtlasConnection and the EdgeCache become ready.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use authentify::api::app::AppPhase;
use authentify::api::common::ResourcePhase;
use authentify::api::{App, AtlasConnection, EdgeCache, Redis};
use authentify_fakes::{AtlasFake, CloudflareFake};
use k8s_openapi::api::core::v1::{PersistentVolume, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use serde::Deserialize as _;
use serde_json::{Value, json};

use crate::support::{TestCtx, poll_until};

const LONG: Duration = Duration::from_secs(120);
/// Where `scripts/up.sh` serves the fakes; the overlay must point there.
const UP_ATLAS: &str = "http://127.0.0.1:18181";
const UP_CLOUDFLARE: &str = "http://127.0.0.1:18182/client/v4";
const NAMESPACE: &str = "authentify-local";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The documents of a multi-document YAML stream.
fn documents(yaml: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value = Value::deserialize(doc)?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn secret_value(docs: &[Value], name: &str, key: &str) -> anyhow::Result<String> {
    let secret = of_kind(docs, "Secret")
        .into_iter()
        .find(|s| s["metadata"]["name"] == name)
        .with_context(|| format!("Secret {name} in the overlay"))?;
    let secret: Secret = serde_json::from_value(secret.clone())?;
    let value = secret.data.unwrap_or_default().remove(key).with_context(|| format!("{name}.data.{key}"))?;
    Ok(String::from_utf8(value.0)?)
}

fn text<'a>(value: &'a Value, what: &str) -> anyhow::Result<&'a str> {
    value.as_str().with_context(|| format!("{what} in the overlay"))
}

/// Writes `docs` as one YAML stream and applies it with kubectl (server-side).
fn apply(ctx: &TestCtx, dir: &Path, docs: &[Value]) -> anyhow::Result<()> {
    let mut stream = String::new();
    for doc in docs {
        stream.push_str("---\n");
        stream.push_str(&serde_yaml_ng::to_string(doc)?);
    }
    let file = dir.join(format!("{}.yaml", ctx.namespace));
    std::fs::write(&file, stream)?;
    let path = file.to_str().context("temp path")?;
    ctx.kubectl_ok(&["apply", "--server-side", "--field-manager", "test", "-f", path])?;
    Ok(())
}

/// The overlay as rendered by `kubectl kustomize`, moved into the test's namespace, pointed at
/// this test's fakes, its Redis on volumes of a StorageClass of the test's own (the local
/// platform's default class from scripts/local-storage.yaml would change other tests' claims).
pub async fn local_environment_is_ready_against_the_fakes(ctx: TestCtx) -> anyhow::Result<()> {
    let overlay = repo().join("environments/local");
    let rendered = ctx.kubectl_ok(&["kustomize", overlay.to_str().context("path")?])?;
    let mut docs = documents(&rendered)?;

    // The fakes, seeded from what the overlay holds (as scripts/up.sh seeds them).
    let atlas = AtlasFake::start().await?;
    let cloudflare = CloudflareFake::start().await?;
    atlas.add_api_key(
        &secret_value(&docs, "atlas-api", "publicKey")?,
        &secret_value(&docs, "atlas-api", "privateKey")?,
    );
    cloudflare.add_token(&secret_value(&docs, "cloudflare-api", "token")?);
    let connections = of_kind(&docs, "AtlasConnection");
    ensure!(connections.len() == 1, "one AtlasConnection in the overlay");
    let (project, cluster) = (
        text(&connections[0]["spec"]["projectId"], "projectId")?.to_string(),
        text(&connections[0]["spec"]["clusterName"], "clusterName")?.to_string(),
    );
    atlas.put_cluster(&project, &cluster, "IDLE");
    let edges = of_kind(&docs, "EdgeCache");
    ensure!(edges.len() == 1, "one EdgeCache in the overlay");
    let zone_name = text(&edges[0]["spec"]["zoneName"], "zoneName")?.to_string();
    let zone = cloudflare.add_zone(&zone_name);

    // A class and volumes of the test's own for the Redis's claim.
    let class = format!("local-{}", ctx.namespace);
    let mut storage = vec![json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": class},
        "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer",
    })];
    for i in 0..2 {
        storage.push(json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": format!("{class}-{i}"), "labels": {"authentify.it/test": ctx.namespace}},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                "storageClassName": class, "hostPath": {"path": format!("/tmp/{class}-{i}")}},
        }));
    }

    docs.retain(|d| d["kind"] != "Namespace");
    let mut kinds = Vec::new();
    for doc in &mut docs {
        ensure!(doc["metadata"]["namespace"] == NAMESPACE, "{} is in {NAMESPACE}", doc["metadata"]["name"]);
        doc["metadata"]["namespace"] = json!(ctx.namespace);
        let kind = text(&doc["kind"], "kind")?.to_string();
        match kind.as_str() {
            "AtlasConnection" => {
                ensure!(
                    doc["spec"]["baseUrl"] == UP_ATLAS,
                    "the AtlasConnection points at up.sh's Atlas fake"
                );
                doc["spec"]["baseUrl"] = json!(atlas.base_url());
            }
            "EdgeCache" => {
                ensure!(
                    doc["spec"]["baseUrl"] == UP_CLOUDFLARE,
                    "the EdgeCache points at up.sh's Cloudflare fake"
                );
                doc["spec"]["baseUrl"] = json!(cloudflare.base_url());
            }
            "Redis" => doc["spec"]["storage"] = json!({"storageClassName": class}),
            _ => {}
        }
        kinds.push(kind);
    }
    for kind in ["App", "Redis", "AtlasConnection", "EdgeCache", "Secret"] {
        ensure!(kinds.iter().any(|k| k == kind), "the overlay has a {kind}");
    }
    let dir = tempfile::tempdir()?;
    apply(&ctx, dir.path(), &storage)?;
    let result = ready(&ctx, dir.path(), &docs).await;

    // Deleting runs the finalizers against the fakes, which must still answer.
    for edge in ctx.api::<EdgeCache>().list(&ListParams::default()).await? {
        ctx.api::<EdgeCache>().delete(&edge.name_any(), &DeleteParams::default()).await?;
    }
    for conn in ctx.api::<AtlasConnection>().list(&ListParams::default()).await? {
        ctx.api::<AtlasConnection>().delete(&conn.name_any(), &DeleteParams::default()).await?;
    }
    poll_until("the EdgeCache and AtlasConnection finalizers to run", LONG, || async {
        Ok(ctx.api::<EdgeCache>().list(&ListParams::default()).await?.items.is_empty()
            && ctx.api::<AtlasConnection>().list(&ListParams::default()).await?.items.is_empty())
    })
    .await?;
    let _ = Api::<PersistentVolume>::all(ctx.client.clone())
        .delete_collection(
            &DeleteParams::background(),
            &ListParams::default().labels(&format!("authentify.it/test={}", ctx.namespace)),
        )
        .await;
    let _ = Api::<StorageClass>::all(ctx.client.clone()).delete(&class, &DeleteParams::background()).await;
    result?;

    ensure!(atlas.usernames(&project).is_empty(), "the deleted AtlasConnection's users are gone");
    ensure!(cloudflare.dns_records(&zone).is_empty(), "the deleted EdgeCache's records are gone");
    atlas.assert_no_violations();
    cloudflare.assert_no_violations();
    Ok(())
}

async fn ready(ctx: &TestCtx, dir: &Path, docs: &[Value]) -> anyhow::Result<()> {
    apply(ctx, dir, docs)?;
    for app in of_kind(docs, "App") {
        let name = text(&app["metadata"]["name"], "App name")?;
        ctx.wait_for::<App>(name, "Healthy", LONG, |a| {
            a.status.as_ref().and_then(|s| s.phase.clone()) == Some(AppPhase::Healthy)
        })
        .await?;
    }
    let name = |kind: &str| -> anyhow::Result<String> {
        Ok(text(&of_kind(docs, kind).first().context("kind")?["metadata"]["name"], "name")?.to_string())
    };
    ctx.wait_for::<Redis>(&name("Redis")?, "Ready", LONG, |r| {
        r.status.as_ref().and_then(|s| s.phase.clone()) == Some(ResourcePhase::Ready)
    })
    .await?;
    ctx.wait_for::<AtlasConnection>(&name("AtlasConnection")?, "Ready", LONG, |c| {
        c.status.as_ref().and_then(|s| s.phase.clone()) == Some(ResourcePhase::Ready)
    })
    .await?;
    ctx.wait_for::<EdgeCache>(&name("EdgeCache")?, "Ready", LONG, |e| {
        e.status.as_ref().and_then(|s| s.phase.clone()) == Some(ResourcePhase::Ready)
    })
    .await?;
    Ok(())
}
