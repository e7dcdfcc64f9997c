//! # coevo-plugin-multi
//!
//! An example coevo plugin library that carries **two** models, to show that one library can
//! export several (the host picks one by name; `create`'s `model_index` indexes the table's
//! model list):
//!
//! - [`laplace::LaplaceMotion`] (`laplace_motion`, modality `video`): per text, independent
//!   Laplace distributions over a `dim`-dimensional motion vector, fitted by the Laplace MLE
//!   (coordinate-wise median, mean absolute deviation from it).
//! - [`tags::TagSpectrum`] (`tag_spectrum`, modality `tags`): per text, a categorical
//!   distribution over `tags` tags; each sample is the count vector of `per_item` tags drawn from
//!   it (a multinomial), fitted by the categorical MLE.
//!
//! Both follow the SDK conventions: the first two metrics are `diversity` and `fidelity`.

pub mod laplace;
pub mod tags;

coevo_plugin_api::export_plugin! {
    name: "coevo-multi",
    version: env!("CARGO_PKG_VERSION"),
    models: [laplace::LaplaceMotion, tags::TagSpectrum],
}

#[cfg(test)]
mod tests;
