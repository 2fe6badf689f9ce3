//! The FleetLock model: one group's slots, holders, leases and halt, changed
//! only by the operations below. Pure: the time is always passed in, so the
//! same rules run on every backend and in tests with any clock.
//!
//! A backend stores one [`GroupState`] per group and applies an operation as
//! one read-modify-write (a transaction in SQLite, a compare-and-put on the
//! group's revision in etcd), so two grants can never see the same state.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The default lease: a reboot plus the new boot's verification.
pub const DEFAULT_LEASE: SignedDuration = SignedDuration::from_hours(1);

/// What happens when a lease runs out unreleased.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExpiry {
    /// Free the slot and halt the group until an operator acks.
    #[default]
    Halt,
    /// Free the slot and go on (fleets whose nodes vanish by design).
    Release,
}

impl OnExpiry {
    /// Its configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            OnExpiry::Halt => "halt",
            OnExpiry::Release => "release",
        }
    }
}

/// A group's configured rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupPolicy {
    /// How many nodes may hold a slot at once.
    pub slots: u32,
    /// How long a slot is held before it expires.
    pub lease: SignedDuration,
    /// What an expired lease does.
    pub on_expiry: OnExpiry,
}

impl Default for GroupPolicy {
    fn default() -> Self {
        GroupPolicy {
            slots: 1,
            lease: DEFAULT_LEASE,
            on_expiry: OnExpiry::Halt,
        }
    }
}

/// One node holding a slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// When the slot was taken.
    pub taken: Timestamp,
    /// When its lease runs out.
    pub expires: Timestamp,
}

/// Why a group stopped granting slots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HaltReason {
    /// A holder's lease ran out before it released the slot.
    LeaseExpired,
    /// The node reported that its boot failed.
    BootFailed {
        /// What the node said, shortened.
        reason: String,
    },
}

impl HaltReason {
    /// What the host said of its failed boot; empty for an expiry.
    pub fn detail(&self) -> &str {
        match self {
            HaltReason::BootFailed { reason } => reason,
            HaltReason::LeaseExpired => "",
        }
    }

    /// A short fixed label.
    pub fn kind(&self) -> &'static str {
        match self {
            HaltReason::LeaseExpired => "lease_expired",
            HaltReason::BootFailed { .. } => "boot_failed",
        }
    }

    /// In words, for answers and `cairn lock status`.
    pub fn describe(&self) -> String {
        match self {
            HaltReason::LeaseExpired => "its lease expired before it released the slot".into(),
            HaltReason::BootFailed { reason } if reason.is_empty() => {
                "it reported a failed boot".into()
            }
            HaltReason::BootFailed { reason } => format!("it reported a failed boot: {reason}"),
        }
    }
}

/// A halted group: no slot is granted until an operator acks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    /// The node that caused it.
    pub node: String,
    /// When.
    pub at: Timestamp,
    /// Why.
    pub reason: HaltReason,
}

/// One group's stored state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GroupState {
    /// Slot holders by node id.
    pub holders: BTreeMap<String, Holder>,
    /// Set while the group is halted.
    pub halt: Option<Halt>,
}

/// An operation on one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOp {
    /// Take a slot (FleetLock `pre-reboot`).
    PreReboot {
        /// The node.
        id: String,
    },
    /// Give a slot back (FleetLock `steady-state`).
    SteadyState {
        /// The node.
        id: String,
    },
    /// The node's boot failed: halt the group now (Cairn's extension).
    BootFailed {
        /// The node.
        id: String,
        /// What it said.
        reason: String,
    },
    /// An operator frees one holder's slot.
    Release {
        /// The node.
        id: String,
    },
    /// An operator clears the halt.
    Ack,
    /// Only judge expired leases.
    Expire,
}

impl LockOp {
    /// A fixed label, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            LockOp::PreReboot { .. } => "pre_reboot",
            LockOp::SteadyState { .. } => "steady_state",
            LockOp::BootFailed { .. } => "boot_failed",
            LockOp::Release { .. } => "release",
            LockOp::Ack => "ack",
            LockOp::Expire => "expire",
        }
    }
}

