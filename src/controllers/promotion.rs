//! When an App promoted, for the controllers that act once per promotion (a Redis purges key
//! patterns, an EdgeCache purges Cloudflare's cache).
//!
//! It decides, purely, which promotions still need their action: an App's newest rollout record
//! says `Promoted` (a canary fully promoted, a blue-green switch, or a first deploy), it finished
//! after the resource acting on it was created, and the resource has no record of it yet. The
//! records live in the resource's status, so a restarted operator neither misses nor repeats one.
//! It never looks at anything but the App's status history.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::api::App;

/// A promotion of an App.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promotion {
    /// The App.
    pub app: String,
    /// The revision promoted.
    pub revision: String,
    /// When the promotion finished.
    pub promoted_at: Time,
}

/// The App's latest promotion, if its newest rollout record is one that finished no earlier than
/// `since` (the creation of the resource acting on it: older promotions are not its business).
pub fn latest(app: &App, since: Option<&Time>) -> Option<Promotion> {
    let last = app.status.as_ref()?.history.first()?;
    let finished = last.finished_at.clone()?;
    if last.outcome != "Promoted" || since.is_some_and(|c| finished.0 < c.0) {
        return None;
    }
    Some(Promotion { app: app.name_any(), revision: last.revision.clone(), promoted_at: finished })
}

/// The latest promotions of `apps` for which `done` finds no record.
pub fn pending<'a>(
    apps: impl IntoIterator<Item = &'a App>,
    since: Option<&Time>,
    done: impl Fn(&Promotion) -> bool,
) -> Vec<Promotion> {
    apps.into_iter().filter_map(|app| latest(app, since)).filter(|p| !done(p)).collect()
}

/// Keeps one record per App, the newest first, at most `max`: `app_of` names a record's App.
pub fn record<T>(records: &mut Vec<T>, record: T, app_of: impl Fn(&T) -> &str, max: usize) {
    let app = app_of(&record).to_string();
    records.retain(|r| app_of(r) != app);
    records.insert(0, record);
    records.truncate(max);
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("valid"))
    }

    fn app(name: &str, history: serde_json::Value) -> App {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "platform.authentify.it/v1alpha1", "kind": "App",
            "metadata": {"name": name, "namespace": "prod"},
            "spec": {"image": "api:1"},
            "status": {"history": history},
        }))
        .expect("fixture")
    }

    fn rec(revision: &str, outcome: &str, finished: Option<i64>) -> serde_json::Value {
        let mut r = serde_json::json!({"revision": revision, "image": "api:1", "startedAt": at(1), "outcome": outcome});
        if let Some(f) = finished {
            r["finishedAt"] = serde_json::json!(at(f));
        }
        r
    }

    #[test]
    fn only_a_finished_promotion_newer_than_the_resource_counts() {
        let promoted =
            app("a", serde_json::json!([rec("r2", "Promoted", Some(100)), rec("r1", "Promoted", Some(50))]));
        assert_eq!(
            latest(&promoted, Some(&at(90))),
            Some(Promotion { app: "a".into(), revision: "r2".into(), promoted_at: at(100) })
        );
        assert_eq!(latest(&promoted, Some(&at(100))).map(|p| p.revision), Some("r2".into()));
        assert_eq!(latest(&promoted, Some(&at(101))), None, "promoted before the resource existed");
        assert!(latest(&promoted, None).is_some());
        for outcome in ["Running", "Aborted", "RolledBack"] {
            let a = app(
                "a",
                serde_json::json!([rec("r3", outcome, Some(200)), rec("r2", "Promoted", Some(100))]),
            );
            assert_eq!(latest(&a, None), None, "{outcome}: the newest record is not a promotion");
        }
        assert_eq!(latest(&app("a", serde_json::json!([rec("r3", "Promoted", None)])), None), None);
        assert_eq!(latest(&app("a", serde_json::json!([])), None), None);
    }

    #[test]
    fn pending_skips_recorded_promotions() {
        let apps = [
            app("a", serde_json::json!([rec("r2", "Promoted", Some(100))])),
            app("b", serde_json::json!([rec("r7", "Promoted", Some(120))])),
        ];
        let due = pending(&apps, None, |p| p.app == "a" && p.revision == "r2");
        assert_eq!(due.iter().map(|p| p.app.as_str()).collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn record_keeps_one_per_app_newest_first() {
        let mut records = vec![("a", 1), ("b", 1)];
        record(&mut records, ("b", 2), |r| r.0, 10);
        assert_eq!(records, [("b", 2), ("a", 1)]);
        record(&mut records, ("c", 1), |r| r.0, 2);
        assert_eq!(records, [("c", 1), ("b", 2)]);
    }
}
