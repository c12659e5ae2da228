//! `stackflow graph`: a net's nodes and edges, as text or Graphviz dot.

use std::fmt::Write;

use stackflow_core::dsl::Parsed;
use stackflow_core::ir::{Net, Producer};
use stackflow_core::registry::Registry;
use stackflow_core::Result;

use super::{pick_net, GraphArgs};

/// Output format.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    /// One line per node.
    Text,
    /// Graphviz dot.
    Dot,
}

/// Arguments of `graph`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub graph: GraphArgs,
    /// The net (default: every net).
    #[arg(long)]
    pub net: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// Run `graph`.
pub fn run(a: Args, kinds: &Registry) -> Result<()> {
    let flow = a.graph.build(kinds)?;
    let nets: Vec<&Net> = match &a.net {
        Some(n) => vec![pick_net(&flow, n)?],
        None => flow.nets.iter().collect(),
    };
    let mut out = String::new();
    for net in nets {
        match a.format {
            Format::Text => text(net, &flow.parsed, &mut out),
            Format::Dot => dot(net, &mut out),
        }
    }
    print!("{out}");
    Ok(())
}

/// One line per node, each with the file and line that wrote it (a template's nodes
/// point into the template, wherever it was included from).
fn text(net: &Net, parsed: &Parsed, out: &mut String) {
    let _ = writeln!(out, "net {}  ({})", net.name, parsed.place(&["nets".into(), net.name.as_str().into()]));
    for (name, v) in &net.inputs {
        let _ = writeln!(out, "  input  {name} {}", net.values[*v].shape);
    }
    for n in &net.nodes {
        let ins: Vec<&str> = n.inputs.iter().map(|&v| net.values[v].name.as_str()).collect();
        let outs: Vec<String> = n.outputs.iter().map(|&v| net.values[v].shape.to_string()).collect();
        let frozen = if n.frozen { " (frozen)" } else { "" };
        let at = parsed.src.place(n.span.offset());
        let _ = writeln!(
            out,
            "  {:<28} {:<24} ({}) -> {}{frozen}  @ {at}",
            n.path,
            n.kind,
            ins.join(", "),
            outs.join(", ")
        );
    }
    for (name, v) in &net.outputs {
        let _ = writeln!(out, "  output {name} = {} {}", net.values[*v].name, net.values[*v].shape);
    }
}

fn dot(net: &Net, out: &mut String) {
    let _ = writeln!(out, "digraph \"{}\" {{\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];", net.name);
    for (name, _) in &net.inputs {
        let _ = writeln!(out, "  \"in:{name}\" [label=\"{name}\", shape=ellipse];");
    }
    for (i, n) in net.nodes.iter().enumerate() {
        let style = if n.frozen { ", style=dashed" } else { "" };
        let _ = writeln!(out, "  n{i} [label=\"{}\\n{}\"{style}];", n.path, n.kind);
    }
    for (i, n) in net.nodes.iter().enumerate() {
        for &v in &n.inputs {
            let from = match net.values[v].producer {
                Producer::Input(k) => format!("\"in:{}\"", net.inputs[k].0),
                Producer::Node { node, .. } => format!("n{node}"),
            };
            let _ = writeln!(out, "  {from} -> n{i} [label=\"{}\"];", net.values[v].shape);
        }
    }
    for (name, v) in &net.outputs {
        let from = match net.values[*v].producer {
            Producer::Input(k) => format!("\"in:{}\"", net.inputs[k].0),
            Producer::Node { node, .. } => format!("n{node}"),
        };
        let _ = writeln!(out, "  \"out:{name}\" [label=\"{name}\", shape=ellipse];\n  {from} -> \"out:{name}\";");
    }
    let _ = writeln!(out, "}}");
}
