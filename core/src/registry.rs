//! The one registry of extension kinds. Built-in blocks and plugin blocks register the
//! same way; a kind name can be registered once.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::error::{did_you_mean, Error, Result};
use crate::exec::ops::{Ops, Tensor};
use crate::ir::{Attrs, Inferred, Shape};

/// A node kind: reads its attributes into a configured [`Block`].
pub trait BlockKind: Send + Sync {
    /// Namespaced kind name (`core.conv2d`).
    fn name(&self) -> &str;
    /// One-line description.
    fn doc(&self) -> &str;
    /// Read attributes (call [`Attrs::finish`] is done by the caller) and configure.
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Block>>;
}

/// A configured node: shape inference, parameter specs and forward.
pub trait Block: Send + Sync + fmt::Debug {
    /// Output port names; the first is the node's default output.
    fn ports(&self) -> Vec<String> {
        vec!["out".to_string()]
    }

    /// Output shapes, parameters and FLOPs for these per-sample input shapes. The
    /// message of an `Err` is shown with the node, its kind, the shapes and the span.
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String>;

    /// Compute the outputs. `params` follow the order of [`Inferred::params`]. Shapes
    /// were proven by [`Block::infer`]; batch size is the leading dim of every input.
    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>>;
}

/// Where a kind comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Compiled into stackflow.
    BuiltIn,
    /// Loaded from a plugin library.
    Plugin(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::BuiltIn => f.write_str("built-in"),
            Source::Plugin(p) => f.write_str(p),
        }
    }
}

/// Every kind stackflow knows, built-in or loaded.
#[derive(Clone, Default)]
pub struct Registry {
    blocks: BTreeMap<String, (Arc<dyn BlockKind>, Source)>,
}

impl Registry {
    /// An empty registry.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A registry with every built-in kind.
    pub fn with_builtins() -> Self {
        let mut r = Self::empty();
        crate::blocks::register_builtins(&mut r).expect("built-in kinds are unique");
        r
    }

    /// Register a block kind; a duplicate name is an error.
    pub fn add_block(&mut self, kind: Arc<dyn BlockKind>, source: Source) -> Result<()> {
        let name = kind.name().to_string();
        if !valid_kind_name(&name) {
            return Err(Error::input(
                "registry::bad_name",
                format!("kind name `{name}` is not namespaced snake_case (`namespace.name`)"),
            ));
        }
        if let Some((_, prev)) = self.blocks.get(&name) {
            return Err(Error::input(
                "registry::duplicate_kind",
                format!("kind `{name}` from {source} is already registered by {prev}"),
            )
            .with_help("rename the kind in one of them; kinds are never overwritten"));
        }
        self.blocks.insert(name, (kind, source));
        Ok(())
    }

    /// A block kind by name.
    pub fn block(&self, name: &str) -> Option<&Arc<dyn BlockKind>> {
        self.blocks.get(name).map(|(k, _)| k)
    }

    /// All block kinds with their source, sorted by name.
    pub fn blocks(&self) -> impl Iterator<Item = (&str, &dyn BlockKind, &Source)> {
        self.blocks.iter().map(|(n, (k, s))| (n.as_str(), k.as_ref(), s))
    }

    /// A help line for an unknown block kind.
    pub fn suggest_block(&self, name: &str) -> String {
        did_you_mean(name, self.blocks.keys().map(String::as_str)).unwrap_or_else(|| {
            format!(
                "known kinds: {}; templates and nets of this file are used by name",
                self.blocks.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }
}

fn valid_kind_name(name: &str) -> bool {
    let mut parts = name.split('.');
    let ok = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if ok(a) && ok(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_kind_is_an_error() {
        let mut r = Registry::with_builtins();
        let k = r.block("core.relu").unwrap().clone();
        let e = r.add_block(k, Source::Plugin("x.so".into())).unwrap_err();
        assert_eq!(e.code_str(), "registry::duplicate_kind");
        assert!(e.message().contains("x.so"));
    }

    #[test]
    fn suggests_close_names() {
        let r = Registry::with_builtins();
        assert_eq!(r.suggest_block("core.conv2"), "did you mean `core.conv2d`?");
        assert!(valid_kind_name("my_plugin.attn2"));
        assert!(!valid_kind_name("Conv"));
    }
}