/// Why a slot was not granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// Every slot is held by other nodes.
    Full {
        /// The group's slot count.
        slots: u32,
    },
    /// The group is halted.
    Halted(Halt),
    /// Only a node holding a slot may report its failed boot (so a client
    /// cannot halt a group it has no part in, or invent groups to halt).
    NotHolder,
}

impl Denial {
    /// A short fixed label (the API's error kind).
    pub fn kind(&self) -> &'static str {
        match self {
            Denial::Full { .. } => "group_full",
            Denial::Halted(_) => "group_halted",
            Denial::NotHolder => "not_holder",
        }
    }
}

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A slot is held: newly, or already (`already`, lease unchanged).
    Granted {
        /// The node held it before this call.
        already: bool,
    },
    /// Not granted.
    Denied(Denial),
    /// A slot was given back (`was_held` false: there was none, still success).
    Released {
        /// The node held a slot.
        was_held: bool,
    },
    /// The group is halted (now, or it already was).
    Halted,
    /// The halt was cleared (`was_halted` false: there was none).
    Acked {
        /// The group was halted.
        was_halted: bool,
    },
    /// Expired leases were judged, nothing else.
    Judged,
}

/// A lease that ran out, as [`GroupState::apply`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The node.
    pub node: String,
    /// When its lease ran out.
    pub at: Timestamp,
    /// It halted the group.
    pub halted: bool,
}

/// The result of applying an operation: its outcome and the leases that ran
/// out on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// What the operation did.
    pub outcome: Outcome,
    /// Leases judged expired before it.
    pub expired: Vec<Expired>,
}

/// The longest halt reason kept from a node.
pub const MAX_REASON_CHARS: usize = 200;

impl GroupState {
    /// Apply `op` at `now` under `policy`. Expired leases are always judged
    /// first, so the outcome never depends on when a sweep last ran.
    pub fn apply(&mut self, op: &LockOp, policy: &GroupPolicy, now: Timestamp) -> Applied {
        self.apply_judged(op, policy, now, |_, holder| holder.expires <= now)
    }

    /// [`GroupState::apply`], with the backend's own judgement of which
    /// leases ran out (`ran_out(node, holder)`): on etcd, a holder whose
    /// lease key is gone. The rest of the rules are the same.
    pub fn apply_judged(
        &mut self,
        op: &LockOp,
        policy: &GroupPolicy,
        now: Timestamp,
        ran_out: impl Fn(&str, &Holder) -> bool,
    ) -> Applied {
        let expired = self.expire_due(policy, now, ran_out);
        let outcome = match op {
            LockOp::PreReboot { id } => self.pre_reboot(id, policy, now),
            LockOp::SteadyState { id } | LockOp::Release { id } => Outcome::Released {
                was_held: self.holders.remove(id).is_some(),
            },
            LockOp::BootFailed { id, .. } if !self.holders.contains_key(id) => {
                Outcome::Denied(Denial::NotHolder)
            }
            LockOp::BootFailed { id, reason } => {
                if self.halt.is_none() {
                    self.halt = Some(Halt {
                        node: id.clone(),
                        at: now,
                        reason: HaltReason::BootFailed {
                            reason: reason.chars().take(MAX_REASON_CHARS).collect(),
                        },
                    });
                }
                Outcome::Halted
            }
            LockOp::Ack => {
                // The operator has looked at the failure: the slot the failed
                // node kept goes too, or its lease would halt the group again.
                let halt = self.halt.take();
                if let Some(Halt {
                    node,
                    reason: HaltReason::BootFailed { .. },
                    ..
                }) = &halt
                {
                    self.holders.remove(node);
                }
                Outcome::Acked {
                    was_halted: halt.is_some(),
                }
            }
            LockOp::Expire => Outcome::Judged,
        };
        Applied { outcome, expired }
    }

