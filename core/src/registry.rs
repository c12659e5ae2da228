//! The one registry of extension kinds. Built-in blocks and plugin blocks register the
//! same way; a kind name can be registered once.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::error::{did_you_mean, Error, Result};
use crate::kind::{BlockKind, EncoderKind, LossKind, SamplerKind};

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

/// Kinds of one family by name, with where each came from.
pub struct Table<K: ?Sized> {
    items: BTreeMap<String, (Arc<K>, Source)>,
}

impl<K: ?Sized> Clone for Table<K> {
    fn clone(&self) -> Self {
        Self { items: self.items.clone() }
    }
}

impl<K: ?Sized> Default for Table<K> {
    fn default() -> Self {
        Self { items: BTreeMap::new() }
    }
}

impl<K: ?Sized> Table<K> {
    fn add(&mut self, family: &str, name: &str, kind: Arc<K>, source: Source) -> Result<()> {
        if !valid_kind_name(name) {
            return Err(Error::input(
                "registry::bad_name",
                format!("{family} kind name `{name}` is not namespaced snake_case (`namespace.name`)"),
            ));
        }
        if let Some((_, prev)) = self.items.get(name) {
            return Err(Error::input(
                "registry::duplicate_kind",
                format!("{family} kind `{name}` from {source} is already registered by {prev}"),
            )
            .with_help("rename the kind in one of them; kinds are never overwritten"));
        }
        self.items.insert(name.to_string(), (kind, source));
        Ok(())
    }

    /// A kind by name.
    pub fn get(&self, name: &str) -> Option<&Arc<K>> {
        self.items.get(name).map(|(k, _)| k)
    }

    /// All kinds with their source, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<K>, &Source)> {
        self.items.iter().map(|(n, (k, s))| (n.as_str(), k, s))
    }

    /// A help line for an unknown name.
    pub fn suggest(&self, name: &str) -> String {
        did_you_mean(name, self.items.keys().map(String::as_str))
            .or_else(|| plugin_hint(name, self.items.keys()))
            .unwrap_or_else(|| format!("known kinds: {}", self.items.keys().cloned().collect::<Vec<_>>().join(", ")))
    }
}

/// Every kind stackflow knows, built-in or loaded: blocks, losses, samplers and sentence
/// encoders.
#[derive(Clone, Default)]
pub struct Registry {
    blocks: Table<dyn BlockKind>,
    losses: Table<dyn LossKind>,
    samplers: Table<dyn SamplerKind>,
    encoders: Table<dyn EncoderKind>,
}

impl Registry {
    /// An empty registry.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Register a block kind; a duplicate name is an error.
    pub fn add_block(&mut self, kind: Arc<dyn BlockKind>, source: Source) -> Result<()> {
        let name = kind.name().to_string();
        self.blocks.add("block", &name, kind, source)
    }

    /// Register a loss kind; a duplicate name is an error.
    pub fn add_loss(&mut self, kind: Arc<dyn LossKind>, source: Source) -> Result<()> {
        let name = kind.name().to_string();
        self.losses.add("loss", &name, kind, source)
    }

    /// Register a sampler kind; a duplicate name is an error.
    pub fn add_sampler(&mut self, kind: Arc<dyn SamplerKind>, source: Source) -> Result<()> {
        let name = kind.name().to_string();
        self.samplers.add("sampler", &name, kind, source)
    }

    /// Register a sentence encoder kind; a duplicate name is an error.
    pub fn add_encoder(&mut self, kind: Arc<dyn EncoderKind>, source: Source) -> Result<()> {
        let name = kind.name().to_string();
        self.encoders.add("encoder", &name, kind, source)
    }

    /// A block kind by name.
    pub fn block(&self, name: &str) -> Option<&Arc<dyn BlockKind>> {
        self.blocks.get(name)
    }

    /// All block kinds.
    pub fn blocks(&self) -> &Table<dyn BlockKind> {
        &self.blocks
    }

    /// All loss kinds.
    pub fn losses(&self) -> &Table<dyn LossKind> {
        &self.losses
    }

    /// All sampler kinds.
    pub fn samplers(&self) -> &Table<dyn SamplerKind> {
        &self.samplers
    }

    /// All sentence encoder kinds.
    pub fn encoders(&self) -> &Table<dyn EncoderKind> {
        &self.encoders
    }

    /// An encoder kind by name; a name without a namespace is looked up in `stackflow.`
    /// (`bert` is `stackflow.bert`).
    pub fn encoder(&self, name: &str) -> Result<&Arc<dyn EncoderKind>> {
        let full = if name.contains('.') { name.to_string() } else { format!("stackflow.{name}") };
        self.encoders.get(&full).ok_or_else(|| {
            Error::input("registry::unknown_encoder", format!("no sentence encoder `{name}`"))
                .with_help(self.encoders.suggest(&full))
        })
    }

    /// A help line for an unknown block kind.
    pub fn suggest_block(&self, name: &str) -> String {
        did_you_mean(name, self.blocks.items.keys().map(String::as_str))
            .or_else(|| plugin_hint(name, self.blocks.items.keys()))
            .unwrap_or_else(|| {
                format!(
                    "known kinds: {}; templates and nets of this file are used by name",
                    self.blocks.items.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })
    }
}

/// For a namespaced name whose namespace no known kind uses: how to load a plugin.
fn plugin_hint<'a>(name: &str, known: impl Iterator<Item = &'a String>) -> Option<String> {
    let (ns, _) = name.split_once('.')?;
    let mut known = known;
    if known.any(|k| k.split_once('.').is_some_and(|(n, _)| n == ns)) {
        return None;
    }
    Some(format!("no loaded kind is in namespace `{ns}`: if a plugin provides it, load it with `--plugin LIB` (`stackflow plugins list` shows what is loaded)"))
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
        assert!(r.suggest_block("myplugin.attn").contains("--plugin"));
        assert!(!r.suggest_block("core.nothing_like_it").contains("--plugin"));
    }
}
