//! Replica maths of a canary without a traffic router: traffic follows the ratio of canary to
//! stable pods behind one Service, so a weight becomes pod counts. Pure arithmetic, no I/O.
//!
//! # Targets for a weight
//!
//! With `N` desired pods and a weight `w` (percent):
//! - canary = ⌈N·w/100⌉, so any weight above 0 gets at least one pod (rounded up);
//! - stable = N − canary, but at least 1 while `w` < 100, so the stable revision keeps serving.
//!
//! | N  | w   | canary | stable | real share of canary pods |
//! |----|-----|--------|--------|---------------------------|
//! | 10 | 10  | 1      | 9      | 10 %                      |
//! | 4  | 10  | 1      | 3      | 25 %                      |
//! | 3  | 50  | 2      | 1      | 67 %                      |
//! | 1  | 10  | 1      | 1      | 50 %                      |
//! | 5  | 100 | 5      | 0      | 100 %                     |
//!
//! # Moving towards the targets
//!
//! Like a Deployment's rolling update: at most `N + maxSurge` pods exist, and at least
//! `N − maxUnavailable` pods stay available. The canary grows first (within the surge); the stable
//! shrinks only by as many pods as ready canary pods stand in for. With the defaults (25 % surge,
//! 0 unavailable) the App never has fewer ready pods than `N` while it moves.
//!
//! Example: N = 4, w 0 → 50, surge 1, unavailable 0, stable 4 ready, canary 0.
//! 1. canary ← min(2, 4 + 1 − 4) = 1; stable stays 4 (no ready canary yet);
//! 2. canary 1 ready: stable ← max(2, 4 − 0 − 1) = 3; canary ← min(2, 5 − 3) = 2;
//! 3. canary 2 ready: stable ← max(2, 4 − 2) = 2. Targets reached.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Resolves an int-or-percent against `total`, rounding up (surge) or down (unavailable).
pub fn resolve(value: &IntOrString, total: i32, round_up: bool) -> i32 {
    match value {
        IntOrString::Int(n) => (*n).max(0),
        IntOrString::String(s) => {
            let pct: i64 = s.trim_end_matches('%').trim().parse().unwrap_or(0);
            let scaled = i64::from(total) * pct.max(0);
            let v = if round_up { (scaled + 99) / 100 } else { scaled / 100 };
            i32::try_from(v).unwrap_or(i32::MAX)
        }
    }
}

/// maxSurge and maxUnavailable resolved against `total`; never both zero (then surge is 1), as
/// a Deployment does.
pub fn surge_and_unavailable(
    max_surge: &IntOrString,
    max_unavailable: &IntOrString,
    total: i32,
) -> (i32, i32) {
    let surge = resolve(max_surge, total, true);
    let unavailable = resolve(max_unavailable, total, false).min(total);
    if surge == 0 && unavailable == 0 { (1, 0) } else { (surge, unavailable) }
}

/// Canary and stable pod targets for a weight. See the module docs for the rounding.
pub fn targets_for_weight(total: i32, weight: i32) -> (i32, i32) {
    let total = total.max(0);
    let weight = weight.clamp(0, 100);
    if weight == 0 {
        return (0, total);
    }
    if weight == 100 {
        return (total, 0);
    }
    let canary = ((i64::from(total) * i64::from(weight) + 99) / 100) as i32;
    let stable = (total - canary).max(if total > 0 { 1 } else { 0 });
    (canary, stable)
}

/// Observed pods of the two revisions in play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pair {
    /// Replicas asked of the stable ReplicaSet.
    pub stable: i32,
    /// Ready pods of the stable ReplicaSet.
    pub stable_ready: i32,
    /// Replicas asked of the canary ReplicaSet.
    pub canary: i32,
    /// Ready pods of the canary ReplicaSet.
    pub canary_ready: i32,
}

