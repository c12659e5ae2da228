//! The built-in text encoder: captions → fixed-size vectors (RMS 1), deterministic and
//! dependency-free, so that users can type captions instead of shipping embeddings.
//!
//! A caption is lower-cased and split into words; articles are dropped and a few
//! synonyms folded (`big` → `large`, `grey` → `gray`, plurals of the shape nouns). Its
//! features are the words, the word bigrams, and every word tagged with its *role*: the
//! index of the clause it sits in, clauses being separated by relation words (`on`, `in`,
//! `with`, …). "a red circle on a blue background" thus has `role0:red` and
//! `role1:blue`, which "a blue circle on a red background" lacks, although both have the
//! same bag of words. Each feature is hashed (FNV-1a, stable across platforms and
//! releases) and the hash seeds a pseudo-random ±1 vector of length `dim`; the caption is
//! the weighted sum of its features' vectors, scaled to RMS 1 (norm √dim). This is a fixed
//! random projection of the hashed feature space that needs no table.
//!
//! It knows no meaning: see `docs/data.md` for its limits.

/// Words that start a new clause (a new role) when they appear between words.
const RELATIONS: &[&str] = &[
    "on", "in", "with", "against", "over", "above", "below", "under", "beneath", "behind", "inside", "near", "beside",
];

/// Words that carry nothing here and are dropped.
const STOP_WORDS: &[&str] = &["a", "an", "the", "of", "is", "this", "that", "there"];

/// Synonyms and plurals folded to one spelling before hashing.
const SYNONYMS: &[(&str, &str)] = &[
    ("big", "large"),
    ("huge", "large"),
    ("little", "small"),
    ("tiny", "small"),
    ("grey", "gray"),
    ("violet", "purple"),
    ("circles", "circle"),
    ("disc", "circle"),
    ("disk", "circle"),
    ("squares", "square"),
    ("triangles", "triangle"),
    ("backdrop", "background"),
    ("backgrounds", "background"),
];

/// Feature weights: roles carry most of the signal, then bigrams, then plain words.
const WORD_WEIGHT: f32 = 1.0;
const BIGRAM_WEIGHT: f32 = 1.0;
const ROLE_WEIGHT: f32 = 1.5;

/// Mixed into every feature hash so that this encoder's space is its own.
const SEED: u64 = 0x5354_4143_4b46_4c57;

/// A deterministic caption encoder with output size `dim`; see the module docs.
#[derive(Clone, Debug)]
pub struct TextEncoder {
    dim: usize,
}

impl TextEncoder {
    /// An encoder producing `dim`-dimensional vectors of RMS 1.
    pub fn new(dim: usize) -> Self {
        Self { dim }
    }

    /// The output size.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The normalised words of a caption, as the encoder sees them.
    pub fn words(caption: &str) -> Vec<String> {
        caption
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .filter(|w| !STOP_WORDS.contains(&w.as_str()))
            .map(|w| match SYNONYMS.iter().find(|(from, _)| *from == w) {
                Some((_, to)) => (*to).to_string(),
                None => w,
            })
            .collect()
    }

    /// The hashed features of a caption with their weights.
    fn features(caption: &str) -> Vec<(String, f32)> {
        let words = Self::words(caption);
        let mut feats = Vec::with_capacity(words.len() * 3);
        let mut role = 0usize;
        let mut seen_content = false;
        for (i, w) in words.iter().enumerate() {
            if RELATIONS.contains(&w.as_str()) && seen_content {
                role += 1;
                seen_content = false;
            } else {
                seen_content = true;
            }
            feats.push((format!("w:{w}"), WORD_WEIGHT));
            feats.push((format!("r{role}:{w}"), ROLE_WEIGHT));
            if let Some(next) = words.get(i + 1) {
                feats.push((format!("b:{w}|{next}"), BIGRAM_WEIGHT));
            }
        }
        if feats.is_empty() {
            feats.push(("<empty>".to_string(), 1.0));
        }
        feats
    }

    /// The embedding of a caption, scaled to root-mean-square 1 per value (norm √dim),
    /// the scale of typical sentence embeddings; empty only when `dim` is 0.
    pub fn encode(&self, caption: &str) -> Vec<f32> {
        let mut out = vec![0f32; self.dim];
        for (feature, weight) in Self::features(caption) {
            let mut state = fnv1a(feature.as_bytes()) ^ SEED;
            for chunk in out.chunks_mut(64) {
                let bits = splitmix64(&mut state);
                for (j, v) in chunk.iter_mut().enumerate() {
                    *v += if bits >> j & 1 == 1 { weight } else { -weight };
                }
            }
        }
        let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            let scale = (self.dim as f32).sqrt() / norm;
            out.iter_mut().for_each(|v| *v *= scale);
        }
        out
    }
}

