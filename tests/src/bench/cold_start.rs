//! Benchmark: each function's cold start against a hello-world Lambda built the same way,
//! and what a first and a warm invocation then cost against the local cloud.
//!
//! Run: `./scripts/bench cold-start [RUNS] [INVOCATION_RUNS]`
//! (defaults 40 and 20). It builds every function's `bootstrap` and `hello-lambda` with the
//! release profile (`cargo build --release`, with cargo's progress), then:
//!
//! 1. **Cold start**: spawns each binary against a stub of the Lambda Runtime API, `RUNS`
//!    times, alternating binaries round by round, and times process spawn → the first
//!    `GET /2018-06-01/runtime/invocation/next` (static credentials in the environment, so
//!    nothing at init touches the network; root certificates in one bundle file, as on
//!    Lambda). Median, min, max, and the ratio of each median to hello world's, measured in
//!    the same run.
//! 2. **Invocations**: starts a local cloud, spawns each function pointed at it
//!    (`AWS_ENDPOINT_URL`), hands it the same small event twice and times each from the
//!    event handed out to the answer posted: the first invocation (first connection, first
//!    request) and a warm one, `INVOCATION_RUNS` fresh processes each.
//!
//! The front door runs `lambda_http`'s streaming runner, as behind its REST API: its event
//! is API Gateway's proxy event for `GET /health`, and it posts its answer in Lambda's
//! streaming mode (`Lambda-Runtime-Function-Response-Mode: streaming`, a chunked body of
//! a JSON prelude with the HTTP status, eight NUL bytes, then the response body). At
//! init it asks the Runtime API for nothing but the first `next`, like `lambda_runtime`;
//! the stub reads the streamed body whole and reports the prelude's status.

use crate::lambda_bench::{
    build, certificate_bundle, cold_start, invocations, outcome_text, stats, subjects, target_dir,
    Subject, HELLO,
};
use crate::start_cloud;
use anyhow::Context;
use meridian_local::Functions;

/// `./scripts/bench cold-start [ARGS...]`.
pub async fn run(args: Vec<String>) -> anyhow::Result<()> {
    let mut args = args.into_iter();
    let runs: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(40);
    let invocation_runs: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(20);
    let subjects = subjects();
    build(&subjects)?;
    let release = target_dir().join("release");
    let logs = tempfile::tempdir()?;
    let log = |subject: &Subject| logs.path().join(format!("{}.log", subject.binary));

    println!(
        "\ncold start: process spawn → first GET /runtime/invocation/next, {runs} runs each, \
         alternating (root certificates: the bundle {}, as on Lambda)",
        certificate_bundle()
    );
    let mut cold: Vec<Vec<f64>> = vec![Vec::new(); subjects.len()];
    for round in 0..runs {
        for offset in 0..subjects.len() {
            let index = (round + offset) % subjects.len();
            let subject = &subjects[index];
            let binary = release.join(subject.binary);
            cold[index].push(cold_start(&binary, subject, &log(subject)).await?);
        }
    }
    let (hello_median, _, _) = stats(&cold[0]);
    println!(
        "{:<14} {:>10} {:>10} {:>10} {:>14}",
        "binary", "median ms", "min ms", "max ms", "× hello median"
    );
    let mut worst: f64 = 0.0;
    for (subject, values) in subjects.iter().zip(&cold) {
        let (median, min, max) = stats(values);
        let ratio = median / hello_median;
        if subject.binary != HELLO {
            worst = worst.max(ratio);
        }
        println!(
            "{:<14} {median:>10.2} {min:>10.2} {max:>10.2} {ratio:>13.2}×",
            subject.binary
        );
    }
    println!("slowest function: {worst:.2}× hello world (goal: ≤ 2.00×)");

    println!(
        "\ninvocations against the local cloud: event handed out → answer posted, \
         {invocation_runs} fresh processes each, alternating"
    );
    let cloud = start_cloud(Functions::new()).await;
    let endpoint = cloud.endpoint_url();
    println!(
        "{:<14} {:>16} {:>15} {:>15}  first answer",
        "function", "first median ms", "first max ms", "warm median ms"
    );
    let mut first: Vec<Vec<f64>> = vec![Vec::new(); subjects.len()];
    let mut warm: Vec<Vec<f64>> = vec![Vec::new(); subjects.len()];
    let mut outcomes: Vec<Result<(), String>> = vec![Ok(()); subjects.len()];
    for round in 0..invocation_runs {
        for offset in 0..subjects.len() {
            let index = (round + offset) % subjects.len();
            let subject = &subjects[index];
            let binary = release.join(subject.binary);
            let (f, w, o) = invocations(&binary, subject, &endpoint, &log(subject))
                .await
                .with_context(|| format!("{} (log: {})", subject.binary, log(subject).display()))?;
            first[index].push(f);
            warm[index].push(w);
            outcomes[index] = o;
        }
    }
    for (index, subject) in subjects.iter().enumerate() {
        let (first_median, _, first_max) = stats(&first[index]);
        let (warm_median, _, _) = stats(&warm[index]);
        println!(
            "{:<14} {first_median:>16.2} {first_max:>15.2} {warm_median:>15.2}  {}",
            subject.binary,
            outcome_text(&outcomes[index])
        );
    }
    cloud.shutdown().await?;
    Ok(())
}
