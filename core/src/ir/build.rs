//! From `Doc` to checked nets: variables and `--set` overrides, template expansion, net
//! embedding, edge resolution, cycle detection, and shape inference as each node is wired.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::DiGraph;

use super::{Flow, ModeOverride, Net, Node, Param, Producer, Value, ValueId};
use crate::dsl::{entries, expr, Key, NodeDef, Parsed};
use crate::error::{did_you_mean, Error, Result, SourceFile, Span};
use crate::kind::attrs::{Attr, Attrs};
use crate::kind::{Inferred, ParamSpec, Shape};
use crate::registry::Registry;

/// Options of a build.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// `--set` flags as typed: `name=expr` for a variable, `stage.field=value` for the
    /// recipe ([`super::set`]).
    pub overrides: Vec<String>,
}

/// Templates and embedded nets may nest at most this deep.
const MAX_NESTING: usize = 32;
/// At most this many nodes per net after expansion.
const MAX_NODES: usize = 100_000;

/// Check a parsed flow: evaluate variables, then expand, wire and shape-check every net.
pub fn build(parsed: Arc<Parsed>, registry: &Registry, opts: &BuildOptions) -> Result<Flow> {
    let parsed = match super::set::apply(&parsed, &opts.overrides)? {
        Some(changed) => Arc::new(changed),
        None => parsed,
    };
    let vars = eval_vars(&parsed, &opts.overrides)?;
    for (name, _) in &parsed.doc.blocks {
        if parsed.doc.nets.contains_key(name) {
            return Err(parsed
                .error(
                    "graph::duplicate_name",
                    &["blocks".into(), name.as_str().into()],
                    format!("`{name}` is both a template and a net"),
                )
                .with_help("give the template and the net different names"));
        }
    }
    let mut nets = Vec::new();
    for name in parsed.doc.nets.keys() {
        let b = Builder { p: &parsed, reg: registry, vars: &vars };
        nets.push(b.net(name)?);
    }
    let mut flow = Flow { parsed: parsed.clone(), vars, nets, stages: Vec::new() };
    flow.stages = super::recipe::lower(&flow)?;
    Ok(flow)
}

/// The node being wired, as its diagnostics name it.
struct Wiring<'a> {
    path: &'a str,
    kind: &'a str,
    span: Span,
    frame: &'a Frame<'a>,
}

/// One use of a template: its name and definition, the node's attributes, and the id its
/// nodes are prefixed with (`res.0` for the first copy of a `repeat`).
struct TemplateUse<'a> {
    kind: &'a str,
    def: &'a crate::dsl::BlockDef,
    attrs: Vec<Attr>,
    id: &'a str,
}

/// One use of an embedded net: node `i` of `frame`, the net's name, and the values the
/// node gives it.
struct NetUse<'a> {
    frame: &'a Frame<'a>,
    i: usize,
    kind: &'a str,
    inputs: &'a [ValueId],
}

/// Evaluate the graph's variables in order; a `--set name=expr` replaces a definition.
fn eval_vars(p: &Parsed, overrides: &[String]) -> Result<BTreeMap<String, i64>> {
    let Some(defs) = entries(&p.doc.vars) else {
        return Err(p.error(
            "graph::bad_value",
            &["vars".into()],
            "`vars` must be a map of names to integers or expressions",
        ));
    };
    let set_src = SourceFile::new("--set", overrides.join(" "));
    let over = var_overrides(&defs, overrides, &set_src)?;
    let mut vars = BTreeMap::new();
    for (name, def) in &defs {
        if !is_ident(name) {
            return Err(p
                .spans
                .key_span(&["vars".into(), name.as_str().into()])
                .map(|s| p.src.error("graph::bad_name", s, format!("`{name}` is not a valid variable name")))
                .unwrap_or_else(|| {
                    p.error("graph::bad_name", &["vars".into()], format!("`{name}` is not a valid variable name"))
                }));
        }
        let names = || vars.keys().cloned().collect();
        let look = |n: &str| vars.get(n).copied();
        let value = if let Some((text, at)) = over.get(name) {
            expr::eval(text, &look, &names).map_err(|e| {
                set_src.error("cli::bad_set", (at + e.range.0, (e.range.1 - e.range.0).max(1)).into(), e.message)
            })?
        } else {
            var_value(p, name, def, &vars)?
        };
        vars.insert(name.clone(), value);
    }
    Ok(vars)
}

