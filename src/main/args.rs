//! The command-line grammar: every command, flag and its help text (clap derive). What the
//! commands do is in `commands.rs`; this file only says what they accept.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Simulate ecosystems of co-evolving generative models.
///
/// A scenario (a RON file) describes text models, image models and the influences on them;
/// `coevo run` trains them on each other's output round after round and writes per-round
/// metrics, a manifest and a summary. Logs go to stderr, filtered by RUST_LOG (default: warn),
/// in colour only when stderr is a terminal and NO_COLOR is unset.
#[derive(Parser)]
#[command(name = "coevo", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// A folder of plugin libraries, searched (in the order given) before COEVO_PLUGIN_PATH
    /// and the executable's folder when a scenario names a plugin library by name. Repeatable.
    #[arg(long = "plugin-dir", value_name = "DIR", global = true)]
    pub plugin_dirs: Vec<PathBuf>,
    /// A plugin library file, or a folder of them, that scenarios may load although it is not
    /// in a plugin folder (a path in a scenario, e.g. absolute or `../`). Loading a library runs
    /// its code: allow only libraries you trust. Repeatable.
    #[arg(long = "allow-plugin", value_name = "PATH", global = true)]
    pub allow_plugins: Vec<PathBuf>,
    /// Run plugin models inside the coevo process instead of plugin host processes: no
    /// boundary cost, but a plugin that crashes, hangs or exhausts memory takes coevo down.
    #[arg(long, global = true)]
    pub trusted_plugins: bool,
    /// Longest time one plugin call may take before its host process is stopped and the run
    /// fails, in seconds; 0: no limit [default: 600].
    #[arg(long, value_name = "SECONDS", global = true)]
    pub plugin_timeout: Option<f64>,
    /// Address-space limit of each plugin host process, in MiB [default: the memory the system
    /// reports available, at least 1024].
    #[arg(long, value_name = "MB", global = true, value_parser = clap::value_parser!(u64).range(64..))]
    pub plugin_memory_mb: Option<u64>,
    /// Widest instruction set coevo's arithmetic may use [default: the CPU's widest]. Results
    /// are the same bits with any choice, only the speed changes: for benchmarks of a variant,
    /// and for checking that claim on your own machine.
    #[arg(long, value_enum, value_name = "SET", global = true)]
    pub vectors: Option<VectorSet>,
}

/// The values of `--vectors`, narrowest last.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum VectorSet {
    /// AVX-512F with FMA where the CPU has it, else the next below.
    Avx512,
    /// AVX2 with FMA where the CPU has it, else the baseline.
    Avx2,
    /// The target's baseline (SSE2 on x86-64, NEON on 64-bit ARM).
    Baseline,
}

/// Options shared by the commands that run a scenario.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Overwrite an output folder that already holds a run.
    #[arg(long)]
    pub force: bool,
    /// Override the scenario's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override the scenario's number of rounds.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub rounds: Option<u64>,
    /// Override the scenario's number of replicates.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub replicates: Option<u64>,
    /// Worker threads for replicates [default: all cores]. Results do not depend on it.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub threads: Option<u64>,
    /// Record every K-th round only (round 0 and the last always) [scenario: output.every].
    /// Summaries, collapse rounds and early stops still see every round.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub every: Option<u64>,
    /// Record only these metrics, comma-separated [scenario: output.metrics].
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub metrics: Option<Vec<String>>,
    /// Record model-level rows only, no per-text rows [scenario: output.per_text: false].
    #[arg(long)]
    pub no_per_text: bool,
    /// Print nothing but errors (no progress bar, no summary).
    #[arg(long, short)]
    pub quiet: bool,
    /// Refuse scenarios estimated to need more memory than SIZE (e.g. 512M, 8G, 1T; bytes
    /// without a unit) [default: the memory the system reports available].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_memory: Option<u64>,
}

