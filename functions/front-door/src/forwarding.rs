//! Forwarding a share of the region's inference to a peer's front door: continuous warm
//! traffic to standbys and a drill's shifted share ([`meridian::traffic`] decides which
//! share and which request). The routing (the drill's shift, the peers' states and
//! published front doors) is read from the region's own table replica and cached like
//! the health answer's reads, so a change of the split applies within a second, whatever
//! DNS caches hold. Only `POST /invocations` is forwarded (see the README for why the
//! streamed route is not).

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::Utc;
use http::{Response, StatusCode};
use lambda_http::Request;
use meridian::traffic::{self, PeerDoor, Share, Why};

use crate::deps::{
    DrillCount, EndpointStatus, Forward, ForwardedReply, Inference, ReadError, RegionRecord,
};
use crate::request::{self, Route, CUSTOM_ATTRIBUTES};
use crate::response::{set_header, whole, ResponseBody, INVOKED_VARIANT, SERVED_BY};
use crate::{metrics, FrontDoor};

/// What the region forwards now: the shares, and the front door URL of each target.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    pub shares: Vec<Share>,
    pub urls: BTreeMap<String, String>,
}

impl<R: RegionRecord, E: EndpointStatus, I: Inference, F: Forward> FrontDoor<R, E, I, F> {
    /// `POST /invocations`: served by the region's endpoint, or, for the request's share,
    /// by a peer's front door. A peer that does not answer at all costs the caller
    /// nothing: the request is served here and counted as a forwarding error. Returns the
    /// response and the forwarding's metric lines.
    pub(crate) async fn invoke_or_forward(
        &self,
        request: Request,
        request_id: &str,
    ) -> (Response<ResponseBody>, Vec<String>) {
        let Some(endpoint) = self.endpoint.as_deref() else {
            return (self.not_in_fleet(request_id), Vec::new());
        };
        let call = request::inference_call(endpoint, request);
        let routing = match self.routing_cache.get(|| self.read_routing()).await {
            Ok(routing) => routing,
            Err(error) => {
                tracing::warn!(error = %error, "routing unreadable: serving here");
                Routing::default()
            }
        };
        let target = traffic::choose(request_id, &routing.shares)
            .and_then(|share| Some((share, routing.urls.get(&share.to)?)));
        let Some((share, url)) = target else {
            return (
                self.answer(Route::Invoke, call, request_id).await,
                Vec::new(),
            );
        };
        let started = Instant::now();
        let forwarded = self.forwarder.forward(url, &self.region, &call).await;
        let latency = started.elapsed();
        let (response, failed) = match forwarded {
            Ok(reply) => {
                let failed =
                    reply.status.is_server_error() || reply.status == StatusCode::TOO_MANY_REQUESTS;
                (forwarded_response(reply), failed)
            }
            Err(why) => {
                tracing::warn!(to = %share.to, error = %why, "forwarding failed: serving here");
                (self.answer(Route::Invoke, call, request_id).await, true)
            }
        };
        tracing::info!(to = %share.to, failed, "forwarded");
        let reason = match &share.why {
            Why::Warm => metrics::REASON_WARM,
            Why::Drill { .. } => metrics::REASON_DRILL,
        };
        if let Why::Drill { drill_id, step } = &share.why {
            let count = DrillCount {
                drill_id: drill_id.clone(),
                step: *step,
                failed,
                latency_ms: latency.as_secs_f64() * 1000.0,
            };
            if let Err(error) = self.record.count_drill_request(count).await {
                tracing::warn!(error = %error, "the drill's count was not written");
            }
        }
        let lines =
            metrics::forwarded_lines(&self.region, &share.to, reason, failed, latency, Utc::now());
        (response, lines)
    }

    /// The drill's shift of this region and the candidate peers' records, from the
    /// region's own replica.
    async fn read_routing(&self) -> Result<Routing, ReadError> {
        let now = Utc::now();
        let shift = self.record.drill_shift(&self.region).await?;
        let mut peers = BTreeMap::new();
        for peer in traffic::candidates(&self.fleet, &self.region, shift.as_ref(), now) {
            let record = self.record.load(&peer).await?;
            let door = PeerDoor {
                in_service: record.as_ref().is_none_or(|r| r.state.in_service()),
                url: record.and_then(|r| r.front_door),
            };
            peers.insert(peer, door);
        }
        let shares = traffic::plan(&self.fleet, &self.region, shift.as_ref(), &peers, now);
        let urls = peers
            .into_iter()
            .filter_map(|(region, door)| Some((region, door.url?)))
            .collect();
        Ok(Routing { shares, urls })
    }
}

/// A peer's answer, passed back as it came.
fn forwarded_response(reply: ForwardedReply) -> Response<ResponseBody> {
    let mut response = Response::new(whole(reply.body));
    *response.status_mut() = reply.status;
    set_header(&mut response, "content-type", reply.content_type.as_deref());
    set_header(
        &mut response,
        CUSTOM_ATTRIBUTES,
        reply.custom_attributes.as_deref(),
    );
    set_header(
        &mut response,
        INVOKED_VARIANT,
        reply.invoked_variant.as_deref(),
    );
    set_header(&mut response, SERVED_BY, reply.served_by.as_deref());
    response
}
