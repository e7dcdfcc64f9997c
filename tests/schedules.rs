//! Schedules and active windows (docs/model.md section 12, issue 11).
//!
//! - Each scheduled parameter takes its declared value at every round: read exactly where it
//!   acts deterministically (the temperature a model samples at and its sampling distribution
//!   `softmax(log p / T)`, the number of user-content images, the real captions of `Fresh`),
//!   and statistically where it sets a probability (the `injected` rate of a corpus injector
//!   under a ramp of `alpha`).
//! - A schedule constant at the plain value, and a window covering every round, give output
//!   byte-identical to the plain number; a corpus injector switched on by a window fires
//!   exactly where the same injector with `alpha` stepped from 0 does (same stream use).
//! - Schedules and windows are written to the manifest as given, read back from a sweep
//!   point's RON, and continue exactly across a checkpoint.
//! - Injection switched on late pulls text diversity from its collapsing course up to the
//!   floor the theory predicts, round by round (exact expectation, tolerance from the standard
//!   error over replicates).
//! - Bad schedules and windows exit 2 with the file, line, column and field named.

use coevo::Simulation;
use coevo::world::{CaptionBatch, EntityName, ImageBatch, SamplingTemperature};
use rayon::prelude::*;

use crate::common::{Z, bytes, coevo, mean_se, metric, ok, scenario, scratch, stderr, write};

/// The component `C` of the entity called `name`.
fn component<'w, C: bevy_ecs::component::Component>(sim: &'w mut Simulation, name: &str) -> &'w C {
    let world = sim.world_mut();
    let mut q = world.query::<(&EntityName, &C)>();
    let (_, c) = q.iter(world).find(|(n, _)| &*n.0 == name).unwrap_or_else(|| panic!("no {name} with that component"));
    c
}

// ------------------------------------------------------------------ exact values per round

#[test]
fn a_scheduled_temperature_is_the_declared_value_at_every_round_and_one_outside_its_window() {
    // A frozen text model keeps p = p0, so the image model's caption distribution in round t is
    // exactly softmax(log p0 / T_t): the temperature's effect, with no randomness.
    let p0 = [0.4, 0.3, 0.15, 0.1, 0.05];
    let s = scenario(
        r#"Scenario(name: "t", rounds: 8, entities: [
            TextModel(name: "captioner", initial: Probabilities([0.4, 0.3, 0.15, 0.1, 0.05]), batch: 50, frozen: true),
            ImageModel(name: "painter", conditioned_on: "captioner", batch: 50),
            Temperature(name: "heat", target: "captioner", t: Ramp(from: (2, 0.5), to: (6, 2.5)), active: (from: 3, until: 7)),
        ])"#,
    );
    // Declared: 0.5 up to round 2, then +0.5 a round to 2.5 at round 6, 2.5 after; the window
    // leaves rounds 1, 2 and 8 at T = 1.
    let declared = [1.0, 1.0, 1.0, 1.5, 2.0, 2.5, 2.5, 1.0];
    let mut sim = Simulation::new(&s, 0).unwrap();
    for (t, &temperature) in declared.iter().enumerate() {
        sim.step().unwrap();
        assert_eq!(component::<SamplingTemperature>(&mut sim, "captioner").0, temperature, "round {}", t + 1);
        let z: f64 = p0.iter().map(|p: &f64| p.powf(1.0 / temperature)).sum();
        let sampling = &component::<ImageBatch>(&mut sim, "painter").sampling_p;
        for (i, (&got, p)) in sampling.iter().zip(p0).enumerate() {
            // Not statistical: two evaluations of the same closed form, which differ only by
            // rounding (a few ulps of numbers of order 0.1).
            let want = p.powf(1.0 / temperature) / z;
            assert!((got - want).abs() < 1e-14, "round {}: text {i} sampled with {got}, softmax(log p / T) = {want}", t + 1);
        }
    }
}

