//! ChaCha8 blocks sixteen at a time with AVX-512 (or twice eight with AVX2): the words a
//! [`Stream`](super::Stream) would return, for bulk consumers that need many of them at once
//! (the normal variates of a batch).
//!
//! `rand_chacha` makes four blocks per call in 128-bit lanes, with a shuffle between every half
//! round (about 2.4 ns per 64-bit word here). Here each of the sixteen state words is one
//! 512-bit register holding that word of sixteen blocks (the "vertical" layout): a round is
//! twelve lane-wise additions, xors and rotations with no shuffles, and one 16 x 16 transpose at
//! the end puts the words in stream order (AVX2: eight blocks per register, rotations as shift
//! pairs, two 4 x 4 transposes per half). The arithmetic is on integers, so the words are the
//! stream's own on every machine: Bernstein's ChaCha with eight rounds, a 64-bit block counter
//! in words 12 and 13 and the 64-bit stream number in words 14 and 15, as `rand_chacha` lays
//! them out (checked word for word against [`Stream`](super::Stream) in the tests below).

use std::arch::x86_64::*;

/// Blocks made per call.
pub(super) const BLOCKS: usize = 16;

/// 64-bit words per call: each block is sixteen 32-bit words, paired low word first as
/// `next_u64` pairs them.
pub(super) const WORDS64: usize = BLOCKS * 8;

/// The key and stream number of a ChaCha8 stream, enough to make any of its blocks.
#[derive(Debug, Clone)]
pub(super) struct ChaCha8Key {
    key: [u32; 8],
    stream: u64,
}

impl ChaCha8Key {
    /// The key of `rng`'s stream (its seed read as eight little-endian words) and its stream number.
    pub(super) fn of(rng: &super::Stream) -> Self {
        let seed = rng.get_seed();
        let key = std::array::from_fn(|j| u32::from_le_bytes([seed[4 * j], seed[4 * j + 1], seed[4 * j + 2], seed[4 * j + 3]]));
        ChaCha8Key { key, stream: rng.get_stream() }
    }

    /// Blocks `first .. first + 16` of the stream as 64-bit words, in stream order.
    #[target_feature(enable = "avx512f")]
    pub(super) fn blocks(&self, first: u64, out: &mut [u64; WORDS64]) {
        let input = self.input(first);
        let mut x = input;
        eight_rounds(&mut x, |x, a, b, c, d| quarter_round(x, a, b, c, d));
        for (v, s) in x.iter_mut().zip(&input) {
            *v = _mm512_add_epi32(*v, *s);
        }
        store_in_stream_order(&x, out);
    }

    /// The sixteen blocks' input states, word `j` of every block in register `j`.
    #[target_feature(enable = "avx512f")]
    fn input(&self, first: u64) -> [__m512i; 16] {
        const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];
        // The block counter is 64 bits: the carry into word 13 is part of the stream.
        let base = _mm512_set1_epi64(first as i64);
        let low = _mm512_add_epi64(base, _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
        let high = _mm512_add_epi64(base, _mm512_setr_epi64(8, 9, 10, 11, 12, 13, 14, 15));
        let halves =
            |a: __m512i, b: __m512i| _mm512_inserti64x4::<1>(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(a)), _mm512_cvtepi64_epi32(b));
        std::array::from_fn(|j| match j {
            0..4 => _mm512_set1_epi32(SIGMA[j] as i32),
            4..12 => _mm512_set1_epi32(self.key[j - 4] as i32),
            12 => halves(low, high),
            13 => halves(_mm512_srli_epi64::<32>(low), _mm512_srli_epi64::<32>(high)),
            14 => _mm512_set1_epi32(self.stream as u32 as i32),
            _ => _mm512_set1_epi32((self.stream >> 32) as u32 as i32),
        })
    }
}

impl ChaCha8Key {
    /// [`blocks`](Self::blocks) with AVX2: two passes of eight blocks, each state word in one
    /// 256-bit register, rotations as shift pairs (AVX2 has no rotate).
    #[target_feature(enable = "avx2")]
    pub(super) fn blocks_avx2(&self, first: u64, out: &mut [u64; WORDS64]) {
        for (half, out) in out.chunks_exact_mut(WORDS64 / 2).enumerate() {
            self.eight_blocks(first.wrapping_add(8 * half as u64), out);
        }
    }

