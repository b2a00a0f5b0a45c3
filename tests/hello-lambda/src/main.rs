//! Hello world on `lambda_runtime`: what a Rust Lambda costs to start before it does
//! anything of its own. The cold-start benchmark measures every Meridian function
//! against it, built with the same release profile.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}
