//! Unit tests of the AtlasConnection controller's pure decisions.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::decide::*;
use crate::api::App;
use crate::api::app::{AppPhase, AppStatus};
use crate::api::atlas::{AtlasConnection, AtlasConnectionStatus};
use crate::api::common::ResourcePhase;
use crate::controllers::app::build::CONNECTION_HASH;
use crate::providers::atlas::AccessListEntry as LiveEntry;

fn conn(extra: &str) -> AtlasConnection {
    let yaml = format!(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: AtlasConnection\nmetadata: {{name: api, namespace: prod, uid: u-1, generation: 2}}\nspec:\n  credentials: {{secretName: atlas-key}}\n  projectId: 5f1a2b3c4d5e6f7a8b9c0d1e\n  clusterName: main\n  database: app\n{extra}"
    );
    serde_yaml_ng::from_str(&yaml).unwrap()
}

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(1_800_000_000 + secs).unwrap())
}

fn with_status(mut c: AtlasConnection, st: AtlasConnectionStatus) -> AtlasConnection {
    c.status = Some(st);
    c
}

fn current(user: &str, generation: i64, rotated_at: i64) -> AtlasConnectionStatus {
    AtlasConnectionStatus {
        current_user: Some(user.into()),
        credential_generation: Some(generation),
        users: vec![user.into()],
        last_rotation_time: Some(at(rotated_at)),
        ..AtlasConnectionStatus::default()
    }
}

fn annotate(mut c: AtlasConnection, key: &str, value: &str) -> AtlasConnection {
    c.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(key.into(), value.into());
    c
}

// --- target -------------------------------------------------------------------------------

#[test]
fn first_reconcile_targets_generation_one() {
    let t = target(&conn(""), |_| false, &at(0));
    assert_eq!(t.generation, 1);
    assert_eq!(t.username, "api-1");
    assert_eq!(t.rotation, Some(RotationReason::Initial));
}

#[test]
fn settled_connection_keeps_its_user() {
    let c = with_status(conn(""), current("api-3", 3, 0));
    let t = target(&c, |_| true, &at(10_000_000));
    assert_eq!(t, Target { generation: 3, username: "api-3".into(), rotation: None, rotate_token: None });
}

#[test]
fn rotate_annotation_acts_once_per_token() {
    let c = annotate(with_status(conn(""), current("api-1", 1, 0)), ROTATE, "t1");
    let t = target(&c, |_| true, &at(5));
    assert_eq!(t.rotation, Some(RotationReason::Requested));
    assert_eq!(t.username, "api-2");
    assert_eq!(t.rotate_token.as_deref(), Some("t1"));

    // Once recorded, the same token does nothing more.
    let mut st = current("api-2", 2, 5);
    st.rotate_token = Some("t1".into());
    let c = annotate(with_status(conn(""), st.clone()), ROTATE, "t1");
    let t = target(&c, |_| true, &at(6));
    assert_eq!(t.rotation, None);
    assert_eq!(t.rotate_token.as_deref(), Some("t1"));

    // A new token rotates again; an empty one is no request.
    let c2 = annotate(with_status(conn(""), st.clone()), ROTATE, "t2");
    assert_eq!(target(&c2, |_| true, &at(7)).rotation, Some(RotationReason::Requested));
    let c3 = annotate(with_status(conn(""), current("api-2", 2, 5)), ROTATE, "");
    assert_eq!(target(&c3, |_| true, &at(7)).rotation, None);
}

#[test]
fn rotate_every_schedules_rotations_from_the_last_one() {
    let c = with_status(conn("  rotateEvery: 1h\n"), current("api-1", 1, 0));
    assert_eq!(target(&c, |_| true, &at(3599)).rotation, None);
    assert_eq!(target(&c, |_| true, &at(3600)).rotation, Some(RotationReason::Scheduled));
    let st = c.status.clone().unwrap();
    assert_eq!(next_rotation_in(&c, &st, &at(600)), Some(Duration::from_secs(3000)));
    assert_eq!(next_rotation_in(&c, &st, &at(7200)), Some(Duration::ZERO));
    let plain = with_status(conn(""), current("api-1", 1, 0));
    assert_eq!(next_rotation_in(&plain, &st, &at(600)), None);
}