    /// Blocks `first .. first + 8` into `out` (64 words), in stream order.
    #[target_feature(enable = "avx2")]
    fn eight_blocks(&self, first: u64, out: &mut [u64]) {
        const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];
        let counter = |l: usize| first.wrapping_add(l as u64);
        let low: [u32; 8] = std::array::from_fn(|l| counter(l) as u32);
        let high: [u32; 8] = std::array::from_fn(|l| (counter(l) >> 32) as u32);
        // SAFETY: eight 32-bit words each.
        let (low, high) = unsafe { (_mm256_loadu_si256(low.as_ptr().cast()), _mm256_loadu_si256(high.as_ptr().cast())) };
        let input: [__m256i; 16] = std::array::from_fn(|j| match j {
            0..4 => _mm256_set1_epi32(SIGMA[j] as i32),
            4..12 => _mm256_set1_epi32(self.key[j - 4] as i32),
            12 => low,
            13 => high,
            14 => _mm256_set1_epi32(self.stream as u32 as i32),
            _ => _mm256_set1_epi32((self.stream >> 32) as u32 as i32),
        });
        let mut x = input;
        eight_rounds(&mut x, |x, a, b, c, d| quarter_round_avx2(x, a, b, c, d));
        for (v, s) in x.iter_mut().zip(&input) {
            *v = _mm256_add_epi32(*v, *s);
        }
        // Interleaving words 2p and 2p + 1 gives 64-bit word p of blocks {0, 1, 4, 5} (low
        // halves of the 128-bit lanes) and {2, 3, 6, 7} (high halves); two 4 x 4 transposes
        // per group (words 0..4 and 4..8) put each block's words together.
        const GROUPS: [[usize; 4]; 2] = [[0, 1, 4, 5], [2, 3, 6, 7]];
        let low: [__m256i; 8] = std::array::from_fn(|p| _mm256_unpacklo_epi32(x[2 * p], x[2 * p + 1]));
        let high: [__m256i; 8] = std::array::from_fn(|p| _mm256_unpackhi_epi32(x[2 * p], x[2 * p + 1]));
        for (rows, blocks) in [low, high].iter().zip(GROUPS) {
            for quarter in 0..2 {
                let slots = transpose4(&rows[4 * quarter..4 * quarter + 4]);
                for (slot, &block) in slots.iter().zip(&blocks) {
                    // SAFETY: `block < 8` and `quarter < 2`: four words inside `out`'s 64.
                    unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(8 * block + 4 * quarter).cast(), *slot) };
                }
            }
        }
    }
}

#[inline]
#[target_feature(enable = "avx2")]
fn quarter_round_avx2(x: &mut [__m256i; 16], a: usize, b: usize, c: usize, d: usize) {
    #[inline]
    #[target_feature(enable = "avx2")]
    fn rotate<const L: i32, const R: i32>(v: __m256i) -> __m256i {
        _mm256_or_si256(_mm256_slli_epi32::<L>(v), _mm256_srli_epi32::<R>(v))
    }
    x[a] = _mm256_add_epi32(x[a], x[b]);
    x[d] = rotate::<16, 16>(_mm256_xor_si256(x[d], x[a]));
    x[c] = _mm256_add_epi32(x[c], x[d]);
    x[b] = rotate::<12, 20>(_mm256_xor_si256(x[b], x[c]));
    x[a] = _mm256_add_epi32(x[a], x[b]);
    x[d] = rotate::<8, 24>(_mm256_xor_si256(x[d], x[a]));
    x[c] = _mm256_add_epi32(x[c], x[d]);
    x[b] = rotate::<7, 25>(_mm256_xor_si256(x[b], x[c]));
}

/// The 4 x 4 transpose of 64-bit words: `result[j][p] = rows[p][j]`.
#[inline]
#[target_feature(enable = "avx2")]
fn transpose4(rows: &[__m256i]) -> [__m256i; 4] {
    let t0 = _mm256_unpacklo_epi64(rows[0], rows[1]);
    let t1 = _mm256_unpackhi_epi64(rows[0], rows[1]);
    let t2 = _mm256_unpacklo_epi64(rows[2], rows[3]);
    let t3 = _mm256_unpackhi_epi64(rows[2], rows[3]);
    [
        _mm256_permute2x128_si256::<0x20>(t0, t2),
        _mm256_permute2x128_si256::<0x20>(t1, t3),
        _mm256_permute2x128_si256::<0x31>(t0, t2),
        _mm256_permute2x128_si256::<0x31>(t1, t3),
    ]
}

/// ChaCha8's eight rounds (four column-then-diagonal double rounds) on the sixteen state words,
/// whatever register holds a word.
#[inline(always)]
fn eight_rounds<V>(x: &mut [V; 16], quarter_round: impl Fn(&mut [V; 16], usize, usize, usize, usize)) {
    for _ in 0..4 {
        quarter_round(x, 0, 4, 8, 12);
        quarter_round(x, 1, 5, 9, 13);
        quarter_round(x, 2, 6, 10, 14);
        quarter_round(x, 3, 7, 11, 15);
        quarter_round(x, 0, 5, 10, 15);
        quarter_round(x, 1, 6, 11, 12);
        quarter_round(x, 2, 7, 8, 13);
        quarter_round(x, 3, 4, 9, 14);
    }
}

#[inline]
#[target_feature(enable = "avx512f")]
fn quarter_round(x: &mut [__m512i; 16], a: usize, b: usize, c: usize, d: usize) {
    x[a] = _mm512_add_epi32(x[a], x[b]);
    x[d] = _mm512_rol_epi32::<16>(_mm512_xor_si512(x[d], x[a]));
    x[c] = _mm512_add_epi32(x[c], x[d]);
    x[b] = _mm512_rol_epi32::<12>(_mm512_xor_si512(x[b], x[c]));
    x[a] = _mm512_add_epi32(x[a], x[b]);
    x[d] = _mm512_rol_epi32::<8>(_mm512_xor_si512(x[d], x[a]));
    x[c] = _mm512_add_epi32(x[c], x[d]);
    x[b] = _mm512_rol_epi32::<7>(_mm512_xor_si512(x[b], x[c]));
}