    fn pre_reboot(&mut self, id: &str, policy: &GroupPolicy, now: Timestamp) -> Outcome {
        // A halt stops every reboot not yet under way, a holder's too: the
        // host whose failed boot halted the group would otherwise reboot
        // again before the ack, and the ack, freeing its slot, would let
        // another host reboot beside it. A holder keeps its slot meanwhile.
        if let Some(halt) = &self.halt {
            return Outcome::Denied(Denial::Halted(halt.clone()));
        }
        // Recursive: the holder keeps its slot, and its lease as it was.
        if self.holders.contains_key(id) {
            return Outcome::Granted { already: true };
        }
        if self.holders.len() >= policy.slots as usize {
            return Outcome::Denied(Denial::Full {
                slots: policy.slots,
            });
        }
        let expires = now.saturating_add(policy.lease).unwrap_or(Timestamp::MAX);
        self.holders.insert(
            id.to_string(),
            Holder {
                taken: now,
                expires,
            },
        );
        Outcome::Granted { already: false }
    }

    /// Free every slot whose lease ran out; under `halt`, the first one
    /// halts the group (an existing halt is kept: it came first). A lease
    /// judged gone before its recorded end (another clock) ran out `now`.
    fn expire_due(
        &mut self,
        policy: &GroupPolicy,
        now: Timestamp,
        ran_out: impl Fn(&str, &Holder) -> bool,
    ) -> Vec<Expired> {
        let due: Vec<(String, Timestamp)> = self
            .holders
            .iter()
            .filter(|(node, holder)| ran_out(node, holder))
            .map(|(node, holder)| (node.clone(), holder.expires.min(now)))
            .collect();
        let mut expired = Vec::new();
        for (node, at) in due {
            self.holders.remove(&node);
            let halts = policy.on_expiry == OnExpiry::Halt && self.halt.is_none();
            if halts {
                self.halt = Some(Halt {
                    node: node.clone(),
                    at,
                    reason: HaltReason::LeaseExpired,
                });
            }
            expired.push(Expired {
                node,
                at,
                halted: halts,
            });
        }
        expired
    }