#[test]
fn scheduled_user_content_and_real_data_fractions_are_the_declared_counts() {
    // n0 steps 5 -> 0 -> 20 inside a window of rounds 2-6; the text model's real-data fraction
    // ramps 0 -> 1 over rounds 1-5, the image model's steps 0.5 -> 0.1 at round 3.
    let s = scenario(
        r#"Scenario(name: "t", rounds: 7, entities: [
            TextModel(name: "captioner", batch: 100, data: Fresh(lambda: Ramp(from: (1, 0.0), to: (5, 1.0)))),
            ImageModel(name: "painter", conditioned_on: "captioner", batch: 100, allocation: Fixed(20),
                data: Fresh(lambda: Steps([(0, 0.5), (3, 0.1)]))),
            UserContentInjector(name: "uploads", target: "painter", n0: Steps([(1, 5), (3, 0), (5, 20)]),
                active: (from: 2, until: 6)),
        ])"#,
    );
    let n0: [Option<usize>; 7] = [None, Some(5), Some(0), Some(0), Some(20), Some(20), None];
    let text_real = [0, 25, 50, 75, 100, 100, 100];
    let image_real = [10, 10, 2, 2, 2, 2, 2];
    let mut sim = Simulation::new(&s, 0).unwrap();
    for t in 0..7 {
        sim.step().unwrap();
        let round = t + 1;
        assert_eq!(component::<CaptionBatch>(&mut sim, "captioner").real, text_real[t], "round {round}: real captions");
        let batch = component::<ImageBatch>(&mut sim, "painter");
        assert_eq!(batch.real_counts, vec![image_real[t]; 5], "round {round}: real images per text (Fixed(20))");
        let external: Vec<&Vec<usize>> = batch.external().iter().map(|x| &x.counts).collect();
        match n0[t] {
            None => assert!(external.is_empty(), "round {round}: the injector is outside its window but added {external:?}"),
            Some(n) => assert_eq!(external, vec![&vec![n; 5]], "round {round}: user images per text"),
        }
    }
}

#[test]
fn a_scheduled_alpha_fires_at_its_declared_rate_in_every_round() {
    // alpha ramps from 0 at round 10 to 1 at round 60 (0.02 a round), then drops to 0 at
    // round 70 as the window ends at round 69. eps = 0 leaves p alone: only `injected` is
    // observed. Each replicate's injector draws one uniform u_t per round from its own stream
    // and fires iff u_t < alpha_t, so in round t the number of the R = 1000 replicates that
    // fired is Binomial(R, alpha_t): checked in every one of the 80 rounds, within Z standard
    // errors sqrt(R alpha (1 - alpha)) (49 such checks; at the smallest alpha, 0.02, the count
    // has mean 20, where the normal approximation of the binomial tail is still within a
    // factor of a few), and exactly where alpha_t is 0 or 1 (rounds 1-10 and 60-80).
    let s = scenario(
        r#"Scenario(name: "t", rounds: 80, replicates: 1000, entities: [
            TextModel(name: "captioner", batch: 10),
            CorpusInjector(name: "inject", target: "captioner", alpha: Ramp(from: (10, 0.0), to: (60, 1.0)), eps: 0.0,
                active: (until: 69)),
        ])"#,
    );
    let declared = |t: u64| if t >= 70 { 0.0 } else { (t.clamp(10, 60) - 10) as f64 / 50.0 };
    let fired: Vec<Vec<f64>> = (0..s.replicates)
        .into_par_iter()
        .map(|r| {
            let mut sim = Simulation::new(&s, r).unwrap();
            (1..=s.rounds).map(|_| metric(sim.step().unwrap(), "inject", "injected", None)).collect()
        })
        .collect();
    let r = s.replicates as f64;
    for t in 1..=s.rounds {
        let count: f64 = fired.iter().map(|run| run[t as usize - 1]).sum();
        let alpha = declared(t);
        let se = (r * alpha * (1.0 - alpha)).sqrt();
        assert!((count - r * alpha).abs() <= Z * se, "round {t}: {count} of {r} fired, expected {} +- {se} (alpha {alpha})", r * alpha);
    }
}

// ------------------------------------------------------------------ byte identity

