//! Real data in the loop (docs/model.md sections 10 and 11): datasets read from every format the same,
//! initial models equal to numpy's moments of the shipped file, the shrinkage formula, the
//! bootstrap source's moments, the fixed point of a refit pooled with real data, the metrics
//! against the data, the `Augment` policy, and `coevo data inspect`.
//!
//! Statistical checks compare a mean over independent draws (or independent replicates) with
//! its exact expectation, within `Z` standard errors of that mean (see `common::Z`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use coevo::data::{Dataset, Layout};
use coevo::models::gaussian::shrink_to_isotropic;
use coevo::models::{DataPolicy, Estimator, GaussianImageModel};
use coevo::rng::entity_stream;
use coevo::world::{UserContentInjector, draw_user_content};
use coevo::{Scenario, Simulation};
use nalgebra::{DMatrix, DVector};
use rayon::prelude::*;

use crate::common::{Z, coevo, full, mean_se, metric, ok, per_text, scratch, stderr, stdout, write};
use crate::stabilisers::pooled_fixed_point;

/// The dataset coevo ships (examples/make_digits.py).
pub fn digits_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/data/digits_pca16.npz")
}

fn digits() -> Dataset {
    Dataset::load(&digits_path(), &Layout::default(), None).expect("the shipped dataset loads")
}

