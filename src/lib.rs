//! # coevo: ecosystems of co-evolving generative models
//!
//! Text models (categorical distributions over captions) and conditional image models
//! (a Gaussian per caption) retrain on each other's output, round after round. coevo
//! simulates such platforms as ECS worlds (`bevy_ecs`), measures the collapse the theory
//! predicts, and the stabilisers that prevent it. The mathematics is specified in
//! `docs/model.md`; this crate implements it in layers:
//!
//! - [`models`]: the maths (text model, conditional Gaussian, posteriors, estimators);
//! - [`metrics`]: diversity, fidelity, Frechet distance, Matthew index;
//! - [`data`]: datasets of labelled embeddings read from files, their moments and bootstrap;
//! - [`scenario`]: the RON scenario schema and its validation;
//! - [`resolve`]: loading a scenario file, and its initial state and wiring resolved once;
//! - [`world`]: components, the round schedule and its systems;
//! - [`output`]: metric tables, manifest and summary;
//! - [`run`]: load a scenario, run it, write the results.
//!
//! ```no_run
//! use coevo::{Scenario, run::{run, RunOptions}};
//! let path = std::path::Path::new("scenarios/coevolve.ron");
//! let (scenario, source) = Scenario::load(path).expect("valid scenario");
//! let outcome = run(&scenario, &source, path, &RunOptions::default()).expect("run");
//! print!("{}", outcome.summary.report());
//! ```

pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod diagnostics;
pub mod experiment;
pub mod linalg;
pub mod metrics;
pub mod models;
pub mod output;
pub mod plot;
pub mod plugin;
pub mod resolve;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod stability;
pub mod world;

pub use scenario::Scenario;
pub use world::Simulation;
