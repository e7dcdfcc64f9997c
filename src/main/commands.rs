//! One function per command. Each calls the library, prints what the command produces on
//! stdout, and returns its failure as a [`CliError`]: none prints an error or picks an exit
//! code (`main` does, in one place).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::CommandFactory as _;
use coevo::Scenario;
use coevo::experiment::claims::Lease;
use coevo::experiment::grid::{Shard, Share, SweepOptions};
use coevo::run::RunOptions;
use coevo::scenario::TableFormat;

use crate::args::{BenchArgs, Cli, Format, RunArgs};
use crate::error::CliError;
use crate::progress::Bar;
use crate::signals::interrupt_flag;

/// Loads the scenario with the command line's overrides applied, sizes the thread pool, and
/// returns the run options (a progress bar unless `--quiet`, the interrupt flag).
fn load(args: &RunArgs, path: &Path, out: Option<PathBuf>) -> Result<(Scenario, String, RunOptions), CliError> {
    let (mut scenario, source) = Scenario::load_within(path, args.max_memory)?;
    scenario.seed = args.seed.unwrap_or(scenario.seed);
    scenario.rounds = args.rounds.unwrap_or(scenario.rounds);
    scenario.replicates = args.replicates.unwrap_or(scenario.replicates);
    record_overrides(&mut scenario, args)?;
    set_threads(args.threads);
    let options = RunOptions {
        out_dir: out,
        force: args.force,
        progress: Bar::on_stderr(args.quiet),
        interrupt: Some(interrupt_flag()),
        max_memory: args.max_memory,
        ..Default::default()
    };
    Ok((scenario, source, options))
}

/// Applies `--every`, `--metrics` and `--no-per-text` to the scenario's `output` section and
/// checks the result as the scenario's own section is checked (an unknown metric name is
/// refused with the list of valid ones).
fn record_overrides(scenario: &mut Scenario, args: &RunArgs) -> Result<(), CliError> {
    let output = &mut scenario.output;
    output.every = args.every.unwrap_or(output.every);
    if args.metrics.is_some() {
        output.metrics.clone_from(&args.metrics);
    }
    output.per_text &= !args.no_per_text;
    let has_plugins = scenario.entities.iter().any(|e| matches!(e, coevo::scenario::EntitySpec::PluginModel(_)));
    let problems = coevo::scenario::output::check(output, scenario.stop.as_ref(), has_plugins);
    match problems.first() {
        None => Ok(()),
        Some(p) => Err(CliError::BadInput(format!("--{}: {}", p.key.trim_start_matches("output."), p.message))),
    }
}

/// Sizes rayon's global pool (the replicates' workers). More threads than 4 per core gain
/// nothing for this work and cost seconds to spawn by the thousand: `--threads` is capped
/// there, with a note (results do not depend on the thread count).
fn set_threads(threads: Option<u64>) {
    if let Some(n) = threads {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get() as u64);
        let cap = 4 * cores;
        if n > cap {
            eprintln!("note: --threads {n} capped at {cap} (4 per core on this machine's {cores}); results do not depend on it");
        }
        // Only fails if a global pool already exists, which cannot happen here.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n.min(cap) as usize).build_global();
    }
}

/// Applies `--format` to the scenario (so the manifest and checkpoints record it).
fn set_format(scenario: &mut Scenario, format: Option<Format>) {
    if let Some(f) = format {
        scenario.output.format = match f {
            Format::Csv => TableFormat::Csv,
            Format::Parquet => TableFormat::Parquet,
        };
    }
}

/// `coevo run`.
pub fn run(
    path: &Path,
    out: Option<PathBuf>,
    format: Option<Format>,
    checkpoint_every: Option<u64>,
    args: &RunArgs,
) -> Result<(), CliError> {
    let (mut scenario, source, mut options) = load(args, path, out)?;
    set_format(&mut scenario, format);
    if scenario.sweep.is_some() && !args.quiet {
        eprintln!("note: {} has a sweep section; `coevo run` runs the base scenario only (use `coevo sweep`)", path.display());
    }
    options.checkpoint_every = checkpoint_every;
    let outcome = coevo::run::run(&scenario, &source, path, &options)?;
    if !args.quiet {
        print_results(&outcome.summary.report(), &outcome.out_dir, true)?;
    }
    Ok(())
}