#[test]
fn lost_password_and_new_prefix_rotate() {
    let c = with_status(conn(""), current("api-1", 1, 0));
    let t = target(&c, |u| u != "api-1", &at(1));
    assert_eq!(t.rotation, Some(RotationReason::PasswordLost));
    assert_eq!(t.username, "api-2");
    let c = with_status(conn("  usernamePrefix: svc\n"), current("api-1", 1, 0));
    let t = target(&c, |_| true, &at(1));
    assert_eq!(t.rotation, Some(RotationReason::Renamed));
    assert_eq!(t.username, "svc-2");
}

#[test]
fn a_retried_rotation_targets_the_same_generation() {
    // The operator stopped after creating api-2 but before writing status: same decision again.
    let c = annotate(with_status(conn(""), current("api-1", 1, 0)), ROTATE, "t1");
    let first = target(&c, |u| u == "api-1", &at(1));
    let again = target(&c, |_| true, &at(30));
    assert_eq!(first.username, again.username);
}

// --- access list -------------------------------------------------------------------------

fn live(cidr: &str, ip: Option<&str>) -> LiveEntry {
    LiveEntry { cidr_block: Some(cidr.into()), ip_address: ip.map(Into::into), ..LiveEntry::default() }
}

#[test]
fn addresses_match_their_host_blocks() {
    let list = vec![live("203.0.113.7/32", Some("203.0.113.7")), live("198.51.100.0/24", None)];
    assert!(live_has(&list, "203.0.113.7"));
    assert!(live_has(&list, "198.51.100.0/24"));
    assert!(!live_has(&list, "198.51.100.1"));
    assert!(live_has(&[live("2001:db8::1/128", None)], "2001:db8::1"));
}

#[test]
fn access_list_adds_missing_entries_and_owns_only_what_it_added() {
    let c = conn(
        "  ipAccessList:\n  - {cidrBlock: 10.1.0.0/16}\n  - {ipAddress: 203.0.113.7, comment: office}\n  - {cidrBlock: 192.0.2.0/24}\n",
    );
    // 192.0.2.0/24 was there before (someone else's).
    let plan = access_list_plan(&c, &[live("192.0.2.0/24", None)], &[]);
    assert_eq!(plan.add.len(), 2);
    assert_eq!(plan.add[0].cidr_block.as_deref(), Some("10.1.0.0/16"));
    assert_eq!(plan.add[0].comment.as_deref(), Some("authentify-operator prod/api"));
    assert_eq!(plan.add[1].ip_address.as_deref(), Some("203.0.113.7"));
    assert_eq!(plan.add[1].comment.as_deref(), Some("office"));
    assert_eq!(plan.owned, vec!["10.1.0.0/16".to_string(), "203.0.113.7".to_string()]);
    assert!(plan.remove.is_empty());
}

#[test]
fn access_list_removes_only_its_own_dropped_entries_and_re_adds_vanished_ones() {
    let c = conn("  ipAccessList:\n  - {cidrBlock: 10.1.0.0/16}\n");
    let owned = vec!["10.1.0.0/16".to_string(), "203.0.113.7".to_string()];
    // 10.1.0.0/16 was deleted by someone: added again and still owned; 203.0.113.7 left the spec.
    let plan =
        access_list_plan(&c, &[live("203.0.113.7/32", Some("203.0.113.7")), live("0.0.0.0/0", None)], &owned);
    assert_eq!(plan.add.len(), 1);
    assert_eq!(plan.owned, vec!["10.1.0.0/16".to_string()]);
    assert_eq!(plan.remove, vec!["203.0.113.7".to_string()]);

    // Nothing to do when the list matches.
    let plan = access_list_plan(&c, &[live("10.1.0.0/16", None)], &["10.1.0.0/16".to_string()]);
    assert_eq!(plan, AccessPlan { add: vec![], remove: vec![], owned: vec!["10.1.0.0/16".into()] });

    // An empty spec removes every owned entry and never touches the others.
    let plan = access_list_plan(&conn(""), &[live("0.0.0.0/0", None)], &owned);
    assert_eq!(plan.remove, owned);
    assert!(plan.add.is_empty() && plan.owned.is_empty());
}

