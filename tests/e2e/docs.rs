//! docs/graph-format.md stays true: every complete example in a `ron` block passes
//! `stackflow check`, and every example in a `ron,bad` block is refused with exit code 1.

use crate::support::{root, stackflow};

/// A fenced code block: the line its opening fence is on (1-based), its info string and text.
struct Fenced {
    line: usize,
    info: String,
    text: String,
}

/// Every ```-fenced block of a Markdown text, in order.
fn fenced_blocks(markdown: &str) -> Vec<Fenced> {
    let mut blocks = Vec::new();
    let mut open: Option<Fenced> = None;
    for (i, line) in markdown.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(info)) => {
                open = Some(Fenced { line: i + 1, info: info.trim().to_string(), text: String::new() })
            }
            (Some(_), Some(rest)) if rest.trim().is_empty() => blocks.extend(open.take()),
            (Some(block), _) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "docs/graph-format.md: a code block is never closed");
    blocks
}

/// Run `stackflow check` on every complete example (text starting with `Flow(`) in blocks
/// whose info string is exactly `info`; each must exit with `expected`. Returns how many ran.
fn check_examples(info: &str, expected: i32) -> usize {
    let doc = root().join("docs/graph-format.md");
    let markdown = std::fs::read_to_string(&doc).expect("docs/graph-format.md exists");
    let examples: Vec<Fenced> = fenced_blocks(&markdown)
        .into_iter()
        .filter(|b| b.info == info && b.text.trim_start().starts_with("Flow("))
        .collect();
    for ex in &examples {
        let label = if expected == 0 { "ok" } else { "bad" };
        // An example that extends a shipped graph is checked where the variants live.
        let dir = if ex.text.contains("extends:") { root().join("graphs/variants") } else { std::env::temp_dir() };
        let file = dir.join(format!(".stackflow-docs-{}-{label}-line{}.ron", std::process::id(), ex.line));
        std::fs::write(&file, &ex.text).expect("temp file is writable");
        let out = stackflow(&["check", file.to_str().expect("temp path is UTF-8")]);
        let _ = std::fs::remove_file(&file);
        assert_eq!(
            out.code, expected,
            "docs/graph-format.md:{} (```{info}): exit code\n{}{}",
            ex.line, out.stdout, out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "docs/graph-format.md:{}: panic\n{}", ex.line, out.stderr);
        if expected == 0 {
            assert!(out.stdout.starts_with("ok: "), "docs/graph-format.md:{}: {}", ex.line, out.stdout);
        }
    }
    examples.len()
}

#[test]
fn documented_graphs_check() {
    let n = check_examples("ron", 0);
    assert!(n >= 2, "expected the first file and the worked example, found {n} `ron` blocks starting with `Flow(`");
}

#[test]
fn documented_bad_graphs_are_refused() {
    let n = check_examples("ron,bad", 1);
    assert!(n >= 1, "expected at least one `ron,bad` example, found {n}");
}

#[test]
fn every_built_in_block_kind_has_a_row_in_the_reference() {
    let out = stackflow(&["plugins", "list"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let markdown = std::fs::read_to_string(root().join("docs/graph-format.md")).expect("docs/graph-format.md exists");
    // `plugins list` starts with the blocks: `blocks (n)`, then one indented line per kind.
    let kinds: Vec<&str> = out
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("blocks"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(kinds.len() >= 20, "read {} block kinds from:\n{}", kinds.len(), out.stdout);
    let missing: Vec<&&str> = kinds.iter().filter(|k| !markdown.contains(&format!("| `{k}` |"))).collect();
    assert!(missing.is_empty(), "block kinds without a row in docs/graph-format.md: {missing:?}");
}
