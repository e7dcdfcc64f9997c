//! Standard normal variates in bulk: draw for draw the values `rand_distr`'s `StandardNormal`
//! gives from a [`Stream`], and the stream left exactly where those draws leave it.
//!
//! The generator contract fixes every variate a run draws (the manifest's `rng`: ChaCha8 and
//! `rand_distr` 0.6's ziggurat), so a faster sampler may change only how the same numbers are
//! found. The ziggurat's fast path turns one 64-bit word into a variate: layer `i` is the low
//! byte, `u` in `[-1, 1)` comes from the top 52 bits, and `x = u X[i]` is accepted when
//! `|x| < X[i + 1]` (about 99% of words). That depends on the word alone, so here the words of
//! sixteen ChaCha blocks are made at once ([`super::chacha`]) and decoded in one vector pass,
//! and the draws are read off in stream order: a run of accepted words is copied; at a rejected
//! word, `rand_distr`'s own `StandardNormal` samples from a generator that reads this buffer
//! from that word on (its wedge and tail tests take further words, which the following draws
//! then skip, as in the one-at-a-time loop). At the end the stream is moved to the word after
//! the last one used. `rng::tests` checks values and end position against the plain loop.
//!
//! In the paper's round, drawing the batch's normals one at a time (the buffered ChaCha and the
//! ziggurat's branches) was half the time.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

#[cfg(target_arch = "x86_64")]
use super::chacha::{BLOCKS, ChaCha8Key, WORDS64};

use rand_distr::{Distribution, StandardNormal};

use super::Stream;
use crate::linalg::widest_vectors;

/// Below this many variates the plain loop is as fast (a bulk call makes at least sixteen
/// blocks and repositions the stream).
#[cfg(target_arch = "x86_64")]
const MIN_BULK: usize = 64;

/// Fills `out` with standard normal variates from `rng`: the values, and the state `rng` is
/// left in, of `for v in out { *v = StandardNormal.sample(rng) }`. Bulk on x86-64 CPUs with
/// AVX-512 or AVX2; elsewhere that loop itself.
pub fn standard_normals(rng: &mut Stream, out: &mut [f64]) {
    widest_vectors!([bulk_avx512, bulk_avx2, one_at_a_time] => (), rng: &mut Stream, out: &mut [f64])
}

#[inline(always)]
fn one_at_a_time(rng: &mut Stream, out: &mut [f64]) {
    for v in out.iter_mut() {
        *v = StandardNormal.sample(rng);
    }
}

/// `widest_vectors!`' AVX-512 variant of [`standard_normals`]. A `target_feature` function:
/// the compiler lets only code built for AVX-512F call it without `unsafe`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn bulk_avx512(rng: &mut Stream, out: &mut [f64]) {
    match bulk_position(rng, out) {
        Some(position) => drain(rng, Words::at_avx512(rng, position), out),
        None => one_at_a_time(rng, out),
    }
}

/// `widest_vectors!`' AVX2 variant of [`standard_normals`], as [`bulk_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn bulk_avx2(rng: &mut Stream, out: &mut [f64]) {
    match bulk_position(rng, out) {
        Some(position) => drain(rng, Words::at_avx2(rng, position), out),
        None => one_at_a_time(rng, out),
    }
}

/// The stream position a bulk draw of `out` starts at, or `None` for the plain loop: an odd
/// position (a 32-bit draw came before) would pair the words across the buffer's 64-bit lanes,
/// and short requests are as fast one at a time.
#[cfg(target_arch = "x86_64")]
fn bulk_position(rng: &Stream, out: &[f64]) -> Option<u128> {
    let position = rng.get_word_pos();
    (out.len() >= MIN_BULK && position.is_multiple_of(2)).then_some(position)
}

/// Fills `out` from `words` in stream order and moves `rng` past the words used.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn drain(rng: &mut Stream, mut words: Words, out: &mut [f64]) {
    let mut filled = 0;
    while filled < out.len() {
        let run = words.accepted_run().min(out.len() - filled);
        out[filled..filled + run].copy_from_slice(&words.fast[words.at..words.at + run]);
        words.at += run;
        filled += run;
        if filled == out.len() {
            break;
        }
        if words.at == WORDS64 {
            words.refill();
            continue;
        }
        // `words.at` is a rejected word: the ziggurat reads it again, rejects it again, and
        // goes on to its slow path through `Words`' own `next_u64`.
        out[filled] = StandardNormal.sample(&mut words);
        filled += 1;
    }
    rng.set_word_pos(words.position());
}

/// The instruction set a [`Words`] makes and decodes its blocks with.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
enum Kernels {
    Avx512,
    Avx2,
}

