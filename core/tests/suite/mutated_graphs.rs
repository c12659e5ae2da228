//! Thousands of randomly mutated graph files: the compiler never panics, and every
//! failure is a diagnostic that names the file.

use std::sync::Arc;

use stackflow_core::dsl::{self, Parsed};
use stackflow_core::error::SourceFile;
use stackflow_core::ir::{self, BuildOptions};
use stackflow_core::registry::Registry;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "\"",
    "0",
    "-1",
    "1e12",
    "99999999999999999999",
    "\"x * \"",
    "\"gf_dim / 0\"",
    "\"in\"",
    "\"ca.mu\"",
    "core.relu",
    "\"core.concat\"",
    "Block(nodes: [])",
    "r#\"",
    "/*",
    "//",
    "\u{0}",
    "é",
    "Net(",
    "repeat: 1000",
    "true",
    "()",
    "\"up_block\"",
    "\"g1\"",
    "\"e4\"",
];

fn mutate(text: &str, rng: &mut Rng) -> String {
    let mut s = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(s.len() + 1);
        match rng.below(6) {
            0 => {
                let end = (at + 1 + rng.below(40)).min(s.len());
                s.drain(at.min(end)..end);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                s.splice(at..at, t.bytes());
            }
            2 if !s.is_empty() => {
                let i = at.min(s.len() - 1);
                s[i] = (rng.next() & 0xff) as u8;
            }
            3 => {
                let start = rng.below(s.len());
                let end = (start + rng.below(200)).min(s.len());
                let chunk = s[start..end].to_vec();
                s.splice(at..at, chunk);
            }
            4 => {
                // Swap a digit for a big or odd number.
                if let Some(pos) = s[at.min(s.len())..].iter().position(u8::is_ascii_digit) {
                    let i = at + pos;
                    let big: &[u8] =
                        [b"0".as_slice(), b"1000000", b"4096", b"-3", b"18446744073709551616"][rng.below(5)];
                    s.splice(i..i + 1, big.iter().copied());
                }
            }
            _ => {
                let start = rng.below(s.len());
                let end = (start + rng.below(30)).min(s.len());
                s.drain(start..end);
            }
        }
    }
    String::from_utf8_lossy(&s).into_owned()
}

#[test]
fn mutated_graphs_never_panic() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let registry = Registry::with_builtins();
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    let mut failures = 0;
    let mut total = 0;
    for g in ["graphs/stackgan64.ron", "graphs/stackgan256.ron", "graphs/quickstart.ron"] {
        let text = std::fs::read_to_string(root.join(g)).expect("graph exists");
        for i in 0..3000 {
            // Named by its real path, so that the library it includes is found.
            let name = format!("{}#{i}", root.join(g).display());
            let mutated = mutate(&text, &mut rng);
            total += 1;
            let result = dsl::parse(SourceFile::new(name.clone(), mutated))
                .and_then(|p: Parsed| ir::build(Arc::new(p), &registry, &BuildOptions::default()));
            if let Err(e) = result {
                failures += 1;
                // In the mutated file, or in the library whose template a mutated node uses.
                let file = e.file_name().unwrap_or_else(|| panic!("diagnostic without file: {e:?}"));
                assert!(file == name || file.ends_with("graphs/lib/stackgan_blocks.ron"), "{e:?}");
                assert!(!e.spans().is_empty(), "diagnostic without span: {e:?}");
            }
        }
    }
    assert!(failures > total / 2, "mutations should mostly break graphs ({failures}/{total})");
}
