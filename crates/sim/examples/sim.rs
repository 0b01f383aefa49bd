//! `voidmesh sim` without the rest of the binary:
//! `cargo run --release -p voidmesh-sim --example sim -- --nodes 10000 --out sim-10k`.

use clap::Parser;

/// The simulator's command line.
#[derive(Parser)]
#[command(name = "sim", about = "voidmesh's deterministic network simulator")]
struct Cli {
    #[command(flatten)]
    sim: voidmesh_sim::SimArgs,
}

fn main() -> std::process::ExitCode {
    match voidmesh_sim::run_cli(Cli::parse().sim) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
