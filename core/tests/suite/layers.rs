//! The modules of stackflow-core only look down: each may use the modules listed before
//! it in `LAYERS` (and itself), never one after it. This keeps the pipeline
//! one-directional (file → checked graph → execution → training) and the kind interface
//! free of the code that implements or runs it. Unit tests (`#[cfg(test)]` and below)
//! are exempt: a test may assemble anything.

use std::collections::BTreeMap;
use std::path::Path;

/// Bottom to top; modules on one line (a tuple) are peers that must not use each other.
const LAYERS: &[&[&str]] = &[
    &["error", "mem"],
    &["kernels"],
    &["dsl"],
    &["data"],
    &["ops"],
    &["kind"],
    &["registry"],
    &["ir"],
    &["exec"],
    &["blocks"],
    &["plugin", "encoders"],
    &["metrics"],
    &["train"],
    &["builtins"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level module a file belongs to: `ir/build.rs` → `ir`, `ops.rs` → `ops`.
fn module_of(rel: &Path) -> String {
    let first = rel.components().next().expect("a path inside src").as_os_str().to_string_lossy().to_string();
    first.trim_end_matches(".rs").to_string()
}

/// The crate modules a source file names (`crate::x`, `crate::{x, y::z}`), outside tests.
fn uses(src: &str) -> Vec<String> {
    let code = src.split("#[cfg(test)]").next().unwrap_or("");
    // Comments may name any module (doc links); only code counts.
    let code: String = code.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(list) = rest.strip_prefix('{') {
            // A grouped import: every path's first segment.
            let body = &list[..list.find("};").unwrap_or(list.len())];
            let mut depth = 0;
            let mut start = true;
            let mut name = String::new();
            for c in body.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        start = true;
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 && start {
                    if c.is_alphanumeric() || c == '_' {
                        name.push(c);
                        continue;
                    }
                    if !name.is_empty() {
                        out.push(std::mem::take(&mut name));
                        start = false;
                    }
                }
            }
            if !name.is_empty() {
                out.push(name);
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            out.push(name);
        }
    }
    out
}

fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("core/src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            walk(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn modules_only_use_modules_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut upward: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let module = module_of(rel);
        if module == "lib" {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            panic!("module `{module}` ({}) is not in LAYERS: place it there", rel.display());
        };
        let text = std::fs::read_to_string(file).expect("source is readable");
        for used in uses(&text) {
            if used == module || matches!(used.as_str(), "Error" | "Result") {
                continue;
            }
            match layer_of(&used) {
                Some(l) if l < own => {}
                Some(_) => upward.entry(rel.display().to_string()).or_default().push(used),
                None => panic!("{} uses `crate::{used}`, which is not in LAYERS", rel.display()),
            }
        }
    }
    assert!(upward.is_empty(), "upward or sideways imports (module → what it must not use): {upward:#?}");
}

#[test]
fn the_import_scanner_sees_grouped_and_nested_paths() {
    let src = "use crate::ir::Flow; // see crate::train\n/// [`crate::cli`]\nuse crate::{dsl::{self, Doc}, kind::Shape};\nfn f() { crate::exec::cpu(0); }\n#[cfg(test)]\nuse crate::train;";
    assert_eq!(uses(src), ["ir", "dsl", "kind", "exec"]);
}