/// `coevo resume`.
pub fn resume(
    dir: &Path,
    checkpoint_every: Option<u64>,
    threads: Option<u64>,
    quiet: bool,
    max_memory: Option<u64>,
) -> Result<(), CliError> {
    set_threads(threads);
    let options = RunOptions {
        progress: Bar::on_stderr(quiet),
        checkpoint_every,
        interrupt: Some(interrupt_flag()),
        max_memory,
        ..Default::default()
    };
    let outcome = coevo::run::resume(dir, &options)?;
    if !quiet {
        print_results(&outcome.summary.report(), &outcome.out_dir, true)?;
    }
    Ok(())
}

/// `coevo stability`.
pub fn stability(path: &Path, perturb: Option<String>, out: Option<PathBuf>, args: &RunArgs) -> Result<(), CliError> {
    let (mut scenario, source, options) = load(args, path, out)?;
    if let Some(text) = perturb {
        scenario.set_perturbation(&text, Path::new("--perturb"))?;
    }
    let outcome = coevo::stability::run_stability(&scenario, &source, path, &options)?;
    if !args.quiet {
        // `coevo plot` draws the divergence of every model of a stability folder.
        print_results(&outcome.summary.report(), &outcome.out_dir, true)?;
    }
    Ok(())
}

/// The flags of `coevo sweep` that say which points this process runs.
pub struct SweepShare {
    /// `--shard i/n`.
    pub shard: Option<String>,
    /// `--point K`.
    pub point: Option<usize>,
    /// `--claim`.
    pub claim: bool,
    /// `--lease SECONDS`.
    pub lease: Option<f64>,
    /// `--list-points`.
    pub list_points: bool,
}

/// `coevo sweep`.
pub fn sweep(
    path: &Path,
    out: Option<PathBuf>,
    format: Option<Format>,
    share: SweepShare,
    checkpoint_every: Option<u64>,
    args: &RunArgs,
) -> Result<(), CliError> {
    let (mut scenario, source, options) = load(args, path, None)?;
    set_format(&mut scenario, format);
    if share.list_points {
        let points = coevo::experiment::grid::sweep_points(&scenario, path)?;
        return emit(coevo::experiment::grid::list_points(&scenario, &points).as_bytes());
    }
    let chosen = match (share.shard, share.point, share.claim) {
        (Some(s), _, _) => Share::Shard(s.parse::<Shard>().map_err(|e| CliError::BadInput(format!("--shard: {e}")))?),
        (_, Some(k), _) => Share::Point(k),
        (_, _, true) => {
            let lease =
                Lease::from_secs(share.lease.unwrap_or(Lease::DEFAULT_SECONDS)).map_err(|e| CliError::BadInput(format!("--lease: {e}")))?;
            Share::Claim(lease)
        }
        _ => Share::All,
    };
    let sweep_options = SweepOptions {
        out_dir: out,
        share: chosen,
        force: options.force,
        progress: options.progress,
        checkpoint_every,
        interrupt: options.interrupt,
    };
    let o = coevo::experiment::grid::run_sweep(&scenario, &source, path, &sweep_options)?;
    if !args.quiet {
        let table = o.out_dir.join("sweep.csv");
        let line = if o.table_written {
            format!("{} of {} points done ({} computed now); table in {}\n", o.done, o.points, o.computed, table.display())
        } else {
            format!(
                "{} of {} points done ({} computed now); {} is written once every point ended\n",
                o.done,
                o.points,
                o.computed,
                table.display()
            )
        };
        emit(line.as_bytes())?;
        // `coevo plot` draws a sweep once every point is done (its table is then whole).
        if o.done == o.points {
            print_hint(&o.out_dir)?;
            // A Sobol design's next step is its sensitivity indices.
            if scenario.sweep.as_ref().is_some_and(|s| matches!(s.design, coevo::scenario::Design::Sobol(_))) {
                println!("next: coevo analyse {}", shell_quote(&o.out_dir.display().to_string()));
            }
        }
    }
    Ok(())
}

/// `coevo merge`.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<(), CliError> {
    let points = coevo::experiment::grid::merge(dirs, out)?;
    emit(format!("{points} points merged into {}\n", out.join("sweep.csv").display()).as_bytes())
}

