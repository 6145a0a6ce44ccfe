//! Builds what an AtlasConnection publishes from its spec: the database user Atlas should hold,
//! the connection Secret Apps read (`MONGODB_URI` with URL-escaped credentials), and the
//! operator's own Secret that keeps each user's password from the moment it is generated.
//! Pure: no client, no clock; passwords go into Secret data and nowhere else.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::api::atlas::AtlasConnection;
use crate::controllers::app::build::{MANAGED_BY, MANAGER};
use crate::providers::atlas::{Cluster, DatabaseUser, DatabaseUserRole, Label, UserScope};
use crate::providers::http::Secret as Credential;

/// Label on the Secrets an AtlasConnection owns: its name (the controller's watch selects on it).
pub const ATLAS_LABEL: &str = "platform.authentify.it/atlas-connection";
/// Label key the operator sets on the Atlas database users it creates.
pub const USER_LABEL_MANAGED_BY: &str = "managed-by";
/// Label key naming the AtlasConnection (`namespace/name`) on its Atlas database users.
pub const USER_LABEL_CONNECTION: &str = "authentify-atlas-connection";
/// SCRAM users authenticate against `admin`.
pub const AUTH_DATABASE: &str = "admin";

/// Keys of the connection Secret.
pub const URI_KEY: &str = "MONGODB_URI";
/// The user name.
pub const USERNAME_KEY: &str = "MONGODB_USERNAME";
/// The password.
pub const PASSWORD_KEY: &str = "MONGODB_PASSWORD";
/// The database.
pub const DATABASE_KEY: &str = "MONGODB_DATABASE";
/// The cluster's standard connection string, without credentials.
pub const STANDARD_KEY: &str = "MONGODB_STANDARD";
/// The cluster's SRV connection string, without credentials.
pub const SRV_KEY: &str = "MONGODB_SRV";

/// RFC 3986 unreserved characters stay; everything else in a user name or password is escaped,
/// as the MongoDB connection string format requires (`@ : / ? # [ ] %`).
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Name of the connection Secret: `spec.secretName`, else `<name>-mongodb`.
pub fn secret_name(conn: &AtlasConnection) -> String {
    conn.spec.secret_name.clone().unwrap_or_else(|| default_secret_name(&conn.name_any()))
}

/// The connection Secret of an AtlasConnection with no `secretName` set.
pub fn default_secret_name(name: &str) -> String {
    format!("{name}-mongodb")
}

/// The Secret an App wired to AtlasConnection `name` reads: the one the resource last published
/// (`status.secretName`), else the one its spec names, else the default.
pub fn secret_name_for_app(name: &str, conn: Option<&AtlasConnection>) -> String {
    match conn {
        Some(c) => c.status.as_ref().and_then(|s| s.secret_name.clone()).unwrap_or_else(|| secret_name(c)),
        None => default_secret_name(name),
    }
}

/// Name of the operator's Secret holding the password of every user it created.
pub fn passwords_secret_name(conn: &AtlasConnection) -> String {
    format!("{}-atlas-users", conn.name_any())
}

/// Prefix of the generated user names: `spec.usernamePrefix`, else the resource name.
pub fn username_prefix(conn: &AtlasConnection) -> String {
    conn.spec.username_prefix.clone().unwrap_or_else(|| conn.name_any())
}

/// The user name of one credential generation: `<prefix>-<generation>`.
pub fn username(conn: &AtlasConnection, generation: i64) -> String {
    format!("{}-{generation}", username_prefix(conn))
}

/// `namespace/name`, as the users' label carries it.
pub fn connection_id(conn: &AtlasConnection) -> String {
    format!("{}/{}", conn.namespace().unwrap_or_default(), conn.name_any())
}

/// The roles the user gets: `spec.roles`, else `readWrite` on `spec.database`.
pub fn roles(conn: &AtlasConnection) -> Vec<DatabaseUserRole> {
    if conn.spec.roles.is_empty() {
        return vec![DatabaseUserRole {
            role_name: "readWrite".into(),
            database_name: conn.spec.database.clone(),
            collection_name: None,
        }];
    }
    conn.spec
        .roles
        .iter()
        .map(|r| DatabaseUserRole {
            role_name: r.role_name.clone(),
            database_name: r.database_name.clone(),
            collection_name: r.collection_name.clone(),
        })
        .collect()
}

