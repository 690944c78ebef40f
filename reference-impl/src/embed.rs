//! Turning a document into what the index keeps: a summary, chunks, and an
//! embedding vector.
//!
//! [`HashingEmbedder`] is a deterministic, model-free embedder (feature
//! hashing of lower-cased word tokens into a fixed number of signed buckets,
//! L2-normalised): real vectors whose cosine similarity tracks shared words,
//! with no model to download.

use tearline_sim_fs::sim::trace::fnv1a;

/// Turns text into a fixed-dimension vector.
pub trait Embedder: Send + Sync + std::fmt::Debug {
    /// The number of components of every vector.
    fn dimension(&self) -> usize;

    /// The vector for `text` (all zeros for text without words).
    fn embed(&self, text: &str) -> Vec<f32>;
}

/// Feature hashing of word tokens. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashingEmbedder {
    dimension: usize,
}

impl HashingEmbedder {
    /// The dimension the reference store uses.
    pub const DEFAULT_DIMENSION: usize = 64;

    /// An embedder into `dimension` buckets (at least 1).
    pub fn new(dimension: usize) -> Self {
        Self {
            dimension: dimension.max(1),
        }
    }
}

impl Default for HashingEmbedder {
    fn default() -> Self {
        Self::new(Self::DEFAULT_DIMENSION)
    }
}

impl Embedder for HashingEmbedder {
    fn dimension(&self) -> usize {
        self.dimension
    }

    fn embed(&self, text: &str) -> Vec<f32> {
        let mut vector = vec![0f32; self.dimension];
        for token in tokens(text) {
            let hash = fnv1a(token.as_bytes());
            let bucket = (hash % self.dimension as u64) as usize;
            vector[bucket] += if hash >> 63 == 0 { 1.0 } else { -1.0 };
        }
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            vector.iter_mut().for_each(|x| *x /= norm);
        }
        vector
    }
}

/// Lower-cased runs of letters and digits.
fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
}

/// The longest a summary gets, in bytes.
pub const SUMMARY_MAX_BYTES: usize = 280;

/// The longest a chunk gets, in bytes (a single longer line is cut).
pub const CHUNK_MAX_BYTES: usize = 1000;

/// A document's summary: its first non-blank paragraph, cut at a character
/// boundary to at most [`SUMMARY_MAX_BYTES`].
pub fn summarise(text: &str) -> String {
    let paragraph = text.split("\n\n").map(str::trim).find(|p| !p.is_empty()).unwrap_or("");
    let flat: String = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
    cut(&flat, SUMMARY_MAX_BYTES).to_string()
}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Splits `text` into chunks of whole lines of at most [`CHUNK_MAX_BYTES`]
/// (a longer line is cut at character boundaries). Empty text has no chunks.
pub fn chunk(text: &str) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    for line in text.split_inclusive('\n') {
        let mut rest = line;
        while !rest.is_empty() {
            if current.len() + rest.len() <= CHUNK_MAX_BYTES {
                current.push_str(rest);
                rest = "";
            } else if current.is_empty() {
                let piece = cut(rest, CHUNK_MAX_BYTES);
                let piece = if piece.is_empty() {
                    &rest[..rest.chars().next().map_or(0, char::len_utf8)]
                } else {
                    piece
                };
                chunks.push(piece.to_string());
                rest = &rest[piece.len()..];
            } else {
                chunks.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn similar_texts_have_similar_vectors() {
        let embedder = HashingEmbedder::default();
        let a = embedder.embed("crash safe storage with fsync and rename");
        let b = embedder.embed("storage that is crash safe: fsync, then rename");
        let c = embedder.embed("a recipe for lemon cake");
        assert!(
            cosine(&a, &b) > cosine(&a, &c) + 0.3,
            "{} vs {}",
            cosine(&a, &b),
            cosine(&a, &c)
        );
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-5, "vectors are normalised");
        assert_eq!(embedder.embed("  ,;  "), vec![0.0; 64]);
        assert_eq!(embedder.embed("same words"), embedder.embed("SAME words"));
    }

    #[test]
    fn summaries_take_the_first_paragraph_within_bounds() {
        assert_eq!(
            summarise("\n\n  Title line\nsecond   line\n\nbody"),
            "Title line second line"
        );
        let long = "é".repeat(500);
        let summary = summarise(&long);
        assert!(summary.len() <= SUMMARY_MAX_BYTES && summary.chars().all(|c| c == 'é'));
        assert_eq!(summarise(""), "");
    }

    #[test]
    fn chunks_cover_the_text_exactly_and_stay_bounded() {
        let text = format!("{}\n{}\nshort\n{}", "a".repeat(600), "b".repeat(600), "ü".repeat(1500));
        let chunks = chunk(&text);
        assert_eq!(chunks.concat(), text);
        assert!(chunks.iter().all(|c| c.len() <= CHUNK_MAX_BYTES && !c.is_empty()));
        assert!(chunk("").is_empty());
    }
}
