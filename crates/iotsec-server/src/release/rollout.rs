//! The rollout state machine, without I/O: stages of devices, the failure threshold, who was
//! told when, and where every device stands given its latest report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Result, ServerError};
use crate::store::DeviceOta;

/// One entry of a stage plan: the stage grows the rollout to this many devices in total.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StageSize {
    /// This many devices in total.
    Count(usize),
    /// This percentage of the devices in total (rounded up).
    Percent(f64),
}

/// Parses `1,10%,100%`: cumulative sizes, each a count or a percentage.
///
/// # Errors
/// [`ServerError::Config`] for anything else.
pub fn parse_stages(text: &str) -> Result<Vec<StageSize>> {
    let bad = |why: &str| ServerError::Config(format!("stages `{text}`: {why}"));
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim) {
        let size = match part.strip_suffix('%') {
            Some(p) => {
                let p: f64 = p.trim().parse().map_err(|_| bad("expected N or N%"))?;
                if !(p > 0.0 && p <= 100.0) {
                    return Err(bad("a percentage must be above 0 and at most 100"));
                }
                StageSize::Percent(p)
            }
            None => {
                let n: usize = part.parse().map_err(|_| bad("expected N or N%"))?;
                if n == 0 {
                    return Err(bad("a stage needs at least one device"));
                }
                StageSize::Count(n)
            }
        };
        out.push(size);
    }
    if out.is_empty() || out.len() > 32 {
        return Err(bad("1 to 32 stages"));
    }
    Ok(out)
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStatus {
    /// Devices of the current stage are being updated.
    Running,
    /// A stage failed over the threshold: no further device is told.
    Halted,
    /// Every stage finished within the threshold.
    Completed,
}

impl RolloutStatus {
    /// The stored name.
    pub fn name(self) -> &'static str {
        match self {
            RolloutStatus::Running => "running",
            RolloutStatus::Halted => "halted",
            RolloutStatus::Completed => "completed",
        }
    }
}

/// When a device of the rollout was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notified {
    /// First notice, ms (reports from before it do not count for this rollout).
    pub first_ms: i64,
    /// Latest notice, ms.
    pub last_ms: i64,
    /// Notices sent.
    pub count: u32,
}

/// Why a rollout halted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    /// The stage (0-based).
    pub stage: usize,
    /// Its failed devices when it halted.
    pub failed: usize,
    /// Its size.
    pub total: usize,
}

/// A rollout: the state machine, without I/O. Serialised into storage as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// Release id.
    pub release: String,
    /// Devices per stage (disjoint, in order).
    pub stages: Vec<Vec<String>>,
    /// A stage whose failed / size exceeds this halts the rollout.
    pub max_failure_rate: f64,
    /// The current stage (0-based).
    pub stage: usize,
    /// Running, halted, completed.
    pub status: RolloutStatus,
    /// When the current stage started, ms.
    pub stage_started_ms: i64,
    /// Devices told so far.
    pub notified: BTreeMap<String, Notified>,
    /// Set when halted.
    pub halt: Option<Halt>,
}

/// Timings of [`Rollout::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// A device without any report since its notice is told again after this long.
    pub renotify_ms: i64,
    /// A device without an outcome this long after its stage started counts as failed.
    pub stage_timeout_ms: i64,
}

/// What one step decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Devices to send the notice to now.
    pub notify: Vec<String>,
    /// The state changed (store it).
    pub changed: bool,
}

/// A device's standing in a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Not told (its stage has not started, or the rollout halted before).
    Waiting,
    /// Told; no report since.
    Notified,
    /// Reported progress (`downloading`, `verifying`, `trial`).
    Updating {
        /// The reported state.
        state: String,
        /// Download progress.
        progress: Option<u8>,
    },
    /// Confirmed the release.
    Confirmed,
    /// Rolled back, rejected the notice, failed, or timed out.
    Failed {
        /// The reported state (`rolled_back`, `rejected`, `failed`) or `timed_out`.
        state: String,
        /// Why.
        reason: Option<String>,
    },
}