/// `coevo analyse`.
pub fn analyse(dir: &Path, resamples: u64, confidence: f64) -> Result<(), CliError> {
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(CliError::BadInput(format!("--confidence must be in (0, 1), e.g. 0.95; got {confidence}")));
    }
    let bootstrap = coevo::experiment::sensitivity::Bootstrap { resamples: resamples as usize, confidence, ..Default::default() };
    let analysis = coevo::experiment::sensitivity::analyse(dir, &bootstrap)?;
    print!("{}", analysis.report());
    println!(
        "Sobol indices of {} parameters from {} base rows ({:.0}% intervals, {resamples} bootstrap resamples) in {}",
        analysis.parameters.len(),
        analysis.base_rows,
        confidence * 100.0,
        analysis.file.display()
    );
    Ok(())
}

/// The flags of `coevo search`, each overriding the scenario's `search` section.
pub struct SearchFlags {
    /// `--param`.
    pub param: Option<String>,
    /// `--range A B`.
    pub range: Option<Vec<f64>>,
    /// `--target COLUMN=LEVEL`.
    pub target: Option<String>,
    /// `--model`.
    pub model: Option<String>,
    /// `--tolerance`.
    pub tolerance: Option<f64>,
    /// `--budget`.
    pub budget: Option<u64>,
    /// `--confidence`.
    pub confidence: Option<f64>,
}