/// One move towards `(canary_target, stable_target)` from `now`, honouring surge and unavailability.
/// Returns the replicas to ask of `(canary, stable)`.
pub fn step_towards(
    now: Pair,
    canary_target: i32,
    stable_target: i32,
    total: i32,
    surge: i32,
    unavailable: i32,
) -> (i32, i32) {
    // Small Apps: a weight above 0 needs a canary pod while the stable keeps one, which may exceed
    // the surge (N = 1, surge 0); the targets themselves are always allowed.
    let max_pods = (total + surge).max(canary_target + stable_target);
    let min_available = (total - unavailable).max(0);

    // Shrinking the canary is always allowed (it frees room); growing it uses free surge room.
    let canary = if canary_target <= now.canary {
        canary_target
    } else {
        let room = (max_pods - now.stable.max(stable_target)).max(0);
        canary_target.min(now.canary.max(room))
    };

    // The stable may shrink only while enough pods stay available.
    let stable = if stable_target >= now.stable {
        stable_target
    } else {
        let needed_from_stable = (min_available - now.canary_ready.min(canary)).max(0);
        stable_target.max(needed_from_stable).min(now.stable)
    };

    // With the stable shrunk, the canary may use the room it left.
    let canary =
        if canary < canary_target { canary_target.min(canary.max(max_pods - stable)) } else { canary };
    (canary, stable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_targets_round_up_and_keep_one_stable() {
        let cases = [
            // (N, w, canary, stable)
            (10, 10, 1, 9),
            (4, 10, 1, 3),
            (3, 50, 2, 1),
            (1, 10, 1, 1),
            (5, 100, 5, 0),
            (5, 0, 0, 5),
            (0, 50, 0, 0),
            (10, 25, 3, 7),
            (2, 99, 2, 1),
        ];
        for (n, w, canary, stable) in cases {
            assert_eq!(targets_for_weight(n, w), (canary, stable), "N={n} w={w}");
        }
    }

    #[test]
    fn resolves_percentages() {
        assert_eq!(resolve(&IntOrString::String("25%".into()), 4, true), 1);
        assert_eq!(resolve(&IntOrString::String("25%".into()), 5, true), 2);
        assert_eq!(resolve(&IntOrString::String("25%".into()), 5, false), 1);
        assert_eq!(resolve(&IntOrString::Int(3), 5, false), 3);
        assert_eq!(surge_and_unavailable(&IntOrString::Int(0), &IntOrString::Int(0), 4), (1, 0));
        assert_eq!(
            surge_and_unavailable(&IntOrString::Int(0), &IntOrString::String("50%".into()), 4),
            (0, 2)
        );
    }

    /// Runs the moves to a fixed point, letting every asked pod become ready between moves, and
    /// checks the invariants on the way.
    fn converge(
        start: Pair,
        canary_target: i32,
        stable_target: i32,
        total: i32,
        surge: i32,
        unavail: i32,
    ) -> Vec<(i32, i32)> {
        let mut now = start;
        let mut trace = vec![];
        for _ in 0..50 {
            let (c, s) = step_towards(now, canary_target, stable_target, total, surge, unavail);
            let allowed = (total + surge).max(canary_target + stable_target).max(now.canary + now.stable);
            assert!(c + s <= allowed, "surge exceeded: {c}+{s}");
            let available_after = c.min(now.canary_ready) + s.min(now.stable_ready);
            assert!(
                available_after >= (total - unavail).min(now.canary_ready + now.stable_ready),
                "unavailability exceeded at {now:?} -> ({c},{s})"
            );
            trace.push((c, s));
            let next = Pair { stable: s, stable_ready: s, canary: c, canary_ready: c };
            if next == now {
                break;
            }
            now = next;
        }
        trace
    }

    #[test]
    fn worked_example_from_the_docs() {
        let start = Pair { stable: 4, stable_ready: 4, canary: 0, canary_ready: 0 };
        let (c, s) = step_towards(start, 2, 2, 4, 1, 0);
        assert_eq!((c, s), (1, 4));
        let (c, s) =
            step_towards(Pair { stable: 4, stable_ready: 4, canary: 1, canary_ready: 1 }, 2, 2, 4, 1, 0);
        assert_eq!((c, s), (2, 3));
        let (c, s) =
            step_towards(Pair { stable: 3, stable_ready: 3, canary: 2, canary_ready: 2 }, 2, 2, 4, 1, 0);
        assert_eq!((c, s), (2, 2));
    }

    #[test]
    fn stable_never_shrinks_before_canary_pods_are_ready() {
        let now = Pair { stable: 4, stable_ready: 4, canary: 2, canary_ready: 0 };
        let (_, s) = step_towards(now, 2, 2, 4, 2, 0);
        assert_eq!(s, 4, "no canary pod is ready, so the stable keeps all four");
    }

    #[test]
    fn reaches_targets_for_many_shapes() {
        for total in 1..=12 {
            for weight in [0, 1, 10, 25, 50, 75, 99, 100] {
                for (surge, unavail) in [(1, 0), (0, 1), (3, 0), (2, 2)] {
                    let (ct, st) = targets_for_weight(total, weight);
                    let start = Pair { stable: total, stable_ready: total, canary: 0, canary_ready: 0 };
                    let trace = converge(start, ct, st, total, surge, unavail);
                    assert_eq!(
                        trace.last().copied(),
                        Some((ct, st)),
                        "N={total} w={weight} surge={surge} unavail={unavail}: {trace:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn scaling_back_to_stable_after_abort_is_immediate_for_the_canary() {
        let now = Pair { stable: 2, stable_ready: 2, canary: 2, canary_ready: 2 };
        assert_eq!(step_towards(now, 0, 4, 4, 1, 0), (0, 4));
    }
}