impl Standing {
    /// Stable name.
    pub fn name(&self) -> &str {
        match self {
            Standing::Waiting => "waiting",
            Standing::Notified => "notified",
            Standing::Updating { state, .. } | Standing::Failed { state, .. } => state,
            Standing::Confirmed => "confirmed",
        }
    }

    fn done(&self) -> bool {
        matches!(self, Standing::Confirmed | Standing::Failed { .. })
    }
}

/// Reported states that end an update.
pub const FAILED_STATES: &[&str] = &["rolled_back", "rejected", "failed"];

impl Rollout {
    /// Plans a rollout of `release` to `devices` (in order) in `stages`.
    ///
    /// # Errors
    /// [`ServerError::Config`]: no devices, duplicates, a threshold outside 0..=1, stages that
    /// shrink.
    pub fn plan(
        release: &str,
        devices: Vec<String>,
        stages: &[StageSize],
        max_failure_rate: f64,
        now_ms: i64,
    ) -> Result<Rollout> {
        let bad = |why: String| ServerError::Config(why);
        if devices.is_empty() {
            return Err(bad("a rollout needs at least one device".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = devices.iter().find(|d| !seen.insert(d.as_str())) {
            return Err(bad(format!("device {dup} is listed twice")));
        }
        if !(0.0..=1.0).contains(&max_failure_rate) {
            return Err(bad("max failure rate must be between 0 and 1".into()));
        }
        let n = devices.len();
        let mut cut = Vec::with_capacity(stages.len() + 1);
        let mut last = 0usize;
        for s in stages {
            let total = match *s {
                StageSize::Count(c) => c.min(n),
                StageSize::Percent(p) => {
                    // ceil(p% of n), exact for the small integers involved.
                    let t = (p * n as f64 / 100.0).ceil();
                    if t.is_finite() && t > 0.0 {
                        (t as usize).min(n)
                    } else {
                        1
                    }
                }
            };
            if total < last {
                return Err(bad(
                    "stage sizes are cumulative and must not shrink (e.g. 1,10%,100%)".into(),
                ));
            }
            if total > last {
                cut.push(total);
                last = total;
            }
        }
        if last < n {
            cut.push(n);
        }
        let mut stages_out = Vec::with_capacity(cut.len());
        let mut from = 0;
        for to in cut {
            stages_out.push(devices[from..to].to_vec());
            from = to;
        }
        Ok(Rollout {
            release: release.to_string(),
            stages: stages_out,
            max_failure_rate,
            stage: 0,
            status: RolloutStatus::Running,
            stage_started_ms: now_ms,
            notified: BTreeMap::new(),
            halt: None,
        })
    }

    /// Every device of the rollout, in stage order.
    pub fn devices(&self) -> impl Iterator<Item = (usize, &String)> {
        self.stages
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.iter().map(move |d| (i, d)))
    }

    /// Where `device` stands, given its latest report.
    pub fn standing(
        &self,
        device: &str,
        report: Option<&DeviceOta>,
        now_ms: i64,
        timing: &Timing,
    ) -> Standing {
        let Some(told) = self.notified.get(device) else {
            return Standing::Waiting;
        };
        let fresh = report.filter(|r| {
            r.release.as_deref() == Some(self.release.as_str()) && r.updated_ms >= told.first_ms
        });
        let standing = match fresh {
            None => Standing::Notified,
            Some(r) if r.state == "confirmed" => Standing::Confirmed,
            Some(r) if FAILED_STATES.contains(&r.state.as_str()) => Standing::Failed {
                state: r.state.clone(),
                reason: r.reason.clone(),
            },
            Some(r) => Standing::Updating {
                state: r.state.clone(),
                progress: r.progress,
            },
        };
        let stage_of_device = self
            .stages
            .iter()
            .position(|s| s.iter().any(|d| d == device));
        let in_current =
            stage_of_device == Some(self.stage) && self.status == RolloutStatus::Running;
        if !standing.done()
            && in_current
            && now_ms.saturating_sub(self.stage_started_ms) >= timing.stage_timeout_ms
        {
            return Standing::Failed {
                state: "timed_out".into(),
                reason: Some(format!(
                    "no outcome within {} s of the stage's start",
                    timing.stage_timeout_ms / 1000
                )),
            };
        }
        standing
    }

    /// Advances the state machine: notifies the current stage's devices (and, after
    /// `renotify_ms` of silence, again), halts when the stage's failures exceed the threshold,
    /// moves to the next stage when every device of this one confirmed or failed.
    pub fn step(
        &mut self,
        now_ms: i64,
        reports: &BTreeMap<String, DeviceOta>,
        timing: &Timing,
    ) -> Step {
        let mut step = Step::default();
        while self.status == RolloutStatus::Running {
            let Some(devices) = self.stages.get(self.stage).cloned() else {
                self.status = RolloutStatus::Completed;
                step.changed = true;
                break;
            };
            let (mut failed, mut done) = (0usize, 0usize);
            for d in &devices {
                match self.standing(d, reports.get(d), now_ms, timing) {
                    Standing::Waiting => {
                        self.notified.insert(
                            d.clone(),
                            Notified {
                                first_ms: now_ms,
                                last_ms: now_ms,
                                count: 1,
                            },
                        );
                        step.notify.push(d.clone());
                        step.changed = true;
                    }
                    Standing::Notified => {
                        if let Some(n) = self.notified.get_mut(d)
                            && now_ms.saturating_sub(n.last_ms) >= timing.renotify_ms
                        {
                            n.last_ms = now_ms;
                            n.count = n.count.saturating_add(1);
                            step.notify.push(d.clone());
                            step.changed = true;
                        }
                    }
                    Standing::Updating { .. } => {}
                    Standing::Confirmed => done += 1,
                    Standing::Failed { .. } => {
                        done += 1;
                        failed += 1;
                    }
                }
            }
            let total = devices.len();
            if failed as f64 > self.max_failure_rate * total as f64 {
                self.status = RolloutStatus::Halted;
                self.halt = Some(Halt {
                    stage: self.stage,
                    failed,
                    total,
                });
                step.changed = true;
                break;
            }
            if done < total {
                break;
            }
            self.stage += 1;
            self.stage_started_ms = now_ms;
            step.changed = true;
            if self.stage >= self.stages.len() {
                self.status = RolloutStatus::Completed;
                self.stage = self.stages.len() - 1;
            }
        }
        step
    }

    /// JSON for storage.
    ///
    /// # Errors
    /// Never in practice (plain data); [`ServerError::Storage`] otherwise.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| ServerError::Storage(format!("rollout: {e}")))
    }

    /// From storage.
    ///
    /// # Errors
    /// [`ServerError::Storage`] for a body this version cannot read.
    pub fn from_json(body: &str) -> Result<Rollout> {
        serde_json::from_str(body).map_err(|e| ServerError::Storage(format!("rollout: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        renotify_ms: 60_000,
        stage_timeout_ms: 3_600_000,
    };

    fn devices(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("d{i:02}")).collect()
    }

    fn report(device: &str, state: &str, at: i64) -> DeviceOta {
        DeviceOta {
            device: device.into(),
            release: Some("rel".into()),
            version: Some("2.0.0".into()),
            state: state.into(),
            progress: None,
            reason: (state == "rolled_back").then(|| "deadline_passed".into()),
            updated_ms: at,
        }
    }

    #[test]
    fn stages_are_cumulative_and_never_empty() {
        let plan = |n, s: &str| {
            Rollout::plan("rel", devices(n), &parse_stages(s).unwrap(), 0.2, 0)
                .unwrap()
                .stages
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>()
        };
        assert_eq!(plan(50, "1,10%,100%"), vec![1, 4, 45]);
        assert_eq!(
            plan(3, "1,10%,100%"),
            vec![1, 2],
            "10% of 3 rounds up to the canary"
        );
        assert_eq!(plan(1, "1,10%,100%"), vec![1]);
        assert_eq!(plan(5, "2"), vec![2, 3], "the rest always follows");
        assert_eq!(plan(4, "100%"), vec![4]);
        assert!(Rollout::plan("r", devices(3), &parse_stages("5,2").unwrap(), 0.2, 0).is_err());
        assert!(Rollout::plan("r", vec![], &[StageSize::Count(1)], 0.2, 0).is_err());
        assert!(
            Rollout::plan(
                "r",
                vec!["a".into(), "a".into()],
                &[StageSize::Count(1)],
                0.2,
                0
            )
            .is_err()
        );
        assert!(Rollout::plan("r", devices(2), &[StageSize::Count(1)], 1.5, 0).is_err());
        for bad in ["", "0", "1,x", "150%", "-1", "0%"] {
            assert!(parse_stages(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_stage_that_fails_over_the_threshold_halts_and_later_stages_are_never_told() {
        let mut r =
            Rollout::plan("rel", devices(3), &parse_stages("1,100%").unwrap(), 0.2, 0).unwrap();
        let mut reports = BTreeMap::new();
        let s = r.step(0, &reports, &T);
        assert_eq!(s.notify, vec!["d01"]);
        // Progress, then a rollback.
        reports.insert("d01".into(), report("d01", "downloading", 10));
        assert_eq!(r.step(20, &reports, &T), Step::default());
        reports.insert("d01".into(), report("d01", "rolled_back", 30));
        let s = r.step(40, &reports, &T);
        assert!(s.notify.is_empty() && s.changed);
        assert_eq!(r.status, RolloutStatus::Halted);
        assert_eq!(
            r.halt,
            Some(Halt {
                stage: 0,
                failed: 1,
                total: 1
            })
        );
        // Nothing more, ever.
        assert_eq!(r.step(10_000_000, &reports, &T), Step::default());
        assert!(!r.notified.contains_key("d02") && !r.notified.contains_key("d03"));
    }

    #[test]
    fn confirmed_stages_advance_and_failures_within_the_threshold_are_tolerated() {
        let mut r =
            Rollout::plan("rel", devices(6), &parse_stages("1,100%").unwrap(), 0.2, 0).unwrap();
        let mut reports = BTreeMap::new();
        r.step(0, &reports, &T);
        reports.insert("d01".into(), report("d01", "confirmed", 5));
        let s = r.step(10, &reports, &T);
        assert_eq!(s.notify, devices(6)[1..].to_vec());
        assert_eq!(r.stage, 1);
        // 1 of 5 failed: 0.2 is not above 0.2.
        reports.insert("d02".into(), report("d02", "rejected", 20));
        for d in ["d03", "d04", "d05", "d06"] {
            reports.insert(d.into(), report(d, "confirmed", 20));
        }
        r.step(30, &reports, &T);
        assert_eq!(r.status, RolloutStatus::Completed);
        assert_eq!(r.halt, None);
    }

    #[test]
    fn old_reports_and_other_releases_do_not_count_and_silent_devices_are_told_again() {
        let mut r = Rollout::plan("rel", devices(1), &[StageSize::Count(1)], 0.0, 1000).unwrap();
        let mut reports = BTreeMap::new();
        // A rollback of the same release from an earlier rollout (before this notice).
        reports.insert("d01".into(), report("d01", "rolled_back", 500));
        assert_eq!(r.step(1000, &reports, &T).notify, vec!["d01"]);
        assert_eq!(r.status, RolloutStatus::Running);
        assert!(
            r.step(1000 + T.renotify_ms - 1, &reports, &T)
                .notify
                .is_empty()
        );
        assert_eq!(
            r.step(1000 + T.renotify_ms, &reports, &T).notify,
            vec!["d01"]
        );
        let mut other = report("d01", "confirmed", 2_000_000);
        other.release = Some("other".into());
        reports.insert("d01".into(), other);
        r.step(2_000_001, &reports, &T);
        assert_eq!(r.status, RolloutStatus::Running);
        // Silent past the stage timeout: failed (threshold 0), halted.
        r.step(1000 + T.stage_timeout_ms, &reports, &T);
        assert_eq!(r.status, RolloutStatus::Halted);
    }

    #[test]
    fn rollouts_round_trip_through_json() {
        let mut r =
            Rollout::plan("rel", devices(3), &parse_stages("1,100%").unwrap(), 0.5, 7).unwrap();
        r.step(8, &BTreeMap::new(), &T);
        assert_eq!(Rollout::from_json(&r.to_json().unwrap()).unwrap(), r);
    }
}