/// `coevo search`.
pub fn search(path: &Path, flags: SearchFlags, out: Option<PathBuf>, args: &RunArgs) -> Result<(), CliError> {
    let (mut scenario, source, options) = load(args, path, None)?;
    let target = flags
        .target
        .map(|t| {
            let (column, level) = t.split_once('=').ok_or_else(|| format!("`{t}` has no `=`: write COLUMN=LEVEL, e.g. final_mean=0.4"))?;
            let level: f64 =
                level.trim().parse().map_err(|_| format!("level `{level}` is not a number: write COLUMN=LEVEL, e.g. final_mean=0.4"))?;
            Ok((column.trim().to_string(), level))
        })
        .transpose()
        .map_err(|e: String| CliError::BadInput(format!("--target: {e}")))?;
    let range = flags.range.map(|r| (r[0], r[1]));
    let mut spec = match scenario.search.take() {
        Some(s) => s,
        None => {
            let missing: Vec<&str> = [("--param", flags.param.is_none()), ("--range", range.is_none()), ("--target", target.is_none())]
                .iter()
                .filter(|(_, m)| *m)
                .map(|(f, _)| *f)
                .collect();
            if !missing.is_empty() {
                return Err(CliError::BadInput(format!(
                    "{}: the scenario has no `search` section, so give {} (e.g. --param captioner.data.lambda --range 0 0.5 --target final_mean=0.4)",
                    path.display(),
                    missing.join(", ")
                )));
            }
            coevo::scenario::SearchSpec {
                parameter: String::new(),
                range: (0.0, 0.0),
                target: String::new(),
                level: 0.0,
                model: None,
                tolerance: None,
                budget: 16,
                confidence: 0.99,
            }
        }
    };
    spec.parameter = flags.param.unwrap_or(spec.parameter);
    spec.range = range.unwrap_or(spec.range);
    if let Some((column, level)) = target {
        (spec.target, spec.level) = (column, level);
    }
    spec.model = flags.model.or(spec.model);
    spec.tolerance = flags.tolerance.or(spec.tolerance);
    spec.budget = flags.budget.unwrap_or(spec.budget);
    spec.confidence = flags.confidence.unwrap_or(spec.confidence);
    scenario.search = Some(spec);
    // The flags are checked as the scenario's own section is, and named in the message.
    if let Some(p) = coevo::scenario::search::check(&scenario).first() {
        let field = p.key.trim_start_matches("search.");
        let flag = match field {
            "parameter" => "--param",
            "level" => "--target",
            other => other,
        };
        let flag = if flag.starts_with("--") { flag.to_string() } else { format!("--{flag}") };
        return Err(CliError::BadInput(format!("{flag}: {}", p.message)));
    }
    let search_options = coevo::experiment::search::SearchOptions {
        out_dir: out,
        force: options.force,
        progress: options.progress,
        interrupt: options.interrupt,
    };
    let started = std::time::Instant::now();
    let quiet = args.quiet;
    let spec = scenario.search.clone().expect("set above");
    let o = coevo::experiment::search::run_search(&scenario, &source, path, &search_options, |i, x, mean, se| {
        if !quiet {
            eprintln!("evaluation {i}: {} = {}: {} = {mean:.4} +- {se:.4}", spec.parameter, coevo::metrics::format_value(x), spec.target);
        }
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let r = &o.result;
    if !quiet {
        println!("{:>4}  {:>12}  {:>10}  {:>10}  {:>9}", "eval", o.parameter, "mean", "se", "side");
        for (i, e) in r.evaluations.iter().enumerate() {
            println!("{i:>4}  {:>12.6}  {:>10.4}  {:>10.4}  {:>9}", e.x, e.mean, e.se, e.side.label());
        }
    }
    let runs = format!(
        "{} evaluations of {} replicates ({} replicate rounds) in {seconds:.1} s",
        r.evaluations.len(),
        o.replicates,
        o.replicate_rounds
    );
    let what = format!("{} of `{}` = {}", o.target, o.model, o.level);
    if let Some((i, j)) = r.monotonicity_violation {
        let (a, b) = (&r.evaluations[i], &r.evaluations[j]);
        eprintln!(
            "warning: the outcome does not look monotone in {}: {} at {} against {} at {} (beyond their standard errors); the bracket may be wrong",
            o.parameter, a.mean, a.x, b.mean, b.x
        );
    }
    let Some((lo, hi)) = r.bracket else {
        return Err(CliError::Runtime(format!(
            "{what} is not bracketed by the range: at both ends the outcome is on the same side of the level, or within its uncertainty ({runs}); see {}",
            o.out_dir.join("search.csv").display()
        )));
    };
    let status = match r.status {
        coevo::experiment::search::Status::Converged => "converged",
        coevo::experiment::search::Status::NoiseLimited => {
            "noise-limited: the outcome is within its uncertainty of the level over a band wider than the tolerance; more replicates narrow it"
        }
        coevo::experiment::search::Status::Budget => "budget spent",
        coevo::experiment::search::Status::NotBracketed => "not bracketed",
    };
    println!(
        "{what} is crossed for {} in [{}, {}] ({status}; {runs}); table in {}",
        o.parameter,
        coevo::metrics::format_value(lo),
        coevo::metrics::format_value(hi),
        o.out_dir.join("search.csv").display()
    );
    Ok(())
}

/// `coevo plot`.
pub fn plot(dir: &Path, out: Option<PathBuf>) -> Result<(), CliError> {
    let out = out.unwrap_or_else(|| dir.join("figures"));
    for f in coevo::plot::plot_dir(dir, &out)? {
        emit(format!("{}\n", f.display()).as_bytes())?;
    }
    Ok(())
}

/// `coevo validate`: every file is checked; each invalid one's diagnostics are reported,
/// each valid one's estimated cost shown.
pub fn validate(scenarios: &[PathBuf], max_memory: Option<u64>) -> Result<(), CliError> {
    let mut problems = Vec::new();
    for path in scenarios {
        match Scenario::load_within(path, max_memory) {
            Ok((s, _)) => {
                let f = coevo::scenario::footprint::Footprint::of(&s);
                emit(
                    format!(
                        "{}: ok ({} entities, {} rounds; about {} of memory, {:.1e} operations per round, {} of tables)\n",
                        path.display(),
                        s.entities.len(),
                        s.rounds,
                        coevo::data::human_bytes(f.memory),
                        f.work_per_round as f64,
                        coevo::data::human_bytes(f.output)
                    )
                    .as_bytes(),
                )?;
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(CliError::Scenario(problems)) }
}

/// `coevo plugins list`.
pub fn plugins_list(dir: Option<PathBuf>) -> Result<(), CliError> {
    let dirs = dir.map_or_else(|| coevo::plugin::search_path().into_iter().filter(|d| d.is_dir()).collect(), |d| vec![d]);
    let report = coevo::plugin::list_report(&dirs).map_err(CliError::BadInput)?;
    emit(report.as_bytes())
}

/// `coevo data inspect`: the report is the library's ([`coevo::data::inspect`]); a file that
/// cannot be used is bad input (exit 2), with the same message a scenario would show.
pub fn data_inspect(file: &Path, vectors: Option<String>, labels: String, max_memory_mb: Option<u64>) -> Result<(), CliError> {
    let layout = coevo::data::Layout { vectors, labels };
    let report =
        coevo::data::inspect(file, &layout, coevo::data::MemoryLimit::new(max_memory_mb)).map_err(|e| CliError::BadInput(e.to_string()))?;
    emit(report.to_string().as_bytes())
}

/// `coevo plugins check`: the checks live in the library; this prints their report, and a
/// failed check is a failure (exit 1) after the report.
pub fn plugins_check(library: &str, params: &str, model: Option<&str>) -> Result<(), CliError> {
    let report = coevo::plugin::check::check_library(library, params, model).map_err(|e| CliError::BadInput(e.to_string()))?;
    emit(report.render().as_bytes())?;
    if report.passed() {
        Ok(())
    } else {
        Err(CliError::Runtime(format!("{library}: a plugin contract check failed (see the report above)")))
    }
}

/// `coevo bench-round`: one JSON line of timings.
pub fn bench_round(b: &BenchArgs) -> Result<(), CliError> {
    let json = if let Some(worlds) = b.worlds {
        let threads = b.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |p| p.get() as u64));
        let t =
            coevo::bench::time_worlds(b.k, b.d, b.n, b.rounds, b.seed, worlds, threads).map_err(|e| CliError::Runtime(e.to_string()))?;
        serde_json::to_string(&t)
    } else if let Some(window) = b.curve {
        let windows = coevo::bench::time_curve(b.k, b.d, b.n, b.rounds, window, b.seed, b.structure.into())
            .map_err(|e| CliError::Runtime(e.to_string()))?;
        let lines: Result<Vec<String>, _> = windows.iter().map(serde_json::to_string).collect();
        lines.map(|l| l.join("\n"))
    } else if b.floor {
        serde_json::to_string(&coevo::bench::time_floor(b.k, b.d, b.n, b.rounds, b.seed))
    } else {
        let t = coevo::bench::time_structured_rounds(b.k, b.d, b.n, b.rounds, b.seed, b.measure, b.structure.into())
            .map_err(|e| CliError::Runtime(e.to_string()))?;
        serde_json::to_string(&t)
    };
    emit(format!("{}\n", json.expect("timing serialises")).as_bytes())
}

/// `coevo completions SHELL`: the completion script on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<(), CliError> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "coevo", &mut script);
    emit(&script)
}

/// `coevo man`: the manual page (roff) on stdout.
pub fn man() -> Result<(), CliError> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page).map_err(|e| CliError::Runtime(format!("rendering the manual page: {e}")))?;
    emit(&page)
}

