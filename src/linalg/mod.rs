//! Dense arithmetic with the same bits on every machine, below every module that computes:
//! the one run-time choice of instruction set (`widest_vectors!`),
//! the matrix product ([`gemm`]) of the blocked log-densities and of the metrics, and the
//! symmetric eigendecomposition ([`eigen`]) of the factorisations.
//!
//! Why a layer of its own: the models' fast forms and the metrics' matrix roots both multiply
//! matrices, and a product whose last bits depend on the CPU (a BLAS, `matrixmultiply`, or
//! nalgebra's operators, which call it above 5 x 5) would make a run's numbers differ between
//! machines.

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

pub mod eigen;
pub mod gemm;
