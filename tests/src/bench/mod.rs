//! The benchmarks `./scripts/bench NAME` runs (the example `bench`): each one measures
//! Meridian against a baseline in the same run and reports ratios, never asserts a time.
//! To add one, write a module here with `pub async fn run(args: &[String])` and list it in
//! [`BENCHMARKS`].

use std::future::Future;
use std::pin::Pin;

pub mod copy;
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
];

/// Median, min and max of `values` (seconds), and the line printing them.
pub fn summary(values: &[f64]) -> (f64, String) {
    let (median, min, max) = crate::lambda_bench::stats(values);
    (
        median,
        format!("median {median:8.3} s   min {min:8.3} s   max {max:8.3} s"),
    )
}
