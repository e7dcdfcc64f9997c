//! Tests of both models through the generated C table (in-process) with the host helpers.

use super::{coevo_plugin_entry, laplace};
use coevo_plugin_api::DataPolicy;
use coevo_plugin_api::host::{LoadedTable, PluginModel};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn table() -> LoadedTable {
    // SAFETY: the table is a static of this crate.
    unsafe { LoadedTable::from_raw(coevo_plugin_entry(), "coevo-multi (in-process)") }.unwrap()
}

fn model(name: &str, params: &str, k: usize, policy: DataPolicy) -> PluginModel {
    table().create_by_name(name, params, k, policy).unwrap()
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn metric(m: &mut PluginModel, i: usize, name: &str) -> f64 {
    let col = m.metric_names().iter().position(|n| n == name).unwrap();
    let cols = m.metric_names().len();
    m.metrics().unwrap()[i * cols + col]
}

#[test]
fn one_library_carries_two_models() {
    let t = table();
    assert_eq!(t.name(), "coevo-multi");
    let models: Vec<_> = t.models().iter().map(|m| (m.name.as_str(), m.modality.as_str(), m.fixed_dim)).collect();
    assert_eq!(models, [("laplace_motion", "video", None), ("tag_spectrum", "tags", None)]);
    let a = model("laplace_motion", r#"{"dim": 3}"#, 2, DataPolicy::Replace);
    let b = model("tag_spectrum", r#"{"tags": 5}"#, 2, DataPolicy::Replace);
    assert_eq!((a.dim(), b.dim()), (3, 5));
    for m in [&a, &b] {
        assert_eq!(&m.metric_names()[..2], ["diversity", "fidelity"]);
    }
}

#[test]
fn bad_params_are_clear_errors() {
    let t = table();
    let err = |name: &str, p: &str| t.create_by_name(name, p, 2, DataPolicy::Replace).unwrap_err().to_string();
    assert!(err("laplace_motion", r#"{"scale0": 0}"#).contains("scale0 must be finite and > 0"));
    assert!(err("laplace_motion", r#"{"dim": 0}"#).contains("dim must be at least 1"));
    assert!(err("laplace_motion", r#"{"means": [[0, 0]]}"#).contains("means has 1 rows"));
    assert!(err("laplace_motion", r#"{"means": [[0, 0], [1]]}"#).contains("means[1]"));
    assert!(err("laplace_motion", r#"{"prior": {"location": [1]}}"#).contains("prior.location"));
    assert!(err("tag_spectrum", r#"{"tags": 1}"#).contains("tags must be at least 2"));
    assert!(err("tag_spectrum", r#"{"per_item": 0}"#).contains("per_item"));
    assert!(err("tag_spectrum", r#"{"peak": 2}"#).contains("peak must be in [0, 1]"));
    assert!(err("tag_spectrum", r#"{"tags": 2, "init": [[0.5, 0.5], [0.9, 0.2]]}"#).contains("init[1] must sum to 1"));
    assert!(err("tag_spectrum", r#"{"colour": 1}"#).contains("unknown field `colour`"));
}

#[test]
fn laplace_mle_and_temperature() {
    let p = r#"{"dim": 2, "scale0": 0.5, "means": [[1.0, -1.0]]}"#;
    let n = 40_000u64;
    for (t, b) in [(1.0, 0.5), (2.0, 1.0)] {
        let mut src = model("laplace_motion", p, 1, DataPolicy::Replace);
        let y = src.sample(&[n], t, &mut rng(1)).unwrap();
        let mut m = model("laplace_motion", p, 1, DataPolicy::Replace);
        m.fit(&[n], &y, &mut rng(2)).unwrap();
        let scale = metric(&mut m, 0, "mean_scale");
        assert!((scale - b).abs() < 0.02 * b, "T={t}: scale {scale}");
        assert!(metric(&mut m, 0, "fidelity") < 0.02);
        assert!((metric(&mut m, 0, "diversity") - 2.0 * 2.0 * scale * scale).abs() < 0.05 * b * b);
    }
}

#[test]
fn laplace_log_likelihood_and_collapse() {
    let mut m = model("laplace_motion", r#"{"dim": 1, "scale0": 2.0, "means": [[0.0], [3.0]]}"#, 2, DataPolicy::Replace);
    let ll = m.log_likelihood(&[1.0]).unwrap();
    assert!((ll[0] - (-(4.0f64).ln() - 0.5)).abs() < 1e-12);
    assert!((ll[1] - (-(4.0f64).ln() - 1.0)).abs() < 1e-12);
    // Identical values: exact scale 0, flagged, sampling and likelihood stay finite.
    m.fit(&[3, 0], &[0.25, 0.25, 0.25], &mut rng(0)).unwrap();
    assert_eq!(metric(&mut m, 0, "regularized"), 1.0);
    assert_eq!(metric(&mut m, 0, "diversity"), 0.0);
    let y = m.sample(&[2, 2], 1.0, &mut rng(0)).unwrap();
    assert!(y[..2].iter().all(|&v| (v - 0.25).abs() < 1e-9));
    assert!(m.log_likelihood(&y).unwrap().iter().all(|v| v.is_finite()));
}

#[test]
fn laplace_accumulate_sketch_is_bounded_and_accurate() {
    // initial = 0, so the accumulated history is exactly the data fed here and the exact MLE
    // over all of it can be compared with the sketch's estimate.
    let p = r#"{"dim": 1, "scale0": 1.0, "means": [[0.0]], "sketch_size": 64}"#;
    let mut m = model("laplace_motion", p, 1, DataPolicy::Accumulate { initial: 0 });
    let mut src = model("laplace_motion", p, 1, DataPolicy::Replace);
    let mut g = rng(4);
    let mut all = Vec::new();
    let mut max_len = 0;
    for round in 0..40 {
        // A drifting source, so old and new data differ.
        let y: Vec<f64> = src.sample(&[50], 1.0, &mut g).unwrap().iter().map(|v| v + round as f64 * 0.05).collect();
        all.extend_from_slice(&y);
        m.fit(&[50], &y, &mut g).unwrap();
        max_len = max_len.max(m.get_params().unwrap().len());
    }
    // Checkpoint size is bounded by the sketch (64 pairs + fixed fields), not by the history.
    assert!(max_len <= 3 + 5 + 1 + 2 * 64, "{max_len}");
    let mut pts: Vec<_> = all.iter().map(|&v| (v, 1.0)).collect();
    let (med, mad) = laplace::weighted_median_mad(&mut pts);
    let ck = m.get_params().unwrap();
    let (loc, scale) = (ck[3], ck[4]);
    assert!((loc - med).abs() < 0.05, "sketch median {loc} vs exact {med}");
    assert!((scale - mad).abs() < 0.05, "sketch scale {scale} vs exact {mad}");

    // With initial real data the estimate is pulled back towards the initial location 0.
    let mut w = model("laplace_motion", p, 1, DataPolicy::Accumulate { initial: 2000 });
    w.fit(&[50], &vec![5.0; 50], &mut g).unwrap();
    assert!(w.get_params().unwrap()[3].abs() < 0.1);
}

#[test]
fn laplace_fresh_and_checkpoint() {
    let p = r#"{"dim": 2, "means": [[0.5, 0.5], [-1, 2]]}"#;
    let mut m = model("laplace_motion", p, 2, DataPolicy::Fresh { lambda: 1.0 });
    m.fit(&[20_000, 0], &vec![9.0; 40_000], &mut rng(3)).unwrap();
    assert!(metric(&mut m, 0, "fidelity") < 0.02);
    assert!((metric(&mut m, 0, "mean_scale") - 0.3).abs() < 0.01);

    let mut a = model("laplace_motion", p, 2, DataPolicy::Accumulate { initial: 10 });
    let mut g = rng(8);
    let y = a.sample(&[5, 5], 1.0, &mut g).unwrap();
    a.fit(&[5, 5], &y, &mut g).unwrap();
    a.add_text().unwrap();
    let ck = a.get_params().unwrap();
    let mut b = model("laplace_motion", p, 2, DataPolicy::Accumulate { initial: 10 });
    b.set_params(&ck).unwrap();
    assert_eq!(b.num_texts(), 3);
    let (mut ga, mut gb) = (rng(9), rng(9));
    for _ in 0..3 {
        let ya = a.sample(&[4, 4, 4], 1.0, &mut ga).unwrap();
        let yb = b.sample(&[4, 4, 4], 1.0, &mut gb).unwrap();
        assert_eq!(ya, yb);
        a.fit(&[4, 4, 4], &ya, &mut ga).unwrap();
        b.fit(&[4, 4, 4], &yb, &mut gb).unwrap();
    }
    assert_eq!(a.get_params().unwrap(), b.get_params().unwrap());
    assert!(b.set_params(&ck[..ck.len() - 1]).is_err());
    let mut d1 = model("laplace_motion", r#"{"dim": 1}"#, 2, DataPolicy::Replace);
    assert!(d1.set_params(&ck).unwrap_err().to_string().contains("dim"));
}

#[test]
fn tags_samples_are_count_vectors_and_mle_recovers() {
    let p = r#"{"tags": 4, "per_item": 3, "init": [[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]]}"#;
    let mut m = model("tag_spectrum", p, 2, DataPolicy::Replace);
    let n = 30_000u64;
    let y = m.sample(&[n, n], 1.0, &mut rng(5)).unwrap();
    for row in y.chunks(4) {
        assert_eq!(row.iter().sum::<f64>(), 3.0);
        assert!(row.iter().all(|c| c.fract() == 0.0 && *c >= 0.0));
    }
    let mut fit = model("tag_spectrum", r#"{"tags": 4, "per_item": 3}"#, 2, DataPolicy::Replace);
    fit.fit(&[n, n], &y, &mut rng(6)).unwrap();
    let ck = fit.get_params().unwrap();
    let theta0 = &ck[3..7];
    for (a, b) in theta0.iter().zip([0.1, 0.2, 0.3, 0.4]) {
        assert!((a - b).abs() < 0.01, "{theta0:?}");
    }
    // Temperature < 1 sharpens towards the mode.
    let y = m.sample(&[0, 2000], 0.2, &mut rng(7)).unwrap();
    let share0 = y.chunks(4).map(|r| r[0]).sum::<f64>() / (2000.0 * 3.0);
    assert!(share0 > 0.99, "{share0}");
}

#[test]
fn tags_log_likelihood_is_multinomial() {
    let p = r#"{"tags": 3, "per_item": 4, "init": [[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]}"#;
    let mut m = model("tag_spectrum", p, 2, DataPolicy::Replace);
    let ll = m.log_likelihood(&[2.0, 1.0, 1.0, 3.0, 1.0, 0.0]).unwrap();
    // 4!/(2!1!1!) 0.2^2 0.3 0.5 = 12 * 0.006 = 0.072
    assert!((ll[1] - 0.072f64.ln()).abs() < 1e-12);
    assert_eq!(ll[0], f64::NEG_INFINITY, "tag 2 has probability 0 under text 0");
    // 4!/(3!1!) 0.5^4 = 0.25
    assert!((ll[2] - 0.25f64.ln()).abs() < 1e-12);
    let e = m.log_likelihood(&[1.0, 1.0, 1.0]).unwrap_err();
    assert!(e.to_string().contains("sample 0 has 3 tags, expected per_item = 4"), "{e}");
    let e = m.log_likelihood(&[1.5, 1.5, 1.0]).unwrap_err();
    assert!(e.to_string().contains("not a count vector"), "{e}");
}

/// Replace with few items: tags die out and never return (support shrinks), like text collapse.
#[test]
fn tags_replace_loop_loses_support() {
    let mut m = model("tag_spectrum", r#"{"tags": 8, "per_item": 2, "init": "uniform"}"#, 1, DataPolicy::Replace);
    let mut g = rng(10);
    let h0 = metric(&mut m, 0, "diversity");
    for _ in 0..100 {
        let y = m.sample(&[3], 1.0, &mut g).unwrap();
        m.fit(&[3], &y, &mut g).unwrap();
    }
    assert!(metric(&mut m, 0, "support") < 8.0);
    assert!(metric(&mut m, 0, "diversity") < h0);
}

#[test]
fn tags_accumulate_add_text_and_checkpoint() {
    let p = r#"{"tags": 3, "per_item": 2, "prior": [0.0, 0.0, 1.0]}"#;
    let mut m = model("tag_spectrum", p, 1, DataPolicy::Accumulate { initial: 4 });
    m.add_text().unwrap();
    assert_eq!(metric(&mut m, 1, "support"), 1.0);
    assert_eq!(metric(&mut m, 1, "diversity"), 0.0);
    let mut g = rng(11);
    let y = m.sample(&[2, 2], 1.0, &mut g).unwrap();
    m.fit(&[2, 2], &y, &mut g).unwrap();
    let ck = m.get_params().unwrap();
    // acc_n = 4 initial + 2 batch for both texts; counts sum to acc_n * per_item.
    let per = 3 * 3 + 2;
    for i in 0..2 {
        let r = &ck[3 + i * per..3 + (i + 1) * per];
        assert_eq!(r[6], 6.0);
        assert_eq!(r[7..10].iter().sum::<f64>(), 12.0);
    }
    let mut b = model("tag_spectrum", p, 1, DataPolicy::Accumulate { initial: 4 });
    b.set_params(&ck).unwrap();
    assert_eq!(b.num_texts(), 2);
    assert_eq!(b.get_params().unwrap(), ck);
}