    /// Push every lease back by `by`: the embedded server's grace for the
    /// time it was down, so its own downtime never expires a lease.
    pub fn extend_leases(&mut self, by: SignedDuration) {
        if by.is_positive() {
            for holder in self.holders.values_mut() {
                holder.expires = holder.expires.saturating_add(by).unwrap_or(Timestamp::MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(minutes: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + minutes * 60).expect("time")
    }

    fn take(id: &str) -> LockOp {
        LockOp::PreReboot { id: id.into() }
    }

    fn give(id: &str) -> LockOp {
        LockOp::SteadyState { id: id.into() }
    }

    fn policy(slots: u32, on_expiry: OnExpiry) -> GroupPolicy {
        GroupPolicy {
            slots,
            lease: SignedDuration::from_mins(60),
            on_expiry,
        }
    }

    fn granted(already: bool) -> Outcome {
        Outcome::Granted { already }
    }

    #[test]
    fn slots_are_granted_up_to_the_count_then_refused() {
        let p = policy(2, OnExpiry::Halt);
        let mut g = GroupState::default();
        assert_eq!(g.apply(&take("a"), &p, t(0)).outcome, granted(false));
        assert_eq!(g.apply(&take("b"), &p, t(1)).outcome, granted(false));
        assert_eq!(
            g.apply(&take("c"), &p, t(2)).outcome,
            Outcome::Denied(Denial::Full { slots: 2 })
        );
        assert_eq!(
            g.apply(&give("a"), &p, t(3)).outcome,
            Outcome::Released { was_held: true }
        );
        assert_eq!(g.apply(&take("c"), &p, t(4)).outcome, granted(false));
        assert_eq!(g.holders.len(), 2);
    }

    #[test]
    fn locks_are_recursive_and_both_calls_idempotent() {
        let p = policy(1, OnExpiry::Halt);
        let mut g = GroupState::default();
        g.apply(&take("a"), &p, t(0));
        let after_first = g.clone();
        assert_eq!(g.apply(&take("a"), &p, t(5)).outcome, granted(true));
        assert_eq!(g, after_first, "a repeated pre-reboot changes nothing");
        assert_eq!(
            g.apply(&give("a"), &p, t(6)).outcome,
            Outcome::Released { was_held: true }
        );
        let after_release = g.clone();
        assert_eq!(
            g.apply(&give("a"), &p, t(7)).outcome,
            Outcome::Released { was_held: false }
        );
        assert_eq!(g, after_release);
        assert_eq!(
            g.apply(&give("never-held"), &p, t(8)).outcome,
            Outcome::Released { was_held: false }
        );
    }

    #[test]
    fn a_repeated_pre_reboot_never_extends_the_lease() {
        let p = policy(1, OnExpiry::Halt);
        let mut g = GroupState::default();
        g.apply(&take("a"), &p, t(0));
        for minute in [10, 30, 59] {
            assert_eq!(g.apply(&take("a"), &p, t(minute)).outcome, granted(true));
            assert_eq!(g.holders["a"].expires, t(60));
            assert_eq!(g.holders["a"].taken, t(0));
        }
        // At the original expiry the slot goes, however often it was asked for.
        let applied = g.apply(&take("a"), &p, t(60));
        assert_eq!(
            applied.expired,
            vec![Expired {
                node: "a".into(),
                at: t(60),
                halted: true
            }]
        );
        assert!(matches!(
            applied.outcome,
            Outcome::Denied(Denial::Halted(_))
        ));
    }

    #[test]
    fn an_expired_lease_halts_the_group_naming_the_node_and_time() {
        let p = policy(2, OnExpiry::Halt);
        let mut g = GroupState::default();
        g.apply(&take("a"), &p, t(0));
        g.apply(&take("b"), &p, t(30));
        let applied = g.apply(&take("c"), &p, t(61));
        let halt = Halt {
            node: "a".into(),
            at: t(60),
            reason: HaltReason::LeaseExpired,
        };
        assert_eq!(
            applied.outcome,
            Outcome::Denied(Denial::Halted(halt.clone()))
        );
        assert!(!g.holders.contains_key("a"), "the expired slot is freed");
        assert!(g.holders.contains_key("b"), "b's lease still runs");
        // b keeps its slot, but may not reboot while the group is halted.
        assert_eq!(
            g.apply(&take("b"), &p, t(62)).outcome,
            Outcome::Denied(Denial::Halted(halt.clone()))
        );
        assert!(g.holders.contains_key("b"), "b keeps its slot");
        // b's own expiry keeps the first halt.
        g.apply(&LockOp::Expire, &p, t(91));
        assert!(g.holders.is_empty());
        assert_eq!(g.halt, Some(halt));
    }

    #[test]
    fn a_sweep_alone_halts_the_group() {
        let p = policy(1, OnExpiry::Halt);
        let mut g = GroupState::default();
        g.apply(&take("a"), &p, t(0));
        let applied = g.apply(&LockOp::Expire, &p, t(59));
        assert!(applied.expired.is_empty() && g.halt.is_none());
        let applied = g.apply(&LockOp::Expire, &p, t(60));
        assert_eq!(applied.outcome, Outcome::Judged);
        assert_eq!(applied.expired.len(), 1);
        assert_eq!(g.halt.as_ref().map(|h| h.node.as_str()), Some("a"));
    }

    #[test]
    fn ack_resumes_a_halted_group() {
        let p = policy(1, OnExpiry::Halt);
        let mut g = GroupState::default();
        g.apply(&take("a"), &p, t(0));
        assert!(matches!(
            g.apply(&take("b"), &p, t(61)).outcome,
            Outcome::Denied(Denial::Halted(_))
        ));
        assert_eq!(
            g.apply(&LockOp::Ack, &p, t(62)).outcome,
            Outcome::Acked { was_halted: true }
        );
        assert_eq!(g.apply(&take("b"), &p, t(63)).outcome, granted(false));
        assert_eq!(
            g.apply(&LockOp::Ack, &p, t(64)).outcome,
            Outcome::Acked { was_halted: false }
        );
        assert_eq!(g.holders.len(), 1);
    }

    #[test]
    fn on_expiry_release_frees_the_slot_and_goes_on() {
        let p = policy(1, OnExpiry::Release);
        let mut g = GroupState::default();
        g.apply(&take("a"), &p, t(0));
        let applied = g.apply(&take("b"), &p, t(60));
        assert_eq!(applied.outcome, granted(false));
        assert_eq!(
            applied.expired,
            vec![Expired {
                node: "a".into(),
                at: t(60),
                halted: false
            }]
        );
        assert!(g.halt.is_none());
        assert_eq!(g.holders.keys().collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn a_reported_boot_failure_halts_at_once_and_the_node_keeps_its_slot() {
        let p = policy(2, OnExpiry::Release);
        let mut g = GroupState::default();
        g.apply(&take("a"), &p, t(0));
        let failed = LockOp::BootFailed {
            id: "a".into(),
            reason: "x".repeat(500),
        };
        assert_eq!(g.apply(&failed, &p, t(5)).outcome, Outcome::Halted);
        let Some(halt) = g.halt.clone() else {
            panic!("not halted")
        };
        assert_eq!((halt.node.as_str(), halt.at), ("a", t(5)));
        assert!(
            matches!(&halt.reason, HaltReason::BootFailed { reason } if reason.len() == MAX_REASON_CHARS)
        );
        assert!(g.holders.contains_key("a"));
        assert_eq!(
            g.apply(&take("b"), &p, t(6)).outcome,
            Outcome::Denied(Denial::Halted(halt.clone()))
        );
        // Repeating the report keeps the first halt.
        g.apply(&failed, &p, t(7));
        assert_eq!(g.halt.as_ref(), Some(&halt));
        // Releasing the failed node's slot does not resume the group: ack does.
        g.apply(&give("a"), &p, t(8));
        assert!(matches!(
            g.apply(&take("b"), &p, t(9)).outcome,
            Outcome::Denied(Denial::Halted(_))
        ));
        g.apply(&LockOp::Ack, &p, t(10));
        assert_eq!(g.apply(&take("b"), &p, t(11)).outcome, granted(false));
    }

    /// Found by the fleet soak: the failed node, still holding its slot,
    /// was granted again and rebooted into a newer release; the ack then
    /// freed that slot mid-reboot, and two more nodes took the two slots.
    #[test]
    fn the_node_that_halted_the_group_reboots_again_only_after_the_ack() {
        let p = policy(2, OnExpiry::Halt);
        let mut g = GroupState::default();
        g.apply(&take("a"), &p, t(0));
        g.apply(&take("b"), &p, t(0));
        g.apply(&give("b"), &p, t(1));
        let failed = LockOp::BootFailed {
            id: "a".into(),
            reason: "rolled back".into(),
        };
        assert_eq!(g.apply(&failed, &p, t(2)).outcome, Outcome::Halted);
        assert!(matches!(
            g.apply(&take("a"), &p, t(3)).outcome,
            Outcome::Denied(Denial::Halted(_))
        ));
        assert!(g.holders.contains_key("a"), "a keeps its slot meanwhile");
        g.apply(&LockOp::Ack, &p, t(4));
        assert!(g.holders.is_empty(), "the ack frees the failed node's slot");
        // a asks afresh, like everyone else: two slots, two reboots.
        assert_eq!(g.apply(&take("a"), &p, t(5)).outcome, granted(false));
        assert_eq!(g.apply(&take("b"), &p, t(5)).outcome, granted(false));
        assert_eq!(
            g.apply(&take("c"), &p, t(5)).outcome,
            Outcome::Denied(Denial::Full { slots: 2 })
        );
    }

    #[test]
    fn only_a_holder_reports_a_failed_boot() {
        let p = policy(1, OnExpiry::Halt);
        let mut g = GroupState::default();
        let stranger = LockOp::BootFailed {
            id: "z".into(),
            reason: "made up".into(),
        };
        assert_eq!(
            g.apply(&stranger, &p, t(0)).outcome,
            Outcome::Denied(Denial::NotHolder)
        );
        assert_eq!(g, GroupState::default(), "nothing stored for it");
        assert_eq!(Denial::NotHolder.kind(), "not_holder");
    }

    #[test]
    fn ack_after_a_failed_boot_frees_the_failed_node_s_slot() {
        let p = policy(1, OnExpiry::Halt);
        let mut g = GroupState::default();
        g.apply(&take("a"), &p, t(0));
        let failed = LockOp::BootFailed {
            id: "a".into(),
            reason: "rolled back".into(),
        };
        g.apply(&failed, &p, t(5));
        assert_eq!(
            g.apply(&LockOp::Ack, &p, t(10)).outcome,
            Outcome::Acked { was_halted: true }
        );
        assert!(g.holders.is_empty(), "{g:?}");
        // So its lease cannot halt the group again an hour later.
        assert_eq!(g.apply(&LockOp::Expire, &p, t(120)).expired, vec![]);
        assert_eq!(g.halt, None);
        assert_eq!(g.apply(&take("b"), &p, t(121)).outcome, granted(false));
    }

    #[test]
    fn an_operator_releases_one_holder() {
        let p = policy(2, OnExpiry::Halt);
        let mut g = GroupState::default();
        g.apply(&take("a"), &p, t(0));
        g.apply(&take("b"), &p, t(0));
        let release = LockOp::Release { id: "a".into() };
        assert_eq!(
            g.apply(&release, &p, t(1)).outcome,
            Outcome::Released { was_held: true }
        );
        assert_eq!(g.holders.keys().collect::<Vec<_>>(), ["b"]);
        assert!(g.halt.is_none(), "a release by hand halts nothing");
        assert_eq!(
            g.apply(&release, &p, t(2)).outcome,
            Outcome::Released { was_held: false }
        );
    }

    #[test]
    fn leases_extended_for_downtime_do_not_expire() {
        let p = policy(1, OnExpiry::Halt);
        let mut g = GroupState::default();
        g.apply(&take("a"), &p, t(0));
        g.extend_leases(SignedDuration::from_mins(120));
        assert!(g.apply(&LockOp::Expire, &p, t(179)).expired.is_empty());
        assert_eq!(g.apply(&LockOp::Expire, &p, t(180)).expired.len(), 1);
        // Never backwards.
        let mut g = GroupState::default();
        g.apply(&take("a"), &p, t(0));
        g.extend_leases(SignedDuration::from_mins(-30));
        assert_eq!(g.holders["a"].expires, t(60));
    }

    #[test]
    fn a_backend_judges_expiry_by_its_own_clock() {
        let p = policy(2, OnExpiry::Halt);
        let mut g = GroupState::default();
        g.apply(&take("a"), &p, t(0));
        g.apply(&take("b"), &p, t(0));
        // Past a's recorded end, but the backend says its lease still runs.
        let applied = g.apply_judged(&LockOp::Expire, &p, t(90), |_, _| false);
        assert!(applied.expired.is_empty() && g.holders.len() == 2);
        // Before the recorded end, b's lease is gone: it ran out now.
        let applied = g.apply_judged(&take("c"), &p, t(20), |node, _| node == "b");
        assert_eq!(
            applied.expired,
            vec![Expired {
                node: "b".into(),
                at: t(20),
                halted: true
            }]
        );
        assert!(matches!(
            applied.outcome,
            Outcome::Denied(Denial::Halted(_))
        ));
    }

    #[test]
    fn the_state_round_trips_through_json() {
        let p = policy(2, OnExpiry::Halt);
        let mut g = GroupState::default();
        g.apply(&take("a"), &p, t(0));
        g.apply(
            &LockOp::BootFailed {
                id: "a".into(),
                reason: "health check".into(),
            },
            &p,
            t(1),
        );
        let text = serde_json::to_string(&g).expect("json");
        let back: GroupState = serde_json::from_str(&text).expect("json");
        assert_eq!(back, g);
    }
}
