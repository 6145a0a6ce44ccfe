//! Numbers an App's revisions the way `kubectl rollout history` does (1 is the oldest, the highest
//! is the newest rollout; rolling back to an old revision makes it the newest again) and picks the
//! target of `undo`. Pure: built from the App's `status.history` and its ReplicaSets.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::jiff::Timestamp;

use crate::api::App;
use crate::controllers::app::build::{APP_LABEL, REVISION_LABEL};

/// Annotation on a ReplicaSet holding its image.
pub const IMAGE_ANNOTATION: &str = "platform.authentify.it/image";

/// One revision of an App.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based, oldest first.
    pub number: u32,
    /// Pod-template hash.
    pub hash: String,
    /// Image.
    pub image: String,
    /// Outcome of its latest rollout (`Promoted`, `Aborted`, ...), empty when unknown.
    pub outcome: String,
    /// When its latest rollout started (or its ReplicaSet was created).
    pub started: Option<Timestamp>,
    /// `(asked, ready)` pods of its ReplicaSet, when that still exists.
    pub pods: Option<(i32, i32)>,
}

/// The App's ReplicaSets by revision hash.
pub fn replica_sets_by_revision<'a>(app: &App, sets: &'a [ReplicaSet]) -> BTreeMap<String, &'a ReplicaSet> {
    let name = app.metadata.name.clone().unwrap_or_default();
    sets.iter()
        .filter(|rs| rs.metadata.labels.as_ref().and_then(|l| l.get(APP_LABEL)) == Some(&name))
        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
        .filter_map(|rs| Some((rs.metadata.labels.as_ref()?.get(REVISION_LABEL)?.clone(), rs)))
        .collect()
}

/// Every known revision, numbered oldest first.
pub fn entries(app: &App, sets: &[ReplicaSet]) -> Vec<Entry> {
    let by_rev = replica_sets_by_revision(app, sets);
    let mut latest: BTreeMap<String, Entry> = BTreeMap::new();
    // Where each revision's newest record stands in the history (newest first): status keeps
    // times in whole seconds, so two rollouts can share a start time; the history's order
    // decides between them.
    let mut position: BTreeMap<String, usize> = BTreeMap::new();
    let history = app.status.as_ref().map(|s| s.history.clone()).unwrap_or_default();
    for (i, record) in history.into_iter().enumerate() {
        let started = Some(record.started_at.0);
        let newer = latest.get(&record.revision).is_none_or(|e| e.started < started);
        if newer {
            position.insert(record.revision.clone(), i);
            latest.insert(
                record.revision.clone(),
                Entry {
                    number: 0,
                    hash: record.revision.clone(),
                    image: record.image.clone(),
                    outcome: record.outcome.clone(),
                    started,
                    pods: None,
                },
            );
        }
    }
    for (hash, rs) in &by_rev {
        let pods =
            (rs.spec.replicas.unwrap_or(0), rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0));
        let entry = latest.entry(hash.clone()).or_insert_with(|| Entry {
            number: 0,
            hash: hash.clone(),
            image: rs
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(IMAGE_ANNOTATION))
                .cloned()
                .unwrap_or_default(),
            outcome: String::new(),
            started: rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
            pods: None,
        });
        entry.pods = Some(pods);
    }
    let mut list: Vec<Entry> = latest.into_values().collect();
    // Revisions the history no longer holds are older than those it does.
    let pos = |e: &Entry| std::cmp::Reverse(position.get(&e.hash).copied().unwrap_or(usize::MAX));
    list.sort_by(|a, b| {
        a.started.cmp(&b.started).then_with(|| pos(a).cmp(&pos(b))).then_with(|| a.hash.cmp(&b.hash))
    });
    for (i, e) in list.iter_mut().enumerate() {
        e.number = u32::try_from(i + 1).unwrap_or(u32::MAX);
    }
    list
}

/// The revision `undo` goes back to: number `to`, or the newest that is not the current one.
pub fn undo_target(app: &App, list: &[Entry], to: Option<u32>) -> Result<Entry, String> {
    let name = app.metadata.name.as_deref().unwrap_or("the App");
    let current = app.status.as_ref().and_then(|s| s.current_revision.clone());
    let target = match to {
        Some(n) => list.iter().find(|e| e.number == n).cloned().ok_or_else(|| {
            format!(
                "App {name} has no revision {n}; `kubectl authentify history {name}` lists revisions 1 to {}",
                list.len()
            )
        })?,
        None => list.iter().rev().find(|e| Some(&e.hash) != current.as_ref()).cloned().ok_or_else(|| {
            format!("App {name} has no earlier revision to go back to; `kubectl authentify history {name}` lists what exists")
        })?,
    };
    if Some(&target.hash) == current.as_ref() {
        return Err(format!(
            "revision {} ({}) is already the one App {name} runs; pick another from `kubectl authentify history {name}`",
            target.number, target.hash
        ));
    }
    Ok(target)
}