#[test]
fn duplicate_spec_entries_are_added_once_and_comments_are_cut_to_80() {
    let long = "x".repeat(100);
    let c = conn(&format!(
        "  ipAccessList:\n  - {{cidrBlock: 10.1.0.0/16, comment: {long}}}\n  - {{cidrBlock: 10.1.0.0/16}}\n"
    ));
    let plan = access_list_plan(&c, &[], &[]);
    assert_eq!(plan.add.len(), 1);
    assert_eq!(plan.add[0].comment.as_ref().map(String::len), Some(80));
}

// --- Apps ---------------------------------------------------------------------------------

fn app(name: &str, mongo: Option<&str>, status: Option<AppStatus>) -> App {
    let conns = mongo.map(|m| format!("  connections: {{mongodb: {m}}}\n")).unwrap_or_default();
    let yaml = format!(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: App\nmetadata: {{name: {name}, namespace: prod}}\nspec:\n  image: img:1\n  port: 3000\n{conns}"
    );
    let mut a: App = serde_yaml_ng::from_str(&yaml).unwrap();
    a.status = status;
    a
}

fn healthy_on(rev: &str) -> AppStatus {
    AppStatus {
        phase: Some(AppPhase::Healthy),
        stable_revision: Some(rev.into()),
        current_revision: Some(rev.into()),
        ..AppStatus::default()
    }
}

fn pod(name: &str, hash: Option<&str>, phase: &str) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    if let Some(h) = hash {
        p.metadata.annotations = Some(BTreeMap::from([(CONNECTION_HASH.to_string(), h.to_string())]));
    }
    p.status =
        Some(k8s_openapi::api::core::v1::PodStatus { phase: Some(phase.into()), ..Default::default() });
    p
}

#[test]
fn only_apps_naming_the_connection_are_notified_until_they_carry_the_hash() {
    let c = conn("");
    let mut done = app("done", Some("api"), None);
    done.metadata.annotations = Some(BTreeMap::from([(CONNECTION_CHANGED.to_string(), "h1".to_string())]));
    let mut other_ns = app("elsewhere", Some("api"), None);
    other_ns.metadata.namespace = Some("staging".into());
    let apps = vec![
        app("web", Some("api"), None),
        app("worker", Some("other"), None),
        app("plain", None, None),
        done,
        other_ns,
    ];
    assert_eq!(apps_to_notify(&c, &apps, "h1"), vec!["web".to_string()]);
    assert_eq!(apps_to_notify(&c, &apps, "h2"), vec!["web".to_string(), "done".to_string()]);
}

#[test]
fn pods_started_with_other_credentials_are_the_running_ones_with_another_hash() {
    let pods = vec![
        pod("new-1", Some("h2"), "Running"),
        pod("old-2", Some("h1"), "Running"),
        pod("old-1", Some("h1"), "Pending"),
        pod("job-done", Some("h1"), "Succeeded"),
        pod("crashed", Some("h1"), "Failed"),
        pod("bare", None, "Running"),
    ];
    assert_eq!(pods_with_old_credentials(&pods, "h2"), vec!["bare", "old-1", "old-2"]);
    assert!(pods_with_old_credentials(&pods[..1], "h2").is_empty());
}

