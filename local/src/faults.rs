//! Failure injection for the emulations, so failure paths can be tested on demand.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The failures currently injected. Settable in-process or through the gateway's
/// `PUT /_meridian/faults`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSet {
    /// Regions whose buckets receive no replicas: replication to them fails.
    pub replication_fails_to: BTreeSet<String>,
    /// Regions where the next `UpdateEndpoint` ends `Failed` (one update each: the
    /// rollback that follows succeeds).
    pub endpoint_updates_fail_in: BTreeSet<String>,
    /// Regions whose replicas arrive damaged: `"size"` (one byte more) or `"checksum"`
    /// (same size, first byte changed).
    pub corrupt_replicas_in: BTreeMap<String, Corruption>,
    /// Regions whose alarm state changes are never delivered as events (the state still
    /// changes in CloudWatch): a lost event, which only the scheduled tick can heal.
    pub alarm_events_dropped_in: BTreeSet<String>,
    /// Regions whose SageMaker endpoint events ("SageMaker Endpoint State Change", "...
    /// Deployment State Change") are never delivered (the endpoint still changes): a lost
    /// event, which only the deploy wait's backstop heals.
    pub endpoint_events_dropped_in: BTreeSet<String>,
    /// Regions whose endpoints answer every invocation with a model error (HTTP 424).
    pub invocations_fail_in: BTreeSet<String>,
    /// SageMaker API actions that SageMaker refuses, per region, with a message:
    /// `{"eu-west-1": {"UpdateEndpoint": "..."}}` makes every `UpdateEndpoint` there answer
    /// HTTP 400 `ValidationException` with that message, as SageMaker does for a request
    /// it will never accept (until the fault is cleared).
    pub sagemaker_rejects: BTreeMap<String, BTreeMap<String, String>>,
    /// SageMaker API actions whose requests reach SageMaker late, per region, in
    /// milliseconds: `{"ap-southeast-1": {"UpdateEndpoint": 3000}}` holds every
    /// `UpdateEndpoint` there that long before SageMaker sees it, as a slow network path, a
    /// cold or throttled caller or a slow control plane does. The caller waits meanwhile.
    pub sagemaker_delays_ms: BTreeMap<String, BTreeMap<String, u64>>,
    /// Regions gone dark: none of their services, nor their front door, answers; their
    /// events stop, and replication to and from them waits until they are back.
    pub regions_down: BTreeSet<String>,
    /// Every Route 53 API call fails (the control plane, served from us-east-1, is
    /// impaired); health checkers and DNS answers keep working, as Route 53's data plane does.
    pub route53_control_plane_down: bool,
}

/// How a replica is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Corruption {
    Size,
    Checksum,
}

/// Why the gateway refuses a call, by a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The call's region is down: its connection is closed without an answer.
    RegionDown(String),
    /// A Route 53 call while its control plane is down: `503 ServiceUnavailable`.
    Route53ControlPlaneDown,
}

impl FaultSet {
    /// Whether a call signed for `service` in `regions` (its SigV4 region, and for a Lambda
    /// invocation the function ARN's region) is refused. A dark region wins: nothing of it
    /// answers at all.
    pub fn refusal<'a>(
        &self,
        regions: impl IntoIterator<Item = &'a str>,
        service: &str,
    ) -> Option<Refusal> {
        if let Some(down) = regions
            .into_iter()
            .find(|region| self.regions_down.contains(*region))
        {
            return Some(Refusal::RegionDown(down.to_owned()));
        }
        (service == "route53" && self.route53_control_plane_down)
            .then_some(Refusal::Route53ControlPlaneDown)
    }
}

/// Shared, mutable fault settings. Tasks that must wait for a region to come back watch
/// them instead of polling.
#[derive(Debug)]
pub struct Faults(watch::Sender<FaultSet>);

impl Default for Faults {
    fn default() -> Self {
        Self(watch::Sender::new(FaultSet::default()))
    }
}

impl Faults {
    pub fn snapshot(&self) -> FaultSet {
        self.0.borrow().clone()
    }

    pub fn replace(&self, faults: FaultSet) {
        self.0.send_replace(faults);
    }

    fn modify(&self, change: impl FnOnce(&mut FaultSet)) {
        self.0.send_modify(change);
    }

    /// Makes replication to `region` fail from now on.
    pub fn fail_replication_to(&self, region: &str) {
        self.modify(|faults| {
            faults.replication_fails_to.insert(region.to_owned());
        });
    }

