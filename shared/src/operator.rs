//! Operators in control of a running rollout: `meridian rollout pause|resume|promote|abort`
//! write an [`OperatorControl`] record for the version (`rollout#<m>#<v>` / `control`),
//! and the state machine's gate reads it at every phase boundary and through Meridian's
//! own bake ([`gate`]). Pure.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What an operator asked of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorAction {
    /// Hold before the next phase (and through the bake) until resumed.
    Pause,
    /// Go on after a pause.
    Resume,
    /// Skip the rest of Meridian's bake (not SageMaker's own deployment).
    Promote,
    /// Roll every region back now and fail the version.
    Abort,
}

impl OperatorAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Promote => "promote",
            Self::Abort => "abort",
        }
    }
}

/// One operator command, as recorded: who asked, why, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorRecord {
    pub action: OperatorAction,
    pub who: String,
    pub why: Option<String>,
    pub at: DateTime<Utc>,
}

/// The operator's hold on one version's rollout, and every command given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorControl {
    pub paused: bool,
    pub promoted: bool,
    pub aborted: bool,
    /// Oldest first, the newest [`MAX_HISTORY`] kept.
    pub history: Vec<OperatorRecord>,
}

/// Commands kept per version (the record stays far below DynamoDB's item limit).
pub const MAX_HISTORY: usize = 100;
/// The most bytes of an operator's reason and identity kept.
pub const MAX_TEXT_BYTES: usize = 1024;

/// Why a command does not apply to the rollout as it stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the rollout is being aborted; nothing else applies")]
    Aborted,
    #[error("the rollout is already paused")]
    AlreadyPaused,
    #[error("the rollout is not paused; nothing to resume")]
    NotPaused,
    #[error("the rollout is already promoted")]
    AlreadyPromoted,
}

impl OperatorControl {
    /// Applies `action` (recording who and why), or refuses it when it does not apply.
    pub fn apply(
        &mut self,
        action: OperatorAction,
        who: &str,
        why: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        if self.aborted {
            return Err(Refusal::Aborted);
        }
        match action {
            OperatorAction::Pause if self.paused => return Err(Refusal::AlreadyPaused),
            OperatorAction::Pause => self.paused = true,
            OperatorAction::Resume if !self.paused => return Err(Refusal::NotPaused),
            OperatorAction::Resume => self.paused = false,
            OperatorAction::Promote if self.promoted => return Err(Refusal::AlreadyPromoted),
            OperatorAction::Promote => self.promoted = true,
            OperatorAction::Abort => self.aborted = true,
        }
        self.history.push(OperatorRecord {
            action,
            who: crate::bounded::text(who, MAX_TEXT_BYTES),
            why: why.map(|w| crate::bounded::text(w, MAX_TEXT_BYTES)),
            at,
        });
        if self.history.len() > MAX_HISTORY {
            self.history.remove(0);
        }
        Ok(())
    }

    /// The abort's reason as the version's failure records it.
    pub fn abort_reason(&self) -> String {
        let last = self
            .history
            .iter()
            .rev()
            .find(|r| r.action == OperatorAction::Abort);
        match last {
            Some(r) => format!(
                "aborted by {}{}",
                r.who,
                r.why
                    .as_deref()
                    .map(|w| format!(": {w}"))
                    .unwrap_or_default()
            ),
            None => "aborted by an operator".into(),
        }
    }
}

/// After this long paused, a hold waits [`LONG_PAUSE_POLL`] between looks at the control
/// record: each look costs the execution 9 history events (Wait, Task, Choice), and Step
/// Functions ends an execution at 25,000; a week's pause costs about 18,000.
pub const LONG_PAUSE: Duration = Duration::from_secs(3600);
pub const LONG_PAUSE_POLL: Duration = Duration::from_secs(300);

/// The phase boundary a gate stands at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Boundary {
    /// Every region's files verified; next: prepare.
    Replicated,
    /// Every region prepared; next: deploy.
    Prepared,
    /// Every region serves the new version; Meridian's bake, then commit.
    Deployed,
}

/// What the state machine does at a gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Gate {
    /// On to the next phase.
    Proceed,
    /// Wait this many seconds, then ask the gate again.
    Hold { wait: u64 },
    /// Roll every region back and fail the version.
    Abort { reason: String },
}

