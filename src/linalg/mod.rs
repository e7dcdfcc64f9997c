//! Dense arithmetic with the same bits on every machine, below every module that computes:
//! the one run-time choice of instruction set (`widest_vectors!`),
//! the matrix product ([`gemm`]) of the blocked log-densities and of the metrics, the
//! symmetric eigendecomposition ([`eigen`]) of the factorisations, and Higham's [`gamma`] of
//! the rounding-error bounds.
//!
//! Why a layer of its own: the models' fast forms and the metrics' matrix roots both multiply
//! matrices, and a product whose last bits depend on the CPU (a BLAS, `matrixmultiply`, or
//! nalgebra's operators, which call it above 5 x 5) would make a run's numbers differ between
//! machines.

use std::sync::atomic::{AtomicU8, Ordering};

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
/// [`limit_vectors`] caps the choice (tests compare the variants on one machine).
///
/// `[wide, avx2, baseline] => T` gives each variant its own instantiation (a matrix product's
/// register tile, sized to the variant's registers): they must compute the same values.
macro_rules! widest_vectors {
    ($kernel:path, $($arg:ident: $ty:ty),* $(,)?) => {
        $crate::linalg::widest_vectors!([$kernel, $kernel, $kernel] => (), $($arg: $ty),*)
    };
    ($kernel:path => $ret:ty, $($arg:ident: $ty:ty),* $(,)?) => {
        $crate::linalg::widest_vectors!([$kernel, $kernel, $kernel] => $ret, $($arg: $ty),*)
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
            let limit = $crate::linalg::vector_limit();
            if limit >= $crate::linalg::Vectors::Avx512
                && std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU supports AVX-512F and FMA (checked just above), the only
                // requirement of a `target_feature(enable = "avx512f,fma")` function.
                return unsafe { avx512($($arg),*) };
            }
            if limit >= $crate::linalg::Vectors::Avx2 && std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                // SAFETY: as above, for AVX2 and FMA.
                return unsafe { avx2($($arg),*) };
            }
        }
        $baseline($($arg),*)
    }};
}
pub(crate) use widest_vectors;

/// The instruction-set variants of `widest_vectors!`, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Vectors {
    /// The target's baseline (SSE2 on x86-64, NEON on 64-bit ARM).
    Baseline = 0,
    /// AVX2 with FMA.
    Avx2 = 1,
    /// AVX-512F with FMA.
    Avx512 = 2,
}

static LIMIT: AtomicU8 = AtomicU8::new(Vectors::Avx512 as u8);

/// Caps the variant `widest_vectors!` picks (the CPU's widest by default), process-wide. For
/// tests that run a world under each variant on one machine and compare the bits; running
/// narrower changes only the speed.
pub fn limit_vectors(limit: Vectors) {
    LIMIT.store(limit as u8, Ordering::Relaxed);
}

/// The cap set by [`limit_vectors`].
pub fn vector_limit() -> Vectors {
    match LIMIT.load(Ordering::Relaxed) {
        0 => Vectors::Baseline,
        1 => Vectors::Avx2,
        _ => Vectors::Avx512,
    }
}

/// Higham's `gamma_n = n u / (1 - n u)`, `u = eps / 2` (*Accuracy and Stability of Numerical
/// Algorithms*, section 3.1): the relative error of a result that went through `n` roundings,
/// in the rounding-error bounds of the models' fast forms.
pub fn gamma(n: usize) -> f64 {
    let nu = n as f64 * f64::EPSILON / 2.0;
    nu / (1.0 - nu)
}

pub mod eigen;
pub mod gemm;
