//! The mathematics of the ecosystem, free of any ECS machinery.
//!
//! - [`text`]: the categorical text model, temperature, multinomial batches and the
//!   soft-posterior captioner refit (docs/model.md sections 1-4).
//! - [`gaussian`]: the conditional Gaussian image model, its one regularised
//!   factorisation, sampling, log-densities and per-text maximum-likelihood refit.
//! - [`gemm`]: the matrix product of the blocked log-densities, each entry one fixed chain of
//!   fused multiply-adds, so the same bits on every machine.
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

/// Runs `kernel(args)` (an `#[inline(always)]` function, so compiled into each variant; write
/// `kernel => T` when it returns a `T`) with the widest vectors the CPU offers: AVX-512F, else
/// AVX2, each with FMA, else the baseline. Returns from the enclosing function. The one place where
/// coevo picks an instruction set at run time.
///
/// Every variant gives the same bits, because the kernels use IEEE operations only: plain
/// additions and multiplications, and fused multiply-adds written as [`f64::mul_add`], which
/// is exactly rounded on every machine (one instruction where the variant has FMA; libm's
/// correctly rounded `fma` otherwise, slower but the same value). Rust never fuses `a * b + c`
/// on its own. Wider vectors only run more independent lanes at once.
///
/// `[wide, avx2, baseline] => T` gives each variant its own instantiation (a matrix product's
/// register tile, sized to the variant's registers): they must compute the same values.
macro_rules! widest_vectors {
    ($kernel:path, $($arg:ident: $ty:ty),* $(,)?) => {
        $crate::models::widest_vectors!([$kernel, $kernel, $kernel] => (), $($arg: $ty),*)
    };
    ($kernel:path => $ret:ty, $($arg:ident: $ty:ty),* $(,)?) => {
        $crate::models::widest_vectors!([$kernel, $kernel, $kernel] => $ret, $($arg: $ty),*)
    };
    ([$wide:path, $avx2:path, $baseline:path] => $ret:ty, $($arg:ident: $ty:ty),* $(,)?) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,fma")]
            fn avx512($($arg: $ty),*) -> $ret {
                $wide($($arg),*)
            }
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) -> $ret {
                $avx2($($arg),*)
            }
            if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU supports AVX-512F and FMA (checked just above), the only
                // requirement of a `target_feature(enable = "avx512f,fma")` function.
                return unsafe { avx512($($arg),*) };
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                // SAFETY: as above, for AVX2 and FMA.
                return unsafe { avx2($($arg),*) };
            }
        }
        $baseline($($arg),*)
    }};
}
pub(crate) use widest_vectors;

pub mod batch;
pub mod conditional;
pub mod exp;
pub mod gaussian;
pub mod gemm;
pub mod hosted;
pub mod linalg;
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