/// The database user Atlas should hold for `username`: SCRAM (`admin`), the roles, scoped to
/// the cluster, labelled as the operator's.
pub fn database_user(conn: &AtlasConnection, username: &str) -> DatabaseUser {
    DatabaseUser {
        database_name: AUTH_DATABASE.into(),
        username: username.into(),
        roles: roles(conn),
        scopes: vec![UserScope::cluster(conn.spec.cluster_name.clone())],
        labels: vec![
            Label { key: USER_LABEL_MANAGED_BY.into(), value: MANAGER.into() },
            Label { key: USER_LABEL_CONNECTION.into(), value: connection_id(conn) },
        ],
        delete_after_date: None,
    }
}

/// True when the live user differs from `desired` in what the operator manages (roles and
/// scopes as sets; its own labels present).
pub fn user_differs(live: &DatabaseUser, desired: &DatabaseUser) -> bool {
    let same_set = |a: &[DatabaseUserRole], b: &[DatabaseUserRole]| {
        a.len() == b.len() && a.iter().all(|x| b.contains(x))
    };
    let scopes_same =
        live.scopes.len() == desired.scopes.len() && live.scopes.iter().all(|s| desired.scopes.contains(s));
    !same_set(&live.roles, &desired.roles)
        || !scopes_same
        || !desired.labels.iter().all(|l| live.labels.contains(l))
}

/// True when an Atlas user carries the label naming this AtlasConnection.
pub fn created_for(user: &DatabaseUser, conn: &AtlasConnection) -> bool {
    let id = connection_id(conn);
    user.labels.iter().any(|l| l.key == USER_LABEL_CONNECTION && l.value == id)
}

/// `base` (a `mongodb://` or `mongodb+srv://` string from Atlas) with the credentials and the
/// database: `scheme://user:password@hosts/database?options`. `None` when `base` has no scheme.
pub fn uri_with_credentials(base: &str, username: &str, password: &str, database: &str) -> Option<String> {
    let (scheme, rest) = base.split_once("://")?;
    if rest.is_empty() {
        return None;
    }
    // Drop any credentials already present; hosts end at the first `/` or `?`.
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (hosts, tail) = rest.split_at(end);
    let query = tail.split_once('?').map(|(_, q)| q).filter(|q| !q.is_empty());
    let user = utf8_percent_encode(username, USERINFO);
    let pass = utf8_percent_encode(password, USERINFO);
    let db = utf8_percent_encode(database, USERINFO);
    Some(match query {
        Some(q) => format!("{scheme}://{user}:{pass}@{hosts}/{db}?{q}"),
        None => format!("{scheme}://{user}:{pass}@{hosts}/{db}"),
    })
}

/// The connection string Apps use: the SRV one when Atlas gives it, else the standard one.
pub fn base_uri(cluster: &Cluster) -> Option<&str> {
    let strings = &cluster.connection_strings;
    strings
        .standard_srv
        .as_deref()
        .filter(|s| !s.is_empty())
        .or(strings.standard.as_deref().filter(|s| !s.is_empty()))
}

fn labels(conn: &AtlasConnection) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.to_string(), MANAGER.to_string()),
        (ATLAS_LABEL.to_string(), conn.name_any()),
    ])
}

fn meta(conn: &AtlasConnection, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: conn.namespace(),
        labels: Some(labels(conn)),
        owner_references: Some(conn.controller_owner_ref(&()).into_iter().collect()),
        ..ObjectMeta::default()
    }
}

