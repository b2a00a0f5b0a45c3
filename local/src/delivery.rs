//! Event delivery to in-process functions: an SQS queue, fed by an EventBridge rule
//! (which moto evaluates), is polled like a Lambda event source and each event is handed
//! to the function as EventBridge would hand it to a Lambda target.

use std::sync::Arc;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use serde_json::Value;

use crate::ctx::{Ctx, LOCAL_ACCOUNT};
use crate::functions::{Invocation, InvokeError};

/// Deliveries attempted before an event is dropped (EventBridge retries, then gives up).
pub const MAX_ATTEMPTS: u32 = 3;

/// Which queue feeds which function, in which region.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub region: String,
    pub queue_url: String,
    pub function_name: String,
}

/// Fills in envelope fields moto leaves out of events it builds from `PutEvents`.
pub fn normalize_event(mut event: Value, region: &str) -> Value {
    if let Some(object) = event.as_object_mut() {
        if object.contains_key("detail-type") {
            object
                .entry("account")
                .or_insert_with(|| Value::String(LOCAL_ACCOUNT.into()));
            object
                .entry("region")
                .or_insert_with(|| Value::String(region.into()));
        }
    }
    event
}

/// Starts polling the subscription's queue until the local cloud stops. While the
/// subscription's region is down nothing is received: its events wait in the queue and are
/// delivered when it is back.
pub fn start(ctx: &Arc<Ctx>, subscription: Subscription) {
    let task_ctx = ctx.clone();
    ctx.spawn(async move {
        let sqs = aws_sdk_sqs::Client::new(&task_ctx.moto.config(&subscription.region).await);
        loop {
            task_ctx
                .faults
                .wait_until_up(&[&subscription.region])
                .await;
            let received = sqs
                .receive_message()
                .queue_url(&subscription.queue_url)
                .wait_time_seconds(1)
                .max_number_of_messages(10)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send()
                .await;
            let messages = match received {
                Ok(output) => output.messages.unwrap_or_default(),
                Err(error) => {
                    tracing::warn!(queue = %subscription.queue_url, error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "receiving events failed");
                    tokio::time::sleep(task_ctx.config.poll_interval).await;
                    continue;
                }
            };
            let deliveries = messages.into_iter().map(|message| {
                let (ctx, sqs, subscription) = (task_ctx.clone(), sqs.clone(), subscription.clone());
                async move { deliver(&ctx, &sqs, &subscription, message).await }
            });
            futures::future::join_all(deliveries).await;
        }
    });
}

async fn deliver(
    ctx: &Ctx,
    sqs: &aws_sdk_sqs::Client,
    subscription: &Subscription,
    message: aws_sdk_sqs::types::Message,
) {
    let body = message.body().unwrap_or("");
    let payload = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()));
    let attempts: u32 = message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    let invocation = Invocation {
        function_name: subscription.function_name.clone(),
        region: subscription.region.clone(),
        payload: normalize_event(payload, &subscription.region),
    };
    let done = match ctx.functions.invoke(invocation).await {
        Ok(_) => true,
        Err(InvokeError::NotFound(name)) => {
            tracing::warn!(function = %name, region = %subscription.region, "no such function is hosted; event dropped");
            true
        }
        Err(error) if attempts >= MAX_ATTEMPTS => {
            tracing::error!(function = %subscription.function_name, region = %subscription.region, %attempts, %error, "event dropped after the last attempt");
            true
        }
        Err(error) => {
            tracing::warn!(function = %subscription.function_name, region = %subscription.region, %attempts, %error, "event delivery failed; it will be retried");
            false
        }
    };
    if done {
        if let Some(handle) = message.receipt_handle() {
            if let Err(error) = sqs
                .delete_message()
                .queue_url(&subscription.queue_url)
                .receipt_handle(handle)
                .send()
                .await
            {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "deleting a delivered event failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_get_the_envelope_fields_moto_leaves_out() {
        let event = normalize_event(
            json!({ "detail-type": "X", "region": "eu-west-1" }),
            "us-east-1",
        );
        assert_eq!(event["account"], LOCAL_ACCOUNT);
        assert_eq!(event["region"], "eu-west-1");
        assert_eq!(
            normalize_event(json!({ "Records": [] }), "us-east-1"),
            json!({ "Records": [] })
        );
    }
}