/// Bytes of a little-endian `.npy` file (format 1.0) holding `shape` values of numpy type
/// `descr` (`<f8`, `<i8`, ...) given as raw bytes: how numpy writes them, so the tests need no
/// Python.
pub fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let shape = match shape {
        [n] => format!("({n},)"),
        s => format!("({})", s.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + length (2) + header, padded with spaces to 64 bytes, ending '\n'.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

pub fn f64_bytes(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn i64_bytes(values: &[i64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// `|a - b|` within `tol` times `scale`, the magnitude of what was summed to get `b`: a sum's
/// rounding error is relative to its terms, not to the result, which can cancel to nearly zero
/// (the PCA coordinates' marginal mean is 0 up to roundoff; off-diagonal covariances can be
/// small). Means are compared at the scale of the vectors, covariances at their largest entry.
fn close(a: &[f64], b: &[f64], tol: f64, scale: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * scale, "{what}[{i}]: {x} vs numpy's {y} (scale {scale})");
    }
}

fn largest(values: &[f64]) -> f64 {
    values.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

fn json_matrix(v: &serde_json::Value) -> Vec<f64> {
    // Row-major from numpy; covariances are symmetric, so the order does not matter.
    v.as_array().unwrap().iter().flat_map(|row| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap())).collect()
}

fn json_vector(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn initial_moments_from_data_equal_numpys_on_the_shipped_file() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data/digits_moments.json");
    let numpy: serde_json::Value = serde_json::from_slice(&std::fs::read(&fixture).unwrap()).unwrap();
    let data = digits();
    assert_eq!((data.rows(), data.dim(), data.num_labels()), (1797, 16, 10));
    // The models a scenario builds from it, MLE and unbiased: p0, means, covariances.
    for (estimator, key) in [(Estimator::Mle, "cov_mle"), (Estimator::Unbiased, "cov_unbiased")] {
        let dir = scratch("data", &format!("moments_{key}"));
        let file = write(&dir, "digits.ron", &digits_scenario(&format!("estimator: {estimator:?}"), ""));
        let (scenario, _) = Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
        let mut sim = Simulation::new(&scenario, 0).unwrap();
        let rows = sim.measure().unwrap().to_vec();
        let p0 = per_text(&rows, "captioner", "p", 10);
        let world = sim.world_mut();
        let mut q = world.query::<&coevo::world::ConditionalAgent>();
        let model = q.iter(world).next().unwrap();
        for (i, label) in numpy["labels"].as_array().unwrap().iter().enumerate() {
            let count = label["count"].as_u64().unwrap() as usize;
            assert_eq!(data.count(i), count);
            assert_eq!(p0[i], count as f64 / 1797.0, "p0 is n_i / n");
            let (mu, sigma) = model.model.moments(i).unwrap();
            close(mu.as_slice(), &json_vector(&label["mean"]), 1e-12, largest(data.label_rows(i)), &format!("mean {i}"));
            let cov = json_matrix(&label[key]);
            close(sigma.as_slice(), &cov, 1e-12, largest(&cov), &format!("{key} {i}"));
        }
    }
    let (m, s) = (&data.marginal().mean, data.marginal_covariance(Estimator::Mle, 0.0).unwrap());
    let all: Vec<f64> = (0..10).flat_map(|i| data.label_rows(i).to_vec()).collect();
    close(m.as_slice(), &json_vector(&numpy["marginal"]["mean"]), 1e-12, largest(&all), "marginal mean");
    let cov = json_matrix(&numpy["marginal"]["cov_mle"]);
    close(s.as_slice(), &cov, 1e-12, largest(&cov), "marginal covariance");
}

#[test]
fn shrinkage_moves_towards_the_isotropic_part_and_keeps_the_trace() {
    let data = digits();
    let s = data.label_covariance(3, Estimator::Mle, 0.0).unwrap();
    let d = s.nrows() as f64;
    for shrinkage in [0.0, 0.1, 0.5, 1.0] {
        let shrunk = data.label_covariance(3, Estimator::Mle, shrinkage).unwrap();
        // (1 - s) S + s (tr S / d) I, entry by entry.
        let expected = DMatrix::from_fn(s.nrows(), s.ncols(), |r, c| {
            (1.0 - shrinkage) * s[(r, c)] + if r == c { shrinkage * s.trace() / d } else { 0.0 }
        });
        assert!((&shrunk - &expected).amax() <= 1e-15 * s.amax(), "shrinkage {shrinkage}");
        assert!((shrunk.trace() - s.trace()).abs() <= 1e-13 * s.trace());
        assert_eq!(shrunk, shrink_to_isotropic(&s, shrinkage));
    }
    // Full shrinkage is isotropic: every eigenvalue tr S / d.
    let iso = data.label_covariance(3, Estimator::Mle, 1.0).unwrap();
    assert!((iso - DMatrix::identity(16, 16) * (s.trace() / d)).amax() < 1e-15 * s.trace());
}

#[test]
fn too_few_rows_for_a_positive_definite_covariance_is_refused_unless_shrunk() {
    // Label 1 has 3 rows in d = 4: rank 2 at most. Without shrinkage: an error naming the label
    // and its count; with shrinkage: positive definite.
    let mut vectors = Vec::new();
    let mut labels = Vec::new();
    for j in 0..10 {
        vectors.extend([j as f64, (j * j) as f64 % 7.0, (j * 3 % 5) as f64, (j % 2) as f64]);
        labels.push(0);
    }
    for j in 0..3 {
        vectors.extend([j as f64, 1.0 - j as f64, 2.0 * j as f64, 0.5]);
        labels.push(1);
    }
    let dir = scratch("data", "too_few");
    std::fs::write(dir.join("x.npy"), npy("<f8", &[13, 4], &f64_bytes(&vectors))).unwrap();
    std::fs::write(dir.join("y.npy"), npy("<i8", &[13], &i64_bytes(&labels))).unwrap();
    let data = Dataset::load(&dir.join("x.npy"), &Layout { vectors: None, labels: "y.npy".into() }, None).unwrap();
    let e = data.label_covariance(1, Estimator::Mle, 0.0).unwrap_err();
    assert!(e.contains("label 1 has 3 rows") && e.contains("at least 5") && e.contains("shrinkage"), "{e}");
    let shrunk = data.label_covariance(1, Estimator::Mle, 0.2).unwrap();
    assert!(nalgebra::SymmetricEigen::new(shrunk).eigenvalues.min() > 0.0);
}

#[test]
fn the_same_table_reads_alike_from_npy_npz_csv_and_parquet() {
    let dir = scratch("data", "formats");
    let (n, d) = (7usize, 3usize);
    let vectors: Vec<f64> = (0..n * d).map(|i| (i as f64 * 0.37).sin()).collect();
    let labels: Vec<i64> = vec![0, 1, 2, 1, 0, 2, 2];
    std::fs::write(dir.join("x.npy"), npy("<f8", &[n, d], &f64_bytes(&vectors))).unwrap();
    std::fs::write(dir.join("y.npy"), npy("<i8", &[n], &i64_bytes(&labels))).unwrap();
    // .npz: a zip of .npy files, as np.savez writes it (stored, no compression).
    {
        use std::io::Write as _;
        let mut zip = zip::ZipWriter::new(std::fs::File::create(dir.join("t.npz")).unwrap());
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        zip.start_file("emb.npy", options).unwrap();
        zip.write_all(&npy("<f8", &[n, d], &f64_bytes(&vectors))).unwrap();
        zip.start_file("labels.npy", options).unwrap();
        zip.write_all(&npy("<i8", &[n], &i64_bytes(&labels))).unwrap();
        zip.finish().unwrap();
    }
    let mut csv = String::from("label,x0,x1,x2\n");
    for (j, l) in labels.iter().enumerate() {
        let row: Vec<String> = vectors[j * d..(j + 1) * d].iter().map(|v| format!("{v:?}")).collect();
        csv.push_str(&format!("{l},{}\n", row.join(",")));
    }
    std::fs::write(dir.join("t.csv"), csv).unwrap();
    write_parquet(&dir.join("t.parquet"), &vectors, &labels, d);
    let read = |file: &str, vectors: Option<&str>, labels: &str| {
        Dataset::load(&dir.join(file), &Layout { vectors: vectors.map(String::from), labels: labels.into() }, None)
            .unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    write_parquet_list(&dir.join("list.parquet"), &vectors, &labels, d);
    let reference = read("x.npy", None, "y.npy");
    assert_eq!((reference.rows(), reference.dim(), reference.num_labels()), (n, d, 3));
    for other in [
        read("t.npz", Some("emb"), "labels"),
        read("t.csv", None, "label"),
        read("t.csv", Some("x"), "label"),
        read("t.parquet", None, "label"),
        read("list.parquet", Some("emb"), "label"),
    ] {
        for i in 0..3 {
            assert_eq!(other.label_rows(i), reference.label_rows(i), "{}", other.file().display());
        }
    }
}

/// A Parquet file with an int64 `label` column and float64 columns `x0..`.
pub fn write_parquet(path: &Path, vectors: &[f64], labels: &[i64], d: usize) {
    use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
    let mut columns: Vec<(String, ArrayRef)> = vec![("label".into(), Arc::new(Int64Array::from(labels.to_vec())))];
    for c in 0..d {
        let values: Vec<f64> = vectors.chunks(d).map(|row| row[c]).collect();
        columns.push((format!("x{c}"), Arc::new(Float64Array::from(values))));
    }
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// A Parquet file with an int64 `label` column and the vectors as one `list<double>` column
/// `emb` (how pandas and pyarrow write an embedding column).
fn write_parquet_list(path: &Path, vectors: &[f64], labels: &[i64], d: usize) {
    use arrow_array::types::Float64Type;
    use arrow_array::{ArrayRef, Int64Array, ListArray, RecordBatch};
    let rows = vectors.chunks(d).map(|row| Some(row.iter().map(|v| Some(*v)).collect::<Vec<_>>()));
    let emb: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Float64Type, _, _>(rows));
    let batch = RecordBatch::try_from_iter([("label", Arc::new(Int64Array::from(labels.to_vec())) as ArrayRef), ("emb", emb)]).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[test]
fn the_bootstrap_mean_of_n0_rows_has_the_label_mean_and_variance_s_over_n0() {
    // User content from `Data`: n0 rows of label i, uniformly with replacement. Their mean has
    // expectation m_i and covariance S_i / n0, S_i the label's MLE covariance (the covariance
    // of one uniform draw from the rows). Checked per coordinate of two labels over M
    // independent draws: the mean of the M means within Z SE (SE = sqrt(S_jj / n0 / M)), and
    // their sample variance within Z SE of S_jj / n0, its SE sqrt((mu4 - v^2) / M) from the
    // draws' own fourth central moment (no normality assumed).
    let data = Arc::new(digits());
    let n0: usize = 10;
    let k = data.num_labels();
    let means: Vec<DVector<f64>> = (0..k).map(|i| data.label_stats(i).mean.clone()).collect();
    let covs: Vec<DMatrix<f64>> = (0..k).map(|i| data.label_covariance(i, Estimator::Mle, 0.0).unwrap()).collect();
    let mut target = GaussianImageModel::new(
        means.clone(),
        full(&covs),
        Estimator::Mle,
        DataPolicy::Replace,
        (means[0].clone(), covs[0].clone().into()),
    );
    let mut injector = UserContentInjector { n0: coevo::models::Schedule::Constant(n0 as u64), source: None, data: Some(data.clone()) };
    let mut rng = entity_stream(11, 0, "users");
    let (mut counts, mut out) = (Vec::new(), Vec::new());
    let m = 4000;
    let labels = [2usize, 7];
    let mut draws: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); 16]; labels.len()];
    for _ in 0..m {
        draw_user_content(&mut injector, n0, &mut target, &mut rng, &mut counts, &mut out).unwrap();
        assert_eq!(counts, vec![n0; k]);
        for (li, &label) in labels.iter().enumerate() {
            let block = &out[label * n0 * 16..(label + 1) * n0 * 16];
            for j in 0..16 {
                draws[li][j].push(block.chunks(16).map(|row| row[j]).sum::<f64>() / n0 as f64);
            }
        }
    }
    let mle = |label: usize| &data.label_stats(label).scatter / data.count(label) as f64;
    for (li, &label) in labels.iter().enumerate() {
        let s = mle(label);
        for j in 0..16 {
            let x = &draws[li][j];
            let (mean, se) = mean_se(x);
            let expected_var = s[(j, j)] / n0 as f64;
            assert!(
                (mean - data.label_stats(label).mean[j]).abs() < Z * (expected_var / m as f64).sqrt(),
                "label {label} coordinate {j}: mean {mean} (SE {se})"
            );
            let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (m - 1) as f64;
            let mu4 = x.iter().map(|v| (v - mean).powi(4)).sum::<f64>() / m as f64;
            let se_var = ((mu4 - var * var) / m as f64).sqrt();
            assert!(
                (var - expected_var).abs() < Z * se_var,
                "label {label} coordinate {j}: variance {var} vs S/n0 = {expected_var} (SE {se_var})"
            );
        }
    }
}

/// A scenario on the shipped digits: `image` goes into the ImageModel, `extra` entities after it.
pub fn digits_scenario(image: &str, extra: &str) -> String {
    format!(
        r#"Scenario(
    name: "digits",
    seed: 5,
    rounds: 10,
    entities: [
        Dataset(name: "digits", file: "{}"),
        TextModel(name: "captioner", initial: FromData("digits"), batch: 500),
        ImageModel(name: "painter", conditioned_on: "captioner", dim: 16, means: FromData("digits"), covariance: FromData("digits"), batch: 500, {image}),
        {extra}
    ],
)"#,
        digits_path().display()
    )
}

#[test]
fn frechet_to_data_is_zero_at_round_0_for_an_mle_model_built_from_the_data() {
    let dir = scratch("data", "frechet0");
    let (scenario, _) = Scenario::load(&write(&dir, "s.ron", &digits_scenario("", ""))).unwrap();
    let rows = Simulation::new(&scenario, 0).unwrap().measure().unwrap().to_vec();
    let data = digits();
    for i in 0..10 {
        // Exactly 0 in exact arithmetic; the matrix square roots leave roundoff of order
        // 1e-16 relative to the trace.
        let f = metric(&rows, "painter", "frechet_to_data", Some(i));
        assert!(f.abs() < 1e-10 * data.label_stats(i as usize).scatter.trace() / data.count(i as usize) as f64, "text {i}: {f}");
    }
    // The p0-mixture of the label Gaussians has exactly the data's marginal moments (the law
    // of total covariance with MLE covariances and p0 = n_i / n).
    let marginal = metric(&rows, "painter", "frechet_to_data_marginal", None);
    assert!(marginal.abs() < 1e-10 * data.marginal().scatter.trace() / 1797.0, "{marginal}");
    // With the unbiased estimator the model starts n_i / (n_i - 1) wider than the data.
    let (unbiased, _) = Scenario::load(&write(&dir, "u.ron", &digits_scenario("estimator: Unbiased", ""))).unwrap();
    let rows = Simulation::new(&unbiased, 0).unwrap().measure().unwrap().to_vec();
    assert!(metric(&rows, "painter", "frechet_to_data", Some(0)) > 1e-6);
}

#[test]
fn a_refit_pooled_with_real_rows_settles_at_the_derived_fixed_point() {
    // Frozen text model, Fixed(n) allocation, MLE, and n0 real rows of label i (a bootstrap)
    // pooled into every refit of text i. The fixed point of the pooled MLE refit (derived in
    // tests/stabilisers.rs, `pooled_fixed_point`) uses two moments of the real samples: their
    // mean and covariance, here m_i and S_i (the label's MLE covariance: that of one uniform
    // draw from its rows); the model starts at (m_i, S_i). So the stationary trace and squared
    // distance |mu_i - m_i|^2 (the fidelity, squared) are pooled_fixed_point(n, n0, tr S_i).
    // Measured: both averaged over rounds 60-400 (the recursion's slowest eigenvalue is about
    // 0.7 for (20, 10): after 60 rounds the transient is below 1e-9 of it) and summed over the
    // 10 texts, then compared across 12 independent replicates with their standard error.
    let (n, n0) = (20.0f64, 10.0f64);
    let dir = scratch("data", "fixed_point");
    let text = digits_scenario(
        "allocation: Fixed(20)",
        r#"UserContentInjector(name: "users", target: "painter", n0: 10, source: Data("digits")),"#,
    )
    .replace("batch: 500)", "batch: 500, frozen: true)")
    .replace("rounds: 10", "rounds: 400")
    .replace("seed: 5", "seed: 6");
    let (mut scenario, _) = Scenario::load(&write(&dir, "s.ron", &text)).unwrap();
    scenario.replicates = 12;
    let data = digits();
    let expected: Vec<(f64, f64)> =
        (0..10).map(|i| pooled_fixed_point(n, n0, data.label_stats(i).scatter.trace() / data.count(i) as f64)).collect();
    let (t_expected, d_expected): (f64, f64) = expected.iter().fold((0.0, 0.0), |(t, d), e| (t + e.0, d + e.1));
    let per_replicate: Vec<(f64, f64)> = (0..scenario.replicates)
        .into_par_iter()
        .map(|r| {
            let mut sim = Simulation::new(&scenario, r).unwrap();
            let (mut t, mut dd, mut count) = (0.0, 0.0, 0.0);
            for round in 1..=scenario.rounds {
                let rows = sim.step().unwrap();
                if round >= 60 {
                    t += per_text(rows, "painter", "trace", 10).iter().sum::<f64>();
                    dd += per_text(rows, "painter", "fidelity", 10).iter().map(|f| f * f).sum::<f64>();
                    count += 1.0;
                }
            }
            (t / count, dd / count)
        })
        .collect();
    let (t_mean, t_se) = mean_se(&per_replicate.iter().map(|x| x.0).collect::<Vec<_>>());
    let (d_mean, d_se) = mean_se(&per_replicate.iter().map(|x| x.1).collect::<Vec<_>>());
    assert!((t_mean - t_expected).abs() < Z * t_se, "sum of traces {t_mean} +- {t_se}, fixed point {t_expected}");
    assert!((d_mean - d_expected).abs() < Z * d_se, "sum of squared fidelities {d_mean} +- {d_se}, fixed point {d_expected}");
}

#[test]
fn augment_with_lambda_zero_stays_at_the_estimate_of_its_real_samples() {
    // Augment(lambda: 0): every refit sees the same real samples and nothing generated, so the
    // models move once, to the estimate from those samples, and never again.
    let dir = scratch("data", "augment0");
    let text = digits_scenario("data: Augment(lambda: 0.0)", "")
        .replace("initial: FromData(\"digits\"), batch: 500)", "initial: FromData(\"digits\"), batch: 500, data: Augment(lambda: 0.0))");
    let (scenario, _) = Scenario::load(&write(&dir, "s.ron", &text)).unwrap();
    let mut sim = Simulation::new(&scenario, 0).unwrap();
    let first = sim.step().unwrap().to_vec();
    for _ in 0..5 {
        let rows = sim.step().unwrap().to_vec();
        assert_eq!(per_text(&rows, "captioner", "p", 10), per_text(&first, "captioner", "p", 10));
        for name in ["trace", "fidelity", "frechet_to_data"] {
            assert_eq!(per_text(&rows, "painter", name, 10), per_text(&first, "painter", name, 10), "{name}");
        }
    }
    // A positive lambda keeps moving.
    let moving = text.replace("Augment(lambda: 0.0)", "Augment(lambda: 1.0)");
    let (scenario, _) = Scenario::load(&write(&dir, "m.ron", &moving)).unwrap();
    let mut sim = Simulation::new(&scenario, 0).unwrap();
    let first = per_text(sim.step().unwrap(), "painter", "trace", 10);
    assert_ne!(per_text(sim.step().unwrap(), "painter", "trace", 10), first);
}

#[test]
fn data_inspect_reports_rows_dimension_labels_and_what_would_fail() {
    let out = ok(&["data", "inspect", "scenarios/data/digits_pca16.npz"]);
    let text = stdout(&out);
    for expected in ["rows:      1797", "dimension: 16 (float64)", "K = 10", "ok: every label"] {
        assert!(text.contains(expected), "missing {expected:?}:\n{text}");
    }
    // Labels with fewer rows than d + 1 are named.
    let dir = scratch("data", "inspect");
    let csv = "label,a,b,c\n0,1,2,3\n0,2,1,0\n1,0,0,1\n1,1,1,1\n1,5,2,0\n1,3,3,3\n";
    let file = write(&dir, "small.csv", csv);
    let out = ok(&["data", "inspect", file.to_str().unwrap(), "--labels", "label"]);
    let text = stdout(&out);
    assert!(text.contains("would fail") && text.contains("0 (2 rows)"), "{text}");
    assert!(text.contains("   1         4 rows"), "{text}");
    // A file that cannot be used is bad input.
    let bad = coevo(&["data", "inspect", dir.join("missing.npz").to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("missing.npz"), "{}", stderr(&bad));
}

#[test]
fn user_content_from_initial_resamples_the_data_a_model_was_built_from() {
    // A model built from a dataset takes its real data from it (docs/model.md section 10): user content
    // with `source: Initial` is then the same bootstrap as `source: Data(..)` of that dataset,
    // draw for draw from the injector's stream.
    let dir = scratch("data", "initial_is_data");
    let rows = |source: &str, file: &str| {
        let extra = format!(r#"UserContentInjector(name: "users", target: "painter", n0: 5, source: {source}),"#);
        let (scenario, _) = Scenario::load(&write(&dir, file, &digits_scenario("", &extra))).unwrap();
        let mut sim = Simulation::new(&scenario, 0).unwrap();
        (0..5).map(|_| sim.step().unwrap().to_vec()).collect::<Vec<_>>()
    };
    let (initial, data) = (rows("Initial", "initial.ron"), rows("Data(\"digits\")", "data.ron"));
    for (a, b) in initial.iter().zip(&data) {
        assert_eq!(per_text(a, "painter", "trace", 10), per_text(b, "painter", "trace", 10));
        assert_eq!(per_text(a, "painter", "fidelity", 10), per_text(b, "painter", "fidelity", 10));
    }
}

#[test]
fn augment_settles_at_the_fixed_point_of_its_real_samples() {
    // Augment(lambda: 1) with Fixed(20), MLE, a frozen text model: every refit of text i pools
    // m = 20 fresh samples of the model with the same n_R = 20 real rows R_i (drawn once, a
    // bootstrap of label i). Given R_i (scatter W_i, mean r_i) and with delta = mu - r_i, the
    // pooled scatter is W_gen + W_i + (m n_R / M)(ybar - r_i)(ybar - r_i)^T, M = m + n_R, so
    //   E T' = [(m - 1 + n_R/M) T + tr W_i + (m n_R / M) D] / M,   E D' = (m/M)^2 (D + T/m)
    // (T = tr Sigma, D = |delta|^2): linear, with the fixed point D = q T / (m (1 - q)),
    // q = (m/M)^2, and T = tr W_i / [M - m + 1 - n_R/M - n_R q / (M (1 - q))].
    // tr W_i is read from a twin with lambda = 0: the same seed draws the same real rows (they
    // are drawn when the world is built, before lambda is used), and its first refit is their
    // MLE, trace tr W_i / n_R. Per replicate, the trace summed over the 10 texts and averaged
    // over rounds 30-300 (the recursion's eigenvalues are about 0.49 and 0.25) is divided by
    // its fixed point; the ratio has expectation 1, checked over 12 replicates with its SE.
    let (m, nr) = (20.0f64, 20.0f64);
    let big_m = m + nr;
    let q = (m / big_m).powi(2);
    let denominator = big_m - m + 1.0 - nr / big_m - nr * q / (big_m * (1.0 - q));
    let dir = scratch("data", "augment_fixed_point");
    let text = |lambda: &str| {
        digits_scenario(&format!("allocation: Fixed(20), data: Augment(lambda: {lambda})"), "")
            .replace("batch: 500)", "batch: 500, frozen: true)")
            .replace("rounds: 10", "rounds: 300")
    };
    let (mut twin, _) = Scenario::load(&write(&dir, "zero.ron", &text("0.0"))).unwrap();
    let (mut augment, _) = Scenario::load(&write(&dir, "one.ron", &text("1.0"))).unwrap();
    twin.replicates = 12;
    augment.replicates = 12;
    let ratios: Vec<f64> = (0..augment.replicates)
        .into_par_iter()
        .map(|r| {
            let mut real = Simulation::new(&twin, r).unwrap();
            let w: f64 = per_text(real.step().unwrap(), "painter", "trace", 10).iter().sum::<f64>() * nr;
            let mut sim = Simulation::new(&augment, r).unwrap();
            let (mut sum, mut count) = (0.0, 0.0);
            for round in 1..=augment.rounds {
                let rows = sim.step().unwrap();
                if round >= 30 {
                    sum += per_text(rows, "painter", "trace", 10).iter().sum::<f64>();
                    count += 1.0;
                }
            }
            sum / count / (w / denominator)
        })
        .collect();
    let (mean, se) = mean_se(&ratios);
    assert!((mean - 1.0).abs() < Z * se, "trace / its fixed point: {mean} +- {se} ({ratios:?})");
}