/// A stretch of a stream's 64-bit words with their fast-path variates, and a generator over it.
/// Made only on a CPU with the instruction set of its `kernels` ([`Words::at_avx512`] and
/// [`Words::at_avx2`] are the constructors, each callable only where its features are).
#[cfg(target_arch = "x86_64")]
struct Words {
    kernels: Kernels,
    key: ChaCha8Key,
    /// Stream position (in 32-bit words) of `words[0]`.
    base: u128,
    words: [u64; WORDS64],
    /// `words[k]`'s fast-path value `u X[i]`, meaningful where `accepted` has bit `k`.
    fast: [f64; WORDS64],
    accepted: u128,
    /// The next word to use.
    at: usize,
}

#[cfg(target_arch = "x86_64")]
impl Words {
    /// The sixteen blocks around the even stream position `position`, the next word the one
    /// there, made with AVX-512.
    #[target_feature(enable = "avx512f")]
    fn at_avx512(rng: &Stream, position: u128) -> Self {
        // SAFETY: this function runs on a CPU with AVX-512F.
        unsafe { Self::at(rng, position, Kernels::Avx512) }
    }

    /// [`at_avx512`](Self::at_avx512) with AVX2.
    #[target_feature(enable = "avx2")]
    fn at_avx2(rng: &Stream, position: u128) -> Self {
        // SAFETY: this function runs on a CPU with AVX2.
        unsafe { Self::at(rng, position, Kernels::Avx2) }
    }

    /// # Safety
    /// The CPU must have the instruction set of `kernels`.
    unsafe fn at(rng: &Stream, position: u128, kernels: Kernels) -> Self {
        let block_words = 16;
        let offset = (position % block_words) as usize;
        let mut words = Words {
            kernels,
            key: ChaCha8Key::of(rng),
            base: position - offset as u128,
            words: [0; WORDS64],
            fast: [0.0; WORDS64],
            accepted: 0,
            at: offset / 2,
        };
        words.make();
        words
    }

    /// The next sixteen blocks.
    fn refill(&mut self) {
        self.base += (BLOCKS * 16) as u128;
        self.at = 0;
        self.make();
    }

    fn make(&mut self) {
        // The block counter is the position's low 64 bits of blocks, as `set_word_pos` takes it.
        let first = (self.base / 16) as u64;
        // SAFETY: a `Words` is made only on a CPU with the instruction set of its `kernels`
        // (its constructors).
        unsafe {
            match self.kernels {
                Kernels::Avx512 => {
                    self.key.blocks(first, &mut self.words);
                    self.accepted = fast_path(&self.words, &mut self.fast);
                }
                Kernels::Avx2 => {
                    self.key.blocks_avx2(first, &mut self.words);
                    self.accepted = fast_path_avx2(&self.words, &mut self.fast);
                }
            }
        }
    }

    /// How many words from `at` on are accepted by the fast path, in a row.
    fn accepted_run(&self) -> usize {
        (self.accepted.checked_shr(self.at as u32).unwrap_or(0).trailing_ones() as usize).min(WORDS64 - self.at)
    }

    /// The stream position after the words used.
    fn position(&self) -> u128 {
        self.base + 2 * self.at as u128
    }
}

#[cfg(target_arch = "x86_64")]
impl rand::TryRng for Words {
    type Error = std::convert::Infallible;

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        if self.at == WORDS64 {
            self.refill();
        }
        self.at += 1;
        Ok(self.words[self.at - 1])
    }

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        unreachable!("rand_distr's StandardNormal draws 64-bit words only")
    }

    fn try_fill_bytes(&mut self, _dst: &mut [u8]) -> Result<(), Self::Error> {
        unreachable!("rand_distr's StandardNormal draws 64-bit words only")
    }
}

/// Writes every word's fast-path value `x = u X[i]` into `fast` and returns the mask of the
/// accepted ones (`|x| < X[i + 1]`): `rand_distr`'s operations, eight words per instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fast_path(words: &[u64; WORDS64], fast: &mut [f64; WORDS64]) -> u128 {
    let layer = _mm512_set1_epi64(0xff);
    // `rand_distr`'s symmetric case: the top 52 bits as a float in [2, 4), minus 3.
    let exponent = _mm512_set1_epi64(0x4000_0000_0000_0000);
    let three = _mm512_set1_pd(3.0);
    let mut accepted = 0u128;
    for (c, (w8, f8)) in words.chunks_exact(8).zip(fast.chunks_exact_mut(8)).enumerate() {
        // SAFETY: `w8` holds eight words; the layer indices are at most 255, so `i` and `i + 1`
        // are inside the 257 entries of the table.
        let (w, edge, next) = unsafe {
            let w = _mm512_loadu_si512(w8.as_ptr().cast());
            let i = _mm512_and_si512(w, layer);
            (w, _mm512_i64gather_pd::<8>(i, ZIG_NORM_X.as_ptr()), _mm512_i64gather_pd::<8>(i, ZIG_NORM_X.as_ptr().add(1)))
        };
        let u = _mm512_sub_pd(_mm512_castsi512_pd(_mm512_or_si512(_mm512_srli_epi64::<12>(w), exponent)), three);
        let x = _mm512_mul_pd(u, edge);
        let inside = _mm512_cmp_pd_mask::<_CMP_LT_OQ>(_mm512_abs_pd(x), next);
        // SAFETY: `f8` holds eight numbers.
        unsafe { _mm512_storeu_pd(f8.as_mut_ptr(), x) };
        accepted |= u128::from(inside) << (8 * c);
    }
    accepted
}