/// The variable overrides among the `--set` flags (recipe ones are skipped): each
/// variable's expression and its offset in `set_src`, the flags joined by spaces.
fn var_overrides(
    defs: &[(String, ron::Value)],
    overrides: &[String],
    set_src: &SourceFile,
) -> Result<HashMap<String, (String, usize)>> {
    let mut over: HashMap<String, (String, usize)> = HashMap::new();
    let mut offset = 0;
    for o in overrides {
        if super::set::is_recipe(o) {
            offset += o.len() + 1;
            continue;
        }
        let Some((k, v)) = o.split_once('=') else {
            return Err(set_src
                .error("cli::bad_set", (offset, o.len()).into(), format!("`--set {o}` is not `name=value`"))
                .with_help("e.g. `--set gf_dim=16`"));
        };
        let k = k.trim();
        if !defs.iter().any(|(n, _)| n == k) {
            let mut e = set_src.error(
                "cli::unknown_var",
                (offset, k.len()).into(),
                format!("`{k}` is not a variable of this graph"),
            );
            e = e.with_help(did_you_mean(k, defs.iter().map(|(n, _)| n.as_str())).unwrap_or_else(|| {
                format!("variables: {}", defs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "))
            }));
            return Err(e);
        }
        over.insert(k.to_string(), (v.to_string(), offset + o.find('=').unwrap_or(0) + 1));
        offset += o.len() + 1;
    }
    Ok(over)
}

/// The value of variable `name` as the graph defines it, from the variables before it.
fn var_value(p: &Parsed, name: &str, def: &ron::Value, vars: &BTreeMap<String, i64>) -> Result<i64> {
    let names = || vars.keys().cloned().collect();
    let look = |n: &str| vars.get(n).copied();
    let path = [Key::from("vars"), Key::from(name)];
    Ok(match def {
        ron::Value::Number(n) if n.into_f64().fract() == 0.0 && n.into_f64().abs() < 9e15 => n.into_f64() as i64,
        ron::Value::String(s) => expr::eval(s, &look, &names).map_err(|e| {
            let base = p.span(&path).offset() + 1;
            let mut err = p.src.error(
                "graph::bad_expression",
                (base + e.range.0, (e.range.1 - e.range.0).max(1)).into(),
                e.message,
            );
            if let Some(h) = e.help {
                err = err.with_help(format!("{h} (a variable may use only variables defined before it)"));
            }
            err
        })?,
        _ => {
            return Err(p.error(
                "graph::bad_value",
                &path,
                format!("variable `{name}` must be an integer or an expression string"),
            ))
        }
    })
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

struct Builder<'a> {
    p: &'a Parsed,
    reg: &'a Registry,
    vars: &'a BTreeMap<String, i64>,
}

/// What is being expanded: a net body or a template body.
struct Frame<'f> {
    /// Prefix of node paths in the built graph (`stage1.up1.`).
    node_prefix: String,
    /// Prefix of parameter paths (`g1.up1.`).
    param_prefix: String,
    nodes: &'f [NodeDef],
    /// Span path of the node list.
    base: Vec<Key>,
    inputs: Vec<(String, ValueId)>,
    vars: BTreeMap<String, i64>,
    subst: HashMap<String, ron::Value>,
    frozen: bool,
    mode: ModeOverride,
    /// Names of the templates/nets being expanded (recursion guard).
    stack: Vec<String>,
    /// Where the template or net was used, for a second label on errors inside it.
    use_site: Option<Span>,
}

#[derive(Default)]
struct NetBuild {
    nodes: Vec<Node>,
    values: Vec<Value>,
    params: Vec<Param>,
    param_index: HashMap<String, usize>,
}

type Ports = Vec<(String, ValueId)>;