/// A platform with every scheduled parameter: temperature, corpus injection, user content and
/// fresh data on both models; `{t}`, `{alpha}`, ... are replaced by their written forms.
const PLATFORM: &str = r#"Scenario(name: "same", seed: 9, rounds: 60, replicates: 2, entities: [
    TextModel(name: "captioner", batch: 200, data: Fresh(lambda: {lambda})),
    ImageModel(name: "painter", conditioned_on: "captioner", batch: 200, data: Fresh(lambda: {lambda})),
    Temperature(name: "heat", target: "captioner", t: {t}{window}),
    CorpusInjector(name: "inject", target: "captioner", alpha: {alpha}, eps: {eps}{window}),
    UserContentInjector(name: "uploads", target: "painter", n0: {n0}{window}),
])"#;

fn platform(t: &str, alpha: &str, eps: &str, n0: &str, lambda: &str, window: &str) -> String {
    PLATFORM
        .replace("{t}", t)
        .replace("{alpha}", alpha)
        .replace("{eps}", eps)
        .replace("{n0}", n0)
        .replace("{lambda}", lambda)
        .replace("{window}", window)
}

/// `coevo run` of `source` into a fresh folder; its metrics.csv.
fn metrics_csv(dir: &std::path::Path, label: &str, source: &str) -> Vec<u8> {
    let file = write(dir, &format!("{label}.ron"), source);
    let out = dir.join(label);
    ok(&["run", "-q", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--threads", "1"]);
    bytes(&out.join("metrics.csv"))
}

#[test]
fn constant_schedules_and_full_windows_are_byte_identical_to_plain_numbers() {
    let dir = scratch("schedules", "byte_identity");
    let plain = metrics_csv(&dir, "plain", &platform("0.8", "0.3", "0.1", "7", "0.2", ""));
    let scheduled = platform(
        "Steps([(1, 0.8)])",
        "Steps([(0, 0.3), (30, 0.3)])",
        "Ramp(from: (1, 0.1), to: (50, 0.1))",
        "Steps([(1, 7), (20, 7)])",
        "Ramp(from: (5, 0.2), to: (6, 0.2))",
        ", active: (from: 1)",
    );
    assert!(plain == metrics_csv(&dir, "scheduled", &scheduled), "constant schedules changed the output");

    // A corpus injector switched on at round 30 by a window makes the same draws as one whose
    // alpha steps from 0 to its value at round 30 (one uniform per round either way), so the
    // two runs are identical, and differ from the always-on run.
    let late = |alpha: &str, window: &str| {
        PLATFORM
            .replace("{t}", "1.0")
            .replace("{eps}", "0.5")
            .replace("{n0}", "0")
            .replace("{lambda}", "0.0")
            .replace("{window}", "")
            .replace("alpha: {alpha}", &format!("alpha: {alpha}{window}"))
    };
    let windowed = metrics_csv(&dir, "windowed", &late("0.5", ", active: (from: 30)"));
    assert!(windowed == metrics_csv(&dir, "stepped", &late("Steps([(1, 0.0), (30, 0.5)])", "")), "window and step differ");
    assert!(windowed != metrics_csv(&dir, "always", &late("0.5", "")), "the window had no effect");
}

#[test]
fn the_manifest_shows_schedules_and_windows_and_plain_numbers_as_written() {
    let dir = scratch("schedules", "manifest");
    let source = platform("0.8", "Steps([(1, 0.0), (30, 0.3)])", "0.1", "Ramp(from: (1, 0), to: (40, 8))", "0.2", "");
    let source = source.replace("n0: Ramp(from: (1, 0), to: (40, 8))", "n0: Ramp(from: (1, 0), to: (40, 8)), active: (from: 5, until: 50)");
    let file = write(&dir, "s.ron", &source);
    let out = dir.join("out");
    ok(&["run", "-q", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--rounds", "2"]);
    let manifest: serde_json::Value = serde_json::from_slice(&bytes(&out.join("manifest.json"))).unwrap();
    let entities = &manifest["scenario"]["entities"];
    assert_eq!(entities[2]["Temperature"]["t"], serde_json::json!(0.8));
    assert!(entities[2]["Temperature"].get("active").is_none(), "no window written for an influence without one");
    assert_eq!(entities[3]["CorpusInjector"]["alpha"], serde_json::json!({"Steps": [[1, 0.0], [30, 0.3]]}));
    assert_eq!(entities[3]["CorpusInjector"]["eps"], serde_json::json!(0.1));
    assert_eq!(entities[4]["UserContentInjector"]["n0"], serde_json::json!({"Ramp": {"from": [1, 0], "to": [40, 8]}}));
    assert_eq!(entities[4]["UserContentInjector"]["active"], serde_json::json!({"from": 5, "until": 50}));
    assert_eq!(entities[0]["TextModel"]["data"], serde_json::json!({"Fresh": {"lambda": 0.2}}));
}

#[test]
fn scheduled_scenarios_survive_the_round_trips_of_sweeps_and_checkpoints() {
    // A sweep point's scenario is written as RON (its manifest hashes it, its checkpoint embeds
    // it) and read back; a checkpoint restores the round, from which every schedule is
    // evaluated, so a world restored mid-schedule continues exactly as the uninterrupted one.
    let source = platform(
        "Ramp(from: (1, 1.5), to: (20, 0.7))",
        "Steps([(1, 0.0), (10, 0.6)])",
        "0.1",
        "Ramp(from: (5, 0), to: (25, 9))",
        "Steps([(0, 0.0), (15, 0.3)])",
        ", active: (from: 4, until: 40)",
    );
    let s = scenario(&source);
    let written = coevo::experiment::grid::point_source(&s);
    assert_eq!(scenario(&written), s, "a point's RON does not read back as the same scenario:\n{written}");

    let mut whole = Simulation::new(&s, 1).unwrap();
    let mut resumed = Simulation::new(&s, 1).unwrap();
    for _ in 0..12 {
        whole.step().unwrap();
    }
    let state = coevo::checkpoint::capture(&whole).unwrap();
    coevo::checkpoint::restore(&mut resumed, &state).unwrap();
    for _ in 12..s.rounds {
        let a = whole.step().unwrap().to_vec();
        let b = resumed.step().unwrap();
        assert!(a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.value.to_bits() == y.value.to_bits()), "round {}", a[0].round);
    }
}

// ------------------------------------------------------------------ dynamics

#[test]
fn injection_switched_on_late_lifts_diversity_to_the_predicted_floor() {
    // A text model (K = 5, N = 100) with a frozen image model whose conditionals are separated
    // (Sigma = 1e-4 I, means 1.18 apart: every caption posterior is one-hot), so the text phase
    // is exact multinomial resampling: E[H' | p] = (1 - 1/N) H for H = gini_simpson. A uniform
    // corpus injection (eps) maps H exactly to (1 - eps)^2 H + c (1 - 1/K), c = 1 - (1 - eps)^2,
    // and fires with probability alpha_t independently of p (docs/model.md section 5; the same
    // derivation as tests/stabilisers.rs). Hence, exactly,
    //     E H_t = (1 - alpha_t c)(1 - 1/N) E H_{t-1} + alpha_t c (1 - 1/K),
    // with alpha_t = 0 before the window opens at round 200 and 0.1 from then on: H decays
    // towards collapse (0.8 x 0.99^199 = 0.11 at round 199), then climbs to the floor
    // alpha c (1 - 1/K) / (1 - rho) = 0.53, rho = (1 - alpha c)(1 - 1/N). The mean over R = 48 replicates is compared with
    // this expectation at four rounds, within Z standard errors (replicates are independent).
    let (k, n, alpha, eps, from) = (5.0, 100.0, 0.1, 0.1, 200u64);
    let s = scenario(&format!(
        r#"Scenario(name: "t", seed: 17, rounds: 600, replicates: 48, entities: [
            TextModel(name: "captioner", initial: Uniform(5), batch: 100),
            ImageModel(name: "painter", conditioned_on: "captioner", covariance: Isotropic(1e-4), frozen: true),
            CorpusInjector(name: "corpus", target: "captioner", alpha: {alpha}, eps: {eps}, active: (from: {from})),
        ])"#
    ));
    let c = 1.0 - (1.0f64 - eps).powi(2);
    let mut expected = vec![1.0 - 1.0 / k];
    for t in 1..=s.rounds {
        let a = if t >= from { alpha } else { 0.0 };
        expected.push((1.0 - a * c) * (1.0 - 1.0 / n) * expected[t as usize - 1] + a * c * (1.0 - 1.0 / k));
    }
    let checkpoints = [from - 1, from + 50, from + 150, s.rounds];
    let runs: Vec<Vec<f64>> = (0..s.replicates)
        .into_par_iter()
        .map(|r| {
            let mut sim = Simulation::new(&s, r).unwrap();
            let mut at = Vec::new();
            for t in 1..=s.rounds {
                let rows = sim.step().unwrap();
                if checkpoints.contains(&t) {
                    at.push(metric(rows, "captioner", "gini_simpson", None));
                }
            }
            at
        })
        .collect();
    for (i, &t) in checkpoints.iter().enumerate() {
        let values: Vec<f64> = runs.iter().map(|run| run[i]).collect();
        let (mean, se) = mean_se(&values);
        let want = expected[t as usize];
        assert!((mean - want).abs() <= Z * se, "round {t}: mean gini_simpson {mean} +- {se}, expected {want}");
    }
    // The recovery is the window's doing: well below the floor before it, near it at the end.
    assert!(expected[from as usize - 1] < 0.2 && expected[s.rounds as usize] > 0.5);
}

// ------------------------------------------------------------------ bad input

/// `coevo validate` on `tests/fixtures/schedules/<fixture>.ron`: exit 2, the file, and every
/// `expected` piece of the message.
fn rejects(fixture: &str, expected: &[&str]) {
    let file = format!("tests/fixtures/schedules/{fixture}.ron");
    let out = coevo(&["validate", &file]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{file}: expected exit code 2; stderr:\n{err}");
    assert!(!err.contains("panicked"), "{file}:\n{err}");
    for e in expected {
        assert!(err.contains(e), "{file}: the message must say {e:?}; stderr:\n{err}");
    }
}

#[test]
fn steps_out_of_order_are_rejected_with_the_field() {
    rejects(
        "steps_out_of_order",
        &[
            "steps_out_of_order.ron:10:13: entities[1] (CorpusInjector \"inject\").alpha",
            "round 400 follows round 500",
            "strictly increase",
        ],
    );
}

#[test]
fn a_value_out_of_range_at_any_point_is_rejected_with_the_round() {
    rejects(
        "value_out_of_range",
        &[
            "value_out_of_range.ron:7:38: entities[0] (TextModel \"captioner\").data",
            "Fresh(lambda: 1.5) at round 900",
            "value_out_of_range.ron:12:13: entities[1] (CorpusInjector \"inject\").eps",
            "eps = 1.2 at round 700",
            "must lie in [0, 1]",
        ],
    );
}

#[test]
fn a_reversed_window_is_rejected() {
    rejects(
        "window_reversed",
        &[
            "window_reversed.ron:12:13: entities[2] (UserContentInjector \"uploads\").active",
            "from: 800 until: 500",
            "`until` must be >= `from`",
        ],
    );
}

#[test]
fn steps_that_leave_rounds_without_a_value_are_rejected() {
    rejects(
        "steps_start_late",
        &["steps_start_late.ron:8:56: entities[1] (Temperature \"heat\").t", "rounds 1 to 499 have no value", "round 0 or 1"],
    );
}

#[test]
fn a_fraction_in_a_count_schedule_is_rejected_with_the_forms() {
    rejects(
        "schedule_wrong_form",
        &["schedule_wrong_form.ron:8:", "(UserContentInjector \"uploads\").n0", "a whole number >= 0 or a schedule of whole numbers"],
    );
}
