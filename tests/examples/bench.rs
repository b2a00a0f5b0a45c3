//! `./scripts/bench [NAME [ARGS...]]`: runs one of Meridian's benchmarks
//! (`meridian_tests::bench::BENCHMARKS`), or lists them.

use meridian_tests::bench::BENCHMARKS;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let name = args.next();
    match BENCHMARKS
        .iter()
        .find(|(known, _, _)| Some(*known) == name.as_deref())
    {
        Some((_, _, run)) => run(args.collect()).await,
        None => {
            if let Some(name) = name {
                eprintln!("no benchmark {name:?}");
            }
            eprintln!("usage: ./scripts/bench NAME [ARGS...]; the benchmarks:");
            for (name, what, _) in BENCHMARKS {
                eprintln!("  {name} {what}");
            }
            std::process::exit(2);
        }
    }
}
