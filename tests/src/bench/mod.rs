//! The benchmarks `./scripts/bench NAME` runs (the example `bench`): each one measures
//! Meridian against a baseline in the same run and reports ratios, never asserts a time.
//! To add one, write a module here with `pub async fn run(args: &[String])` and list it in
//! [`BENCHMARKS`].

use std::future::Future;
use std::pin::Pin;

pub mod cold_start;
pub mod copy;
pub mod regional_failover;
pub mod verification;

/// A benchmark's entry point: its command-line arguments after its name.
pub type Run = fn(Vec<String>) -> Pin<Box<dyn Future<Output = anyhow::Result<()>>>>;

/// Every benchmark: name, what it measures (with its arguments), entry point.
pub const BENCHMARKS: &[(&str, &str, Run)] = &[
    (
        "verification",
        "[RUNS] [MIB]: a replicated model (default 1024 MiB) verified in three regions by \
         S3's checksum vs by reading and hashing",
        |args| Box::pin(verification::run(args)),
    ),
    (
        "copy",
        "[RUNS] [MIB]: one multipart file (default 1024 MiB) copied between two regions' \
         buckets by Meridian's fast copy vs aws s3 cp",
        |args| Box::pin(copy::run(args)),
    ),
    (
        "regional-failover",
        "[ALARMS] [OUTAGES] [REQUESTS] [COLD_RUNS]: alarm -> /health 503, region down -> no \
         client resolved there, front-door overhead, front-door cold start (defaults 20 10 \
         200 20)",
        |args| Box::pin(regional_failover::run(args)),
    ),
    (
        "cold-start",
        "[RUNS] [INVOCATION_RUNS]: every function's cold start vs hello world, then first and \
         warm invocations (defaults 40 20; builds release binaries)",
        |args| Box::pin(cold_start::run(args)),
    ),
];

/// Median, min and max of `values` (seconds), and the line printing them.
pub fn summary(values: &[f64]) -> (f64, String) {
    let (median, min, max) = crate::lambda_bench::stats(values);
    (
        median,
        format!("median {median:8.3} s   min {min:8.3} s   max {max:8.3} s"),
    )
}