/// Writes block `l`'s sixteen words (lane `l` of `x[0..16]`) to `out[8 l .. 8 l + 8]` as eight
/// 64-bit words, low word first.
///
/// Interleaving words `2p` and `2p + 1` makes the 64-bit word `p` of blocks
/// `{0, 1, 4, 5, 8, 9, 12, 13}` (from the low halves of each 128-bit lane) and of
/// `{2, 3, 6, 7, 10, 11, 14, 15}` (high halves); each group is then an 8 x 8 transpose of
/// 64-bit words, in three steps of pairs, quadruples and halves.
#[inline]
#[target_feature(enable = "avx512f")]
fn store_in_stream_order(x: &[__m512i; 16], out: &mut [u64; WORDS64]) {
    const GROUPS: [[usize; 8]; 2] = [[0, 1, 4, 5, 8, 9, 12, 13], [2, 3, 6, 7, 10, 11, 14, 15]];
    let low: [__m512i; 8] = std::array::from_fn(|p| _mm512_unpacklo_epi32(x[2 * p], x[2 * p + 1]));
    let high: [__m512i; 8] = std::array::from_fn(|p| _mm512_unpackhi_epi32(x[2 * p], x[2 * p + 1]));
    for (rows, blocks) in [low, high].iter().zip(GROUPS) {
        let slots = transpose8(rows);
        for (slot, &block) in slots.iter().zip(&blocks) {
            // SAFETY: `block < 16`, so the eight words at `8 block` are inside `out`.
            unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(8 * block).cast(), *slot) };
        }
    }
}

/// The 8 x 8 transpose of 64-bit words: `result[j][p] = rows[p][j]`.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose8(rows: &[__m512i; 8]) -> [__m512i; 8] {
    // Pairs: t[2q] = (r[2q][0], r[2q+1][0], r[2q][2], r[2q+1][2], ...), t[2q+1] the odd columns.
    let t: [__m512i; 8] = std::array::from_fn(|k| {
        let (a, b) = (rows[k & !1], rows[k | 1]);
        if k % 2 == 0 { _mm512_unpacklo_epi64(a, b) } else { _mm512_unpackhi_epi64(a, b) }
    });
    // Quadruples: columns c and c + 4 of rows 4h .. 4h + 4, for c = 0..4.
    let first = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    let second = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    let quad = |h: usize, c: usize| {
        let (a, b) = (t[4 * h + (c & 1)], t[4 * h + 2 + (c & 1)]);
        if c < 2 { _mm512_permutex2var_epi64(a, first, b) } else { _mm512_permutex2var_epi64(a, second, b) }
    };
    let u: [__m512i; 4] = std::array::from_fn(|c| quad(0, c));
    let v: [__m512i; 4] = std::array::from_fn(|c| quad(1, c));
    // Halves: column j from rows 0..4 (u) and 4..8 (v).
    let lower = _mm512_setr_epi64(0, 1, 2, 3, 8, 9, 10, 11);
    let upper = _mm512_setr_epi64(4, 5, 6, 7, 12, 13, 14, 15);
    std::array::from_fn(|j| {
        if j < 4 { _mm512_permutex2var_epi64(u[j], lower, v[j]) } else { _mm512_permutex2var_epi64(u[j - 4], upper, v[j - 4]) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::entity_stream;
    use rand::Rng;

    #[test]
    fn blocks_are_the_streams_words() {
        if !(std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx2")) {
            eprintln!("skipped: this CPU lacks AVX-512F or AVX2");
            return;
        }
        for (name, stream, start_block) in [("a", 0u64, 0u64), ("b", 7, 3), ("c", u64::MAX, (1 << 32) - 5), ("d", 1 << 40, u64::MAX - 3)] {
            let mut rng = entity_stream(11, 2, name);
            rng.set_stream(stream);
            rng.set_word_pos(u128::from(start_block) * 16);
            let key = ChaCha8Key::of(&rng);
            let mut out = [0u64; WORDS64];
            // SAFETY: the CPU has AVX-512F (checked above).
            unsafe { key.blocks(start_block, &mut out) };
            let mut avx2 = [0u64; WORDS64];
            // SAFETY: the CPU has AVX2 (checked above).
            unsafe { key.blocks_avx2(start_block, &mut avx2) };
            for (k, (w, w2)) in out.iter().zip(&avx2).enumerate() {
                let expected = rng.next_u64();
                assert_eq!(*w, expected, "{name}: word {k} of blocks from {start_block} (AVX-512)");
                assert_eq!(*w2, expected, "{name}: word {k} of blocks from {start_block} (AVX2)");
            }
        }
    }
}
