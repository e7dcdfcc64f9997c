//! `coevo plot` on every kind of folder coevo writes (issue "A newcomer's first hour", item 5):
//! a sweep over one parameter, a sweep over two, a `coevo stability` folder, a run with a
//! plugin model and a one-replicate run in Parquet each get their figures as non-empty SVG and
//! PNG files; a folder of no known
//! kind exits 2 and names the kinds `coevo plot` expects.
//!
//! Each test runs the built `coevo` binary on a short scenario in its own scratch folder. The
//! plugin test builds the audio plugin crate first (`cargo build -p coevo-plugin-audio`).

use std::path::{Path, PathBuf};

use crate::common::{coevo, scratch, stderr, stdout};

/// Runs `coevo plot dir`, asserts it succeeded, and returns the figures folder.
fn plot(dir: &Path) -> PathBuf {
    let out = coevo(&["plot", dir.to_str().unwrap()]);
    assert!(out.status.success(), "coevo plot {} failed: {}", dir.display(), stderr(&out));
    dir.join("figures")
}

/// Asserts `figures/stem.svg` and `figures/stem.png` exist and hold a drawing.
fn assert_figure(figures: &Path, stem: &str) {
    let svg = std::fs::read_to_string(figures.join(format!("{stem}.svg")))
        .unwrap_or_else(|e| panic!("{stem}.svg: {e}; folder holds {:?}", list(figures)));
    assert!(svg.contains("<svg") && (svg.contains("<polyline") || svg.contains("<path")), "{stem}.svg draws nothing");
    let png = std::fs::read(figures.join(format!("{stem}.png"))).unwrap_or_else(|e| panic!("{stem}.png: {e}"));
    assert!(png.starts_with(b"\x89PNG") && png.len() > 2000, "{stem}.png is not a drawn PNG ({} bytes)", png.len());
}

/// The file names in `dir`, sorted.
fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// A short fresh-data sweep (K = 3, 20 rounds, 2 replicates) over `parameters` (RON tuples).
fn sweep_scenario(dir: &Path, parameters: &str) -> PathBuf {
    let source = format!(
        r#"Scenario(
    name: "tiny_sweep",
    seed: 3,
    rounds: 20,
    replicates: 2,
    entities: [
        TextModel(name: "captioner", initial: Uniform(3), batch: 30, data: Fresh(lambda: 0.1)),
        ImageModel(name: "painter", conditioned_on: "captioner", batch: 30, data: Fresh(lambda: 0.1)),
    ],
    sweep: Sweep(parameters: [{parameters}]),
)"#
    );
    let path = dir.join("sweep.ron");
    std::fs::write(&path, source).unwrap();
    path
}

fn run_sweep(dir: &Path, parameters: &str) -> PathBuf {
    let scenario = sweep_scenario(dir, parameters);
    let out_dir = dir.join("out");
    let out = coevo(&["sweep", scenario.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "coevo sweep failed: {}", stderr(&out));
    out_dir
}

#[test]
fn a_one_parameter_sweep_gets_a_line_figure_per_model() {
    let dir = scratch("plot_folders", "sweep_1d");
    let out_dir = run_sweep(&dir, r#"(path: "captioner.data.lambda", values: [0.0, 0.2, 0.5])"#);
    let figures = plot(&out_dir);
    for model in ["captioner", "painter"] {
        assert_figure(&figures, &format!("sweep_{model}"));
    }
    // No heat map: that needs two parameters.
    assert!(!list(&figures).iter().any(|f| f.starts_with("heatmap_")), "{:?}", list(&figures));
}

#[test]
fn a_two_parameter_sweep_gets_heat_maps_and_one_marginal_figure_per_parameter() {
    let dir = scratch("plot_folders", "sweep_2d");
    let out_dir =
        run_sweep(&dir, r#"(path: "captioner.data.lambda", values: [0.0, 0.5]), (path: "painter.data.lambda", values: [0.0, 0.5])"#);
    let figures = plot(&out_dir);
    for model in ["captioner", "painter"] {
        assert_figure(&figures, &format!("heatmap_{model}"));
        for parameter in ["captioner.data.lambda", "painter.data.lambda"] {
            assert_figure(&figures, &format!("sweep_{model}_{parameter}"));
        }
    }
}

#[test]
fn a_stability_folder_gets_a_divergence_figure_per_model() {
    let dir = scratch("plot_folders", "stability");
    let out_dir = dir.join("out");
    let out =
        coevo(&["stability", "scenarios/stability_replace.ron", "--rounds", "6", "--replicates", "2", "--out", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "coevo stability failed: {}", stderr(&out));
    // The run names the next step, which the rest of this test takes.
    assert!(stdout(&out).ends_with(&format!("next: coevo plot {}\n", out_dir.display())), "{}", stdout(&out));
    let figures = plot(&out_dir);
    assert_figure(&figures, "divergence_captioner");
    assert_figure(&figures, "divergence_painter");
}

#[test]
fn a_plugin_model_gets_a_diversity_figure() {
    let lib = coevo_plugin_api::host::cargo_build_plugin(Path::new(env!("CARGO_MANIFEST_DIR")), "coevo-plugin-audio", &[])
        .unwrap_or_else(|e| panic!("building the audio plugin failed: {e}"));
    let plugins = lib.parent().unwrap().to_str().unwrap().to_string();
    let dir = scratch("plot_folders", "plugin");
    let out_dir = dir.join("out");
    let out = coevo(&[
        "run",
        "scenarios/plugin_audio.ron",
        "--rounds",
        "4",
        "--replicates",
        "2",
        "--plugin-dir",
        &plugins,
        "--out",
        out_dir.to_str().unwrap(),
        "-q",
    ]);
    assert!(out.status.success(), "coevo run failed: {}", stderr(&out));
    let figures = plot(&out_dir);
    // The text model's figure, the image model's trace, and the p-weighted diversity of both
    // conditional models: the built-in image model and the plugin audio model.
    for stem in ["diversity", "trace_painter", "diversity_painter", "diversity_singer"] {
        assert_figure(&figures, stem);
    }
}

#[test]
fn a_parquet_run_of_one_replicate_gets_its_figures() {
    // One replicate writes no aggregate table: the figures are drawn from the metrics, here
    // read from Parquet.
    let dir = scratch("plot_folders", "parquet");
    let out_dir = dir.join("out");
    let out = coevo(&["run", "scenarios/coevolve.ron", "--rounds", "30", "--format", "parquet", "--out", out_dir.to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "coevo run failed: {}", stderr(&out));
    assert!(out_dir.join("metrics.parquet").exists() && !out_dir.join("aggregate.parquet").exists());
    let figures = plot(&out_dir);
    for stem in ["diversity", "trace_painter", "drift_painter", "diversity_painter"] {
        assert_figure(&figures, stem);
    }
}

#[test]
fn a_folder_coevo_did_not_write_exits_2_and_names_the_expected_kinds() {
    let dir = scratch("plot_folders", "empty");
    let out = coevo(&["plot", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    let message = stderr(&out);
    for expected in ["run folder", "metrics.csv", "metrics.parquet", "sweep folder", "sweep.csv", "stability folder", "divergence.csv"] {
        assert!(message.contains(expected), "the message should name `{expected}`: {message}");
    }
    assert!(!dir.join("figures").exists(), "no figures folder for a folder coevo cannot plot");
}