/// Writes what a command prints to stdout. A reader that stops early (`coevo run ... | head`,
/// `coevo man | head`) is not a failure: the command's work is done (a run's folder is
/// complete on disk), so the rest of the text is dropped and the exit code stays 0.
fn emit(bytes: &[u8]) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Runtime(format!("writing to stdout: {e}"))),
        _ => Ok(()),
    }
}

/// Prints a finished run's summary report and output folder, and (for folders `coevo plot`
/// draws) the command that draws it.
fn print_results(report: &str, out_dir: &Path, plottable: bool) -> Result<(), CliError> {
    emit(format!("{report}results in {}\n", out_dir.display()).as_bytes())?;
    if plottable {
        print_hint(out_dir)?;
    }
    Ok(())
}

/// The next step after a run or a sweep: `next: coevo plot DIR`, DIR quoted for the shell
/// when needed, so the line can be pasted as it is.
fn print_hint(dir: &Path) -> Result<(), CliError> {
    emit(format!("next: coevo plot {}\n", shell_quote(&dir.display().to_string())).as_bytes())
}

/// `s` as one POSIX shell word: as it is when it needs no quoting, else in single quotes.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+,:=@%".contains(c));
    if plain { s.to_string() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn paths_are_quoted_only_when_the_shell_needs_it() {
        assert_eq!(shell_quote("out/coevolve"), "out/coevolve");
        assert_eq!(shell_quote("my runs/a"), "'my runs/a'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