/// The `history` table.
pub fn render(app: &App, list: &[Entry]) -> String {
    let status = app.status.clone().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<9} {:<12} {:<10} {:<21} {:<8} IMAGE",
        "REVISION", "HASH", "OUTCOME", "STARTED", "PODS"
    );
    for e in list {
        let mut role = String::new();
        if status.stable_revision.as_ref() == Some(&e.hash) {
            role.push_str(" (stable)");
        }
        if status.current_revision.as_ref() == Some(&e.hash)
            && status.stable_revision.as_ref() != Some(&e.hash)
        {
            role.push_str(" (current)");
        }
        let pods = e.pods.map_or_else(|| "gone".to_string(), |(asked, ready)| format!("{ready}/{asked}"));
        let started = e.started.map_or_else(String::new, |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
        let outcome = if e.outcome.is_empty() { "-" } else { e.outcome.as_str() };
        let _ = writeln!(
            out,
            "{:<9} {:<12} {:<10} {:<21} {:<8} {}{role}",
            e.number, e.hash, outcome, started, pods, e.image
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(status: &str) -> App {
        serde_yaml_ng::from_str(&format!(
            "apiVersion: platform.authentify.it/v1alpha1\nkind: App\nmetadata: {{name: api}}\nspec: {{image: a:3}}\nstatus: {status}\n"
        ))
        .expect("fixture")
    }

    fn rs(hash: &str, image: &str, created: &str, replicas: i32) -> ReplicaSet {
        serde_yaml_ng::from_str(&format!(
            "metadata: {{name: api-{hash}, creationTimestamp: '{created}', labels: {{platform.authentify.it/app: api, platform.authentify.it/revision: {hash}}}, annotations: {{platform.authentify.it/image: '{image}'}}}}\nspec: {{replicas: {replicas}, selector: {{}}}}\nstatus: {{replicas: {replicas}, readyReplicas: {replicas}}}\n"
        ))
        .expect("fixture")
    }

    const STATUS: &str = "{stableRevision: r1, currentRevision: r3, history: [\
        {revision: r3, image: 'a:3', startedAt: '2026-01-01T03:00:00Z', outcome: Running},\
        {revision: r1, image: 'a:1', startedAt: '2026-01-01T02:00:00Z', outcome: RolledBack},\
        {revision: r2, image: 'a:2', startedAt: '2026-01-01T01:00:00Z', outcome: Aborted},\
        {revision: r1, image: 'a:1', startedAt: '2026-01-01T00:00:00Z', outcome: Promoted}]}";

    #[test]
    fn numbering_follows_the_latest_rollout_of_each_revision() {
        let a = app(STATUS);
        let sets =
            vec![rs("r1", "a:1", "2026-01-01T00:00:00Z", 2), rs("r0", "a:0", "2025-12-31T00:00:00Z", 0)];
        let list = entries(&a, &sets);
        let order: Vec<(u32, &str, &str)> =
            list.iter().map(|e| (e.number, e.hash.as_str(), e.outcome.as_str())).collect();
        assert_eq!(
            order,
            vec![(1, "r0", ""), (2, "r2", "Aborted"), (3, "r1", "RolledBack"), (4, "r3", "Running")]
        );
        assert_eq!(list[0].image, "a:0", "image from the ReplicaSet's annotation");
        assert_eq!(list[2].pods, Some((2, 2)));
        assert_eq!(list[1].pods, None);
        let table = render(&a, &list);
        assert!(table.contains("r1") && table.contains("(stable)") && table.contains("gone"), "{table}");
    }

    #[test]
    fn rollouts_started_in_the_same_second_keep_the_history_order() {
        // Hashes in the opposite order of the rollouts, so only the history can tell.
        let a = app("{history: [\
            {revision: a2, image: 'a:2', startedAt: '2026-01-01T00:00:00Z', outcome: Promoted},\
            {revision: b1, image: 'a:1', startedAt: '2026-01-01T00:00:00Z', outcome: Promoted}]}");
        let sets =
            vec![rs("b1", "a:1", "2026-01-01T00:00:00Z", 0), rs("a2", "a:2", "2026-01-01T00:00:00Z", 2)];
        let order: Vec<String> = entries(&a, &sets).into_iter().map(|e| e.hash).collect();
        assert_eq!(order, vec!["b1", "a2"]);
    }

    #[test]
    fn undo_goes_to_the_previous_or_the_numbered_revision() {
        let a = app(STATUS);
        let sets = vec![rs("r1", "a:1", "2026-01-01T00:00:00Z", 2)];
        let list = entries(&a, &sets);
        assert_eq!(undo_target(&a, &list, None).map(|e| e.hash), Ok("r1".to_string()));
        assert_eq!(undo_target(&a, &list, Some(1)).map(|e| e.hash), Ok("r2".to_string()));
        let err = undo_target(&a, &list, Some(3)).expect_err("current");
        assert!(err.contains("already the one"), "{err}");
        let err = undo_target(&a, &list, Some(9)).expect_err("absent");
        assert!(err.contains("1 to 3"), "{err}");
    }
}
