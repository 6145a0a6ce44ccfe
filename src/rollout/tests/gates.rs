//! Webhook gates (`strategy.webhooks`): confirm-rollout and confirm-promotion.

use super::*;

fn with_gate(yaml: &str, kind: &str) -> String {
    format!(
        "{yaml}  webhooks:\n    - {{name: qa, type: {kind}, url: 'http://qa.tools/confirm', interval: 30s}}\n"
    )
}

fn message(plan: &Plan) -> String {
    plan.status.message.clone().unwrap_or_default()
}

#[test]
fn confirm_rollout_holds_the_new_revision_at_zero_until_the_gate_says_yes() {
    let mut w = deployed(&with_gate(CANARY, "ConfirmRollout"));
    assert!(w.gates_asked.is_empty(), "the first deploy is not gated");
    w.set_image("img:2");
    let held = w.tick();
    assert_eq!(held.status.phase, Some(AppPhase::Paused));
    assert_eq!(w.replicas("r-2"), 0, "no pod of the new revision before the gate opens");
    assert_eq!(w.replicas("r-1"), 4);
    assert_eq!(w.gates_asked, vec!["qa"]);
    assert!(message(&held).contains("waits for webhook gates to start"), "{}", message(&held));
    assert!(message(&held).contains("403 Forbidden: not yet"), "{}", message(&held));
    assert!(w.reasons().contains(&"GateClosed"));
    let gate = &held.status.gates[0];
    assert_eq!((gate.name.as_str(), gate.revision.as_str(), gate.passed), ("qa", "r-2", false));

    // Within the interval the gate is not asked again, the status does not change and the
    // operator comes back when the interval ends.
    w.advance(10);
    let again = w.tick();
    assert_eq!(w.gates_asked.len(), 1);
    assert_eq!(again.status, held.status, "no status write while waiting");
    assert!(again.notes.is_empty(), "{:?}", again.notes);
    assert_eq!(again.requeue_after, Some(Duration::from_secs(20)));

    w.advance(20);
    w.tick();
    assert_eq!(w.gates_asked.len(), 2, "asked again after the interval");
    assert_eq!(w.replicas("r-2"), 0);

    w.gate_answers.insert("qa".into(), true);
    w.advance(30);
    let open = w.tick();
    assert!(w.reasons().contains(&"GateOpened"), "{:?}", open.notes);
    assert!(open.status.gates[0].passed);
    assert!(open.status.pause_conditions.iter().all(|p| p.reason != "WebhookGate"));
    let asked = w.gates_asked.len();
    let paused = w.run_until(&[AppPhase::Paused]);
    assert_eq!(w.replicas("r-2"), 1, "the canary starts once confirmed");
    assert!(message(&paused).contains("pause"), "{}", message(&paused));
    w.advance(61);
    w.run_until(&[AppPhase::Paused]);
    w.control(PROMOTE);
    let done = w.run_until(&[AppPhase::Healthy]);
    assert_eq!(done.status.stable_revision.as_deref(), Some("r-2"));
    assert_eq!(w.gates_asked.len(), asked, "a gate that said yes is not asked again");
    assert_eq!(done.status.gates.len(), 1, "the answer for the stable revision is kept");
}

#[test]
fn the_progress_deadline_does_not_run_while_a_gate_holds() {
    let mut w = deployed(&with_gate(CANARY, "ConfirmRollout"));
    w.set_image("img:2");
    for _ in 0..30 {
        let plan = w.tick();
        assert_eq!(plan.status.phase, Some(AppPhase::Paused), "{}", message(&plan));
        w.advance(30);
    }
    assert!(!w.status.abort, "waited 15 minutes, past the 10-minute deadline, without rolling back");
}

#[test]
fn confirm_promotion_holds_the_canary_at_its_last_weight() {
    let mut w = deployed(&with_gate(CANARY, "ConfirmPromotion"));
    w.set_image("img:2");
    w.run_until(&[AppPhase::Paused]);
    assert!(w.gates_asked.is_empty(), "a promotion gate is not asked at the start");
    w.advance(61);
    w.run_until(&[AppPhase::Paused]);
    w.control(PROMOTE);
    let held = w.tick();
    assert_eq!(held.status.phase, Some(AppPhase::Paused));
    assert!(message(&held).contains("waits for webhook gates to be promoted"), "{}", message(&held));
    assert_eq!(w.gates_asked, vec!["qa"]);
    assert_eq!(held.status.stable_revision.as_deref(), Some("r-1"));
    assert_eq!((w.replicas("r-2"), w.replicas("r-1")), (2, 2), "held at 50%");

    w.gate_answers.insert("qa".into(), true);
    w.advance(30);
    let done = w.run_until(&[AppPhase::Healthy]);
    assert_eq!(done.status.stable_revision.as_deref(), Some("r-2"));
    assert_eq!(w.replicas("r-2"), 4);
}