/// [`fast_path`] with AVX2, four words per instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn fast_path_avx2(words: &[u64; WORDS64], fast: &mut [f64; WORDS64]) -> u128 {
    let layer = _mm256_set1_epi64x(0xff);
    let exponent = _mm256_set1_epi64x(0x4000_0000_0000_0000);
    let three = _mm256_set1_pd(3.0);
    let magnitude = _mm256_castsi256_pd(_mm256_set1_epi64x(i64::MAX));
    let mut accepted = 0u128;
    for (c, (w4, f4)) in words.chunks_exact(4).zip(fast.chunks_exact_mut(4)).enumerate() {
        // SAFETY: as in `fast_path`, for four words.
        let (w, edge, next) = unsafe {
            let w = _mm256_loadu_si256(w4.as_ptr().cast());
            let i = _mm256_and_si256(w, layer);
            (w, _mm256_i64gather_pd::<8>(ZIG_NORM_X.as_ptr(), i), _mm256_i64gather_pd::<8>(ZIG_NORM_X.as_ptr().add(1), i))
        };
        let u = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(_mm256_srli_epi64::<12>(w), exponent)), three);
        let x = _mm256_mul_pd(u, edge);
        let inside = _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_LT_OQ>(_mm256_and_pd(x, magnitude), next)) as u128;
        // SAFETY: `f4` holds four numbers.
        unsafe { _mm256_storeu_pd(f4.as_mut_ptr(), x) };
        accepted |= inside << (4 * c);
    }
    accepted
}

