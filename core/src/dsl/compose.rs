//! Composition: a graph file may `extends` another graph file and `include` library
//! files. Both are resolved here, before anything is compiled, into one [`Doc`] whose
//! span tree points every value at the file and line that wrote it.
//!
//! The rules, applied file by file from the furthest base to the file given:
//! - `extends: "base.ron"` starts from everything the base resolves to;
//! - `include: ["lib.ron", …]` adds the blocks and nets of each library; one name from two
//!   different libraries is an error (the same library reached twice is read once);
//! - then what the file itself gives overrides by name: variables one by one (new ones
//!   are appended), blocks, nets and weight maps whole, stages by `name` field by field
//!   (a stage name the base lacks makes a new stage, which then needs every required
//!   field), plugins appended;
//! - paths inside a file (`extends`, `include`, `plugins`, a folder dataset's `root`) are
//!   relative to that file; plugin and dataset paths are rewritten relative to the file
//!   given, so the resolved flow reads the same files.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use indexmap::IndexMap;

use super::{parse_text, read_file, BlockDef, DataDef, Doc, FlowFile, Key, LibraryFile, NetDef, Parsed, SpanTree};
use super::{StagePatch, WeightMapDef};
use crate::error::{did_you_mean, Error, Result, SourceFile};

/// Extends and includes may chain at most this deep.
const MAX_DEPTH: usize = 32;

/// Resolve a graph file's text (found in `dir`) into a flow.
pub fn resolve(src: SourceFile, dir: &Path) -> Result<Parsed> {
    let mut c = Composer::default();
    let canonical = std::fs::canonicalize(&src.name).ok();
    let layer = c.flow(src, dir, Path::new(""), canonical)?;
    let src = c.source();
    let root = c.trees[0].clone();
    let name = match layer.name {
        Some(n) => n,
        None => {
            return Err(src
                .error("graph::missing_field", root.span(), "the flow has no `name`")
                .with_help("give it one: `Flow(name: \"my_flow\", …)`"))
        }
    };
    let mut train = Vec::new();
    for (i, patch) in layer.train.into_iter().enumerate() {
        let stage = patch.name.clone();
        train.push(patch.finish().map_err(|field| {
            src.error(
                "graph::missing_field",
                layer.spans.best(&["train".into(), i.into()]),
                format!("stage `{stage}` has no `{field}`"),
            )
            .with_help("a stage needs `generator`, `discriminator`, `epochs`, `batch` and `data`")
        })?);
    }
    let vars = ron::Value::Map(layer.vars.into_iter().map(|(k, v)| (ron::Value::String(k), v)).collect());
    let doc = Doc {
        name,
        vars,
        plugins: layer.plugins,
        blocks: layer.blocks,
        nets: layer.nets,
        weight_maps: layer.weight_maps,
        train,
    };
    Ok(Parsed { src, doc, spans: layer.spans })
}

