//! Random streams: one portable, named generator per entity.
//!
//! Every entity draws from its own ChaCha8 stream whose seed is derived from
//! `(scenario seed, replicate index, entity name)`. Adding an entity therefore
//! never changes the numbers another entity sees, and no result depends on
//! thread count or on the order in which worlds are scheduled.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

#[cfg(target_arch = "x86_64")]
mod chacha;
mod normal;

pub use normal::standard_normals;

/// The generator every simulation stream uses.
pub type Stream = ChaCha8Rng;

/// Human-readable description of the generator, recorded in the manifest.
pub const RNG_ALGORITHM: &str =
    "ChaCha8 (rand_chacha 0.10); per-entity seed = SHA-256(\"coevo-stream-v1\" || seed u64 LE || replicate u64 LE || entity name UTF-8)";

/// Derives the stream of entity `name` in replicate `replicate` of a scenario seeded with `seed`.
pub fn entity_stream(seed: u64, replicate: u64, name: &str) -> Stream {
    let mut h = Sha256::new();
    h.update(b"coevo-stream-v1");
    h.update(seed.to_le_bytes());
    h.update(replicate.to_le_bytes());
    h.update(name.as_bytes());
    Stream::from_seed(h.finalize().into())
}

/// Derives a stream that belongs to no entity and no replicate: what a sweep's sampled design
/// (`purpose` `"sweep design"`) or an analysis's bootstrap draws. Its key has its own domain
/// prefix, so it can never coincide with an entity's stream and drawing from it never shifts
/// the runs' numbers.
pub fn named_stream(purpose: &str, seed: u64) -> Stream {
    let mut h = Sha256::new();
    h.update(b"coevo-named-stream-v1");
    h.update(seed.to_le_bytes());
    h.update(purpose.as_bytes());
    Stream::from_seed(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn streams_depend_on_every_key_part() {
        let base = entity_stream(1, 0, "a").next_u64();
        assert_eq!(base, entity_stream(1, 0, "a").next_u64());
        assert_ne!(base, entity_stream(2, 0, "a").next_u64());
        assert_ne!(base, entity_stream(1, 1, "a").next_u64());
        assert_ne!(base, entity_stream(1, 0, "b").next_u64());
        assert_eq!(named_stream("x", 1).next_u64(), named_stream("x", 1).next_u64());
        assert_ne!(named_stream("x", 1).next_u64(), named_stream("y", 1).next_u64());
        assert_ne!(named_stream("x", 1).next_u64(), named_stream("x", 2).next_u64());
    }

    /// The bulk sampler against the one-at-a-time loop it replaces, under each instruction-set
    /// variant this CPU has: every value bit for bit and the next word after, for lengths
    /// around the buffer's 128 words and at stream positions odd, mid-block and just before the
    /// 32-bit carry of the block counter.
    #[test]
    fn bulk_normals_are_the_one_at_a_time_draws() {
        use crate::linalg::{Vectors, limit_vectors};
        for variant in [Vectors::Baseline, Vectors::Avx2, Vectors::Avx512] {
            // Process-wide, but every variant gives the same values: concurrent tests only run
            // slower or faster.
            limit_vectors(variant);
            bulk_normals_match(variant);
        }
        limit_vectors(Vectors::Avx512);
    }

    fn bulk_normals_match(variant: crate::linalg::Vectors) {
        use rand_distr::{Distribution, StandardNormal};
        let mut slow_path_words = 0u128;
        for (case, len) in [0usize, 1, 63, 64, 65, 127, 128, 129, 1000, 200_000].into_iter().enumerate() {
            for start in 0..4 {
                let mut bulk = entity_stream(5, case as u64, "normals");
                match start {
                    0 => {}
                    1 => {
                        bulk.next_u32();
                    }
                    2 => {
                        (0..3).for_each(|_| {
                            bulk.next_u64();
                        });
                    }
                    _ => bulk.set_word_pos(((1u128 << 32) - 1) * 16 + 6),
                }
                let mut plain = bulk.clone();
                let from = plain.get_word_pos();
                let expected: Vec<f64> = (0..len).map(|_| StandardNormal.sample(&mut plain)).collect();
                slow_path_words += (plain.get_word_pos() - from) / 2 - len as u128;
                let mut got = vec![f64::NAN; len];
                standard_normals(&mut bulk, &mut got);
                for (k, (g, e)) in got.iter().zip(&expected).enumerate() {
                    assert_eq!(g.to_bits(), e.to_bits(), "{variant:?}, length {len}, start {start}: draw {k}");
                }
                assert_eq!(bulk.get_word_pos(), plain.get_word_pos(), "{variant:?}, length {len}, start {start}: end position");
                assert_eq!(bulk.next_u64(), plain.next_u64(), "{variant:?}, length {len}, start {start}: next word");
            }
        }
        // The comparison covers the ziggurat's slow paths (wedges and tail), not only the
        // accepted fast path: about 1% of 800,000 draws take extra words.
        assert!(slow_path_words > 1000, "only {slow_path_words} extra words were drawn");
    }
}