#[test]
fn an_app_settles_when_healthy_on_the_new_revision_without_old_pods() {
    let a = app("web", Some("api"), Some(healthy_on("rev2")));
    assert_eq!(app_settled(&a, Ok("rev2"), &[]), Ok(()));

    let mid = app(
        "web",
        Some("api"),
        Some(AppStatus {
            phase: Some(AppPhase::Progressing),
            stable_revision: Some("rev1".into()),
            current_revision: Some("rev2".into()),
            ..AppStatus::default()
        }),
    );
    let why = app_settled(&mid, Ok("rev2"), &[]).unwrap_err();
    assert!(
        why.contains("App web is not yet Healthy on revision rev2") && why.contains("Progressing"),
        "{why}"
    );

    // Healthy, but on the revision built from the old Secret (it has not seen the new one yet).
    assert!(app_settled(&a, Ok("rev3"), &[]).is_err());
    // Rolled back: Healthy again on the old revision.
    let back = app("web", Some("api"), Some(healthy_on("rev1")));
    assert!(app_settled(&back, Ok("rev2"), &[]).is_err());

    let old: Vec<String> = (1..=5).map(|i| format!("web-rev1-{i}")).collect();
    let why = app_settled(&a, Ok("rev2"), &old).unwrap_err();
    assert!(
        why.contains("5 pod(s) started with the old credentials (web-rev1-1, web-rev1-2, web-rev1-3, ...)"),
        "{why}"
    );

    let why = app_settled(&a, Err("waiting for Secret cache-redis"), &[]).unwrap_err();
    assert_eq!(why, "App web: waiting for Secret cache-redis");
    let never = app("web", Some("api"), None);
    assert!(app_settled(&never, Ok("rev2"), &[]).unwrap_err().contains("not started"));
}

#[test]
fn old_users_go_only_when_every_app_settled() {
    let users = vec!["api-1".to_string(), "api-2".to_string()];
    assert_eq!(retire(&["api-2".into()], "api-2", &[Err("x".into())]), Retirement::default());
    assert_eq!(
        retire(&users, "api-2", &[Ok(()), Ok(())]),
        Retirement { delete: vec!["api-1".into()], waiting: None }
    );
    assert_eq!(
        retire(&users, "api-2", &[]).delete,
        vec!["api-1".to_string()],
        "no consuming App: nothing to wait for"
    );
    let r = retire(&users, "api-2", &[Ok(()), Err("App web is not yet Healthy".into())]);
    assert!(r.delete.is_empty());
    assert_eq!(
        r.waiting.as_deref(),
        Some("keeping old user(s) api-1 until every App uses api-2: App web is not yet Healthy")
    );
    // Two rotations in a row: both old users wait, then go together.
    let three = vec!["api-1".to_string(), "api-2".to_string(), "api-3".to_string()];
    assert_eq!(retire(&three, "api-3", &[Ok(())]).delete, vec!["api-1".to_string(), "api-2".to_string()]);
}

// --- status -------------------------------------------------------------------------------

fn progress() -> AtlasConnectionStatus {
    AtlasConnectionStatus { secret_name: Some("api-mongodb".into()), ..current("api-1", 1, 0) }
}

fn cond<'a>(
    st: &'a AtlasConnectionStatus,
    kind: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    st.conditions.iter().find(|c| c.type_ == kind)
}

#[test]
fn published_and_pinged_is_ready_and_connected() {
    let observed = Observed { ping: Some(Ok("ping answered".into())), ..Observed::default() };
    let (st, notes) = finish(&conn(""), progress(), &observed, &at(0));
    assert_eq!(st.phase, Some(ResourcePhase::Ready));
    assert_eq!(st.message.as_deref(), Some("Secret api-mongodb holds user api-1 for database app"));
    assert_eq!(cond(&st, "Ready").map(|c| c.status.as_str()), Some("True"));
    assert_eq!(cond(&st, CONNECTED).map(|c| c.reason.as_str()), Some("PingAnswered"));
    assert_eq!(cond(&st, ROTATING).map(|c| c.status.as_str()), Some("False"));
    assert_eq!(st.observed_generation, Some(2));
    let reasons: Vec<&str> = notes.iter().map(|n| n.reason).collect();
    assert_eq!(reasons, vec!["Connected", "Ready"]);

    // The same observation again: identical status, no Events.
    let again = with_status(conn(""), st.clone());
    let (st2, notes) = finish(&again, st.clone(), &observed, &at(50));
    assert_eq!(st2, st);
    assert!(notes.is_empty());
}

