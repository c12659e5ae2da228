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
    /// Print JSON: the loaded libraries and every kind.
    #[arg(long)]
    pub json: bool,
}

/// Run `plugins`.
pub fn run(a: Args) -> Result<()> {
    match a.command {
        Sub::List(l) => list(l),
    }
}

struct Row {
    family: &'static str,
    name: String,
    doc: String,
    source: String,
}

fn rows(r: &Registry) -> Vec<Row> {
    let src = |s: &Source| s.to_string();
    let mut out: Vec<Row> = r.blocks().iter().map(|(n, k, s)| Row { family: "block", name: n.into(), doc: k.doc().into(), source: src(s) }).collect();
    out.extend(r.losses().iter().map(|(n, k, s)| Row { family: "loss", name: n.into(), doc: k.doc().into(), source: src(s) }));
    out.extend(r.samplers().iter().map(|(n, k, s)| Row { family: "sampler", name: n.into(), doc: k.doc().into(), source: src(s) }));
    out
}

fn list(a: ListArgs) -> Result<()> {
    let mut registry = Registry::with_builtins();
    let mut libs = Vec::new();
    for path in plugin::requested(None, &[], &a.plugins) {
        libs.push(plugin::load(&mut registry, &path)?);
    }
    let rows = rows(&registry);
    if a.json {
        let j = serde_json::json!({
            "plugins": libs.iter().map(|l| serde_json::json!({
                "path": l.path.display().to_string(), "name": l.name, "version": l.version,
                "abi_version": l.abi_version, "api_version": l.api_version,
            })).collect::<Vec<_>>(),
            "kinds": rows.iter().map(|r| serde_json::json!({"family": r.family, "name": r.name, "doc": r.doc, "source": r.source})).collect::<Vec<_>>(),
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
    for (family, title) in [("block", "blocks"), ("loss", "losses"), ("sampler", "samplers")] {
        let of: Vec<&Row> = rows.iter().filter(|r| r.family == family).collect();
        println!("{title} ({})", of.len());
        for r in of {
            println!("  {:name_w$}  {:src_w$}  {}", r.name, r.source, r.doc);
        }
        if family != "sampler" {
            println!();
        }
    }
    Ok(())
}
