//! Event delivery to in-process functions: an SQS queue, fed by an EventBridge rule
//! (which moto evaluates), is drained into an in-process queue of asynchronous invocations,
//! as EventBridge hands events to Lambda's own queue, and each event is invoked (and retried)
//! from there as Lambda invokes an asynchronous event.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::ctx::{Ctx, LOCAL_ACCOUNT};
use crate::functions::{Invocation, InvokeError};

/// Attempts before an event is dropped (Lambda retries an asynchronous event twice).
pub const MAX_ATTEMPTS: u32 = 3;

/// Pause before an event's next attempt (Lambda waits minutes; tests cannot).
pub const RETRY_DELAY: Duration = Duration::from_secs(5);

/// Invocations of one subscription's function running at once (Lambda scales a function's
/// asynchronous invocations out; one slow event does not hold the others back).
pub const CONCURRENT_INVOCATIONS: usize = 10;

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

/// Starts draining the subscription's queue until the local cloud stops. Each message is
/// taken off the queue at once and invoked from memory: moto's SQS scans its whole queue
/// for every message it hands out, so a backlog left there makes each receive slower and
/// the backlog longer. While the subscription's region is down nothing is received and
/// nothing invoked: its events wait, and are delivered when it is back.
pub fn start(ctx: &Arc<Ctx>, subscription: Subscription) {
    let running = Arc::new(Semaphore::new(CONCURRENT_INVOCATIONS));
    let task_ctx = ctx.clone();
    ctx.spawn(async move { receive(task_ctx, subscription, running).await });
}

async fn receive(ctx: Arc<Ctx>, subscription: Subscription, running: Arc<Semaphore>) {
    let sqs = aws_sdk_sqs::Client::new(&ctx.moto.config(&subscription.region).await);
    loop {
        ctx.faults.wait_until_up(&[&subscription.region]).await;
        let received = sqs
            .receive_message()
            .queue_url(&subscription.queue_url)
            .wait_time_seconds(1)
            .max_number_of_messages(10)
            .send()
            .await;
        let messages = match received {
            Ok(output) => output.messages.unwrap_or_default(),
            Err(error) => {
                tracing::warn!(queue = %subscription.queue_url, error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "receiving events failed");
                tokio::time::sleep(ctx.config.poll_interval).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        for message in &messages {
            let body = message.body().unwrap_or("");
            let payload =
                serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()));
            let invocation = Invocation {
                function_name: subscription.function_name.clone(),
                region: subscription.region.clone(),
                payload: normalize_event(payload, &subscription.region),
            };
            let (task_ctx, running) = (ctx.clone(), running.clone());
            ctx.spawn(async move { invoke_with_retries(&task_ctx, &running, invocation).await });
        }
        let (sqs, queue_url) = (sqs.clone(), subscription.queue_url.clone());
        ctx.spawn(async move { delete(&sqs, &queue_url, &messages).await });
    }
}

/// Takes delivered messages off the queue. One that stays (the delete failed) comes back
/// after the visibility timeout and is delivered again: at least once, as on AWS.
async fn delete(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    messages: &[aws_sdk_sqs::types::Message],
) {
    let entries: Vec<_> = messages
        .iter()
        .enumerate()
        .filter_map(|(index, message)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .set_receipt_handle(message.receipt_handle().map(str::to_owned))
                .build()
                .ok()
        })
        .collect();
    if entries.is_empty() {
        return;
    }
    let deleted = sqs
        .delete_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await;
    match deleted {
        Ok(output) if output.failed().is_empty() => {}
        Ok(output) => {
            tracing::warn!(queue = %queue_url, failed = output.failed().len(), "some delivered events were not deleted; they will be delivered again");
        }
        Err(error) => {
            tracing::warn!(queue = %queue_url, error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "deleting delivered events failed; they will be delivered again");
        }
    }
}

/// Invokes the function with the event, retrying a failure [`RETRY_DELAY`] later until
/// [`MAX_ATTEMPTS`]; then the event is dropped. Each attempt waits for the region to be up.
async fn invoke_with_retries(ctx: &Ctx, running: &Semaphore, invocation: Invocation) {
    for attempt in 1..=MAX_ATTEMPTS {
        ctx.faults.wait_until_up(&[&invocation.region]).await;
        let outcome = {
            let Ok(_permit) = running.acquire().await else {
                return;
            };
            ctx.functions.invoke(invocation.clone()).await
        };
        let (function, region) = (&invocation.function_name, &invocation.region);
        match outcome {
            Ok(_) => return,
            Err(InvokeError::NotFound(name)) => {
                tracing::warn!(function = %name, %region, "no such function is hosted; event dropped");
                return;
            }
            Err(error) if attempt == MAX_ATTEMPTS => {
                tracing::error!(%function, %region, attempts = %attempt, %error, "event dropped after the last attempt");
            }
            Err(error) => {
                tracing::warn!(%function, %region, attempts = %attempt, %error, "event delivery failed; it will be retried");
                tokio::time::sleep(RETRY_DELAY).await;
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