/// `parsed` with net `net` taken from the flow in `file` (`--use d1=graphs/variants/d1_patch.ron`),
/// with the templates it uses that `parsed` lacks. A template both have must be the same;
/// the recipe is not taken (run the other file itself for that). `flags` are all the
/// `--use` values and `at` this one's byte offset in them, for carets.
pub fn use_net(parsed: &Parsed, net: &str, file: &Path, flags: &SourceFile, at: usize) -> Result<Parsed> {
    let flag_span = |len: usize| -> crate::error::Span { (at, len.max(1)).into() };
    let other = super::load(file).map_err(|e| e.context(format!("`--use {net}={}`", file.display())))?;
    let Some(def) = other.doc.nets.get(net) else {
        let names: Vec<&str> = other.doc.nets.keys().map(String::as_str).collect();
        return Err(flags
            .error("cli::unknown_net", flag_span(net.len()), format!("`{}` has no net `{net}`", file.display()))
            .with_help(
                did_you_mean(net, names.iter().copied()).unwrap_or_else(|| format!("its nets: {}", names.join(", "))),
            ));
    };
    // The templates the net uses, and those they use.
    let mut needed: Vec<String> = Vec::new();
    let mut todo: Vec<&super::NodeDef> = def.nodes.iter().collect();
    while let Some(node) = todo.pop() {
        if let Some(block) = other.doc.blocks.get(&node.1) {
            if !needed.contains(&node.1) {
                needed.push(node.1.clone());
                todo.extend(&block.nodes);
            }
        }
    }
    let mut files = file_list(parsed);
    let first_other = files.len();
    files.extend(file_list(&other));
    let (src, starts) = SourceFile::joined(&files);
    let shift = starts[first_other];
    let mut out = Parsed { src, doc: parsed.doc.clone(), spans: parsed.spans.clone() };
    let mut take = |section: &str, name: &str| {
        if let Some(t) = other.spans.get(&[section.into(), name.into()]) {
            let dst = out.spans.child_or(section.into(), SpanTree::default);
            dst.set_child(name.into(), t.clone().shifted(shift));
        }
    };
    take("nets", net);
    for name in &needed {
        match parsed.doc.blocks.get(name) {
            Some(mine) if mine != &other.doc.blocks[name] => {
                return Err(flags
                    .error(
                        "cli::use_clash",
                        flag_span(net.len()),
                        format!(
                            "`{net}` of `{}` uses a template `{name}` that differs from this flow's",
                            file.display()
                        ),
                    )
                    .with_help("rename the template in one of the files, or run the other file itself"));
            }
            Some(_) => {}
            None => {
                take("blocks", name);
                out.doc.blocks.insert(name.clone(), other.doc.blocks[name].clone());
            }
        }
    }
    out.doc.nets.insert(net.to_string(), def.clone());
    Ok(out)
}

/// The files a flow was read from, each as it was before joining.
fn file_list(p: &Parsed) -> Vec<SourceFile> {
    if !p.is_composed() {
        return vec![p.src.clone()];
    }
    let files = p.src.files();
    files
        .into_iter()
        .map(|(name, _, text)| SourceFile::new(name, text.strip_suffix('\n').unwrap_or(text).to_string()))
        .collect()
}

/// The files read so far (joined in this order) and what is being resolved.
#[derive(Default)]
struct Composer {
    files: Vec<SourceFile>,
    /// Each file's span tree, offsets in the joined text.
    trees: Vec<SpanTree>,
    /// Length of the joined text so far.
    total: usize,
    /// Canonical paths and indices of the files being resolved, outermost first.
    stack: Vec<(Option<PathBuf>, usize)>,
    /// Libraries already read (canonical path → file index).
    libraries: HashMap<PathBuf, usize>,
    /// Which library each library-defined block or net name came from.
    library_names: HashMap<String, usize>,
}

/// What one file and everything it extends or includes amount to.
#[derive(Default)]
struct Layer {
    name: Option<String>,
    vars: Vec<(String, ron::Value)>,
    plugins: Vec<String>,
    blocks: IndexMap<String, BlockDef>,
    nets: IndexMap<String, NetDef>,
    weight_maps: IndexMap<String, IndexMap<String, WeightMapDef>>,
    train: Vec<StagePatch>,
    /// Spans of the resolved values, shaped like the resolved document.
    spans: SpanTree,
}

impl Layer {
    /// Add (or replace) templates and nets written in the file of span tree `tree`.
    fn define(&mut self, tree: &SpanTree, blocks: IndexMap<String, BlockDef>, nets: IndexMap<String, NetDef>) {
        graft_all(&mut self.spans, tree, "blocks", blocks.keys());
        graft_all(&mut self.spans, tree, "nets", nets.keys());
        self.blocks.extend(blocks);
        self.nets.extend(nets);
    }
}

impl Composer {
    /// The source every span so far points into: the one file, or all of them joined.
    fn source(&self) -> SourceFile {
        match self.files.as_slice() {
            [one] => one.clone(),
            files => SourceFile::joined(files).0,
        }
    }

