//! The mathematics of the ecosystem, free of any ECS machinery.
//!
//! - [`text`]: the categorical text model, temperature, multinomial batches and the
//!   soft-posterior captioner refit (docs/model.md sections 1-4).
//! - [`gaussian`]: the conditional Gaussian image model, its one regularised
//!   factorisation, sampling, log-densities and per-text maximum-likelihood refit.
//! - [`exp`]: the posterior's `exp`, identical to the bit on every machine and vectorised over
//!   slices.
//! - [`conditional`]: the trait every conditional model (built-in or plugin) meets.
//! - [`posterior`]: the blocked, screened caption posterior of the text phase (live texts
//!   only, exact recomputation where the fast log-densities' error bound is too wide, parallel
//!   over blocks with a fixed reduction order).
//! - [`hosted`]: conditional models supplied in process by the program running coevo.
//! - [`policy`]: the data policies of docs/model.md section 6.
//! - [`schedule`]: parameters that change over rounds (docs/model.md section 12).
//! - [`batch`]: caption-grouped batches: pooling and the checks on what a model returns.

pub mod batch;
pub mod conditional;
pub mod exp;
pub mod gaussian;
pub mod hosted;
pub mod policy;
pub mod posterior;
pub mod schedule;
pub mod text;

pub use conditional::{ConditionalModel, ModelError, PerTextMetrics};
pub use gaussian::{Allocation, Estimator, GaussianImageModel, Structure, StructuredCovariance};
pub use hosted::{HostedContext, HostedFactory, HostedModels};
pub use policy::DataPolicy;
pub use schedule::{Schedule, ScheduleValue};
pub use text::TextModel;