/// The layer edges of `rand_distr` 0.6's normal ziggurat (`ziggurat_tables::ZIG_NORM_X`, which
/// the crate does not export), copied value for value: the fast path must multiply by the same
/// numbers. The tests compare millions of draws, every layer's among them, with `rand_distr`'s.
#[cfg(target_arch = "x86_64")]
#[rustfmt::skip]
#[allow(clippy::excessive_precision)] // the source's digits, so the copy can be compared with it
static ZIG_NORM_X: [f64; 257] =
    [3.910757959537090045, 3.654152885361008796, 3.449278298560964462, 3.320244733839166074,
     3.224575052047029100, 3.147889289517149969, 3.083526132001233044, 3.027837791768635434,
     2.978603279880844834, 2.934366867207854224, 2.894121053612348060, 2.857138730872132548,
     2.822877396825325125, 2.790921174000785765, 2.760944005278822555, 2.732685359042827056,
     2.705933656121858100, 2.680514643284522158, 2.656283037575502437, 2.633116393630324570,
     2.610910518487548515, 2.589575986706995181, 2.569035452680536569, 2.549221550323460761,
     2.530075232158516929, 2.511544441625342294, 2.493583041269680667, 2.476149939669143318,
     2.459208374333311298, 2.442725318198956774, 2.426670984935725972, 2.411018413899685520,
     2.395743119780480601, 2.380822795170626005, 2.366237056715818632, 2.351967227377659952,
     2.337996148795031370, 2.324308018869623016, 2.310888250599850036, 2.297723348901329565,
     2.284800802722946056, 2.272108990226823888, 2.259637095172217780, 2.247375032945807760,
     2.235313384928327984, 2.223443340090905718, 2.211756642882544366, 2.200245546609647995,
     2.188902771624720689, 2.177721467738641614, 2.166695180352645966, 2.155817819875063268,
     2.145083634046203613, 2.134487182844320152, 2.124023315687815661, 2.113687150684933957,
     2.103474055713146829, 2.093379631137050279, 2.083399693996551783, 2.073530263516978778,
     2.063767547809956415, 2.054107931648864849, 2.044547965215732788, 2.035084353727808715,
     2.025713947862032960, 2.016433734904371722, 2.007240830558684852, 1.998132471356564244,
     1.989106007615571325, 1.980158896898598364, 1.971288697931769640, 1.962493064942461896,
     1.953769742382734043, 1.945116560006753925, 1.936531428273758904, 1.928012334050718257,
     1.919557336591228847, 1.911164563769282232, 1.902832208548446369, 1.894558525668710081,
     1.886341828534776388, 1.878180486290977669, 1.870072921069236838, 1.862017605397632281,
     1.854013059758148119, 1.846057850283119750, 1.838150586580728607, 1.830289919680666566,
     1.822474540091783224, 1.814703175964167636, 1.806974591348693426, 1.799287584547580199,
     1.791640986550010028, 1.784033659547276329, 1.776464495522344977, 1.768932414909077933,
     1.761436365316706665, 1.753975320315455111, 1.746548278279492994, 1.739154261283669012,
     1.731792314050707216, 1.724461502945775715, 1.717160915015540690, 1.709889657069006086,
     1.702646854797613907, 1.695431651932238548, 1.688243209434858727, 1.681080704722823338,
     1.673943330923760353, 1.666830296159286684, 1.659740822855789499, 1.652674147080648526,
     1.645629517902360339, 1.638606196773111146, 1.631603456932422036, 1.624620582830568427,
     1.617656869570534228, 1.610711622367333673, 1.603784156023583041, 1.596873794420261339,
     1.589979870021648534, 1.583101723393471438, 1.576238702733332886, 1.569390163412534456,
     1.562555467528439657, 1.555733983466554893, 1.548925085471535512, 1.542128153226347553,
     1.535342571438843118, 1.528567729435024614, 1.521803020758293101, 1.515047842773992404,
     1.508301596278571965, 1.501563685112706548, 1.494833515777718391, 1.488110497054654369,
     1.481394039625375747, 1.474683555695025516, 1.467978458615230908, 1.461278162507407830,
     1.454582081885523293, 1.447889631277669675, 1.441200224845798017, 1.434513276002946425,
     1.427828197027290358, 1.421144398672323117, 1.414461289772464658, 1.407778276843371534,
     1.401094763676202559, 1.394410150925071257, 1.387723835686884621, 1.381035211072741964,
     1.374343665770030531, 1.367648583594317957, 1.360949343030101844, 1.354245316759430606,
     1.347535871177359290, 1.340820365893152122, 1.334098153216083604, 1.327368577624624679,
     1.320630975217730096, 1.313884673146868964, 1.307128989027353860, 1.300363230327433728,
     1.293586693733517645, 1.286798664489786415, 1.279998415710333237, 1.273185207661843732,
     1.266358287014688333, 1.259516886060144225, 1.252660221891297887, 1.245787495544997903,
     1.238897891102027415, 1.231990574742445110, 1.225064693752808020, 1.218119375481726552,
     1.211153726239911244, 1.204166830140560140, 1.197157747875585931, 1.190125515422801650,
     1.183069142678760732, 1.175987612011489825, 1.168879876726833800, 1.161744859441574240,
     1.154581450355851802, 1.147388505416733873, 1.140164844363995789, 1.132909248648336975,
     1.125620459211294389, 1.118297174115062909, 1.110938046009249502, 1.103541679420268151,
     1.096106627847603487, 1.088631390649514197, 1.081114409698889389, 1.073554065787871714,
     1.065948674757506653, 1.058296483326006454, 1.050595664586207123, 1.042844313139370538,
     1.035040439828605274, 1.027181966030751292, 1.019266717460529215, 1.011292417434978441,
     1.003256679539591412, 0.995156999629943084, 0.986990747093846266, 0.978755155288937750,
     0.970447311058864615, 0.962064143217605250, 0.953602409875572654, 0.945058684462571130,
     0.936429340280896860, 0.927710533396234771, 0.918898183643734989, 0.909987953490768997,
     0.900975224455174528, 0.891855070726792376, 0.882622229578910122, 0.873271068082494550,
     0.863795545546826915, 0.854189171001560554, 0.844444954902423661, 0.834555354079518752,
     0.824512208745288633, 0.814306670128064347, 0.803929116982664893, 0.793369058833152785,
     0.782615023299588763, 0.771654424216739354, 0.760473406422083165, 0.749056662009581653,
     0.737387211425838629, 0.725446140901303549, 0.713212285182022732, 0.700661841097584448,
     0.687767892786257717, 0.674499822827436479, 0.660822574234205984, 0.646695714884388928,
     0.632072236375024632, 0.616896989996235545, 0.601104617743940417, 0.584616766093722262,
     0.567338257040473026, 0.549151702313026790, 0.529909720646495108, 0.509423329585933393,
     0.487443966121754335, 0.463634336771763245, 0.437518402186662658, 0.408389134588000746,
     0.375121332850465727, 0.335737519180459465, 0.286174591747260509, 0.215241895913273806,
     0.000000000000000000];
