//! Few-shot examples: drawn from a pool with a fixed seed, never the item itself.
//!
//! Each item gets its own generator seeded from (seed, item index), so an item's examples do not
//! depend on `--limit`, on the batch size or on which other tasks run (lm-eval draws from one
//! generator per task, so its examples shift when the item order changes).

use rand::rngs::StdRng;
use rand::SeedableRng;

/// Default seed of the few-shot draw (lm-eval's `fewshot_random_seed`).
pub const DEFAULT_SEED: u64 = 1234;

/// `n` distinct indices of `candidates`, in draw order, skipping `exclude` (the item itself when
/// the pool is its own split).
pub fn draw(
    candidates: &[usize],
    exclude: Option<usize>,
    n: usize,
    seed: u64,
    item: usize,
) -> Vec<usize> {
    if n == 0 || candidates.is_empty() {
        return Vec::new();
    }
    // SplitMix64-style mixing: neighbouring items get unrelated streams.
    let mixed = (seed ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9)
        ^ (item as u64).wrapping_mul(0x94D0_49BB_1331_11EB);
    let mut rng = StdRng::seed_from_u64(mixed);
    let take = (n + 1).min(candidates.len());
    rand::seq::index::sample(&mut rng, candidates.len(), take)
        .into_iter()
        .map(|k| candidates[k])
        .filter(|&c| Some(c) != exclude)
        .take(n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_the_item_itself_and_reproducible() {
        let pool: Vec<usize> = (0..10).collect();
        for item in 0..10 {
            let a = draw(&pool, Some(item), 5, DEFAULT_SEED, item);
            assert_eq!(a.len(), 5);
            assert!(!a.contains(&item));
            let mut uniq = a.clone();
            uniq.sort();
            uniq.dedup();
            assert_eq!(uniq.len(), 5, "{a:?}");
            assert_eq!(a, draw(&pool, Some(item), 5, DEFAULT_SEED, item));
        }
        assert_ne!(
            draw(&pool, None, 5, DEFAULT_SEED, 0),
            draw(&pool, None, 5, DEFAULT_SEED + 1, 0)
        );
        // A pool smaller than asked gives what it has, still without the item.
        assert_eq!(draw(&[3, 4], Some(3), 5, 1, 3), vec![4]);
    }
}