/// A size in bytes as written on the command line: a number with an optional unit, K, M, G or
/// T (powers of 1024, with or without `i` and `B`: `8G`, `8GiB`, `8GB` are all 8 x 2^30).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_uppercase().trim_end_matches('B').trim_end_matches('I') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("unknown unit in {text:?}: write e.g. 512M, 8G or 1T")),
    };
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a size: write e.g. 512M, 8G or 1T"))?;
    let bytes = value * f64::from(1u32 << (shift / 2)) * f64::from(1u32 << (shift - shift / 2));
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("{text:?} is not a size between 1 byte and 16 EiB"));
    }
    Ok(bytes as u64)
}

/// The table formats of `--format` (the scenario's `output.format`).
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Comma-separated text.
    Csv,
    /// Apache Parquet, zstd-compressed.
    Parquet,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a scenario and write its output folder.
    ///
    /// Writes metrics.csv or metrics.parquet (tidy: replicate,round,model,text,metric,value),
    /// aggregate.csv or .parquet (with 2 replicates or more), phases.csv, manifest.json and
    /// summary.json, and prints the final diversity of each model and the round it collapsed.
    Run {
        /// The scenario file (RON).
        scenario: PathBuf,
        /// Output folder [default: the scenario's output.dir, else out/<scenario name>].
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Table format of metrics and aggregate [default: the scenario's output.format, else csv].
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Write the whole state to checkpoint.json every K rounds, so that `coevo resume`
        /// can continue an interrupted run exactly.
        #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
        checkpoint_every: Option<u64>,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Continue an interrupted run from its checkpoint.json.
    ///
    /// The metrics it writes are byte for byte those of an uninterrupted run (Parquet: of one
    /// with the same --checkpoint-every, since checkpoints end row groups); rows a killed run
    /// wrote after its last checkpoint are replaced.
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
        /// Refuse a run estimated to need more memory than SIZE (e.g. 8G) [default: the
        /// memory the system reports available].
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_memory: Option<u64>,
    },
    /// Run every point of a scenario's sweep section (times its replicates).
    ///
    /// Each point is a full run in OUT/points/NNNN/; sweep.csv has one row per point and
    /// model, a column per swept parameter, the point's status (ok, failed, interrupted),
    /// then final diversity, collapse and steady-state level. A failing point does not stop
    /// the others (exit 1 at the end, listing the failures); SIGINT/SIGTERM stop every point
    /// after its round in flight (exit 130). Rerunning skips the points already done,
    /// retries failed ones and resumes interrupted ones.
    Sweep {
        /// The scenario file (RON) with a `sweep: (parameters: [...])` section.
        scenario: PathBuf,
        /// Output folder [default: out/<scenario name>-sweep].
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Table format of every point's metrics and aggregate [default: the scenario's
        /// output.format, else csv].
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Run only shard i of n (points with index % n == i), e.g. for a Slurm job array:
        /// --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT. Join the shards with `coevo merge`.
        #[arg(long, value_name = "i/n", group = "share")]
        shard: Option<String>,
        /// Run only point K (numbered from 0, as --list-points shows) into the sweep folder,
        /// which other processes may share; sweep.csv is written once every point ended.
        #[arg(long, value_name = "K", group = "share")]
        point: Option<usize>,
        /// Work as one of any number of identical workers sharing the sweep folder: take the
        /// next free point through a claim file (claims/NNNN.G), run it, repeat; take over
        /// claims of dead workers once their lease expired. sweep.csv is written by the
        /// worker that sees the last point end.
        #[arg(long, group = "share")]
        claim: bool,
        /// With --claim: seconds a claim stays valid without a heartbeat (a tenth of it) before
        /// another worker takes the point over [default: 300].
        #[arg(long, value_name = "SECONDS", requires = "claim")]
        lease: Option<f64>,
        /// Print the sweep's points and run nothing: a header line (`point`, then the
        /// parameter paths), then one line per point with its index and values, tab-separated.
        #[arg(long, group = "share")]
        list_points: bool,
        /// Checkpoint every point every K rounds (a killed sweep resumes inside its points).
        #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
        checkpoint_every: Option<u64>,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Sobol sensitivity indices of a finished `design: Sobol(n)` sweep.
    ///
    /// For every model and outcome of sweep.csv (final_mean, steady_mean, collapsed_fraction,
    /// collapse_round_median, stationary_fraction): first-order (Saltelli 2010) and total
    /// (Jansen) indices of each parameter, with bootstrap standard errors and intervals over
    /// the base rows. Writes DIR/sensitivity.csv and prints the table.
    Analyse {
        /// The sweep folder (of `coevo sweep` or `coevo merge`).
        dir: PathBuf,
        /// Bootstrap resamples of the base rows.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(2..))]
        resamples: u64,
        /// Confidence level of the intervals (estimate plus or minus z bootstrap standard errors).
        #[arg(long, default_value_t = 0.95)]
        confidence: f64,
    },
    /// Find where an outcome crosses a level as one parameter moves (noisy bisection).
    ///
    /// Each evaluation runs every replicate at one value of the parameter (a one-point sweep
    /// in OUT/evaluations/NN/) and compares the outcome's mean with the level, at --confidence
    /// in its standard error over replicates. Writes search.csv (one row per evaluation) and
    /// search.json, and prints the bracketing interval. The scenario's `search` section gives
    /// the defaults; the flags override it. Exit 1 if the ends of the range do not bracket the
    /// level. A rerun of the same search resumes.
    Search {
        /// The scenario file (RON).
        scenario: PathBuf,
        /// The parameter's path, as in a sweep (e.g. captioner.data.lambda).
        #[arg(long, value_name = "PATH")]
        param: Option<String>,
        /// The interval to search, A < B.
        #[arg(long, num_args = 2, value_names = ["A", "B"], allow_negative_numbers = true)]
        range: Option<Vec<f64>>,
        /// The outcome column of sweep.csv and its level, e.g. final_mean=0.4 or
        /// collapsed_fraction=0.5.
        #[arg(long, value_name = "COLUMN=LEVEL")]
        target: Option<String>,
        /// The model whose outcome is read (needed when the scenario has several).
        #[arg(long)]
        model: Option<String>,
        /// Stop when the bracketing interval is at most this wide [default: the range / 64].
        #[arg(long)]
        tolerance: Option<f64>,
        /// The most evaluations, both ends included [default: 16].
        #[arg(long)]
        budget: Option<u64>,
        /// Confidence with which an evaluation is called above or below the level [default: 0.99].
        #[arg(long)]
        confidence: Option<f64>,
        /// Output folder [default: out/<scenario name>-search].
        #[arg(long, short)]
        out: Option<PathBuf>,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Join the folders of a sharded sweep into one sweep.csv (as a single run writes it).
    ///
    /// Points missing from every folder are listed (exit 2); failed points are in the table
    /// with status `failed`, and listed with their errors (exit 1).
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
    // Hidden from `coevo --help` and the man page: a tool of the benches (benches/compare.sh),
    // not of users. `coevo bench-round --help` still works.
    #[command(name = "bench-round", hide = true)]
    BenchRound(BenchArgs),
    /// Check scenario files without running them (exit code 2 if any is invalid).
    ///
    /// Each valid file's line shows its estimated peak memory, work per round and table
    /// volume; a scenario estimated to need more memory than the system reports available
    /// (or --max-memory) is invalid, naming the fields that drive the estimate.
    Validate {
        /// Scenario files (RON).
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
        /// Refuse scenarios estimated to need more memory than SIZE (e.g. 8G) [default: the
        /// memory the system reports available].
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_memory: Option<u64>,
    },
    /// Plugin libraries (conditional models of other modalities, loaded at run time).
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Data files a scenario's `Dataset` reads (labelled embeddings: .npy, .npz, .csv, .parquet).
    #[command(subcommand)]
    Data(DataCommand),
    /// Print a shell completion script to stdout.
    ///
    /// E.g. `coevo completions bash > ~/.local/share/bash-completion/completions/coevo`,
    /// `coevo completions zsh > ~/.zfunc/_coevo` (with ~/.zfunc on fpath), or
    /// `coevo completions fish > ~/.config/fish/completions/coevo.fish`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout, e.g. `coevo man > coevo.1; man ./coevo.1`.
    Man,
    /// Host one plugin library for a coevo process (its plugin models run here, so a crash
    /// cannot take the run down); speaks coevo's plugin protocol on stdin and stdout.
    // Hidden: coevo starts it itself (src/plugin/isolate.rs); users never do.
    #[command(name = "plugin-host", hide = true)]
    PluginHost {
        /// The plugin library file.
        library: PathBuf,
        /// Refuse the library unless its bytes have this SHA-256.
        #[arg(long)]
        sha256: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum PluginsCommand {
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

#[derive(Subcommand)]
pub enum DataCommand {
    /// Print what coevo sees in a data file: rows, dimension, type, labels and their counts,
    /// and what a scenario built on it would fail on (e.g. labels with too few rows for a
    /// positive definite covariance). Exit 2 if the file cannot be used.
    Inspect {
        /// The data file (.npy, .npz, .csv, .parquet or .pq).
        file: PathBuf,
        /// The vectors' array (.npz), column or column prefix (CSV, Parquet) [default: the
        /// `vectors` array of an .npz; every column but the labels' of a CSV or Parquet file].
        #[arg(long)]
        vectors: Option<String>,
        /// The labels' array (.npz), column (CSV, Parquet), or .npy file next to a .npy of
        /// vectors.
        #[arg(long, default_value = "labels")]
        labels: String,
        /// Refuse files estimated to need more than this many MiB [default: the memory the
        /// system reports available].
        #[arg(long)]
        max_memory_mb: Option<u64>,
    },
}

/// The arguments of `coevo bench-round`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Number of texts K.
    #[arg(long = "K", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub k: u64,
    /// Image dimension d.
    #[arg(long = "d", default_value_t = 2, value_parser = clap::value_parser!(u64).range(2..))]
    pub d: u64,
    /// Pairs per batch N.
    #[arg(long = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub n: u64,
    /// Timed rounds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub rounds: u64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also run the Measure phase (all metrics) every round.
    #[arg(long)]
    pub measure: bool,
    /// Time the arithmetic floor instead of the round: the same number of normal
    /// variates and the N*K Gaussian log-densities as dense matrix products.
    #[arg(long, conflicts_with = "measure")]
    pub floor: bool,
    /// Time this many independent worlds in parallel instead of one (replicate throughput).
    #[arg(long, conflicts_with_all = ["measure", "floor"], value_parser = clap::value_parser!(u64).range(1..))]
    pub worlds: Option<u64>,
    /// Worker threads for --worlds [default: all cores].
    #[arg(long, requires = "worlds", value_parser = clap::value_parser!(u64).range(1..))]
    pub threads: Option<u64>,
    /// Time the rounds in windows of this many and print one JSON line per window with its
    /// mean number of live texts (the later-rounds curve: collapse kills texts, which the
    /// posterior no longer scores).
    #[arg(long, value_name = "ROUNDS", conflicts_with_all = ["floor", "worlds", "measure"], value_parser = clap::value_parser!(u64).range(1..))]
    pub curve: Option<u64>,
    /// Covariance family of the image model (docs/model.md section 14): `diagonal` at
    /// K = 1024, d = 512, N = 100000 is the platform scale.
    #[arg(long, value_enum, default_value_t = BenchStructure::Full, conflicts_with_all = ["floor", "worlds"])]
    pub structure: BenchStructure,
}

/// `--structure` of `coevo bench-round`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchStructure {
    /// Full covariance matrices.
    Full,
    /// Per-coordinate variances.
    Diagonal,
    /// One variance per text.
    Isotropic,
}

impl From<BenchStructure> for coevo::models::Structure {
    fn from(s: BenchStructure) -> Self {
        match s {
            BenchStructure::Full => coevo::models::Structure::Full,
            BenchStructure::Diagonal => coevo::models::Structure::Diagonal,
            BenchStructure::Isotropic => coevo::models::Structure::Isotropic,
        }
    }
}
