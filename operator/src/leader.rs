//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics: every replica
//! polls the Lease every `retry_period`; the holder renews it; a standby takes it once it is free
//! (released by a graceful shutdown) or once its record has not changed for `lease_duration`
//! (measured on the standby's own clock, so clock skew between nodes does not matter); a leader
//! that could not renew for `renew_deadline` steps down before its lease can expire.
//!
//! Writes are optimistic: acquiring and renewing are server-side applies that carry the
//! resourceVersion that was read, so of two replicas racing for a free Lease exactly one wins
//! (the other gets 409 Conflict); the Lease is created with a plain create for the same reason.
//!
//! Why not a crate: kube-lease-manager 0.13 (the one that supports kube 5) makes a standby sleep
//! until the old lease's expiry even when the leader released it, so a graceful shutdown would not
//! shorten the handover, and a leader whose renewals fail keeps reporting leadership after its
//! lease expired (two leaders). kube-leader-election 0.44 still needs kube 4.
//!
//! The decisions ([`decide`], [`Observer`], [`desired`]) are pure and unit-tested; [`Elector`] only
//! reads and writes the Lease.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use tokio::sync::watch;
use tracing::{info, warn};

/// How long a lease lasts, how long a leader keeps trying to renew, and how often replicas poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// A standby takes a lease whose record has not changed for this long.
    pub lease_duration: Duration,
    /// A leader that could not renew for this long steps down (must be < `lease_duration`).
    pub renew_deadline: Duration,
    /// How often every replica reads (and the leader renews) the Lease.
    pub retry_period: Duration,
}

impl Timing {
    /// Checks the relations client-go also requires.
    pub fn validate(&self) -> Result<(), String> {
        if self.renew_deadline >= self.lease_duration {
            return Err(
                "--leader-election-renew-deadline must be shorter than --leader-election-lease-duration"
                    .into(),
            );
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(
                "--leader-election-retry-period must be above zero and shorter than --leader-election-renew-deadline"
                    .into(),
            );
        }
        Ok(())
    }
}

/// What a replica does next, given the Lease it read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// There is no Lease: create it, holding it.
    Create,
    /// This replica holds it: renew it.
    Renew,
    /// It is free (released or never held) or its holder stopped renewing: take it.
    Acquire,
    /// Another replica holds it and renews it: wait.
    Follow {
        /// The current holder.
        holder: String,
    },
}

/// Decides from the Lease's spec (`None`: no Lease), this replica's identity, and how long the
/// record has been unchanged as this replica observed it.
pub fn decide(
    spec: Option<&LeaseSpec>,
    me: &str,
    unchanged_for: Duration,
    default_duration: Duration,
) -> Step {
    let Some(spec) = spec else { return Step::Create };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() {
        return Step::Acquire;
    }
    if holder == me {
        return Step::Renew;
    }
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(default_duration, Duration::from_secs);
    if unchanged_for >= duration { Step::Acquire } else { Step::Follow { holder: holder.to_string() } }
}

/// Tracks when the Lease's record (holder, renew time) last changed, on this replica's clock.
#[derive(Debug, Default)]
pub struct Observer {
    last: Option<(Option<String>, Option<MicroTime>)>,
    since: Option<Instant>,
}

impl Observer {
    /// Records a read at `now`; returns how long the record has been unchanged.
    pub fn observe(&mut self, spec: Option<&LeaseSpec>, now: Instant) -> Duration {
        let record = spec.map(|s| (s.holder_identity.clone(), s.renew_time.clone()));
        if record != self.last || self.since.is_none() {
            self.last = record;
            self.since = Some(now);
        }
        self.since.map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }
}

