//! Run a scenario from Rust code through the library API and read its metrics in memory,
//! without files: `cargo run --release --example embed`.
//!
//! The scenario is the paper's co-evolution at its defaults (K = 5 texts, d = 2, N = 1000),
//! written as RON text so every default and every validation rule of a scenario file
//! applies. Each replicate is one [`Simulation`]; `measure()` gives round 0 and `step()` one
//! training round, each as tidy [`MetricRow`]s. It prints the text model's Gini-Simpson
//! diversity and the image model's p-weighted trace every 100 rounds, averaged over
//! replicates, next to the image trace's expected contraction `((N_i - 1)/N_i)^t` for the
//! initial per-text batch `N_i = N/K = 200` (docs/model.md section 3), which the trace should track
//! until the text distribution moves.

use std::error::Error;
use std::path::Path;

use coevo::metrics::{MetricRow, names};
use coevo::{Scenario, Simulation};

const SCENARIO: &str = r#"Scenario(
    name: "embedded",
    seed: 11,
    rounds: 500,
    replicates: 4,
    entities: [
        TextModel(name: "captioner"),
        ImageModel(name: "painter", conditioned_on: "captioner"),
    ],
)"#;

/// The value of a model-level metric in one round's rows.
fn value(rows: &[MetricRow], model: &str, metric: &str) -> f64 {
    rows.iter().find(|r| &*r.model == model && &*r.metric == metric && r.text.is_none()).map_or(f64::NAN, |r| r.value)
}

fn main() -> Result<(), Box<dyn Error>> {
    let scenario = Scenario::parse(SCENARIO, Path::new("<embedded>"))?;
    let mut worlds = (0..scenario.replicates).map(|r| Simulation::new(&scenario, r)).collect::<Result<Vec<_>, _>>()?;
    let trace = names::weighted(names::TRACE);
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    println!("{:>6} {:>14} {:>16} {:>16}", "round", "gini_simpson", "weighted_trace", "0.2*(199/200)^t");
    for round in 0..=scenario.rounds {
        let mut gini = Vec::new();
        let mut traces = Vec::new();
        for world in &mut worlds {
            let rows = if round == 0 { world.measure()? } else { world.step()? };
            gini.push(value(rows, "captioner", names::GINI_SIMPSON));
            traces.push(value(rows, "painter", &trace));
        }
        if round % 100 == 0 {
            let theory = 0.2 * (199.0f64 / 200.0).powi(round as i32);
            println!("{round:>6} {:>14.4} {:>16.4e} {theory:>16.4e}", mean(&gini), mean(&traces));
        }
    }
    Ok(())
}
