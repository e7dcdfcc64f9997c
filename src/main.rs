//! The `coevo` command line: a thin layer over the library (as ripgrep's `main.rs` is).
//!
//! - `args.rs`: the grammar (clap);
//! - `commands.rs`: one function per command, returning `Result<(), CliError>`;
//! - `error.rs`: [`CliError`], the one mapping from a failure to its message and exit code;
//! - `progress.rs`: the progress bar (indicatif), the CLI's `coevo::run::Progress`;
//! - `signals.rs`: the SIGINT/SIGTERM handlers that raise the library's interrupt flag.
//!
//! Terminal crates (clap, indicatif, signal-hook, tracing-subscriber) are used here only; the
//! library never names them (tests/cli.rs checks).

// The CLI's modules live in src/main/, not src/cli/: tests/layers.rs places every folder of
// src/ in the library's layers, except the crate roots `main` and `lib`. A crate root's `mod`
// looks in src/ itself, hence the paths.
#[path = "main/args.rs"]
mod args;
#[path = "main/commands.rs"]
mod commands;
#[path = "main/error.rs"]
mod error;
#[path = "main/progress.rs"]
mod progress;
#[path = "main/signals.rs"]
mod signals;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command, DataCommand, PluginsCommand, VectorSet};
use error::CliError;

fn main() -> ExitCode {
    init_logging();
    // Bad arguments: clap prints the usage and exits with code 2 itself.
    let cli = Cli::parse();
    if let Some(set) = cli.vectors {
        coevo::linalg::limit_vectors(match set {
            VectorSet::Avx512 => coevo::linalg::Vectors::Avx512,
            VectorSet::Avx2 => coevo::linalg::Vectors::Avx2,
            VectorSet::Baseline => coevo::linalg::Vectors::Baseline,
        });
    }
    match configure_plugins(&cli).and_then(|()| dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Logs to stderr, filtered by RUST_LOG (default `warn`). Colour codes only when stderr is a
/// terminal and NO_COLOR is unset or empty (no-color.org), so log files and pipes stay plain.
fn init_logging() {
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
}

/// Where plugin libraries are found, which paths outside the search path are allowed, and
/// where plugin code runs (plugin host processes started from this executable, or in process).
fn configure_plugins(cli: &Cli) -> Result<(), CliError> {
    coevo::plugin::set_plugin_dirs(cli.plugin_dirs.clone());
    coevo::plugin::set_allowed_plugins(cli.allow_plugins.clone());
    if let Ok(exe) = std::env::current_exe() {
        coevo::plugin::set_host_program(exe);
    }
    let timeout = match cli.plugin_timeout {
        None => Some(coevo::plugin::isolate::DEFAULT_TIMEOUT),
        Some(0.0) => None,
        Some(s) => Some(
            std::time::Duration::try_from_secs_f64(s)
                .map_err(|_| CliError::BadInput(format!("--plugin-timeout {s}: expected a number of seconds >= 0 (0: no limit)")))?,
        ),
    };
    let memory_bytes = cli.plugin_memory_mb.map(|mb| mb.saturating_mul(1 << 20));
    coevo::plugin::set_isolation(if cli.trusted_plugins {
        coevo::plugin::Isolation::InProcess
    } else {
        coevo::plugin::Isolation::Child(coevo::plugin::ChildLimits { timeout, memory_bytes })
    });
    Ok(())
}

/// Runs one command.
fn dispatch(command: Command) -> Result<(), CliError> {
    match command {
        Command::Run { scenario, out, format, checkpoint_every, args } => commands::run(&scenario, out, format, checkpoint_every, &args),
        Command::Resume { dir, checkpoint_every, threads, quiet, max_memory } => {
            commands::resume(&dir, checkpoint_every, threads, quiet, max_memory)
        }
        Command::Sweep { scenario, out, format, shard, point, claim, lease, list_points, checkpoint_every, args } => {
            let share = commands::SweepShare { shard, point, claim, lease, list_points };
            commands::sweep(&scenario, out, format, share, checkpoint_every, &args)
        }
        Command::Merge { dirs, out } => commands::merge(&dirs, &out),
        Command::Analyse { dir, resamples, confidence } => commands::analyse(&dir, resamples, confidence),
        Command::Search { scenario, param, range, target, model, tolerance, budget, confidence, out, args } => {
            let flags = commands::SearchFlags { param, range, target, model, tolerance, budget, confidence };
            commands::search(&scenario, flags, out, &args)
        }
        Command::Plot { dir, out } => commands::plot(&dir, out),
        Command::Stability { scenario, perturb, out, args } => commands::stability(&scenario, perturb, out, &args),
        Command::BenchRound(bench) => commands::bench_round(&bench),
        Command::Validate { scenarios, max_memory } => commands::validate(&scenarios, max_memory),
        Command::Plugins(PluginsCommand::List { dir }) => commands::plugins_list(dir),
        Command::Plugins(PluginsCommand::Check { library, params, model }) => commands::plugins_check(&library, &params, model.as_deref()),
        Command::Data(DataCommand::Inspect { file, vectors, labels, max_memory_mb }) => {
            commands::data_inspect(&file, vectors, labels, max_memory_mb)
        }
        Command::Completions { shell } => commands::completions(shell),
        Command::Man => commands::man(),
        Command::PluginHost { library, sha256 } => {
            coevo::plugin::serve::serve(&library, sha256.as_deref()).map_err(|e| CliError::Runtime(format!("plugin host: {e}")))
        }
    }
}
