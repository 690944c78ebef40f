//! Exact nearest-neighbour search by cosine similarity, shared by every
//! in-process [`super::VectorStore`].

use super::{Neighbour, VectorId};

/// Cosine similarity of `a` and `b`, in `[-1, 1]`; 0 if either is all zeros.
/// Computed in `f64`, so squares of large components do not overflow.
pub(crate) fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut norm_a, mut norm_b) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        norm_a += x * x;
        norm_b += y * y;
    }
    if norm_a == 0.0 || norm_b == 0.0 {
        return 0.0;
    }
    let score = (dot / (norm_a.sqrt() * norm_b.sqrt())).clamp(-1.0, 1.0) as f32;
    // One zero: -0.0 would sort below 0.0 and break ties by id.
    if score == 0.0 { 0.0 } else { score }
}

/// The `k` entries most similar to `query`, nearest first, ties by ascending id.
pub(crate) fn nearest<'a>(
    entries: impl Iterator<Item = (VectorId, &'a [f32])>,
    query: &[f32],
    k: usize,
) -> Vec<Neighbour> {
    if k == 0 {
        return Vec::new();
    }
    let mut scored: Vec<Neighbour> = entries
        .map(|(id, vector)| Neighbour {
            id,
            score: cosine(query, vector),
        })
        .collect();
    let order = |a: &Neighbour, b: &Neighbour| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id));
    if scored.len() > k {
        scored.select_nth_unstable_by(k - 1, order);
        scored.truncate(k);
    }
    scored.sort_unstable_by(order);
    scored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_known_pairs() {
        assert_eq!(cosine(&[1.0, 0.0], &[2.0, 0.0]), 1.0);
        assert_eq!(cosine(&[1.0, 0.0], &[-3.0, 0.0]), -1.0);
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 5.0]), 0.0);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
        assert_eq!(cosine(&[-1.0, 0.0], &[0.0, 1.0]).to_bits(), 0.0f32.to_bits());
        assert_eq!(cosine(&[3e38, 3e38], &[3e38, 3e38]), 1.0, "no overflow");
    }

    #[test]
    fn nearest_keeps_the_best_k_in_order() {
        let vectors: Vec<(VectorId, Vec<f32>)> = vec![
            (5, vec![0.0, 1.0]),
            (1, vec![1.0, 0.0]),
            (3, vec![1.0, 0.0]),
            (2, vec![-1.0, 0.0]),
            (4, vec![1.0, 1.0]),
        ];
        let found = nearest(vectors.iter().map(|(id, v)| (*id, v.as_slice())), &[1.0, 0.0], 3);
        let ids: Vec<VectorId> = found.iter().map(|n| n.id).collect();
        assert_eq!(ids, vec![1, 3, 4]);
    }
}
