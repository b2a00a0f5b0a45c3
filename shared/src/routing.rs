//! Which region Route 53 latency-based routing answers with, given the health checks:
//! the `meridian local resolve` view. Latency is approximated by continent (a client is
//! nearest to regions on its own continent, then to neighbouring ones); health follows
//! Route 53's rules: `Disabled` counts as healthy, `Inverted` swaps, and when no record
//! is healthy Route 53 answers as if all were (fail-open).

use serde::Serialize;

/// Coarse geography of region codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Continent {
    Americas,
    Europe,
    Asia,
}

fn continent(region: &str) -> Continent {
    match region.split('-').next().unwrap_or("") {
        "us" | "ca" | "sa" | "mx" => Continent::Americas,
        "eu" | "me" | "af" | "il" => Continent::Europe,
        _ => Continent::Asia,
    }
}

/// Approximate distance between continents (0 = same).
fn distance(a: Continent, b: Continent) -> u8 {
    use Continent::*;
    match (a, b) {
        _ if a == b => 0,
        (Americas, Europe) | (Europe, Americas) => 1,
        _ => 2,
    }
}

/// What Route 53 knows of one region's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordHealth {
    pub region: String,
    /// What the checkers measure (locally: the endpoint is `InService`).
    pub endpoint_healthy: bool,
    pub inverted: bool,
    pub disabled: bool,
}

impl RecordHealth {
    /// The health check's status as routing uses it.
    pub fn healthy(&self) -> bool {
        (self.disabled || self.endpoint_healthy) != self.inverted
    }
}

/// The answer for one client location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    pub client: String,
    pub region: Option<String>,
    /// True when no record was healthy and Route 53 answered as if all were.
    pub failed_open: bool,
}

/// The record latency routing picks for a client in `client_region`: the nearest healthy
/// one (ties broken by a stable order), or the nearest of all when none is healthy.
pub fn resolve(client_region: &str, records: &[RecordHealth]) -> Resolution {
    let client = continent(client_region);
    let nearest = |candidates: Vec<&RecordHealth>| {
        candidates
            .into_iter()
            .min_by_key(|r| {
                (
                    r.region != client_region,
                    distance(client, continent(&r.region)),
                    r.region.clone(),
                )
            })
            .map(|r| r.region.clone())
    };
    let healthy: Vec<&RecordHealth> = records.iter().filter(|r| r.healthy()).collect();
    if healthy.is_empty() {
        return Resolution {
            client: client_region.into(),
            region: nearest(records.iter().collect()),
            failed_open: !records.is_empty(),
        };
    }
    Resolution {
        client: client_region.into(),
        region: nearest(healthy),
        failed_open: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(region: &str, inverted: bool) -> RecordHealth {
        RecordHealth {
            region: region.into(),
            endpoint_healthy: true,
            inverted,
            disabled: false,
        }
    }

    #[test]
    fn health_follows_route53_rules() {
        let base = RecordHealth {
            region: "r".into(),
            endpoint_healthy: false,
            inverted: false,
            disabled: false,
        };
        assert!(!base.healthy());
        assert!(
            RecordHealth {
                disabled: true,
                ..base.clone()
            }
            .healthy(),
            "disabled counts as healthy"
        );
        assert!(
            RecordHealth {
                inverted: true,
                ..base.clone()
            }
            .healthy(),
            "inverted swaps"
        );
        assert!(!RecordHealth {
            disabled: true,
            inverted: true,
            ..base
        }
        .healthy());
    }

    #[test]
    fn clients_go_to_the_nearest_healthy_region() {
        let fleet = [
            record("us-east-1", false),
            record("eu-west-1", true),
            record("ap-southeast-1", false),
        ];
        assert_eq!(
            resolve("us-east-1", &fleet).region.as_deref(),
            Some("us-east-1")
        );
        assert_eq!(
            resolve("eu-west-1", &fleet).region.as_deref(),
            Some("us-east-1"),
            "across the Atlantic"
        );
        assert_eq!(
            resolve("ap-northeast-1", &fleet).region.as_deref(),
            Some("ap-southeast-1")
        );
        assert!(!resolve("eu-west-1", &fleet).failed_open);
    }

    #[test]
    fn no_healthy_record_fails_open() {
        let fleet = [record("us-east-1", true), record("eu-west-1", true)];
        let answer = resolve("eu-central-1", &fleet);
        assert_eq!(answer.region.as_deref(), Some("eu-west-1"));
        assert!(answer.failed_open);
    }
}