/// The gate's decision: an abort wins, a pause holds, and at [`Boundary::Deployed`] the
/// bake holds until `bake` has passed since `baking_since` unless promoted. A hold waits
/// at most `poll` (so a command takes effect within it; [`LONG_PAUSE_POLL`] once a pause
/// has lasted [`LONG_PAUSE`]) and never past the bake's end.
pub fn gate(
    control: &OperatorControl,
    boundary: Boundary,
    bake: Duration,
    baking_since: DateTime<Utc>,
    now: DateTime<Utc>,
    poll: Duration,
) -> Gate {
    let poll = poll.as_secs().max(1);
    if control.aborted {
        return Gate::Abort {
            reason: control.abort_reason(),
        };
    }
    if control.paused {
        let paused_at = control
            .history
            .iter()
            .rev()
            .find(|r| r.action == OperatorAction::Pause)
            .map_or(now, |r| r.at);
        let long = (now - paused_at).to_std().unwrap_or_default() > LONG_PAUSE;
        return Gate::Hold {
            wait: if long {
                poll.max(LONG_PAUSE_POLL.as_secs())
            } else {
                poll
            },
        };
    }
    if boundary != Boundary::Deployed || control.promoted {
        return Gate::Proceed;
    }
    let elapsed = (now - baking_since).to_std().unwrap_or_default();
    match bake.checked_sub(elapsed) {
        Some(left) if !left.is_zero() => Gate::Hold {
            wait: left.as_secs_f64().ceil().min(poll as f64).max(1.0) as u64,
        },
        _ => Gate::Proceed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap_or_default()
    }

    const POLL: Duration = Duration::from_secs(30);

    #[test]
    fn commands_apply_in_order_and_are_recorded() {
        let mut control = OperatorControl::default();
        assert_eq!(
            control.apply(OperatorAction::Resume, "ann", None, at(0)),
            Err(Refusal::NotPaused)
        );
        control
            .apply(OperatorAction::Pause, "ann", Some("checking"), at(1))
            .unwrap_or_default();
        assert_eq!(
            control.apply(OperatorAction::Pause, "bob", None, at(2)),
            Err(Refusal::AlreadyPaused)
        );
        assert_eq!(
            control.apply(OperatorAction::Resume, "bob", None, at(3)),
            Ok(())
        );
        assert_eq!(
            control.apply(OperatorAction::Promote, "bob", None, at(4)),
            Ok(())
        );
        assert_eq!(
            control.apply(OperatorAction::Promote, "bob", None, at(5)),
            Err(Refusal::AlreadyPromoted)
        );
        assert_eq!(
            control.apply(OperatorAction::Abort, "cy", Some("bad answers"), at(6)),
            Ok(())
        );
        assert_eq!(
            control.apply(OperatorAction::Resume, "cy", None, at(7)),
            Err(Refusal::Aborted)
        );
        let actions: Vec<_> = control.history.iter().map(|r| r.action).collect();
        assert_eq!(
            actions,
            [
                OperatorAction::Pause,
                OperatorAction::Resume,
                OperatorAction::Promote,
                OperatorAction::Abort
            ]
        );
        assert_eq!(control.abort_reason(), "aborted by cy: bad answers");
    }

    #[test]
    fn the_history_is_bounded() {
        let mut control = OperatorControl::default();
        for i in 0..(MAX_HISTORY as i64 + 10) {
            let action = if i % 2 == 0 {
                OperatorAction::Pause
            } else {
                OperatorAction::Resume
            };
            let _ = control.apply(action, &"w".repeat(5000), Some(&"y".repeat(5000)), at(i));
        }
        assert_eq!(control.history.len(), MAX_HISTORY);
        assert!(control
            .history
            .iter()
            .all(|r| r.who.len() <= MAX_TEXT_BYTES));
        assert_eq!(control.history.last().map(|r| r.at), Some(at(109)));
    }

    #[test]
    fn boundaries_before_the_deploy_proceed_unless_paused_or_aborted() {
        let mut control = OperatorControl::default();
        let bake = Duration::from_secs(3600);
        for boundary in [Boundary::Replicated, Boundary::Prepared] {
            assert_eq!(
                gate(&control, boundary, bake, at(0), at(0), POLL),
                Gate::Proceed
            );
        }
        control.paused = true;
        assert_eq!(
            gate(&control, Boundary::Replicated, bake, at(0), at(0), POLL),
            Gate::Hold { wait: 30 }
        );
        control.aborted = true;
        assert!(matches!(
            gate(&control, Boundary::Prepared, bake, at(0), at(0), POLL),
            Gate::Abort { .. }
        ));
    }

    #[test]
    fn the_bake_holds_until_it_ends_or_is_promoted_and_never_waits_past_its_end() {
        let mut control = OperatorControl::default();
        let bake = Duration::from_secs(100);
        let hold = |control: &OperatorControl, now| {
            gate(control, Boundary::Deployed, bake, at(0), at(now), POLL)
        };
        assert_eq!(hold(&control, 0), Gate::Hold { wait: 30 });
        assert_eq!(hold(&control, 90), Gate::Hold { wait: 10 });
        assert_eq!(hold(&control, 100), Gate::Proceed);
        assert_eq!(
            gate(
                &control,
                Boundary::Deployed,
                Duration::ZERO,
                at(0),
                at(0),
                POLL
            ),
            Gate::Proceed
        );
        control
            .apply(OperatorAction::Pause, "ann", None, at(400))
            .unwrap_or_default();
        assert_eq!(
            hold(&control, 500),
            Gate::Hold { wait: 30 },
            "a pause outlasts the bake"
        );
        assert_eq!(
            hold(&control, 400 + 3601),
            Gate::Hold { wait: 300 },
            "a long pause looks less often"
        );
        control.paused = false;
        control.promoted = true;
        assert_eq!(hold(&control, 1), Gate::Proceed);
    }

    #[test]
    fn a_hold_waits_at_least_a_second() {
        let control = OperatorControl::default();
        let bake = Duration::from_millis(1500);
        assert_eq!(
            gate(
                &control,
                Boundary::Deployed,
                bake,
                at(0),
                at(1),
                Duration::ZERO
            ),
            Gate::Hold { wait: 1 }
        );
    }
}