#[test]
fn a_failed_ping_degrades_with_its_reason() {
    let observed = Observed {
        ping: Some(Err(("AuthenticationFailed", "the ping failed: Authentication failed".into()))),
        ..Observed::default()
    };
    let (st, notes) = finish(&conn(""), progress(), &observed, &at(0));
    assert_eq!(st.phase, Some(ResourcePhase::Degraded));
    let c = cond(&st, CONNECTED).unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "AuthenticationFailed"));
    assert_eq!(cond(&st, "Ready").map(|c| c.reason.as_str()), Some("AuthenticationFailed"));
    assert!(
        st.message
            .as_deref()
            .unwrap()
            .starts_with("Secret api-mongodb holds user api-1, but the ping failed")
    );
    assert!(notes.iter().any(|n| n.reason == "ConnectionFailed" && n.warning));
}

#[test]
fn disabled_check_is_said_and_makes_no_event() {
    let observed = Observed { ping_disabled: true, ..Observed::default() };
    let (st, notes) = finish(&conn("  checkConnection: false\n"), progress(), &observed, &at(0));
    assert_eq!(cond(&st, CONNECTED).map(|c| c.reason.as_str()), Some("CheckDisabled"));
    assert_eq!(st.phase, Some(ResourcePhase::Ready));
    assert_eq!(notes.iter().map(|n| n.reason).collect::<Vec<_>>(), vec!["Ready"]);
}

#[test]
fn blockers_set_phase_reason_and_message() {
    let cases = [
        (
            Blocker::Invalid {
                reason: "CredentialsInvalid",
                message: "Secret atlas-key does not exist".into(),
            },
            ResourcePhase::Failed,
            "CredentialsInvalid",
            true,
        ),
        (
            Blocker::Atlas { reason: "AtlasServerError", message: "Atlas kept failing".into() },
            ResourcePhase::Degraded,
            "AtlasServerError",
            true,
        ),
        (
            Blocker::ClusterBusy("waiting for cluster main to be IDLE".into()),
            ResourcePhase::Pending,
            "ClusterNotIdle",
            false,
        ),
    ];
    for (blocker, phase, reason, warning) in cases {
        let message = match &blocker {
            Blocker::Invalid { message, .. }
            | Blocker::Atlas { message, .. }
            | Blocker::ClusterBusy(message) => message.clone(),
        };
        let observed = Observed { blocker: Some(blocker), ..Observed::default() };
        let (st, notes) = finish(&conn(""), AtlasConnectionStatus::default(), &observed, &at(0));
        assert_eq!(st.phase, Some(phase));
        assert_eq!(st.message.as_deref(), Some(message.as_str()));
        let ready = cond(&st, "Ready").unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", reason));
        assert_eq!(notes.len(), 1);
        assert_eq!((notes[0].reason, notes[0].warning), (reason, warning));
    }
    // A busy cluster with a user already published is Degraded, not Pending.
    let observed = Observed { blocker: Some(Blocker::ClusterBusy("busy".into())), ..Observed::default() };
    assert_eq!(finish(&conn(""), progress(), &observed, &at(0)).0.phase, Some(ResourcePhase::Degraded));
}

#[test]
fn a_rotation_in_progress_is_a_condition_and_part_of_the_message() {
    let mut p = progress();
    p.users = vec!["api-1".into(), "api-2".into()];
    p.current_user = Some("api-2".into());
    let observed = Observed {
        retiring: Some(
            "keeping old user(s) api-1 until every App uses api-2: App web is not yet Healthy".into(),
        ),
        ..Observed::default()
    };
    let (st, _) = finish(&conn(""), p, &observed, &at(0));
    assert_eq!(st.phase, Some(ResourcePhase::Ready));
    let c = cond(&st, ROTATING).unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "WaitingForApps"));
    assert!(
        st.message
            .as_deref()
            .unwrap()
            .ends_with("; keeping old user(s) api-1 until every App uses api-2: App web is not yet Healthy")
    );
}

#[test]
fn reasons_describe_themselves() {
    for r in [
        RotationReason::Initial,
        RotationReason::Requested,
        RotationReason::Scheduled,
        RotationReason::PasswordLost,
        RotationReason::Renamed,
    ] {
        assert!(r.describe().len() > 5);
    }
}