fn data(pairs: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, ByteString> {
    pairs.into_iter().map(|(k, v)| (k, ByteString(v.into_bytes()))).collect()
}

/// The connection Secret for `username`; `Err` says why it cannot be built (no connection string).
pub fn connection_secret(
    conn: &AtlasConnection,
    username: &str,
    password: &Credential,
    cluster: &Cluster,
) -> Result<Secret, String> {
    let base = base_uri(cluster).ok_or_else(|| {
        format!(
            "Atlas reports no connection string for cluster {} yet; the Secret is published once it has one",
            conn.spec.cluster_name
        )
    })?;
    let uri =
        uri_with_credentials(base, username, password.expose(), &conn.spec.database).ok_or_else(|| {
            format!(
                "the connection string Atlas reports for cluster {} is not a MongoDB URI",
                conn.spec.cluster_name
            )
        })?;
    let mut pairs = vec![
        (URI_KEY.to_string(), uri),
        (USERNAME_KEY.to_string(), username.to_string()),
        (PASSWORD_KEY.to_string(), password.expose().to_string()),
        (DATABASE_KEY.to_string(), conn.spec.database.clone()),
    ];
    let strings = &cluster.connection_strings;
    if let Some(s) = strings.standard.clone().filter(|s| !s.is_empty()) {
        pairs.push((STANDARD_KEY.to_string(), s));
    }
    if let Some(s) = strings.standard_srv.clone().filter(|s| !s.is_empty()) {
        pairs.push((SRV_KEY.to_string(), s));
    }
    Ok(Secret {
        metadata: meta(conn, secret_name(conn)),
        data: Some(data(pairs)),
        type_: Some("Opaque".into()),
        ..Secret::default()
    })
}

/// The operator's password Secret: one key per user name.
pub fn passwords_secret(conn: &AtlasConnection, passwords: &BTreeMap<String, Credential>) -> Secret {
    Secret {
        metadata: meta(conn, passwords_secret_name(conn)),
        data: Some(data(passwords.iter().map(|(u, p)| (u.clone(), p.expose().to_string())))),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

/// The user names and passwords a password Secret holds (keys that are not UTF-8 are skipped).
pub fn read_passwords(secret: Option<&Secret>) -> BTreeMap<String, Credential> {
    secret
        .and_then(|s| s.data.as_ref())
        .map(|d| {
            d.iter()
                .filter_map(|(k, v)| {
                    let p = String::from_utf8(v.0.clone()).ok().filter(|p| !p.is_empty())?;
                    Some((k.clone(), Credential::new(p)))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The data of a built Secret as plain bytes (for hashing).
pub fn plain_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    secret.data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::atlas::ConnectionStrings;

    pub(crate) fn conn(yaml_spec: &str) -> AtlasConnection {
        let yaml = format!(
            "apiVersion: platform.authentify.it/v1alpha1\nkind: AtlasConnection\nmetadata: {{name: api, namespace: prod, uid: u-1}}\nspec:\n  credentials: {{secretName: atlas-key}}\n  projectId: 5f1a2b3c4d5e6f7a8b9c0d1e\n  clusterName: main\n  database: app\n{yaml_spec}"
        );
        serde_yaml_ng::from_str(&yaml).unwrap()
    }

    fn cluster(standard: Option<&str>, srv: Option<&str>) -> Cluster {
        Cluster {
            name: "main".into(),
            state_name: Some("IDLE".into()),
            connection_strings: ConnectionStrings {
                standard: standard.map(Into::into),
                standard_srv: srv.map(Into::into),
            },
            mongo_db_version: None,
            paused: None,
        }
    }

    #[test]
    fn uri_escapes_credentials_and_keeps_options() {
        assert_eq!(
            uri_with_credentials("mongodb+srv://main.abcde.mongodb.net", "api-1", "p@ss:w/rd%", "app")
                .as_deref(),
            Some("mongodb+srv://api-1:p%40ss%3Aw%2Frd%25@main.abcde.mongodb.net/app")
        );
        assert_eq!(
            uri_with_credentials(
                "mongodb://h1:27017,h2:27017/?ssl=true&authSource=admin&replicaSet=rs0",
                "u",
                "p",
                "app"
            )
            .as_deref(),
            Some("mongodb://u:p@h1:27017,h2:27017/app?ssl=true&authSource=admin&replicaSet=rs0")
        );
        assert_eq!(
            uri_with_credentials("mongodb://old:x@h1/admin?a=b", "u", "p", "db").as_deref(),
            Some("mongodb://u:p@h1/db?a=b")
        );
        assert_eq!(
            uri_with_credentials("mongodb://h1/?", "u", "p", "db").as_deref(),
            Some("mongodb://u:p@h1/db")
        );
        assert_eq!(uri_with_credentials("no-scheme", "u", "p", "db"), None);
        assert_eq!(uri_with_credentials("mongodb://", "u", "p", "db"), None);
    }

    #[test]
    fn srv_is_preferred_then_standard() {
        assert_eq!(base_uri(&cluster(Some("mongodb://a"), Some("mongodb+srv://b"))), Some("mongodb+srv://b"));
        assert_eq!(base_uri(&cluster(Some("mongodb://a"), Some(""))), Some("mongodb://a"));
        assert_eq!(base_uri(&cluster(None, None)), None);
    }

    #[test]
    fn names_follow_spec_or_defaults() {
        let c = conn("");
        assert_eq!(secret_name(&c), "api-mongodb");
        assert_eq!(username(&c, 3), "api-3");
        assert_eq!(passwords_secret_name(&c), "api-atlas-users");
        let c = conn("  secretName: db\n  usernamePrefix: svc\n");
        assert_eq!(secret_name(&c), "db");
        assert_eq!(username(&c, 1), "svc-1");
        assert_eq!(secret_name_for_app("api", Some(&c)), "db");
        assert_eq!(secret_name_for_app("api", None), "api-mongodb");
        let mut published = c.clone();
        published.status = Some(crate::api::atlas::AtlasConnectionStatus {
            secret_name: Some("old-name".into()),
            ..Default::default()
        });
        assert_eq!(secret_name_for_app("api", Some(&published)), "old-name");
    }

    #[test]
    fn default_role_is_read_write_on_the_database() {
        let user = database_user(&conn(""), "api-1");
        assert_eq!(
            user.roles,
            vec![DatabaseUserRole {
                role_name: "readWrite".into(),
                database_name: "app".into(),
                collection_name: None
            }]
        );
        assert_eq!(user.scopes, vec![UserScope::cluster("main")]);
        assert_eq!(user.database_name, "admin");
        assert!(created_for(&user, &conn("")));
        let explicit = database_user(&conn("  roles: [{roleName: read, databaseName: logs}]\n"), "x");
        assert_eq!(explicit.roles[0].role_name, "read");
        assert_eq!(explicit.roles.len(), 1);
    }

    #[test]
    fn user_differences_are_roles_scopes_and_own_labels() {
        let want = database_user(&conn(""), "api-1");
        let mut live = want.clone();
        live.labels.push(Label { key: "team".into(), value: "x".into() });
        assert!(!user_differs(&live, &want), "extra labels are someone else's");
        live.roles[0].role_name = "read".into();
        assert!(user_differs(&live, &want));
        let mut live = want.clone();
        live.scopes.clear();
        assert!(user_differs(&live, &want));
        let mut live = want.clone();
        live.labels.clear();
        assert!(user_differs(&live, &want));
        let mut other = conn("");
        other.metadata.namespace = Some("staging".into());
        assert!(!created_for(&want, &other));
    }

    #[test]
    fn connection_secret_holds_everything_an_app_needs() {
        let c = conn("");
        let cl = cluster(Some("mongodb://h1:27017/?authSource=admin"), Some("mongodb+srv://main.x.net"));
        let s = connection_secret(&c, "api-1", &Credential::new("pw"), &cl).unwrap();
        let d = plain_data(&s);
        let get = |k: &str| String::from_utf8(d[k].clone()).unwrap();
        assert_eq!(get(URI_KEY), "mongodb+srv://api-1:pw@main.x.net/app");
        assert_eq!(get(USERNAME_KEY), "api-1");
        assert_eq!(get(PASSWORD_KEY), "pw");
        assert_eq!(get(DATABASE_KEY), "app");
        assert_eq!(get(STANDARD_KEY), "mongodb://h1:27017/?authSource=admin");
        assert_eq!(get(SRV_KEY), "mongodb+srv://main.x.net");
        assert_eq!(s.metadata.name.as_deref(), Some("api-mongodb"));
        assert_eq!(s.labels().get(ATLAS_LABEL).map(String::as_str), Some("api"));
        assert_eq!(s.owner_references().len(), 1);
        let err = connection_secret(&c, "api-1", &Credential::new("pw"), &cluster(None, None)).unwrap_err();
        assert!(err.contains("no connection string"), "{err}");
    }

    #[test]
    fn passwords_round_trip_through_their_secret() {
        let c = conn("");
        let map = BTreeMap::from([
            ("api-1".to_string(), Credential::new("a")),
            ("api-2".into(), Credential::new("b")),
        ]);
        let s = passwords_secret(&c, &map);
        assert_eq!(read_passwords(Some(&s)), map);
        assert!(read_passwords(None).is_empty());
    }
}
