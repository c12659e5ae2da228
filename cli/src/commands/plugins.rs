//! `stackflow plugins list`: every block, loss and sampler kind this stackflow knows —
//! built-in and loaded from plugin libraries — with its doc line and where it came from.

use std::path::PathBuf;

use stackflow_core::registry::{Registry, Source};
use stackflow_core::{plugin, Result};

/// Arguments of `plugins`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

/// Subcommands of `plugins`.
#[derive(clap::Subcommand, Debug)]
pub enum Sub {
    /// List every kind (built-in and loaded) with its doc line and source.
    List(ListArgs),
}

/// Arguments of `plugins list`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Load a plugin library (repeatable); also read from STACKFLOW_PLUGIN_PATH.
    #[arg(long = "plugin", value_name = "LIB")]
    pub plugins: Vec<PathBuf>,
    /// Also print each plugin kind's attributes with their docs.
    #[arg(long, short)]
    pub verbose: bool,
    /// Print JSON: the loaded libraries and every kind.
    #[arg(long)]
    pub json: bool,
}

/// Run `plugins`.
pub fn run(a: Args, kinds: &Registry) -> Result<()> {
    match a.command {
        Sub::List(l) => list(l, kinds),
    }
}

struct Row {
    family: &'static str,
    name: String,
    doc: String,
    source: String,
    /// `(attribute, doc)` of plugin kinds.
    attrs: Vec<(String, String)>,
}

fn rows(r: &Registry, libs: &[plugin::PluginInfo]) -> Vec<Row> {
    let row = |family: &'static str, name: &str, doc: &str, s: &Source| Row {
        family,
        name: name.into(),
        doc: doc.into(),
        source: s.to_string(),
        attrs: libs
            .iter()
            .flat_map(|l| &l.kinds)
            .find(|(_, k)| k.name == name)
            .map(|(_, k)| k.attrs.clone())
            .unwrap_or_default(),
    };
    let mut out: Vec<Row> = r.blocks().iter().map(|(n, k, s)| row("block", n, k.doc(), s)).collect();
    out.extend(r.losses().iter().map(|(n, k, s)| row("loss", n, k.doc(), s)));
    out.extend(r.samplers().iter().map(|(n, k, s)| row("sampler", n, k.doc(), s)));
    out.extend(r.encoders().iter().map(|(n, k, s)| row("encoder", n, k.doc(), s)));
    out
}

fn list(a: ListArgs, kinds: &Registry) -> Result<()> {
    let mut registry = kinds.clone();
    let mut libs = Vec::new();
    for path in plugin::requested(None, &[], &a.plugins) {
        libs.push(plugin::load(&mut registry, &path)?);
    }
    let rows = rows(&registry, &libs);
    if a.json {
        let j = serde_json::json!({
            "plugins": libs.iter().map(|l| serde_json::json!({
                "path": l.path.display().to_string(), "name": l.name, "version": l.version,
                "abi_version": l.abi_version, "api_version": l.api_version,
            })).collect::<Vec<_>>(),
            "kinds": rows.iter().map(|r| serde_json::json!({
                "family": r.family, "name": r.name, "doc": r.doc, "source": r.source,
                "attrs": r.attrs.iter().map(|(n, d)| serde_json::json!({"name": n, "doc": d})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&j).unwrap_or_default());
        return Ok(());
    }
    if !libs.is_empty() {
        println!("plugins");
        for l in &libs {
            println!("  {} {} (ABI {}, API {})  {}", l.name, l.version, l.abi_version, l.api_version, l.path.display());
        }
        println!();
    }
    let name_w = rows.iter().map(|r| r.name.chars().count()).max().unwrap_or(0);
    let src_w = rows.iter().map(|r| r.source.chars().count()).max().unwrap_or(0);
    for (family, title) in [("block", "blocks"), ("loss", "losses"), ("sampler", "samplers"), ("encoder", "encoders")] {
        let of: Vec<&Row> = rows.iter().filter(|r| r.family == family).collect();
        println!("{title} ({})", of.len());
        for r in of {
            println!("  {:name_w$}  {:src_w$}  {}", r.name, r.source, r.doc);
            if a.verbose {
                for (n, d) in &r.attrs {
                    println!("  {:name_w$}    `{n}`: {d}", "");
                }
            }
        }
        if family != "sampler" {
            println!();
        }
    }
    Ok(())
}
