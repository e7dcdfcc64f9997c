//! The `coevo` command line: parse arguments, call the library, print.

use std::path::{Path, PathBuf};
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

/// Options shared by the commands that run a scenario.
#[derive(clap::Args)]
struct RunArgs {
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
}

impl RunArgs {
    /// Loads the scenario with the overrides applied (printing errors: exit code 2 on `Err`),
    /// sizes the thread pool, and returns the run options.
    fn load(&self, path: &Path, out: Option<PathBuf>) -> Result<(Scenario, String, RunOptions), ExitCode> {
        let (mut scenario, source) = Scenario::load(path).map_err(|e| {
            eprintln!("{e}");
            ExitCode::from(2)
        })?;
        scenario.seed = self.seed.unwrap_or(scenario.seed);
        scenario.rounds = self.rounds.unwrap_or(scenario.rounds);
        scenario.replicates = self.replicates.unwrap_or(scenario.replicates);
        if let Some(n) = self.threads {
            // Only fails if a global pool already exists, which cannot happen here.
            let _ = rayon::ThreadPoolBuilder::new().num_threads(n as usize).build_global();
        }
        Ok((
            scenario,
            source,
            RunOptions { out_dir: out, force: self.force, progress: !self.quiet, interrupt: Some(interrupt_flag()), ..Default::default() },
        ))
    }
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
        /// Write the whole state to checkpoint.json every K rounds, so that `coevo resume`
        /// can continue an interrupted run exactly.
        #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
        checkpoint_every: Option<u64>,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Continue an interrupted run from its checkpoint.json.
    ///
    /// The metrics it writes are byte for byte those of an uninterrupted run; rows a killed
    /// run wrote after its last checkpoint are replaced.
    Resume {
        /// The run's output folder.
        dir: PathBuf,
        /// Keep writing checkpoints every K rounds.
        #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
        checkpoint_every: Option<u64>,
        /// Worker threads for replicates [default: all cores]. Results do not depend on it.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        threads: Option<u64>,
        /// Print nothing but errors.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Run every point of a scenario's sweep section (times its replicates).
    ///
    /// Each point is a full run in OUT/points/NNNN/; sweep.csv has one row per point and
    /// model, a column per swept parameter, then final diversity, collapse and steady-state
    /// level. Rerunning skips the points already done, so an interrupted sweep resumes.
    Sweep {
        /// The scenario file (RON) with a `sweep: (parameters: [...])` section.
        scenario: PathBuf,
        /// Output folder [default: out/<scenario name>-sweep].
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Run only shard i of n (points with index % n == i), e.g. for a Slurm job array:
        /// --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT. Join the shards with `coevo merge`.
        #[arg(long, value_name = "i/n")]
        shard: Option<String>,
        /// Checkpoint every point every K rounds (a killed sweep resumes inside its points).
        #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
        checkpoint_every: Option<u64>,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Join the folders of a sharded sweep into one sweep.csv (as a single run writes it).
    Merge {
        /// The shards' sweep folders.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Folder to write sweep.csv and sweep.json to.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Draw the figures of a run or sweep folder (SVG and PNG, into OUTDIR/figures).
    ///
    /// A run: diversity against round (with 5-95% bands over replicates), image trace per
    /// text on a log axis with the theoretical rate ((n-1)/n)^t, drift curves with the phases
    /// shaded. A sweep with two parameters: a heat map of the collapsed fraction.
    Plot {
        /// A run's or a sweep's output folder.
        dir: PathBuf,
        /// Where to write the figures [default: DIR/figures].
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Run a scenario's twin worlds and write their divergence (recursive stability).
    ///
    /// Two worlds with common random numbers (same seed, same streams) differ in one
    /// perturbation of the initial data or parameters: the scenario's `stability: (perturb:
    /// ...)` section, or --perturb. Writes divergence.csv (tidy: replicate,round,model,text,
    /// metric,value; `tv` per text model, `frechet_sum` per image model), manifest.json and
    /// summary.json, and prints each divergence at round 0, at the end and its maximum.
    Stability {
        /// The scenario file (RON).
        scenario: PathBuf,
        /// The perturbation, as in a scenario's stability section; overrides the scenario's.
        /// E.g. 'TextInitial(model: "captioner", initial: Probabilities([0.3, 0.2, 0.2, 0.2, 0.1]))',
        /// 'MeanShift(model: "painter", text: 0, shift: [0.1, 0.0])',
        /// 'CovarianceScale(model: "painter", factor: 1.5)'.
        #[arg(long)]
        perturb: Option<String>,
        /// Output folder [default: out/<scenario name>-stability].
        #[arg(long, short)]
        out: Option<PathBuf>,
        #[command(flatten)]
        args: RunArgs,
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
        /// Time this many independent worlds in parallel instead of one (replicate throughput).
        #[arg(long, conflicts_with_all = ["measure", "floor"], value_parser = clap::value_parser!(u64).range(1..))]
        worlds: Option<u64>,
        /// Worker threads for --worlds [default: all cores].
        #[arg(long, requires = "worlds", value_parser = clap::value_parser!(u64).range(1..))]
        threads: Option<u64>,
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
    /// Exercise every model of a plugin library against the plugin contract (shapes,
    /// finiteness, determinism, checkpoint round trip). Exit 0 if all checks pass, 1 if one
    /// fails, 2 if the library cannot be loaded.
    Check {
        /// The library: a path, or a bare name looked up in the plugin search path.
        library: String,
        /// Params JSON every model is created with [default: {}].
        #[arg(long, default_value = "{}")]
        params: String,
        /// Check only this model.
        #[arg(long)]
        model: Option<String>,
    },
}

/// A flag raised by SIGINT or SIGTERM, so a run stops after the round in flight with every
/// written round whole; a second signal exits at once (status 1). The library installs no
/// handler; only the CLI does.
fn interrupt_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, OnceLock};
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // A second signal while stopping terminates at once (exit code 1), as users expect
            // of a second Ctrl-C; registration can only fail for forbidden signals.
            let _ = signal_hook::flag::register_conditional_shutdown(signal, 1, flag.clone());
            let _ = signal_hook::flag::register(signal, flag.clone());
        }
        flag
    })
    .clone()
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
        Command::Plugins(PluginsCommand::Check { library, params, model }) => plugins_check(&library, &params, model.as_deref()),
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
        Command::BenchRound { k, d, n, rounds, seed, worlds: Some(worlds), threads, .. } => {
            let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |p| p.get() as u64));
            match coevo::bench::time_worlds(k, d, n, rounds, seed, worlds, threads) {
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
        Command::BenchRound { k, d, n, rounds, seed, floor: true, .. } => {
            println!("{}", serde_json::to_string(&coevo::bench::time_floor(k, d, n, rounds, seed)).expect("timing serialises"));
            ExitCode::SUCCESS
        }
        Command::BenchRound { k, d, n, rounds, seed, measure, floor: false, worlds: None, .. } => {
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
        Command::Run { scenario: path, out, checkpoint_every, args } => {
            let (scenario, source, mut options) = match args.load(&path, out) {
                Ok(loaded) => loaded,
                Err(code) => return code,
            };
            if scenario.sweep.is_some() && !args.quiet {
                eprintln!("note: {} has a sweep section; `coevo run` runs the base scenario only (use `coevo sweep`)", path.display());
            }
            options.checkpoint_every = checkpoint_every;
            finish(run(&scenario, &source, &path, &options).map(|o| (o.summary.report(), o.out_dir)), args.quiet)
        }
        Command::Resume { dir, checkpoint_every, threads, quiet } => {
            if let Some(n) = threads {
                // Only fails if a global pool already exists, which cannot happen here.
                let _ = rayon::ThreadPoolBuilder::new().num_threads(n as usize).build_global();
            }
            let options = RunOptions { progress: !quiet, checkpoint_every, interrupt: Some(interrupt_flag()), ..Default::default() };
            finish(coevo::run::resume(&dir, &options).map(|o| (o.summary.report(), o.out_dir)), quiet)
        }
        Command::Sweep { scenario: path, out, shard, checkpoint_every, args } => {
            let (scenario, source, options) = match args.load(&path, None) {
                Ok(loaded) => loaded,
                Err(code) => return code,
            };
            let shard = match shard.map(|s| s.parse::<coevo::experiment::grid::Shard>()).transpose() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: --shard: {e}");
                    return ExitCode::from(2);
                }
            };
            let sweep_options = coevo::experiment::grid::SweepOptions {
                out_dir: out,
                shard,
                force: options.force,
                progress: options.progress,
                checkpoint_every,
            };
            match coevo::experiment::grid::run_sweep(&scenario, &source, &path, &sweep_options) {
                Ok(o) => {
                    if !args.quiet {
                        println!(
                            "{} of {} points done ({} computed now); table in {}",
                            o.done,
                            o.points,
                            o.computed,
                            o.out_dir.join("sweep.csv").display()
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => failure(&e),
            }
        }
        Command::Merge { dirs, out } => match coevo::experiment::grid::merge(&dirs, &out) {
            Ok(points) => {
                println!("{points} points merged into {}", out.join("sweep.csv").display());
                ExitCode::SUCCESS
            }
            Err(e) => failure(&e),
        },
        Command::Plot { dir, out } => {
            let out = out.unwrap_or_else(|| dir.join("figures"));
            match coevo::plot::plot_dir(&dir, &out) {
                Ok(files) => {
                    for f in files {
                        println!("{}", f.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => failure(&e),
            }
        }
        Command::Stability { scenario: path, perturb, out, args } => {
            let (mut scenario, source, options) = match args.load(&path, out) {
                Ok(loaded) => loaded,
                Err(code) => return code,
            };
            if let Some(text) = perturb
                && let Err(e) = scenario.set_perturbation(&text, Path::new("--perturb"))
            {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
            finish(
                coevo::stability::run_stability(&scenario, &source, &path, &options).map(|o| (o.summary.report(), o.out_dir)),
                args.quiet,
            )
        }
    }
}

/// Prints what a run produced (its summary report and output folder, unless `quiet`) or its
/// failure, and maps the result to the exit code.
/// `coevo plugins check`: the checks live in the library, this prints their report.
fn plugins_check(library: &str, params: &str, model: Option<&str>) -> ExitCode {
    match coevo::plugin::check::check_library(library, params, model) {
        Ok(report) => {
            print!("{}", report.render());
            if report.passed() { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn finish(result: Result<(String, PathBuf), coevo::run::RunFailure>, quiet: bool) -> ExitCode {
    match result {
        Ok((report, out_dir)) => {
            if !quiet {
                print!("{report}");
                println!("results in {}", out_dir.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => failure(&e),
    }
}

/// Prints a failure and maps it to its exit code (2 bad input, 1 runtime, 130 interrupted).
fn failure(e: &coevo::run::RunFailure) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(e.exit_code() as u8)
}
