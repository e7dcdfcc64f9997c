//! The `coevo` command line: parse arguments, call the library, print.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use coevo::Scenario;
use coevo::run::{RunOptions, run};

/// Simulate ecosystems of co-evolving generative models.
///
/// A scenario (a RON file) describes text models, image models and the influences on them;
/// `coevo run` trains them on each other's output round after round and writes per-round
/// metrics, a manifest and a summary. Logs go to stderr, filtered by RUST_LOG (default: warn).
#[derive(Parser)]
#[command(name = "coevo", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// A folder of plugin libraries, searched (in the order given) before COEVO_PLUGIN_PATH
    /// and the executable's folder when a scenario names a plugin library by name. Repeatable.
    #[arg(long = "plugin-dir", value_name = "DIR", global = true)]
    plugin_dirs: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario and write its output folder.
    ///
    /// Writes metrics.csv (tidy: replicate,round,model,text,metric,value), manifest.json and
    /// summary.json, and prints the final diversity of each model and the round it collapsed.
    Run {
        /// The scenario file (RON).
        scenario: PathBuf,
        /// Output folder [default: the scenario's output.dir, else out/<scenario name>].
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Overwrite an output folder that already holds a run.
        #[arg(long)]
        force: bool,
        /// Override the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Override the scenario's number of rounds.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        rounds: Option<u64>,
        /// Override the scenario's number of replicates.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        replicates: Option<u64>,
        /// Worker threads for replicates [default: all cores]. Results do not depend on it.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        threads: Option<u64>,
        /// Print nothing but errors (no progress bar, no summary).
        #[arg(long, short)]
        quiet: bool,
    },
    /// Time training rounds of the paper's scenario at a given scale (for benchmarks).
    ///
    /// Prints one JSON line: K, d, N, rounds, measured, seconds, rounds_per_second. Runs on
    /// one thread; one warm-up round is not timed.
    #[command(name = "bench-round")]
    BenchRound {
        /// Number of texts K.
        #[arg(long = "K", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
        k: u64,
        /// Image dimension d.
        #[arg(long = "d", default_value_t = 2, value_parser = clap::value_parser!(u64).range(2..))]
        d: u64,
        /// Pairs per batch N.
        #[arg(long = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        n: u64,
        /// Timed rounds.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        rounds: u64,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Also run the Measure phase (all metrics) every round.
        #[arg(long)]
        measure: bool,
        /// Time the arithmetic floor instead of the round: the same number of normal
        /// variates and the N*K Gaussian log-densities as dense matrix products.
        #[arg(long, conflicts_with = "measure")]
        floor: bool,
    },
    /// Check scenario files without running them (exit code 2 if any is invalid).
    Validate {
        /// Scenario files (RON).
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
    /// Plugin libraries (conditional models of other modalities, loaded at run time).
    #[command(subcommand)]
    Plugins(PluginsCommand),
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// Show the plugins found: name, version, ABI version, and each model's modality.
    List {
        /// The folder to look in [default: the plugin search path: --plugin-dir folders,
        /// COEVO_PLUGIN_PATH, the executable's folder].
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    coevo::plugin::set_plugin_dirs(cli.plugin_dirs.clone());
    match cli.command {
        Command::Plugins(PluginsCommand::List { dir }) => {
            let dirs = dir.map_or_else(|| coevo::plugin::search_path().into_iter().filter(|d| d.is_dir()).collect(), |d| vec![d]);
            match coevo::plugin::list_report(&dirs) {
                Ok(report) => {
                    print!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Validate { scenarios } => {
            let mut bad = false;
            for path in scenarios {
                match Scenario::load(&path) {
                    Ok((s, _)) => println!("{}: ok ({} entities, {} rounds)", path.display(), s.entities.len(), s.rounds),
                    Err(e) => {
                        eprintln!("{e}");
                        bad = true;
                    }
                }
            }
            if bad { ExitCode::from(2) } else { ExitCode::SUCCESS }
        }
        Command::BenchRound { k, d, n, rounds, seed, floor: true, .. } => {
            println!("{}", serde_json::to_string(&coevo::bench::time_floor(k, d, n, rounds, seed)).expect("timing serialises"));
            ExitCode::SUCCESS
        }
        Command::BenchRound { k, d, n, rounds, seed, measure, floor: false } => {
            match coevo::bench::time_rounds(k, d, n, rounds, seed, measure) {
                Ok(t) => {
                    println!("{}", serde_json::to_string(&t).expect("timing serialises"));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Run { scenario: path, out, force, seed, rounds, replicates, threads, quiet } => {
            let (mut scenario, source) = match Scenario::load(&path) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            scenario.seed = seed.unwrap_or(scenario.seed);
            scenario.rounds = rounds.unwrap_or(scenario.rounds);
            scenario.replicates = replicates.unwrap_or(scenario.replicates);
            if let Some(n) = threads {
                // Only fails if a global pool already exists, which cannot happen here.
                let _ = rayon::ThreadPoolBuilder::new().num_threads(n as usize).build_global();
            }
            let options = RunOptions { out_dir: out, force, progress: !quiet };
            match run(&scenario, &source, &path, &options) {
                Ok(outcome) => {
                    if !quiet {
                        print!("{}", outcome.summary.report());
                        println!("results in {}", outcome.out_dir.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(e.exit_code() as u8)
                }
            }
        }
    }
}