    /// Makes the next endpoint update in `region` end `Failed`.
    pub fn fail_endpoint_updates_in(&self, region: &str) {
        self.modify(|faults| {
            faults.endpoint_updates_fail_in.insert(region.to_owned());
        });
    }

    /// Makes replicas arriving in `region` damaged from now on.
    pub fn corrupt_replicas_in(&self, region: &str, corruption: Corruption) {
        self.modify(|faults| {
            faults
                .corrupt_replicas_in
                .insert(region.to_owned(), corruption);
        });
    }

    /// Makes every endpoint invocation in `region` fail from now on.
    pub fn fail_invocations_in(&self, region: &str) {
        self.modify(|faults| {
            faults.invocations_fail_in.insert(region.to_owned());
        });
    }

    /// Makes SageMaker refuse every `action` in `region` with a `ValidationException`
    /// saying `message`, from now on.
    pub fn reject_sagemaker_action(&self, region: &str, action: &str, message: &str) {
        self.modify(|faults| {
            faults
                .sagemaker_rejects
                .entry(region.to_owned())
                .or_default()
                .insert(action.to_owned(), message.to_owned());
        });
    }

    /// Makes every `action` in `region` reach SageMaker `delay` late, from now on.
    pub fn delay_sagemaker_action(&self, region: &str, action: &str, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.modify(|faults| {
            faults
                .sagemaker_delays_ms
                .entry(region.to_owned())
                .or_default()
                .insert(action.to_owned(), millis);
        });
    }

    /// How late `action` in `region` reaches SageMaker, if it is delayed.
    pub fn sagemaker_delay(&self, region: &str, action: &str) -> Option<Duration> {
        self.0
            .borrow()
            .sagemaker_delays_ms
            .get(region)
            .and_then(|actions| actions.get(action))
            .map(|millis| Duration::from_millis(*millis))
    }

    /// The message SageMaker refuses `action` in `region` with, if it does.
    pub fn sagemaker_rejection(&self, region: &str, action: &str) -> Option<String> {
        self.0
            .borrow()
            .sagemaker_rejects
            .get(region)
            .and_then(|actions| actions.get(action))
            .cloned()
    }

    /// Drops every alarm state-change event of `region` from now on.
    pub fn drop_alarm_events_in(&self, region: &str) {
        self.modify(|faults| {
            faults.alarm_events_dropped_in.insert(region.to_owned());
        });
    }

    /// Drops every SageMaker endpoint event of `region` from now on.
    pub fn drop_endpoint_events_in(&self, region: &str) {
        self.modify(|faults| {
            faults.endpoint_events_dropped_in.insert(region.to_owned());
        });
    }

    /// Takes `region` dark until [`Faults::bring_region_up`].
    pub fn take_region_down(&self, region: &str) {
        self.modify(|faults| {
            faults.regions_down.insert(region.to_owned());
        });
    }

    /// Ends `region`'s outage: what waited for it (replication, events) resumes.
    pub fn bring_region_up(&self, region: &str) {
        self.modify(|faults| {
            faults.regions_down.remove(region);
        });
    }

    /// Makes every Route 53 API call fail (`down`) or answer again.
    pub fn set_route53_control_plane_down(&self, down: bool) {
        self.modify(|faults| faults.route53_control_plane_down = down);
    }

    pub fn alarm_events_dropped_in(&self, region: &str) -> bool {
        self.0.borrow().alarm_events_dropped_in.contains(region)
    }

    pub fn endpoint_events_dropped_in(&self, region: &str) -> bool {
        self.0.borrow().endpoint_events_dropped_in.contains(region)
    }

    pub fn invocations_fail_in(&self, region: &str) -> bool {
        self.0.borrow().invocations_fail_in.contains(region)
    }

    pub fn replica_corruption(&self, region: &str) -> Option<Corruption> {
        self.0.borrow().corrupt_replicas_in.get(region).copied()
    }

    pub fn replication_fails_to(&self, region: &str) -> bool {
        self.0.borrow().replication_fails_to.contains(region)
    }

    pub fn region_is_down(&self, region: &str) -> bool {
        self.0.borrow().regions_down.contains(region)
    }

    /// Returns once none of `regions` is down (at once if none is).
    pub async fn wait_until_up(&self, regions: &[&str]) {
        let mut changes = self.0.subscribe();
        // The sender lives as long as `self`, so the wait ends only by the regions coming back.
        let _ = changes
            .wait_for(|faults| regions.iter().all(|r| !faults.regions_down.contains(*r)))
            .await;
    }