impl Builder<'_> {
    fn err(&self, code: &'static str, span: Span, msg: impl Into<String>, frame: &Frame) -> Error {
        let mut e = self.p.src.error(code, span, msg);
        if let Some(site) = frame.use_site {
            e = e.with_label(site, Some("used from here"));
        }
        e
    }

    fn span(&self, frame: &Frame, rest: &[Key]) -> Span {
        let mut path = frame.base.clone();
        path.extend_from_slice(rest);
        self.p.span(&path)
    }

    fn net(&self, name: &str) -> Result<Net> {
        let def = &self.p.doc.nets[name];
        let net_path = vec![Key::from("nets"), Key::from(name)];
        let mut nb = NetBuild::default();
        let inputs = self.net_inputs(name)?;
        let mut bound = Vec::new();
        for (i, (iname, shape)) in inputs.iter().enumerate() {
            nb.values.push(Value { shape: shape.clone(), producer: Producer::Input(i), name: iname.clone() });
            bound.push((iname.clone(), nb.values.len() - 1));
        }
        let frame = Frame {
            node_prefix: String::new(),
            param_prefix: format!("{name}."),
            nodes: &def.nodes,
            base: [net_path.clone(), vec![Key::from("nodes")]].concat(),
            inputs: bound.clone(),
            vars: self.vars.clone(),
            subst: HashMap::new(),
            frozen: false,
            mode: ModeOverride::Follow,
            stack: vec![name.to_string()],
            use_site: None,
        };
        let outputs = self.expand(
            &mut nb,
            &frame,
            &def.outputs,
            &[net_path.clone(), vec![Key::from("outputs")]].concat(),
            false,
        )?;
        if outputs.is_empty() {
            return Err(self.p.error(
                "graph::missing_output",
                &[net_path.clone(), vec!["outputs".into()]].concat(),
                format!("net `{name}` has no outputs"),
            ));
        }
        Ok(Net {
            name: name.to_string(),
            inputs: bound,
            outputs,
            nodes: nb.nodes,
            values: nb.values,
            params: nb.params,
            span: self.p.span(&net_path),
        })
    }

    /// Declared inputs of a net with their evaluated shapes.
    fn net_inputs(&self, name: &str) -> Result<Vec<(String, Shape)>> {
        let path = [Key::from("nets"), Key::from(name), Key::from("inputs")];
        let Some(items) = entries(&self.p.doc.nets[name].inputs) else {
            return Err(self.p.error(
                "graph::bad_value",
                &path,
                "`inputs` must map names to shapes, e.g. `(z: [\"z_dim\"])`",
            ));
        };
        let names = || self.vars.keys().cloned().collect();
        let mut out = Vec::new();
        for (iname, v) in items {
            let ipath = [&path[..], &[Key::from(iname.as_str())]].concat();
            if !is_ident(&iname) {
                return Err(self.p.error("graph::bad_name", &ipath, format!("`{iname}` is not a valid input name")));
            }
            let ron::Value::Seq(dims) = v else {
                return Err(self.p.error(
                    "graph::bad_value",
                    &ipath,
                    format!("input `{iname}` needs a shape list such as `[\"embed_dim\"]`"),
                ));
            };
            let mut shape = Vec::new();
            for (j, d) in dims.iter().enumerate() {
                let dpath = [&ipath[..], &[Key::Index(j)]].concat();
                let val = match d {
                    ron::Value::Number(n) if n.into_f64().fract() == 0.0 => n.into_f64() as i64,
                    ron::Value::String(s) => expr::eval(s, &|n| self.vars.get(n).copied(), &names).map_err(|e| {
                        let base = self.p.span(&dpath).offset() + 1;
                        let mut err = self.p.src.error(
                            "graph::bad_expression",
                            (base + e.range.0, (e.range.1 - e.range.0).max(1)).into(),
                            e.message,
                        );
                        if let Some(h) = e.help {
                            err = err.with_help(h);
                        }
                        err
                    })?,
                    _ => {
                        return Err(self.p.error(
                            "graph::bad_value",
                            &dpath,
                            "a dimension must be an integer or an expression string",
                        ))
                    }
                };
                if val <= 0 || val > (1 << 40) {
                    return Err(self.p.error(
                        "graph::bad_shape",
                        &dpath,
                        format!("dimension must be positive, got {val}"),
                    ));
                }
                shape.push(val as usize);
            }
            let shape = Shape(shape);
            if !shape.is_sane() {
                return Err(self.p.error(
                    "graph::too_large",
                    &ipath,
                    format!("input `{iname}` of shape {shape} is too large"),
                ));
            }
            out.push((iname, shape));
        }
        Ok(out)
    }

    /// Expand the nodes of `frame` into `nb`; return the resolved outputs.
    fn expand(
        &self,
        nb: &mut NetBuild,
        frame: &Frame,
        outputs: &ron::Value,
        out_path: &[Key],
        is_template: bool,
    ) -> Result<Ports> {
        if frame.stack.len() > MAX_NESTING {
            return Err(self.err(
                "graph::too_deep",
                self.span(frame, &[]),
                "templates and nets nest too deeply",
                frame,
            ));
        }
        let order = self.order(frame)?;
        let mut local: HashMap<&str, Ports> = HashMap::new();
        for (name, v) in &frame.inputs {
            local.insert(name.as_str(), vec![("out".to_string(), *v)]);
        }
        for &i in &order {
            let node = &frame.nodes[i];
            let inputs = node
                .3
                .iter()
                .enumerate()
                .map(|(j, r)| self.resolve(r, &local, frame, &[Key::Index(i), Key::Index(3), Key::Index(j)]))
                .collect::<Result<Vec<_>>>()?;
            let ports = self.wire(nb, frame, i, &inputs)?;
            local.insert(node.0.as_str(), ports);
            if nb.nodes.len() > MAX_NODES {
                return Err(self.err(
                    "graph::too_large",
                    self.span(frame, &[Key::Index(i)]),
                    "the graph expands to too many nodes",
                    frame,
                ));
            }
        }
        // Outputs.
        let mut out = Vec::new();
        let items = self.output_items(frame, outputs, out_path, is_template)?;
        for (name, v) in items {
            let opath = [out_path, &[Key::from(name.as_str())]].concat();
            let ron::Value::String(r) = v else {
                return Err(self.err(
                    "graph::bad_value",
                    self.p.span(&opath),
                    format!("output `{name}` must name a value such as `\"node.port\"`"),
                    frame,
                ));
            };
            let span = self.p.span(&opath);
            let id = self.resolve_at(&r, &local, frame, span)?;
            out.push((name, id));
        }
        Ok(out)
    }

    /// A frame's outputs by name: its `outputs` map, or the last node of a template that
    /// declares none.
    fn output_items(
        &self,
        frame: &Frame,
        outputs: &ron::Value,
        out_path: &[Key],
        is_template: bool,
    ) -> Result<Vec<(String, ron::Value)>> {
        if is_template && matches!(outputs, ron::Value::Unit | ron::Value::Option(None)) {
            return match frame.nodes.last() {
                Some(last) => Ok(vec![("out".to_string(), ron::Value::String(last.0.clone()))]),
                None => Err(self.err("graph::missing_output", self.p.span(out_path), "template has no nodes", frame)),
            };
        }
        entries(outputs).ok_or_else(|| {
            self.err(
                "graph::bad_value",
                self.p.span(out_path),
                "`outputs` must map names to values, e.g. `(img: \"tanh\")`",
                frame,
            )
        })
    }

    /// Evaluation order of a frame's nodes; duplicate ids, dangling edges and cycles are errors.
    fn order(&self, frame: &Frame) -> Result<Vec<usize>> {
        let mut ids: HashMap<&str, usize> = HashMap::new();
        for (i, n) in frame.nodes.iter().enumerate() {
            let span = self.span(frame, &[Key::Index(i), Key::Index(0)]);
            if !is_ident(&n.0) {
                return Err(self.err(
                    "graph::bad_name",
                    span,
                    format!("node id `{}` must be snake_case without dots", n.0),
                    frame,
                ));
            }
            if let Some(prev) = ids.insert(n.0.as_str(), i) {
                return Err(self
                    .err("graph::duplicate_id", span, format!("node id `{}` is used twice", n.0), frame)
                    .with_label(self.span(frame, &[Key::Index(prev), Key::Index(0)]), Some("first defined here")));
            }
            if frame.inputs.iter().any(|(name, _)| name == &n.0) {
                return Err(self.err(
                    "graph::duplicate_id",
                    span,
                    format!("node id `{}` hides the input of the same name", n.0),
                    frame,
                ));
            }
        }
        let mut g = DiGraph::<usize, ()>::new();
        let idx: Vec<_> = (0..frame.nodes.len()).map(|i| g.add_node(i)).collect();
        for (i, n) in frame.nodes.iter().enumerate() {
            for (j, r) in n.3.iter().enumerate() {
                let head = r.split('.').next().unwrap_or("");
                if let Some(&src) = ids.get(head) {
                    g.add_edge(idx[src], idx[i], ());
                } else if !frame.inputs.iter().any(|(name, _)| name == head) {
                    let span = self.span(frame, &[Key::Index(i), Key::Index(3), Key::Index(j)]);
                    let known: Vec<&str> =
                        ids.keys().copied().chain(frame.inputs.iter().map(|(n, _)| n.as_str())).collect();
                    let mut e = self.err(
                        "graph::dangling_edge",
                        span,
                        format!("node `{}` reads `{r}`, which is neither a node nor an input here", n.0),
                        frame,
                    );
                    e = e.with_help(
                        did_you_mean(head, known.iter().copied())
                            .unwrap_or_else(|| format!("known names: {}", known.join(", "))),
                    );
                    return Err(e);
                }
            }
        }
        match toposort(&g, None) {
            Ok(order) => Ok(order.into_iter().map(|n| g[n]).collect()),
            Err(_) => Err(self.cycle_error(frame, &g)),
        }
    }

    /// The error for a frame whose graph `g` has a cycle: it names one, from the node that
    /// comes first.
    fn cycle_error(&self, frame: &Frame, g: &DiGraph<usize, ()>) -> Error {
        let scc = tarjan_scc(g).into_iter().find(|c| c.len() > 1 || g.contains_edge(c[0], c[0])).unwrap_or_default();
        let mut members: Vec<usize> = scc.iter().map(|n| g[*n]).collect();
        members.sort_unstable();
        let cycle = cycle_path(g, &scc);
        let names: Vec<&str> = cycle.iter().map(|&i| frame.nodes[i].0.as_str()).collect();
        let first = members.first().copied().unwrap_or(0);
        self.err("graph::cycle", self.span(frame, &[Key::Index(first)]), format!("cycle: {}", names.join(" → ")), frame)
            .with_help("a net must be a DAG; break the cycle by reading a value from earlier in the chain")
    }

    fn resolve(&self, r: &str, local: &HashMap<&str, Ports>, frame: &Frame, rest: &[Key]) -> Result<ValueId> {
        self.resolve_at(r, local, frame, self.span(frame, rest))
    }

    fn resolve_at(&self, r: &str, local: &HashMap<&str, Ports>, frame: &Frame, span: Span) -> Result<ValueId> {
        let (head, port) = match r.split_once('.') {
            Some((h, p)) => (h, Some(p)),
            None => (r, None),
        };
        let Some(ports) = local.get(head) else {
            let known: Vec<&str> = local.keys().copied().collect();
            return Err(self
                .err("graph::dangling_edge", span, format!("`{r}` names no node or input here"), frame)
                .with_help(
                    did_you_mean(head, known.iter().copied())
                        .unwrap_or_else(|| format!("known names: {}", known.join(", "))),
                ));
        };
        match port {
            None => Ok(ports[0].1),
            Some(p) => ports.iter().find(|(n, _)| n == p).map(|(_, v)| *v).ok_or_else(|| {
                let names: Vec<&str> = ports.iter().map(|(n, _)| n.as_str()).collect();
                self.err("graph::dangling_edge", span, format!("`{head}` has no output `{p}`"), frame).with_help(
                    did_you_mean(p, names.iter().copied())
                        .unwrap_or_else(|| format!("its outputs: {}", names.join(", "))),
                )
            }),
        }
    }

    /// Attributes of node `i` after template substitution.
    fn attrs(&self, frame: &Frame, i: usize) -> Result<Vec<Attr>> {
        let node = &frame.nodes[i];
        let items = entries(&node.2).ok_or_else(|| {
            self.err(
                "graph::bad_value",
                self.span(frame, &[Key::Index(i), Key::Index(2)]),
                "node attributes must be a map such as `(out: 64)`",
                frame,
            )
        })?;
        Ok(items
            .into_iter()
            .map(|(name, value)| {
                let rest = [Key::Index(i), Key::Index(2), Key::from(name.as_str())];
                let span = self.span(frame, &rest);
                let key_span = self.p.spans.key_span(&[frame.base.clone(), rest.to_vec()].concat());
                let value = match &value {
                    ron::Value::String(s) => frame.subst.get(s).cloned().unwrap_or(value),
                    _ => value,
                };
                Attr { name, value, span, key_span }
            })
            .collect())
    }

    /// Wire node `i` of `frame` with resolved inputs; return its ports.
    fn wire(&self, nb: &mut NetBuild, frame: &Frame, i: usize, inputs: &[ValueId]) -> Result<Ports> {
        let node = &frame.nodes[i];
        let kind = node.1.as_str();
        let kind_span = self.span(frame, &[Key::Index(i), Key::Index(1)]);
        if frame.stack.iter().any(|s| s == kind) {
            return Err(self.err(
                "graph::recursive",
                kind_span,
                format!("`{kind}` uses itself (through {})", frame.stack.join(" → ")),
                frame,
            ));
        }
        if let Some(t) = self.p.doc.blocks.get(kind) {
            return self.template(nb, frame, i, inputs, kind, t);
        }
        if self.p.doc.nets.contains_key(kind) {
            return self.embed(nb, frame, i, inputs, kind);
        }
        let Some(bk) = self.reg.block(kind) else {
            return Err(self.unknown_kind(frame, kind, kind_span));
        };
        let attrs_span = self.span(frame, &[Key::Index(i), Key::Index(2)]);
        let mut attrs = Attrs::new(self.attrs(frame, i)?, &frame.vars, &self.p.src, attrs_span, kind);
        let block = bk.configure(&mut attrs)?;
        attrs.finish()?;
        let path = format!("{}{}", frame.node_prefix, node.0);
        let node_span = self.span(frame, &[Key::Index(i)]);
        let shapes: Vec<Shape> = inputs.iter().map(|&v| nb.values[v].shape.clone()).collect();
        let shape_list = shapes.iter().map(Shape::to_string).collect::<Vec<_>>().join(", ");
        let inferred: Inferred = block.infer(&shapes).map_err(|m| {
            self.err("graph::shape", node_span, format!("node `{path}` ({kind}): {m}"), frame).with_help(format!(
                "input shapes (per sample): {}",
                if shape_list.is_empty() { "none".into() } else { shape_list.clone() }
            ))
        })?;
        let port_names = block.ports();
        let at = Wiring { path: &path, kind, span: node_span, frame };
        self.check_outputs(&at, &inferred, port_names.len())?;
        let node_index = nb.nodes.len();
        let params = self.add_params(nb, &at, &node.0, &inferred.params)?;
        let mut ports = Vec::new();
        let mut outputs = Vec::new();
        for (p, (pname, shape)) in port_names.iter().zip(inferred.outputs.iter()).enumerate() {
            let vname = if p == 0 { path.clone() } else { format!("{path}.{pname}") };
            nb.values.push(Value {
                shape: shape.clone(),
                producer: Producer::Node { node: node_index, port: p },
                name: vname,
            });
            outputs.push(nb.values.len() - 1);
            ports.push((pname.clone(), nb.values.len() - 1));
        }
        nb.nodes.push(Node {
            path,
            kind: kind.to_string(),
            block,
            inputs: inputs.to_vec(),
            outputs,
            params,
            span: node_span,
            frozen: frame.frozen,
            mode: frame.mode,
            flops: inferred.flops,
        });
        Ok(ports)
    }

    /// The error for a kind that is neither a template, a net nor a registered block, with
    /// the nearest template or net name, else the registry's suggestion.
    fn unknown_kind(&self, frame: &Frame, kind: &str, kind_span: Span) -> Error {
        let mut names: Vec<&str> = self.p.doc.blocks.keys().chain(self.p.doc.nets.keys()).map(String::as_str).collect();
        let suggestion = did_you_mean(kind, names.iter().copied());
        names.clear();
        self.err("graph::unknown_kind", kind_span, format!("unknown kind `{kind}`"), frame)
            .with_help(suggestion.unwrap_or_else(|| self.reg.suggest_block(kind)))
    }

    /// A block's inferred outputs: one per port, each a sane, non-empty shape.
    fn check_outputs(&self, at: &Wiring<'_>, inferred: &Inferred, ports: usize) -> Result<()> {
        let (path, kind) = (at.path, at.kind);
        if inferred.outputs.len() != ports {
            return Err(self.err(
                "graph::shape",
                at.span,
                format!("node `{path}` ({kind}) inferred {} outputs for {ports} ports", inferred.outputs.len()),
                at.frame,
            ));
        }
        for s in &inferred.outputs {
            if !s.is_sane() || s.rank() == 0 || s.0.contains(&0) {
                return Err(self.err(
                    "graph::too_large",
                    at.span,
                    format!("node `{path}` ({kind}) would produce a tensor of shape {s} per sample"),
                    at.frame,
                ));
            }
        }
        Ok(())
    }

    /// Lay out the parameters a node declares (local id `id`): each a new flow parameter,
    /// or the one of the same path (a shared embedded net) when the shapes agree.
    fn add_params(&self, nb: &mut NetBuild, at: &Wiring<'_>, id: &str, specs: &[ParamSpec]) -> Result<Vec<usize>> {
        let (path, kind, frame) = (at.path, at.kind, at.frame);
        let mut params = Vec::new();
        for spec in specs {
            let ppath = format!("{}{id}.{}", frame.param_prefix, spec.name);
            if spec.shape.is_empty() || spec.shape.len() > 4 || spec.shape.contains(&0) {
                return Err(self
                    .err(
                        "graph::bad_param",
                        at.span,
                        format!("node `{path}` ({kind}) declares parameter `{ppath}` of shape {:?}", spec.shape),
                        frame,
                    )
                    .with_help("a parameter has rank 1 to 4 and no zero-sized dimension"));
            }
            if !Shape(spec.shape.clone()).is_sane() {
                return Err(self.err(
                    "graph::too_large",
                    at.span,
                    format!("parameter `{ppath}` of shape {:?} is too large", spec.shape),
                    frame,
                ));
            }
            let idx = match nb.param_index.get(&ppath) {
                Some(&j) if nb.params[j].spec.shape != spec.shape => {
                    return Err(self.err(
                        "graph::shape",
                        at.span,
                        format!(
                            "parameter `{ppath}` is used with shapes {:?} and {:?}",
                            nb.params[j].spec.shape, spec.shape
                        ),
                        frame,
                    ));
                }
                Some(&j) => j,
                None => {
                    nb.params.push(Param { path: ppath.clone(), spec: spec.clone() });
                    nb.param_index.insert(ppath, nb.params.len() - 1);
                    nb.params.len() - 1
                }
            };
            params.push(idx);
        }
        Ok(params)
    }

    fn template(
        &self,
        nb: &mut NetBuild,
        frame: &Frame,
        i: usize,
        inputs: &[ValueId],
        kind: &str,
        t: &crate::dsl::BlockDef,
    ) -> Result<Ports> {
        let node = &frame.nodes[i];
        let mut attrs = self.attrs(frame, i)?;
        let Some(pos) = attrs.iter().position(|a| a.name == "repeat") else {
            return self.template_once(nb, frame, i, inputs, TemplateUse { kind, def: t, attrs, id: &node.0 });
        };
        // `repeat: n` chains n copies (`id.0` → `id.1` → …) of a one-in, one-out template.
        let rep = attrs.remove(pos);
        let mut one = Attrs::new(vec![rep.clone()], &frame.vars, &self.p.src, rep.span, kind);
        let n = one.int_or("repeat", 1)?;
        if !(1..=1000).contains(&n) {
            return Err(self.err(
                "graph::bad_attribute",
                rep.span,
                format!("`repeat` must be between 1 and 1000, got {n}"),
                frame,
            ));
        }
        if t.inputs.len() != 1 {
            return Err(self.err(
                "graph::bad_attribute",
                rep.span,
                format!("`repeat` needs a template with one input; `{kind}` has {}", t.inputs.len()),
                frame,
            ));
        }
        let mut cur = inputs.to_vec();
        let mut ports = Vec::new();
        for k in 0..n {
            let id = format!("{}.{k}", node.0);
            ports =
                self.template_once(nb, frame, i, &cur, TemplateUse { kind, def: t, attrs: attrs.clone(), id: &id })?;
            cur = vec![ports[0].1];
        }
        Ok(ports)
    }

    fn template_once(
        &self,
        nb: &mut NetBuild,
        frame: &Frame,
        i: usize,
        inputs: &[ValueId],
        used: TemplateUse<'_>,
    ) -> Result<Ports> {
        let (kind, t, id) = (used.kind, used.def, used.id);
        let node = &frame.nodes[i];
        let node_span = self.span(frame, &[Key::Index(i)]);
        if inputs.len() != t.inputs.len() {
            return Err(self.err(
                "graph::arity",
                self.span(frame, &[Key::Index(i), Key::Index(3)]),
                format!(
                    "template `{kind}` takes {} input(s) ({}), node `{}` gives {}",
                    t.inputs.len(),
                    t.inputs.join(", "),
                    node.0,
                    inputs.len()
                ),
                frame,
            ));
        }
        self.check_template_attrs(frame, &used)?;
        let (vars, subst) = self.template_args(frame, i, &used)?;
        let mut stack = frame.stack.clone();
        stack.push(kind.to_string());
        let sub = Frame {
            node_prefix: format!("{}{id}.", frame.node_prefix),
            param_prefix: format!("{}{id}.", frame.param_prefix),
            nodes: &t.nodes,
            base: vec![Key::from("blocks"), Key::from(kind), Key::from("nodes")],
            inputs: t.inputs.iter().cloned().zip(inputs.iter().copied()).collect(),
            vars,
            subst,
            frozen: frame.frozen,
            mode: frame.mode,
            stack,
            use_site: Some(frame.use_site.unwrap_or(node_span)),
        };
        self.expand(nb, &sub, &t.outputs, &[Key::from("blocks"), Key::from(kind), Key::from("outputs")], true)
    }

    /// Every attribute of a template use must name one of the template's parameters.
    fn check_template_attrs(&self, frame: &Frame, used: &TemplateUse<'_>) -> Result<()> {
        let (kind, t) = (used.kind, used.def);
        for a in &used.attrs {
            if !t.params.contains(&a.name) {
                let mut e = self.err(
                    "graph::unknown_attribute",
                    a.key_span.unwrap_or(a.span),
                    format!("template `{kind}` has no parameter `{}`", a.name),
                    frame,
                );
                e = e.with_help(
                    did_you_mean(&a.name, t.params.iter().map(String::as_str))
                        .unwrap_or_else(|| format!("its parameters: {}", t.params.join(", "))),
                );
                return Err(e);
            }
        }
        Ok(())
    }

    /// The template's parameters bound from node `i`'s attributes: the variables inside
    /// the template (integer parameters added) and the substitutions of its attributes.
    fn template_args(
        &self,
        frame: &Frame,
        i: usize,
        used: &TemplateUse<'_>,
    ) -> Result<(BTreeMap<String, i64>, HashMap<String, ron::Value>)> {
        let (kind, t) = (used.kind, used.def);
        let mut vars = self.vars.clone();
        let mut subst = HashMap::new();
        for pname in &t.params {
            let Some(a) = used.attrs.iter().find(|a| &a.name == pname) else {
                return Err(self.err(
                    "graph::missing_attribute",
                    self.span(frame, &[Key::Index(i)]),
                    format!("template `{kind}` needs parameter `{pname}`"),
                    frame,
                ));
            };
            let value = match &a.value {
                ron::Value::String(s) if !is_ident(s) || frame.vars.contains_key(s) => {
                    let mut one = Attrs::new(vec![a.clone()], &frame.vars, &self.p.src, a.span, kind);
                    ron::Value::Number(ron::Number::from(one.int_or(pname, 0)?))
                }
                v => v.clone(),
            };
            if let ron::Value::Number(n) = &value {
                if n.into_f64().fract() == 0.0 {
                    vars.insert(pname.clone(), n.into_f64() as i64);
                }
            }
            subst.insert(pname.clone(), value);
        }
        Ok((vars, subst))
    }

    fn embed(&self, nb: &mut NetBuild, frame: &Frame, i: usize, inputs: &[ValueId], kind: &str) -> Result<Ports> {
        let at = NetUse { frame, i, kind, inputs };
        let node = &frame.nodes[i];
        let node_span = self.span(frame, &[Key::Index(i)]);
        let (frozen, mode) = self.embed_attrs(&at)?;
        let declared = self.embed_inputs(nb, &at)?;
        let def = &self.p.doc.nets[kind];
        let mut stack = frame.stack.clone();
        stack.push(kind.to_string());
        let sub = Frame {
            node_prefix: format!("{}{}.", frame.node_prefix, node.0),
            param_prefix: format!("{kind}."),
            nodes: &def.nodes,
            base: vec![Key::from("nets"), Key::from(kind), Key::from("nodes")],
            inputs: declared.iter().map(|d| d.0.clone()).zip(inputs.iter().copied()).collect(),
            vars: self.vars.clone(),
            subst: HashMap::new(),
            frozen: frame.frozen || frozen,
            mode,
            stack,
            use_site: Some(frame.use_site.unwrap_or(node_span)),
        };
        let outs =
            self.expand(nb, &sub, &def.outputs, &[Key::from("nets"), Key::from(kind), Key::from("outputs")], false)?;
        if !frozen {
            return Ok(outs);
        }
        self.detach_outputs(nb, &at, outs, mode)
    }

    /// The attributes of a node that embeds a net: whether it is frozen, and its
    /// BatchNorm mode.
    fn embed_attrs(&self, at: &NetUse<'_>) -> Result<(bool, ModeOverride)> {
        let (frame, i) = (at.frame, at.i);
        let attrs_span = self.span(frame, &[Key::Index(i), Key::Index(2)]);
        let mut attrs = Attrs::new(self.attrs(frame, i)?, &frame.vars, &self.p.src, attrs_span, at.kind);
        let frozen = attrs.bool_or("frozen", false)?;
        let mode = match attrs.choice("bn", &["follow", "train", "eval"])? {
            "train" => ModeOverride::Train,
            "eval" => ModeOverride::Eval,
            _ => frame.mode,
        };
        attrs.finish()?;
        Ok((frozen, mode))
    }

    /// The declared inputs of the embedded net, checked against the values the node gives
    /// it: as many, of the same shapes.
    fn embed_inputs(&self, nb: &NetBuild, at: &NetUse<'_>) -> Result<Vec<(String, Shape)>> {
        let (frame, i, kind, inputs) = (at.frame, at.i, at.kind, at.inputs);
        let declared = self.net_inputs(kind)?;
        if declared.len() != inputs.len() {
            return Err(self.err(
                "graph::arity",
                self.span(frame, &[Key::Index(i), Key::Index(3)]),
                format!(
                    "net `{kind}` takes {} input(s) ({}), node `{}` gives {}",
                    declared.len(),
                    declared.iter().map(|d| d.0.as_str()).collect::<Vec<_>>().join(", "),
                    frame.nodes[i].0,
                    inputs.len()
                ),
                frame,
            ));
        }
        for (j, ((dname, dshape), &v)) in declared.iter().zip(inputs).enumerate() {
            if &nb.values[v].shape != dshape {
                return Err(self.err(
                    "graph::shape",
                    self.span(frame, &[Key::Index(i), Key::Index(3), Key::Index(j)]),
                    format!(
                        "input `{dname}` of net `{kind}` is declared {dshape}, but this value is {}",
                        nb.values[v].shape
                    ),
                    frame,
                ));
            }
        }
        Ok(declared)
    }

    /// A frozen embedded net is a constant for the outer net: detach what leaves it, one
    /// `core.detach` node per output (none when no such block is registered).
    fn detach_outputs(&self, nb: &mut NetBuild, at: &NetUse<'_>, outs: Ports, mode: ModeOverride) -> Result<Ports> {
        let (frame, i) = (at.frame, at.i);
        let node = &frame.nodes[i];
        let node_span = self.span(frame, &[Key::Index(i)]);
        let attrs_span = self.span(frame, &[Key::Index(i), Key::Index(2)]);
        let detach = self.reg.block("core.detach").cloned();
        let Some(detach) = detach else { return Ok(outs) };
        let mut attrs = Attrs::new(Vec::new(), &frame.vars, &self.p.src, attrs_span, "core.detach");
        let block = detach.configure(&mut attrs)?;
        let mut ports = Vec::new();
        for (oname, v) in outs {
            let shape = nb.values[v].shape.clone();
            let path = format!("{}{}.{}_detached", frame.node_prefix, node.0, oname);
            let node_index = nb.nodes.len();
            nb.values.push(Value { shape, producer: Producer::Node { node: node_index, port: 0 }, name: path.clone() });
            let out = nb.values.len() - 1;
            nb.nodes.push(Node {
                path,
                kind: "core.detach".into(),
                block: block.clone(),
                inputs: vec![v],
                outputs: vec![out],
                params: vec![],
                span: node_span,
                frozen: true,
                mode,
                flops: 0,
            });
            ports.push((oname, out));
        }
        Ok(ports)
    }
}

/// One cycle through the strongly connected component `scc`, in edge order, closed.
fn cycle_path(g: &DiGraph<usize, ()>, scc: &[petgraph::graph::NodeIndex]) -> Vec<usize> {
    let Some(&start) = scc.iter().min_by_key(|n| g[**n]) else { return vec![] };
    let mut path = vec![start];
    let mut cur = start;
    for _ in 0..=scc.len() {
        let next = g.neighbors(cur).filter(|n| scc.contains(n)).min_by_key(|n| g[*n]);
        let Some(next) = next else { break };
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cyc: Vec<usize> = path[pos..].iter().map(|n| g[*n]).collect();
            cyc.push(g[next]);
            return cyc;
        }
        path.push(next);
        cur = next;
    }
    path.iter().map(|n| g[*n]).collect()
}