/// The Lease spec to write for `step` (renew and acquire), or to release (`step` = None).
pub fn desired(
    step: Option<&Step>,
    live: Option<&LeaseSpec>,
    me: &str,
    now: Timestamp,
    timing: &Timing,
) -> LeaseSpec {
    let transitions = live.and_then(|s| s.lease_transitions).unwrap_or(0);
    let seconds = i32::try_from(timing.lease_duration.as_secs()).unwrap_or(i32::MAX).max(1);
    match step {
        Some(Step::Renew) => LeaseSpec {
            holder_identity: Some(me.to_string()),
            lease_duration_seconds: Some(seconds),
            acquire_time: live.and_then(|s| s.acquire_time.clone()).or(Some(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        },
        Some(Step::Create | Step::Acquire) => LeaseSpec {
            holder_identity: Some(me.to_string()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if matches!(step, Some(Step::Create)) { 0 } else { transitions + 1 }),
            ..LeaseSpec::default()
        },
        // Released (client-go's convention): no holder, a one-second lease renewed now.
        Some(Step::Follow { .. }) | None => LeaseSpec {
            holder_identity: Some(String::new()),
            lease_duration_seconds: Some(1),
            acquire_time: live.and_then(|s| s.acquire_time.clone()),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        },
    }
}

/// Runs the election for one replica.
pub struct Elector {
    /// The Lease's API (namespaced).
    pub api: Api<Lease>,
    /// The Lease's name.
    pub name: String,
    /// This replica's identity (unique among replicas: the pod name).
    pub identity: String,
    /// Timing.
    pub timing: Timing,
    /// Field manager of the writes.
    pub field_manager: String,
}

impl Elector {
    /// Runs until `release` turns true, publishing whether this replica leads on `leading`.
    /// Then, if it still leads, releases the Lease so a standby takes over at its next poll.
    pub async fn run(self, leading: watch::Sender<bool>, mut release: watch::Receiver<bool>) {
        let mut observer = Observer::default();
        let mut last_renewed: Option<Instant> = None;
        let mut holder_logged: Option<String> = None;
        loop {
            match self.try_acquire_or_renew(&mut observer, &mut holder_logged).await {
                Ok(true) => {
                    if last_renewed.is_none() {
                        info!(lease = %self.name, identity = %self.identity, "acquired the leader lease; reconciling");
                    }
                    last_renewed = Some(Instant::now());
                }
                Ok(false) => {
                    if last_renewed.take().is_some() {
                        warn!(lease = %self.name, identity = %self.identity, "lost the leader lease to another replica; standing by");
                    }
                }
                Err(error) => {
                    warn!(lease = %self.name, %error, "could not read or renew the leader lease");
                    if last_renewed.is_some_and(|t| t.elapsed() >= self.timing.renew_deadline) {
                        warn!(lease = %self.name, identity = %self.identity, "could not renew the leader lease within the renew deadline; stepping down");
                        last_renewed = None;
                    }
                }
            }
            leading.send_if_modified(|l| {
                let now = last_renewed.is_some();
                std::mem::replace(l, now) != now
            });
            tokio::select! {
                _ = tokio::time::sleep(self.timing.retry_period) => {}
                _ = release.wait_for(|r| *r) => break,
            }
        }
        if last_renewed.is_some() {
            match self.release().await {
                Ok(()) => info!(lease = %self.name, identity = %self.identity, "released the leader lease"),
                Err(error) => {
                    warn!(lease = %self.name, %error, "could not release the leader lease; it expires by itself")
                }
            }
        }
        leading.send_replace(false);
    }

    /// One poll: true when this replica holds the Lease afterwards.
    async fn try_acquire_or_renew(
        &self,
        observer: &mut Observer,
        holder_logged: &mut Option<String>,
    ) -> Result<bool, kube::Error> {
        let live = self.api.get_opt(&self.name).await?;
        let spec = live.as_ref().and_then(|l| l.spec.as_ref());
        let unchanged_for = observer.observe(spec, Instant::now());
        let step = decide(spec, &self.identity, unchanged_for, self.timing.lease_duration);
        let want = desired(Some(&step), spec, &self.identity, Timestamp::now(), &self.timing);
        let result = match &step {
            Step::Follow { holder } => {
                if holder_logged.as_ref() != Some(holder) {
                    info!(lease = %self.name, %holder, "another replica leads; standing by");
                    *holder_logged = Some(holder.clone());
                }
                return Ok(false);
            }
            Step::Create => {
                let lease = Lease {
                    metadata: kube::api::ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                    spec: Some(want),
                };
                let params =
                    PostParams { field_manager: Some(self.field_manager.clone()), ..Default::default() };
                self.api.create(&params, &lease).await.map(|_| ())
            }
            Step::Renew | Step::Acquire => self.apply(live.as_ref(), want).await,
        };
        match result {
            Ok(()) => Ok(true),
            // Another replica wrote first (AlreadyExists or a stale resourceVersion).
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Server-side apply of `spec`, conditional on the resourceVersion that was read.
    async fn apply(&self, live: Option<&Lease>, spec: LeaseSpec) -> Result<(), kube::Error> {
        let body = serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "resourceVersion": live.and_then(|l| l.resource_version()),
            },
            "spec": spec,
        });
        let params = PatchParams::apply(&self.field_manager).force();
        self.api.patch(&self.name, &params, &Patch::Apply(&body)).await.map(|_| ())
    }

    async fn release(&self) -> Result<(), kube::Error> {
        let live = self.api.get_opt(&self.name).await?;
        let spec = live.as_ref().and_then(|l| l.spec.as_ref());
        if spec.and_then(|s| s.holder_identity.as_deref()) != Some(self.identity.as_str()) {
            return Ok(());
        }
        let want = desired(None, spec, &self.identity, Timestamp::now(), &self.timing);
        self.apply(live.as_ref(), want).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    fn held_by(holder: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decide_covers_every_case() {
        let s = Duration::from_secs;
        assert_eq!(decide(None, "a", s(0), D), Step::Create);
        assert_eq!(decide(Some(&LeaseSpec::default()), "a", s(0), D), Step::Acquire);
        let released = LeaseSpec { holder_identity: Some(String::new()), ..held_by("x") };
        assert_eq!(decide(Some(&released), "a", s(0), D), Step::Acquire, "a released lease is taken at once");
        assert_eq!(decide(Some(&held_by("a")), "a", s(100), D), Step::Renew);
        assert_eq!(decide(Some(&held_by("b")), "a", s(14), D), Step::Follow { holder: "b".into() });
        assert_eq!(
            decide(Some(&held_by("b")), "a", s(15), D),
            Step::Acquire,
            "expired after its own duration"
        );
        let short = LeaseSpec { lease_duration_seconds: Some(5), ..held_by("b") };
        assert_eq!(decide(Some(&short), "a", s(5), D), Step::Acquire, "the Lease's duration wins over ours");
        let no_duration = LeaseSpec { lease_duration_seconds: None, ..held_by("b") };
        assert_eq!(decide(Some(&no_duration), "a", s(10), D), Step::Follow { holder: "b".into() });
        let negative = LeaseSpec { lease_duration_seconds: Some(-1), ..held_by("b") };
        assert_eq!(
            decide(Some(&negative), "a", s(15), D),
            Step::Acquire,
            "a malformed duration falls back to ours"
        );
    }

    #[test]
    fn observer_measures_time_since_the_record_changed() {
        let t0 = Instant::now();
        let mut o = Observer::default();
        let lease = held_by("b");
        assert_eq!(o.observe(Some(&lease), t0), Duration::ZERO);
        assert_eq!(o.observe(Some(&lease), t0 + Duration::from_secs(4)), Duration::from_secs(4));
        let renewed = LeaseSpec { renew_time: Some(MicroTime(Timestamp::now())), ..lease.clone() };
        assert_eq!(
            o.observe(Some(&renewed), t0 + Duration::from_secs(6)),
            Duration::ZERO,
            "a renewal resets it"
        );
        assert_eq!(o.observe(Some(&renewed), t0 + Duration::from_secs(9)), Duration::from_secs(3));
        assert_eq!(
            o.observe(None, t0 + Duration::from_secs(10)),
            Duration::ZERO,
            "a deleted Lease is a change"
        );
    }

    #[test]
    fn desired_specs_keep_transitions_and_release_clears_the_holder() {
        let t = Timing {
            lease_duration: D,
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        };
        let now = Timestamp::now();
        let live = LeaseSpec { acquire_time: Some(MicroTime(Timestamp::UNIX_EPOCH)), ..held_by("a") };
        let renew = desired(Some(&Step::Renew), Some(&live), "a", now, &t);
        assert_eq!(renew.lease_transitions, Some(3));
        assert_eq!(renew.acquire_time, live.acquire_time, "renewing keeps the acquire time");
        assert_eq!(renew.renew_time, Some(MicroTime(now)));
        let acquire = desired(Some(&Step::Acquire), Some(&held_by("b")), "a", now, &t);
        assert_eq!((acquire.holder_identity.as_deref(), acquire.lease_transitions), (Some("a"), Some(4)));
        assert_eq!(acquire.lease_duration_seconds, Some(15));
        let create = desired(Some(&Step::Create), None, "a", now, &t);
        assert_eq!(create.lease_transitions, Some(0));
        let release = desired(None, Some(&live), "a", now, &t);
        assert_eq!(release.holder_identity.as_deref(), Some(""));
        assert_eq!(release.lease_duration_seconds, Some(1));
        assert_eq!(decide(Some(&release), "b", Duration::ZERO, D), Step::Acquire);
    }

    #[test]
    fn timing_relations_are_checked() {
        let s = Duration::from_secs;
        let ok = Timing { lease_duration: s(15), renew_deadline: s(10), retry_period: s(2) };
        assert!(ok.validate().is_ok());
        assert!(Timing { renew_deadline: s(15), ..ok }.validate().is_err());
        assert!(Timing { retry_period: s(10), ..ok }.validate().is_err());
        assert!(Timing { retry_period: s(0), ..ok }.validate().is_err());
    }
}