    /// Add a file's text; its index and span tree (in joined offsets).
    fn add<T: serde::de::DeserializeOwned>(&mut self, src: SourceFile) -> Result<(usize, T)> {
        let (doc, tree) = parse_text::<T>(&src)?;
        let start = self.total;
        self.total += src.text.len() + 1;
        self.files.push(src);
        self.trees.push(tree.shifted(start));
        Ok((self.files.len() - 1, doc))
    }

    fn error(&self, file: usize, path: &[Key], code: &'static str, message: impl Into<String>) -> Error {
        self.source().error(code, self.trees[file].best(path), message)
    }

    /// Open a file named at `path` inside file `from` (its `extends` or an `include`),
    /// refusing cycles; its source and canonical path.
    fn open(&self, from: usize, at: &[Key], dir: &Path, name: &str) -> Result<(SourceFile, PathBuf, Option<PathBuf>)> {
        let path = normalize(&dir.join(name));
        let canonical = std::fs::canonicalize(&path).map_err(|e| {
            self.error(from, at, "graph::missing_file", format!("cannot read `{}`: {e}", path.display()))
                .with_help("paths in `extends` and `include` are relative to the file that names them")
        })?;
        if let Some(i) = self.stack.iter().position(|(p, _)| p.as_ref() == Some(&canonical)) {
            let chain: Vec<String> =
                self.stack[i..].iter().map(|(_, f)| format!("`{}`", self.files[*f].name)).collect();
            return Err(self
                .error(
                    from,
                    at,
                    "graph::cycle",
                    format!("`{}` is already being read: {} → `{name}`", path.display(), chain.join(" → ")),
                )
                .with_help("a file cannot extend or include itself, directly or through others"));
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.error(
                from,
                at,
                "graph::too_deep",
                format!("files extend or include more than {MAX_DEPTH} deep"),
            ));
        }
        let src = read_file(&path).map_err(|e| e.context(format!("`{}` names `{name}`", self.files[from].name)))?;
        let dir = path.parent().map(Path::to_path_buf);
        Ok((src, canonical, dir))
    }

    /// Resolve one graph file: its base, its libraries, then its own definitions.
    /// `rel` is its folder relative to the file given (for rewriting relative paths).
    fn flow(&mut self, src: SourceFile, dir: &Path, rel: &Path, canonical: Option<PathBuf>) -> Result<Layer> {
        let (me, file) = self.add::<FlowFile>(src)?;
        self.stack.push((canonical, me));
        for section in ["vars", "blocks", "nets"] {
            self.check_unique_keys(me, section)?;
        }
        let mut layer = match &file.extends {
            Some(base) => {
                let (bsrc, bcanon, bdir) = self.open(me, &["extends".into()], dir, base)?;
                let brel = rel.join(Path::new(base).parent().unwrap_or(Path::new("")));
                self.flow(bsrc, &bdir.unwrap_or_default(), &brel, Some(bcanon))?
            }
            None => Layer::default(),
        };
        layer.spans.range = self.trees[me].range;
        for (i, lib) in file.include.iter().enumerate() {
            self.library(&mut layer, me, i, dir, lib)?;
        }
        self.own(&mut layer, me, file, rel)?;
        self.stack.pop();
        Ok(layer)
    }

    /// Add the blocks and nets of library `name`, the `i`-th include of file `me`.
    fn library(&mut self, layer: &mut Layer, me: usize, i: usize, dir: &Path, name: &str) -> Result<()> {
        let at = [Key::from("include"), Key::Index(i)];
        let (src, canonical, _) = self.open(me, &at, dir, name)?;
        if self.libraries.contains_key(&canonical) {
            return Ok(());
        }
        let (lib, file) = self.add::<LibraryFile>(src).map_err(|e| {
            if e.code_str() == "graph::syntax" && e.message().contains("Library") {
                e.with_help(
                    "an included file holds `Library(blocks: {…}, nets: {…})`; a whole flow is reached with `extends`",
                )
            } else {
                e
            }
        })?;
        self.libraries.insert(canonical, lib);
        self.check_unique_keys(lib, "blocks")?;
        self.check_unique_keys(lib, "nets")?;
        let blocks = file.blocks.keys().map(|n| ("blocks", n));
        for (section, n) in blocks.chain(file.nets.keys().map(|n| ("nets", n))) {
            if let Some(&other) = self.library_names.get(n).filter(|&&o| o != lib) {
                let first = self.error(
                    other,
                    &[section.into(), n.as_str().into()],
                    "graph::duplicate_name",
                    format!("`{n}` is defined here first"),
                );
                return Err(self
                    .error(
                        lib,
                        &[section.into(), n.as_str().into()],
                        "graph::duplicate_name",
                        format!("`{n}` is defined by two included libraries"),
                    )
                    .with_related(first)
                    .with_help("rename one of them, or define the one you want in the including file"));
            }
            self.library_names.insert(n.clone(), lib);
        }
        layer.define(&self.trees[lib], file.blocks, file.nets);
        Ok(())
    }

    /// Lay file `me`'s own definitions over `layer`.
    fn own(&self, layer: &mut Layer, me: usize, file: FlowFile, rel: &Path) -> Result<()> {
        let tree = &self.trees[me];
        if let Some(name) = file.name {
            layer.name = Some(name);
            graft(&mut layer.spans, tree, &["name".into()]);
        }
        let Some(vars) = super::entries(&file.vars) else {
            return Err(self.error(
                me,
                &["vars".into()],
                "graph::bad_value",
                "`vars` must be a map of names to integers or expressions",
            ));
        };
        if file.extends.is_some() {
            // A new variable spelt like an inherited one is a typo, not a new variable.
            let inherited: Vec<&str> = layer.vars.iter().map(|(n, _)| n.as_str()).collect();
            for (name, _) in vars.iter().filter(|(n, _)| !inherited.contains(&n.as_str())) {
                if let Some(hint) = did_you_mean(name, inherited.iter().copied()) {
                    let at = tree.key_span(&["vars".into(), name.as_str().into()]).unwrap_or_else(|| tree.span());
                    return Err(self
                        .source()
                        .error("graph::unknown_var", at, format!("the flow extended has no variable `{name}`"))
                        .with_help(format!("{hint} (a new variable needs a name unlike the inherited ones)")));
                }
            }
        }
        graft_all(&mut layer.spans, tree, "vars", vars.iter().map(|(n, _)| n));
        for (name, value) in vars {
            match layer.vars.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = value,
                None => layer.vars.push((name, value)),
            }
        }
        for (k, plugin) in file.plugins.iter().enumerate() {
            let rebased = rebase(rel, plugin);
            if !layer.plugins.contains(&rebased) {
                let at = layer.plugins.len();
                if let Some(t) = tree.get(&["plugins".into(), k.into()]) {
                    let section = tree.child(&"plugins".into()).map(SpanTree::emptied).unwrap_or_default();
                    layer.spans.child_or("plugins".into(), || section).set_child(Key::Index(at), t.clone());
                }
                layer.plugins.push(rebased);
            }
        }
        layer.define(tree, file.blocks, file.nets);
        for (format, maps) in file.weight_maps {
            let path = ["weight_maps".into(), Key::from(format.as_str())];
            if let Some(t) = tree.get(&path) {
                let section = tree.child(&"weight_maps".into()).map(SpanTree::emptied).unwrap_or_default();
                let fmt =
                    layer.spans.child_or("weight_maps".into(), || section).child_or(path[1].clone(), || t.emptied());
                for net in maps.keys() {
                    if let Some(n) = t.child(&net.as_str().into()) {
                        fmt.set_child(net.as_str().into(), n.clone());
                    }
                }
            }
            layer.weight_maps.entry(format).or_default().extend(maps);
        }
        for (j, mut patch) in file.train.into_iter().enumerate() {
            if let Some(DataDef::Folder { root, .. }) = &mut patch.data {
                *root = rebase(rel, root);
            }
            self.stage(layer, me, j, patch, file.extends.is_some())?;
        }
        Ok(())
    }

    /// Lay stage patch `j` of file `me` over the stage of the same name, or append it.
    fn stage(&self, layer: &mut Layer, me: usize, j: usize, patch: StagePatch, extends: bool) -> Result<()> {
        let tree = &self.trees[me];
        let at = [Key::from("train"), Key::Index(j)];
        // Without spans (text the span scanner gave up on) the stage still counts; its
        // errors then point at the file as a whole.
        let own = tree.get(&at).cloned().unwrap_or_else(|| tree.emptied());
        let section = tree.child(&"train".into()).map(SpanTree::emptied).unwrap_or_default();
        let train = layer.spans.child_or("train".into(), || section);
        match layer.train.iter().position(|s| s.name == patch.name) {
            Some(i) => {
                let resolved = train.child_or(Key::Index(i), || own.clone());
                for field in patch.given() {
                    if let Some(t) = own.child(&field.into()) {
                        resolved.set_child(field.into(), t.clone());
                    }
                }
                layer.train[i].merge(patch);
            }
            None => {
                if extends && patch.clone().finish().is_err() {
                    let names: Vec<&str> = layer.train.iter().map(|s| s.name.as_str()).collect();
                    return Err(self
                        .error(
                            me,
                            &[at[0].clone(), at[1].clone(), "name".into()],
                            "graph::unknown_stage",
                            format!("the flow extended has no stage `{}` to change", patch.name),
                        )
                        .with_help(did_you_mean(&patch.name, names.iter().copied()).unwrap_or_else(|| {
                            format!("its stages: {} (a new stage needs every required field)", names.join(", "))
                        })));
                }
                train.set_child(Key::Index(layer.train.len()), own.clone());
                layer.train.push(patch);
            }
        }
        Ok(())
    }

    /// A name given twice in one map of file `file` (RON keeps the last silently).
    fn check_unique_keys(&self, file: usize, section: &str) -> Result<()> {
        let Some(t) = self.trees[file].child(&section.into()) else { return Ok(()) };
        let mut seen = std::collections::HashSet::new();
        for (k, child) in t.children() {
            if let Key::Name(n) = k {
                if !seen.insert(n.as_str()) {
                    let r = child.key_range.unwrap_or(child.range);
                    return Err(self.source().error(
                        "graph::duplicate_name",
                        (r.0, r.1 - r.0).into(),
                        format!("`{n}` is defined twice"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Put the value at `path` of `from` at the same path of `to`.
fn graft(to: &mut SpanTree, from: &SpanTree, path: &[Key]) {
    if let (Some(t), [key]) = (from.get(path), path) {
        to.set_child(key.clone(), t.clone());
    }
}

/// Put the entries `names` of map `section` of `from` into the same map of `to`.
fn graft_all<'a>(to: &mut SpanTree, from: &SpanTree, section: &str, names: impl Iterator<Item = &'a String>) {
    let Some(src) = from.child(&section.into()) else { return };
    let dst = to.child_or(section.into(), || src.emptied());
    for n in names {
        if let Some(t) = src.child(&n.as_str().into()) {
            dst.set_child(n.as_str().into(), t.clone());
        }
    }
}

/// A path written in a file in folder `rel` (relative to the file given), made relative to
/// the file given; absolute paths stay.
fn rebase(rel: &Path, path: &str) -> String {
    if Path::new(path).is_absolute() || rel.as_os_str().is_empty() {
        return path.to_string();
    }
    normalize(&rel.join(path)).to_string_lossy().replace('\\', "/")
}

/// `a/b/../c` as `a/c`, without touching the file system (`..` at the start stays).
fn normalize(path: &Path) -> PathBuf {
    let mut out: Vec<Component> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_rebased_onto_the_file_given() {
        assert_eq!(rebase(Path::new(""), "../target/x.so"), "../target/x.so");
        assert_eq!(rebase(Path::new(".."), "../target/x.so"), "../../target/x.so");
        assert_eq!(rebase(Path::new("lib"), "../data/cub"), "data/cub");
        assert_eq!(rebase(Path::new("a/b"), "./c"), "a/b/c");
        assert_eq!(rebase(Path::new("lib"), "/abs/x.so"), "/abs/x.so");
    }
}