#[test]
fn promote_full_overrides_a_closed_gate_and_says_so() {
    let mut w = deployed(&with_gate(CANARY, "ConfirmRollout"));
    w.set_image("img:2");
    w.tick();
    assert_eq!(w.replicas("r-2"), 0);
    w.control(PROMOTE_FULL);
    let done = w.run_until(&[AppPhase::Healthy]);
    assert_eq!(done.status.stable_revision.as_deref(), Some("r-2"));
    assert!(done.status.gates[0].passed);
    assert!(done.status.gates[0].message.contains("promote-full"));
}

#[test]
fn a_rollback_to_a_promoted_revision_is_never_held() {
    let yaml = format!(
        "{CANARY}  webhooks:\n    - {{name: a, type: ConfirmRollout, url: 'http://g/a'}}\n    - {{name: b, type: ConfirmPromotion, url: 'http://g/b'}}\n"
    );
    let mut w = deployed(&yaml);
    w.gate_answers.insert("a".into(), true);
    w.gate_answers.insert("b".into(), true);
    w.set_image("img:2");
    w.run_until(&[AppPhase::Paused]);
    w.control(PROMOTE_FULL);
    w.run_until(&[AppPhase::Healthy]);
    let asked = w.gates_asked.len();
    w.gate_answers.clear();
    w.set_image("img:1");
    let back = w.run_until(&[AppPhase::Healthy]);
    assert_eq!(back.status.stable_revision.as_deref(), Some("r-1"));
    assert_eq!(w.gates_asked.len(), asked, "no gate asked for an undo");
}

#[test]
fn a_gate_added_mid_rollout_does_not_take_the_canary_down() {
    let mut w = deployed(CANARY);
    w.set_image("img:2");
    w.run_until(&[AppPhase::Paused]);
    assert_eq!(w.replicas("r-2"), 1);
    w.spec = spec(&with_gate(CANARY, "ConfirmRollout"));
    w.set_image("img:2");
    let plan = w.tick();
    assert_eq!(w.replicas("r-2"), 1);
    assert!(w.gates_asked.is_empty());
    assert!(plan.status.gates.is_empty());
}

#[test]
fn blue_green_switch_waits_for_confirm_promotion_and_keeps_the_promote() {
    let mut w = deployed(&with_gate(BLUE_GREEN, "ConfirmPromotion"));
    w.set_image("img:2");
    w.run_until(&[AppPhase::Paused]);
    assert!(w.gates_asked.is_empty(), "asked only once promotion is due");
    w.control(PROMOTE);
    let held = w.tick();
    assert_eq!(held.status.phase, Some(AppPhase::Paused));
    assert_eq!(held.active, Selector::Revision("r-1".into()), "no switch while the gate says no");
    assert!(message(&held).contains("to be promoted"), "{}", message(&held));
    w.advance(5);
    w.tick();
    assert_eq!(w.gates_asked, vec!["qa"]);

    w.gate_answers.insert("qa".into(), true);
    w.advance(30);
    let done = w.run_until(&[AppPhase::Healthy]);
    assert_eq!(done.active, Selector::Revision("r-2".into()), "the promote asked for before was kept");
}

#[test]
fn gates_of_a_superseded_revision_are_forgotten() {
    let mut w = deployed(&with_gate(CANARY, "ConfirmRollout"));
    w.set_image("img:2");
    w.tick();
    assert_eq!(w.status.gates.len(), 1);
    w.set_image("img:3");
    let plan = w.tick();
    assert_eq!(plan.status.gates.len(), 1);
    assert_eq!(plan.status.gates[0].revision, "r-3");
    assert_eq!(w.gates_asked, vec!["qa", "qa"], "the new revision is asked for at once");
}