/// FNV-1a, 64 bit: a hash whose values never change between Rust releases.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// SplitMix64: the next value of a tiny stable pseudo-random stream.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (na * nb)
    }

    #[test]
    fn rms_one_and_deterministic() {
        for dim in [1, 7, 64, 128, 1024] {
            let enc = TextEncoder::new(dim);
            let a = enc.encode("a large red circle on a blue background");
            assert_eq!(a.len(), dim);
            let rms = (a.iter().map(|v| v * v).sum::<f32>() / dim as f32).sqrt();
            assert!((rms - 1.0).abs() < 1e-4, "dim {dim}: rms {rms}");
            assert_eq!(a, TextEncoder::new(dim).encode("a large red circle on a blue background"));
        }
        let e = TextEncoder::new(16).encode("");
        assert!((cos(&e, &e) - 1.0).abs() < 1e-5);
        assert!(TextEncoder::new(0).encode("red").is_empty());
    }

    #[test]
    fn a_prefix_of_the_output_does_not_depend_on_dim() {
        let short = TextEncoder::new(64).encode("a red square");
        let long = TextEncoder::new(128).encode("a red square");
        // Same direction: the prefix differs only by the overall scale.
        let ratio =
            long[..64].iter().map(|v| v * v).sum::<f32>().sqrt() / short.iter().map(|v| v * v).sum::<f32>().sqrt();
        for (s, l) in short.iter().zip(&long) {
            assert!((l - s * ratio).abs() < 1e-4);
        }
    }

    #[test]
    fn tells_which_colour_is_the_object() {
        let enc = TextEncoder::new(1024);
        let a = enc.encode("a red circle on a blue background");
        let b = enc.encode("a blue circle on a red background");
        let c = cos(&a, &b);
        assert!(c < 0.9, "swapped colours too similar: {c}");
        assert!(c > 0.3, "swapped colours share all words: {c}");
    }

    #[test]
    fn a_bag_of_words_alone_could_not() {
        let bag = |s: &str| {
            let mut w = TextEncoder::words(s);
            w.sort();
            w
        };
        assert_eq!(bag("a red circle on a blue background"), bag("a blue circle on a red background"));
    }

    #[test]
    fn ignores_case_punctuation_articles_and_known_synonyms() {
        let enc = TextEncoder::new(256);
        let a = enc.encode("a large red circle on a blue background");
        for other in [
            "A BIG red circle on the blue background.",
            "large, red circle -- on blue background",
            "a huge red disc on a blue backdrop",
        ] {
            assert!(cos(&a, &enc.encode(other)) > 0.999, "{other}");
        }
    }

    #[test]
    fn one_changed_word_is_close_but_distinct() {
        let enc = TextEncoder::new(1024);
        let a = enc.encode("a large red circle on a blue background");
        let swapped = enc.encode("a large blue circle on a red background");
        for other in [
            "a small red circle on a blue background",
            "a large red square on a blue background",
            "a large green circle on a blue background",
            "a large red circle on a gray background",
        ] {
            let c = cos(&a, &enc.encode(other));
            assert!(c > 0.6 && c < 0.9, "{other}: {c}");
            assert!(c > cos(&a, &swapped), "{other}: {c}");
        }
        let unrelated = enc.encode("a yellow triangle on a purple background");
        let c = cos(&a, &unrelated);
        assert!(c < 0.5, "unrelated captions: {c}");
    }

    #[test]
    fn distinct_scenes_get_distinct_codes() {
        let enc = TextEncoder::new(128);
        let colours = ["red", "green", "blue", "yellow", "purple", "orange", "white", "gray"];
        let mut codes = Vec::new();
        for bg in colours {
            for obj in colours {
                if bg != obj {
                    codes.push(enc.encode(&format!("a {obj} circle on a {bg} background")));
                }
            }
        }
        for i in 0..codes.len() {
            for j in 0..i {
                assert!(cos(&codes[i], &codes[j]) < 0.95, "{i} vs {j}");
            }
        }
    }

    #[test]
    fn a_leading_relation_word_does_not_open_a_clause() {
        assert_eq!(TextEncoder::features("on a red square"), TextEncoder::features("on red square"));
        let roles: Vec<String> = TextEncoder::features("with a red square on blue")
            .into_iter()
            .filter(|(f, _)| f.starts_with('r'))
            .map(|(f, _)| f)
            .collect();
        assert_eq!(roles, ["r0:with", "r0:red", "r0:square", "r1:on", "r1:blue"]);
    }
}
