//! Types and validation rules shared by every custom resource of the platform.
//!
//! Nothing here talks to a cluster: these are plain data with their schema and CEL rules.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every Authentify custom resource.
pub const GROUP: &str = "platform.authentify.it";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
/// The `kubectl get authentify` category every kind belongs to.
pub const CATEGORY: &str = "authentify";

/// A Go-style duration, written as in Kubernetes and Argo Rollouts: `30s`, `5m`, `1h30m`, `250ms`.
pub const DURATION_RULE: &str = "self.matches('^([0-9]+(ms|s|m|h))+$')";
/// The message shown when [`DURATION_RULE`] fails.
pub const DURATION_MESSAGE: &str =
    "must be a duration made of a number and a unit (ms, s, m, h), such as 30s, 5m or 1h30m";

/// A reference to one key of a Secret in the resource's own namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace as the resource.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// The state of one run of a controller over a resource, shared by the data-plane kinds.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub enum ResourcePhase {
    /// The operator has not finished setting the resource up yet.
    #[default]
    Pending,
    /// Everything the resource describes exists and answers.
    Ready,
    /// The resource works only in part; `status.message` and the conditions say what is missing.
    Degraded,
    /// The spec cannot be carried out as written; fix it and apply again.
    Failed,
}

/// Kubernetes condition list type, as every status here carries one.
pub type Conditions = Vec<Condition>;

/// A point in time as Kubernetes writes it (RFC 3339, seconds precision).
pub type Timestamp = Time;

/// Deletion behaviour for things the operator created outside the cluster or kept beyond the resource.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    /// Remove what the operator created when the resource is deleted.
    #[default]
    Delete,
    /// Leave what the operator created in place when the resource is deleted.
    Keep,
}
