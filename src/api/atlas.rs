//! The AtlasConnection custom resource: one App's MongoDB Atlas database user and the Secret that
//! carries its connection string, rotated without downtime.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{DeletionPolicy, ResourcePhase, Timestamp};

/// Desired state of an AtlasConnection.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "platform.authentify.it",
    version = "v1alpha1",
    kind = "AtlasConnection",
    namespaced,
    status = "AtlasConnectionStatus",
    shortname = "atlas",
    category = "authentify",
    doc = "MongoDB Atlas credentials for one App: a database user and a connection Secret.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.clusterName"),
    printcolumn(name = "Database", type_ = "string", json_path = ".spec.database"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "User", type_ = "string", json_path = ".status.currentUser"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct AtlasConnectionSpec {
    /// Atlas Administration API credentials.
    pub credentials: AtlasCredentials,
    /// Atlas project (group) id: 24 hexadecimal characters.
    #[schemars(regex(pattern = r"^[0-9a-f]{24}$"))]
    pub project_id: String,
    /// Name of the Atlas cluster the user is scoped to.
    #[schemars(length(min = 1, max = 64))]
    pub cluster_name: String,
    /// Database the App uses; it appears in `MONGODB_URI`.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[^/\\. \x22$]+$"))]
    pub database: String,
    /// Roles of the database user; `readWrite` on `database` when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub roles: Vec<DatabaseRole>,
    /// Prefix of generated user names; the resource name when absent. A generation suffix follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 40), regex(pattern = r"^[a-z0-9][a-z0-9-]*$"))]
    pub username_prefix: Option<String>,
    /// Name of the Secret to publish; `<name>-mongodb` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
    /// Entries to add to the project's IP access list. The operator removes only entries it added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub ip_access_list: Vec<AccessListEntry>,
    /// Rotate the password this often (e.g. `720h`). Rotation can also be asked for at any time
    /// with the annotation `platform.authentify.it/rotate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h))+$')")
        .message("rotateEvery must be a duration made of a number and a unit (s, m, h), such as 720h"))]
    pub rotate_every: Option<String>,
    /// Delete (default) or Keep the users and access list entries when this resource is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Check the published URI with a ping where the cluster is reachable from the operator.
    #[serde(default = "default_true")]
    pub check_connection: bool,
    /// Atlas API base URL; change only for tests or Atlas for Government.
    #[serde(default = "default_base_url")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub base_url: String,
}

fn default_true() -> bool {
    true
}
fn default_base_url() -> String {
    "https://cloud.mongodb.com".to_string()
}

/// Atlas API credentials, in a Secret of the resource's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AtlasCredentials {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// `apiKey`: keys `publicKey` and `privateKey` (HTTP Digest). `serviceAccount`: keys
    /// `clientId` and `clientSecret` (OAuth 2.0 client credentials).
    #[serde(default, rename = "type")]
    pub kind: AtlasCredentialType,
}

/// How the operator authenticates to Atlas.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum AtlasCredentialType {
    /// A programmatic API key pair.
    #[default]
    ApiKey,
    /// A service account.
    ServiceAccount,
}

/// One role of the database user.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseRole {
    /// Role name, e.g. `readWrite`, `read`, `dbAdmin`.
    #[schemars(length(min = 1, max = 64))]
    pub role_name: String,
    /// Database the role applies to.
    #[schemars(length(min = 1, max = 64))]
    pub database_name: String,
    /// Collection the role applies to, for collection-level roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection_name: Option<String>,
}

/// One IP access list entry: exactly one of cidrBlock or ipAddress.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("has(self.cidrBlock) != has(self.ipAddress)")
    .message("each ipAccessList entry sets exactly one of cidrBlock or ipAddress"))]
#[serde(rename_all = "camelCase")]
pub struct AccessListEntry {
    /// A CIDR block, e.g. `203.0.113.0/24`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("isCIDR(self)").message("cidrBlock must be a CIDR block such as 203.0.113.0/24"))]
    pub cidr_block: Option<String>,
    /// A single address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("isIP(self)").message("ipAddress must be an IPv4 or IPv6 address"))]
    pub ip_address: Option<String>,
    /// Comment stored with the entry in Atlas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 80))]
    pub comment: Option<String>,
}

/// Observed state of an AtlasConnection. Never holds a password.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AtlasConnectionStatus {
    /// Pending, Ready, Degraded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ResourcePhase>,
    /// A sentence for people about the current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Name of the published Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Database user the Secret holds now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_user: Option<String>,
    /// Users created by the operator that still exist (the current one and any awaiting
    /// deletion after a rotation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Generation suffix of the current user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_generation: Option<i64>,
    /// When the password was last rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<Timestamp>,
    /// Token of the last `platform.authentify.it/rotate` annotation acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_token: Option<String>,
    /// Access list entries the operator added (and will remove).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owned_access_list_entries: Vec<String>,
    /// Ready, Connected (the ping of the published URI) and Rotating (an old user waits for
    /// the Apps to run the new credentials).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
