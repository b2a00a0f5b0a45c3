//! Where Route 53 sends each client location right now: the fleet's latency records, read
//! from moto, each healthy or not by its health check as the local checkers see it, and
//! `meridian::routing::resolve` over them. This is DNS, Route 53's data plane: it answers
//! whatever the control plane's state. See `EMULATIONS.md`.

use anyhow::{Context, Result};
use aws_sdk_route53::types::{HealthCheck, ResourceRecordSet};
use meridian::routing::{resolve, RecordHealth, Resolution};
use serde::Serialize;

use crate::ctx::Ctx;
use crate::health_checkers::HealthCheckers;

/// Client locations besides the fleet's own regions.
pub const CLIENT_LOCATIONS: &[&str] = &[
    "us-east-1",
    "us-west-2",
    "sa-east-1",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-1",
    "ap-northeast-1",
];

/// The fleet record's latency records as Route 53 evaluates them, and its answer per
/// client location.
#[derive(Debug, Clone, Serialize)]
pub struct RoutingView {
    pub records: Vec<RecordHealth>,
    pub resolutions: Vec<Resolution>,
}

/// A latency record's health: with no health check a record is always healthy; a health
/// check no checker has probed yet (or of a kind none probes) counts as healthy, as a new
/// one does on Route 53.
pub fn record_health(
    region: &str,
    check: Option<&HealthCheck>,
    checker_healthy: Option<bool>,
) -> RecordHealth {
    let config = check.and_then(HealthCheck::health_check_config);
    RecordHealth {
        region: region.to_owned(),
        endpoint_healthy: checker_healthy.unwrap_or(true),
        inverted: config.and_then(|c| c.inverted()).unwrap_or(false),
        disabled: config.and_then(|c| c.disabled()).unwrap_or(false),
    }
}

/// The client locations answered: the fleet's regions first, then the others.
pub fn client_locations(fleet_regions: &[&str]) -> Vec<String> {
    let mut locations: Vec<String> = fleet_regions.iter().map(|r| (*r).to_owned()).collect();
    locations.extend(
        CLIENT_LOCATIONS
            .iter()
            .filter(|l| !fleet_regions.contains(l))
            .map(|l| (*l).to_owned()),
    );
    locations
}

/// Reads the routing state from moto (never through the gateway: faults of the control
/// plane do not reach DNS) and resolves every client location.
pub async fn view(ctx: &Ctx, checkers: &HealthCheckers) -> Result<RoutingView> {
    let route53 = aws_sdk_route53::Client::new(&ctx.moto.config("us-east-1").await);
    let checks = crate::health_checkers::health_checks(&route53).await?;
    let mut records = Vec::new();
    for record in latency_records(ctx, &route53).await? {
        let Some(region) = record.region().map(|r| r.as_str().to_owned()) else {
            continue;
        };
        let check = record.health_check_id().and_then(|id| checks.get(id));
        let checker_healthy = record
            .health_check_id()
            .and_then(|id| checkers.status(id))
            .map(|status| status.healthy);
        records.push(record_health(&region, check, checker_healthy));
    }
    let resolutions = client_locations(&ctx.fleet.region_names())
        .iter()
        .map(|client| resolve(client, &records))
        .collect();
    Ok(RoutingView {
        records,
        resolutions,
    })
}

/// The record sets named `dns.record` in the fleet's zone (none before provisioning).
async fn latency_records(
    ctx: &Ctx,
    route53: &aws_sdk_route53::Client,
) -> Result<Vec<ResourceRecordSet>> {
    let bare = |name: &str| name.trim_end_matches('.').to_ascii_lowercase();
    let zone_name = format!("{}.", ctx.fleet.dns.zone.trim_end_matches('.'));
    let zones = route53
        .list_hosted_zones_by_name()
        .dns_name(&zone_name)
        .send()
        .await
        .context("ListHostedZonesByName")?;
    let Some(zone) = zones
        .hosted_zones()
        .iter()
        .find(|z| bare(z.name()) == bare(&zone_name))
    else {
        return Ok(Vec::new());
    };
    let wanted = bare(&ctx.fleet.dns.record);
    let mut records = Vec::new();
    let mut start: Option<(String, aws_sdk_route53::types::RrType, Option<String>)> = None;
    loop {
        let mut list = route53
            .list_resource_record_sets()
            .hosted_zone_id(zone.id());
        if let Some((name, kind, identifier)) = start.take() {
            list = list
                .start_record_name(name)
                .start_record_type(kind)
                .set_start_record_identifier(identifier);
        }
        let page = list.send().await.context("ListResourceRecordSets")?;
        records.extend(
            page.resource_record_sets()
                .iter()
                .filter(|r| bare(r.name()) == wanted)
                .cloned(),
        );
        start = match (
            page.is_truncated(),
            page.next_record_name(),
            page.next_record_type(),
        ) {
            (true, Some(name), Some(kind)) => Some((
                name.to_owned(),
                kind.clone(),
                page.next_record_identifier().map(str::to_owned),
            )),
            _ => None,
        };
        if start.is_none() {
            return Ok(records);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_route53::types::{HealthCheckConfig, HealthCheckType};

    fn check(inverted: bool, disabled: bool) -> HealthCheck {
        HealthCheck::builder()
            .id("hc")
            .caller_reference("fleet-eu-west-1")
            .health_check_version(1)
            .health_check_config(
                HealthCheckConfig::builder()
                    .r#type(HealthCheckType::Http)
                    .inverted(inverted)
                    .disabled(disabled)
                    .build()
                    .expect("a complete config"),
            )
            .build()
            .expect("a complete health check")
    }

    #[test]
    fn a_record_is_as_healthy_as_its_checker_says_under_route53s_rules() {
        let failing = record_health("eu-west-1", Some(&check(false, false)), Some(false));
        assert!(!failing.healthy());
        assert!(record_health("eu-west-1", Some(&check(true, false)), Some(false)).healthy());
        assert!(record_health("eu-west-1", Some(&check(false, true)), Some(false)).healthy());
        assert!(record_health("eu-west-1", Some(&check(false, false)), None).healthy());
        assert!(record_health("eu-west-1", None, None).healthy());
    }

    #[test]
    fn the_fleets_regions_come_first_and_once() {
        let locations = client_locations(&["eu-west-1", "us-east-1"]);
        assert_eq!(locations[..2], ["eu-west-1", "us-east-1"]);
        assert_eq!(locations.iter().filter(|l| *l == "eu-west-1").count(), 1);
        assert_eq!(locations.len(), 2 + CLIENT_LOCATIONS.len() - 2);
    }
}