    /// Whether this update in `region` fails; consumes the injected fault.
    pub fn take_endpoint_update_failure(&self, region: &str) -> bool {
        let mut failed = false;
        self.0.send_if_modified(|faults| {
            failed = faults.endpoint_updates_fail_in.remove(region);
            failed
        });
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_dark_region_refuses_everything_and_route53_only_its_own_calls() {
        let faults = FaultSet {
            regions_down: BTreeSet::from(["eu-west-1".to_owned()]),
            route53_control_plane_down: true,
            ..FaultSet::default()
        };
        assert_eq!(
            faults.refusal(["eu-west-1"], "dynamodb"),
            Some(Refusal::RegionDown("eu-west-1".into()))
        );
        assert_eq!(
            faults.refusal(["us-east-1", "eu-west-1"], "lambda"),
            Some(Refusal::RegionDown("eu-west-1".into())),
            "a Lambda ARN in a dark region"
        );
        assert_eq!(
            faults.refusal(["us-east-1"], "route53"),
            Some(Refusal::Route53ControlPlaneDown)
        );
        assert_eq!(faults.refusal(["us-east-1"], "s3"), None);
        assert_eq!(FaultSet::default().refusal(["us-east-1"], "route53"), None);
    }

    #[test]
    fn the_new_faults_read_and_write_as_json() {
        let faults: FaultSet = serde_json::from_str(
            r#"{"regions_down": ["eu-west-1"], "route53_control_plane_down": true}"#,
        )
        .expect("valid fault set");
        assert!(faults.regions_down.contains("eu-west-1"));
        assert!(faults.route53_control_plane_down);
        let json = serde_json::to_value(FaultSet::default()).expect("serializable");
        assert_eq!(json["regions_down"], serde_json::json!([]));
        assert_eq!(json["route53_control_plane_down"], false);
    }

    #[tokio::test]
    async fn waiting_for_a_region_ends_when_it_comes_back() {
        let faults = Arc::new(Faults::default());
        faults.take_region_down("eu-west-1");
        let waiter = {
            let faults = faults.clone();
            tokio::spawn(async move { faults.wait_until_up(&["eu-west-1", "us-east-1"]).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "the region is still down");
        faults.bring_region_up("eu-west-1");
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the wait ends once the region is back")
            .expect("the waiter does not panic");
        assert!(!faults.region_is_down("eu-west-1"));
    }

    #[test]
    fn a_sagemaker_rejection_holds_for_its_region_and_action_only() {
        let faults: FaultSet = serde_json::from_str(
            r#"{"sagemaker_rejects": {"eu-west-1": {"UpdateEndpoint": "bad canary"}}}"#,
        )
        .expect("valid fault set");
        let shared = Faults::default();
        shared.replace(faults);
        assert_eq!(
            shared.sagemaker_rejection("eu-west-1", "UpdateEndpoint"),
            Some("bad canary".into())
        );
        assert_eq!(shared.sagemaker_rejection("eu-west-1", "CreateModel"), None);
        assert_eq!(
            shared.sagemaker_rejection("us-east-1", "UpdateEndpoint"),
            None
        );
        assert_eq!(
            shared.sagemaker_rejection("eu-west-1", "UpdateEndpoint"),
            Some("bad canary".into()),
            "held until cleared"
        );
    }

    #[test]
    fn a_sagemaker_delay_holds_for_its_region_and_action_only() {
        let faults: FaultSet = serde_json::from_str(
            r#"{"sagemaker_delays_ms": {"ap-southeast-1": {"UpdateEndpoint": 3000}}}"#,
        )
        .expect("valid fault set");
        let shared = Faults::default();
        shared.replace(faults);
        assert_eq!(
            shared.sagemaker_delay("ap-southeast-1", "UpdateEndpoint"),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            shared.sagemaker_delay("ap-southeast-1", "CreateModel"),
            None
        );
        assert_eq!(shared.sagemaker_delay("eu-west-1", "UpdateEndpoint"), None);
        shared.delay_sagemaker_action("eu-west-1", "UpdateEndpoint", Duration::from_millis(250));
        assert_eq!(
            shared.sagemaker_delay("eu-west-1", "UpdateEndpoint"),
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn an_endpoint_update_failure_is_taken_once() {
        let faults = Faults::default();
        faults.fail_endpoint_updates_in("us-east-1");
        assert!(faults.take_endpoint_update_failure("us-east-1"));
        assert!(!faults.take_endpoint_update_failure("us-east-1"));
    }
}
