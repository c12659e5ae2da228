//! Plugin kinds adapted to the registry's traits: every call crosses the C ABI, and every
//! failure comes back as a diagnostic naming the plugin and the kind.

use std::ffi::c_void;
use std::fmt;
use std::sync::Arc;

use stackflow_plugin_api::abi::{self, *};

use super::host::Call;
use super::Library;
use crate::error::{Error, Result, Span};
use crate::kind::attrs::{Attr, Attrs};
use crate::kind::{
    Block, BlockKind, Inferred, Init, Loss, LossKind, MismatchSampler, NoiseSampler, Outs, ParamSpec, Probe, Role,
    SamplerImpl, SamplerKind, Shape, Terms,
};
use crate::ops::{Ops, Tensor};

/// Name, doc line and attribute docs of a plugin kind, copied at registration.
#[derive(Clone, Debug)]
pub struct KindDoc {
    /// Namespaced kind name.
    pub name: String,
    /// One-line description.
    pub summary: String,
    /// `(attribute, doc)` pairs.
    pub attrs: Vec<(String, String)>,
    /// The doc line with the attribute names appended, as the registry and `plugins list`
    /// show it.
    pub line: String,
    /// What the kind declares to be tested with.
    pub probes: Vec<Probe>,
}

impl KindDoc {
    /// # Safety
    /// `info` must be a descriptor the plugin passed to the registrar, during that call.
    pub(crate) unsafe fn copy(info: &KindInfoV1) -> Self {
        let name = info.name.to_string_lossy();
        let summary = info.doc.to_string_lossy();
        let attrs: Vec<(String, String)> = if info.attrs.is_null() || info.n_attrs > 4096 {
            Vec::new()
        } else {
            std::slice::from_raw_parts(info.attrs, info.n_attrs)
                .iter()
                .map(|a| (a.name.to_string_lossy(), a.doc.to_string_lossy()))
                .collect()
        };
        let line = if attrs.is_empty() {
            summary.clone()
        } else {
            let names: Vec<String> = attrs.iter().map(|(n, _)| format!("`{n}`")).collect();
            format!("{summary} (attrs {})", names.join(", "))
        };
        let probes = if info.probes.is_null() || info.n_probes > 4096 {
            Vec::new()
        } else {
            std::slice::from_raw_parts(info.probes, info.n_probes).iter().map(|p| copy_probe(p)).collect()
        };
        Self { name, summary, attrs, line, probes }
    }
}

/// # Safety
/// `p` is part of a descriptor the plugin passed to the registrar, during that call.
unsafe fn copy_probe(p: &ProbeV1) -> Probe {
    let inputs = if p.inputs.is_null() || p.n_inputs > 64 {
        Vec::new()
    } else {
        std::slice::from_raw_parts(p.inputs, p.n_inputs)
            .iter()
            .map(|s| {
                if s.dims.is_null() || s.rank > 16 {
                    Vec::new()
                } else {
                    std::slice::from_raw_parts(s.dims, s.rank).to_vec()
                }
            })
            .collect()
    };
    Probe { attrs: p.attrs.to_string_lossy(), inputs }
}

/// Collects what a failing plugin call reports.
#[derive(Default)]
pub(crate) struct Report {
    pub message: String,
    pub attribute: Option<String>,
}

unsafe extern "C" fn report_message(ctx: *mut c_void, s: Str) {
    if let Some(r) = (ctx as *mut Report).as_mut() {
        r.message.push_str(&s.to_string_lossy());
    }
}

unsafe extern "C" fn report_attribute(ctx: *mut c_void, s: Str) {
    if let Some(r) = (ctx as *mut Report).as_mut() {
        r.attribute = Some(s.to_string_lossy());
    }
}

impl Report {
    pub fn sink(&mut self) -> ErrorSinkV1 {
        ErrorSinkV1 { ctx: self as *mut Report as *mut c_void, message: report_message, attribute: report_attribute }
    }

    pub fn text(&self) -> &str {
        if self.message.is_empty() {
            "(no message)"
        } else {
            &self.message
        }
    }
}

unsafe extern "C" fn push_string(ctx: *mut c_void, s: Str) {
    if let Some(v) = (ctx as *mut Vec<String>).as_mut() {
        v.push(s.to_string_lossy());
    }
}

pub(crate) fn list_sink(v: &mut Vec<String>) -> SinkV1 {
    SinkV1 { ctx: v as *mut Vec<String> as *mut c_void, write: push_string }
}

/// Where a plugin call failed, for messages: `plugin `gan_losses` (path), loss `gan_losses.hinge``.
fn whose(lib: &Library, family: &str, kind: &str) -> String {
    format!("plugin `{}` ({}), {family} `{kind}`", lib.name, lib.path.display())
}

/// The error of a failed plugin call (`what`: `forward`, `d_loss`, …).
fn call_error(lib: &Library, family: &str, kind: &str, what: &str, status: Status, r: &Report) -> Error {
    if status == PANIC {
        Error::input("plugin::panic", format!("{} panicked in {what}: {}", whose(lib, family, kind), r.text()))
            .with_help(
                "this is a bug in the plugin; run with STACKFLOW_PLUGIN_DEBUG=1 to see the plugin's own panic output",
            )
    } else {
        Error::input("plugin::call", format!("{} failed in {what}: {}", whose(lib, family, kind), r.text()))
    }
}

type ConfigureFn = unsafe extern "C" fn(Str, *const ConfigureV1, *mut Instance, *const ErrorSinkV1) -> Status;

struct CfgCtx<'x, 'a> {
    attrs: &'x Attrs<'a>,
    items: &'x [Attr],
    error: Option<Error>,
}

unsafe extern "C" fn eval_int(ctx: *mut c_void, attr: Str, expr: Str, out: *mut i64) -> Status {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let Some(c) = (ctx as *mut CfgCtx).as_mut() else {
            return ERR;
        };
        let name = attr.to_string_lossy();
        let (span, key_span) =
            c.items.iter().find(|a| a.name == name).map_or((c.attrs.span(), None), |a| (a.span, a.key_span));
        let a = Attr { name, value: ron::Value::String(expr.to_string_lossy()), span, key_span };
        match c.attrs.int_value(&a) {
            Ok(v) => {
                if !out.is_null() {
                    *out = v;
                }
                OK
            }
            Err(e) => {
                c.error.get_or_insert(e);
                ERR
            }
        }
    }));
    r.unwrap_or(ERR)
}

/// The node's attributes as RON text: a map from names to values as written (after
/// template substitution).
fn attrs_text(items: &[Attr]) -> String {
    let mut map = ron::Map::new();
    for a in items {
        map.insert(ron::Value::String(a.name.clone()), a.value.clone());
    }
    ron::to_string(&ron::Value::Map(map)).unwrap_or_else(|_| "{}".into())
}

/// Let the plugin read the attributes; an error points at the attribute it names.
fn configure(lib: &Library, family: &str, doc: &KindDoc, f: ConfigureFn, attrs: &mut Attrs) -> Result<Instance> {
    let items = attrs.take_all();
    let text = attrs_text(&items);
    let mut c = CfgCtx { attrs, items: &items, error: None };
    let cfg = ConfigureV1 { ctx: &mut c as *mut CfgCtx as *mut c_void, eval_int };
    let mut r = Report::default();
    let sink = r.sink();
    let mut inst: Instance = std::ptr::null_mut();
    // SAFETY: every pointer outlives the call; the plugin checked the ABI at load.
    let st = unsafe { f(Str::new(&text), &cfg, &mut inst, &sink) };
    let held = c.error.take();
    // `Attrs::finish` of the plugin API words its message this way; point at the name.
    let unknown = r.message.starts_with("unknown attribute");
    let src = attrs.source();
    let span_of = |name: Option<&str>| -> Span {
        name.and_then(|n| items.iter().find(|a| a.name == n)).map_or(attrs.span(), |a| {
            if unknown {
                a.key_span.unwrap_or(a.span)
            } else {
                a.span
            }
        })
    };
    match st {
        OK if !inst.is_null() => Ok(inst),
        OK => Err(Error::input(
            "plugin::call",
            format!("{} returned no instance from configure", whose(lib, family, &doc.name)),
        )),
        ERR => Err(held.unwrap_or_else(|| {
            let code = if unknown { "graph::unknown_attribute" } else { "graph::bad_attribute" };
            let mut e = src.error(code, span_of(r.attribute.as_deref()), format!("`{}`: {}", doc.name, r.text()));
            if !doc.attrs.is_empty() {
                e = e.with_help(format!(
                    "attributes of `{}` (plugin `{}`): {}",
                    doc.name,
                    lib.name,
                    doc.attrs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
            e
        })),
        _ => {
            let e = call_error(lib, family, &doc.name, "configure", st, &r);
            Err(e.with_source(src).with_label(attrs.span(), None::<String>))
        }
    }
}

/// A kind from a plugin library: its descriptor (`BlockKindV1`, `LossKindV1` or
/// `SamplerKindV1`), the library that holds its code, and its docs.
pub struct PluginKind<Desc> {
    pub(crate) lib: &'static Library,
    pub(crate) doc: KindDoc,
    pub(crate) desc: Desc,
}

// The descriptor is immutable plugin code and the library is never unloaded.
unsafe impl<Desc> Send for PluginKind<Desc> {}
unsafe impl<Desc> Sync for PluginKind<Desc> {}

/// A block kind from a plugin.
pub type PluginBlockKind = PluginKind<BlockKindV1>;
/// A loss kind from a plugin.
pub type PluginLossKind = PluginKind<LossKindV1>;
/// A sampler kind from a plugin.
pub type PluginSamplerKind = PluginKind<SamplerKindV1>;

/// Descriptors whose configured instances are freed by their `release` entry.
pub(crate) trait Releases: 'static {
    /// The plugin's `release`.
    fn release(&self) -> unsafe extern "C" fn(inst: Instance);
}

macro_rules! releases {
    ($($desc:ty),*) => {$(
        impl Releases for $desc {
            fn release(&self) -> unsafe extern "C" fn(inst: Instance) {
                self.release
            }
        }
    )*};
}
releases!(BlockKindV1, LossKindV1, SamplerKindV1);

/// A configured instance of a plugin kind, released through the plugin's `release` once.
struct Live<Desc: Releases> {
    kind: *const PluginKind<Desc>,
    inst: Instance,
}

// Kinds live in leaked libraries; instances are `Send + Sync` by the plugin API's bounds.
unsafe impl<Desc: Releases> Send for Live<Desc> {}
unsafe impl<Desc: Releases> Sync for Live<Desc> {}

impl<Desc: Releases> Live<Desc> {
    fn new(kind: &PluginKind<Desc>, inst: Instance) -> Self {
        Self { kind: kind as *const PluginKind<Desc>, inst }
    }

    fn kind(&self) -> &PluginKind<Desc> {
        // SAFETY: kinds are owned by a leaked `Library` and never freed.
        unsafe { &*self.kind }
    }
}

impl<Desc: Releases> fmt::Debug for Live<Desc> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind().doc.name)
    }
}

impl<Desc: Releases> Drop for Live<Desc> {
    fn drop(&mut self) {
        // SAFETY: the instance came from this kind's `configure` and is released once.
        unsafe { (self.kind().desc.release())(self.inst) };
    }
}

impl BlockKind for PluginBlockKind {
    fn name(&self) -> &str {
        &self.doc.name
    }
    fn doc(&self) -> &str {
        &self.doc.line
    }
    fn probes(&self) -> Vec<Probe> {
        self.doc.probes.clone()
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Block>> {
        let inst = configure(self.lib, "block", &self.doc, self.desc.configure, attrs)?;
        let mut block = PluginBlock { live: Live::new(self, inst), ports: Vec::new() };
        let mut ports = Vec::new();
        let mut r = Report::default();
        let (sink, err) = (list_sink(&mut ports), r.sink());
        // SAFETY: a live instance of this kind; the sinks outlive the call.
        let st = unsafe { (self.desc.ports)(inst, &sink, &err) };
        if st != OK {
            return Err(call_error(self.lib, "block", &self.doc.name, "ports", st, &r)
                .with_source(attrs.source())
                .with_label(attrs.span(), None::<String>));
        }
        let repeated = ports.iter().enumerate().any(|(i, p)| ports[..i].contains(p));
        if ports.is_empty() || repeated || ports.iter().any(|p| p.is_empty()) {
            return Err(Error::input(
                "plugin::call",
                format!("{} declares no usable output ports ({ports:?})", whose(self.lib, "block", &self.doc.name)),
            ));
        }
        block.ports = ports;
        Ok(Arc::new(block))
    }
}

/// A configured plugin block.
#[derive(Debug)]
pub struct PluginBlock {
    live: Live<BlockKindV1>,
    ports: Vec<String>,
}

#[derive(Default)]
struct InferOut {
    outputs: Vec<Shape>,
    params: Vec<ParamSpec>,
    flops: u64,
    bad: Option<String>,
}

unsafe extern "C" fn infer_output(ctx: *mut c_void, dims: *const usize, rank: usize) {
    if let Some(o) = (ctx as *mut InferOut).as_mut() {
        if rank > 8 || (dims.is_null() && rank > 0) {
            o.bad = Some(format!("an output of rank {rank}"));
        } else {
            let d = if rank == 0 { Vec::new() } else { std::slice::from_raw_parts(dims, rank).to_vec() };
            o.outputs.push(Shape(d));
        }
    }
}

unsafe extern "C" fn infer_param(ctx: *mut c_void, spec: *const ParamSpecV1) {
    let (Some(o), Some(s)) = ((ctx as *mut InferOut).as_mut(), spec.as_ref()) else {
        return;
    };
    let name = s.name.to_string_lossy();
    let valid_name = !name.is_empty()
        && name.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if !valid_name || s.rank == 0 || s.rank > 4 || s.dims.is_null() {
        o.bad = Some(format!("parameter `{name}` of rank {}", s.rank));
        return;
    }
    let init = match (s.init.kind, s.init.a, s.init.b) {
        (INIT_ZEROS, ..) => Init::Zeros,
        (INIT_ONES, ..) => Init::Ones,
        (INIT_NORMAL, mean, std) if mean.is_finite() && std.is_finite() && std >= 0.0 => Init::Normal { mean, std },
        (INIT_UNIFORM, bound, _) if bound.is_finite() && bound >= 0.0 => Init::Uniform { bound },
        (k, a, b) => {
            o.bad = Some(format!("parameter `{name}` with initialiser {k} ({a}, {b})"));
            return;
        }
    };
    let shape = std::slice::from_raw_parts(s.dims, s.rank).to_vec();
    let role = if s.trainable != 0 { Role::Trainable } else { Role::Buffer };
    o.params.push(ParamSpec { name, shape, init, role });
}

unsafe extern "C" fn infer_flops(ctx: *mut c_void, flops: u64) {
    if let Some(o) = (ctx as *mut InferOut).as_mut() {
        o.flops = flops;
    }
}

impl Block for PluginBlock {
    fn ports(&self) -> Vec<String> {
        self.ports.clone()
    }

    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        let k = self.live.kind();
        let shapes: Vec<ShapeV1> = inputs.iter().map(|s| ShapeV1 { dims: s.0.as_ptr(), rank: s.0.len() }).collect();
        let mut out = InferOut::default();
        let sink = InferSinkV1 {
            ctx: &mut out as *mut InferOut as *mut c_void,
            output: infer_output,
            param: infer_param,
            flops: infer_flops,
        };
        let mut r = Report::default();
        let err = r.sink();
        // SAFETY: a live instance; the shapes and sinks outlive the call.
        let st = unsafe { (k.desc.infer)(self.live.inst, shapes.as_ptr(), shapes.len(), &sink, &err) };
        match st {
            OK => match out.bad {
                Some(b) => Err(format!("plugin `{}` declared {b}", k.lib.name)),
                None => Ok(Inferred { outputs: out.outputs, params: out.params, flops: out.flops }),
            },
            PANIC => Err(format!("plugin `{}` panicked in shape inference: {}", k.lib.name, r.text())),
            _ => Err(format!("{} (plugin `{}`)", r.text(), k.lib.name)),
        }
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        let k = self.live.kind();
        let ins: Vec<u32> = inputs.iter().map(|t| t.0).collect();
        let ps: Vec<u32> = params.iter().map(|t| t.0).collect();
        let mut outs = vec![abi::NO_TENSOR; self.ports.len()];
        let mut n_out = 0usize;
        let mut call = Call::new(ops);
        let mut r = Report::default();
        let err = r.sink();
        // SAFETY: a live instance; buffers and the call context outlive the call.
        let st = unsafe {
            (k.desc.forward)(
                self.live.inst,
                k.lib.host,
                call.as_ctx(),
                ins.as_ptr(),
                ins.len(),
                ps.as_ptr(),
                ps.len(),
                outs.as_mut_ptr(),
                outs.len(),
                &mut n_out,
                &err,
            )
        };
        if st != OK {
            return Err(call_error(k.lib, "block", &k.doc.name, "forward", st, &r));
        }
        if n_out != self.ports.len() {
            return Err(Error::input(
                "plugin::call",
                format!(
                    "{} returned {n_out} outputs for {} ports",
                    whose(k.lib, "block", &k.doc.name),
                    self.ports.len()
                ),
            ));
        }
        Ok(outs.into_iter().map(Tensor).collect())
    }
}

impl LossKind for PluginLossKind {
    fn name(&self) -> &str {
        &self.doc.name
    }
    fn doc(&self) -> &str {
        &self.doc.line
    }
    fn probes(&self) -> Vec<Probe> {
        self.doc.probes.clone()
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Loss>> {
        let inst = configure(self.lib, "loss", &self.doc, self.desc.configure, attrs)?;
        let mut loss = PluginLoss { live: Live::new(self, inst), needs: Vec::new(), optional: Vec::new() };
        for (f, out, what) in
            [(self.desc.needs, &mut loss.needs, "needs"), (self.desc.optional, &mut loss.optional, "optional")]
        {
            let mut r = Report::default();
            let (sink, err) = (list_sink(out), r.sink());
            // SAFETY: a live instance; the sinks outlive the call.
            let st = unsafe { f(inst, &sink, &err) };
            if st != OK {
                return Err(call_error(self.lib, "loss", &self.doc.name, what, st, &r));
            }
        }
        Ok(Arc::new(loss))
    }
}

/// A configured plugin loss; what it needs is asked once, at configure.
#[derive(Debug)]
pub struct PluginLoss {
    live: Live<LossKindV1>,
    needs: Vec<String>,
    optional: Vec<String>,
}

unsafe extern "C" fn push_part(ctx: *mut c_void, name: Str, t: u32) {
    if let Some(v) = (ctx as *mut Vec<(String, Tensor)>).as_mut() {
        v.push((name.to_string_lossy(), Tensor(t)));
    }
}

fn named(outs: &Outs) -> Vec<NamedTensorV1> {
    outs.iter().map(|(n, t)| NamedTensorV1 { name: Str::new(n), tensor: t.0 }).collect()
}

impl Loss for PluginLoss {
    fn needs(&self) -> Vec<String> {
        self.needs.clone()
    }

    fn optional(&self) -> Vec<String> {
        self.optional.clone()
    }

    fn d_loss(&self, ops: &mut dyn Ops, real: &Outs, wrong: &Outs, fake: &Outs) -> Result<Terms> {
        self.terms(ops, "the D loss", [real, wrong, fake], self.live.kind().desc.d_loss)
    }

    fn g_loss(&self, ops: &mut dyn Ops, real: &Outs, fake: &Outs) -> Result<Terms> {
        self.terms(ops, "the G loss", [real, &Vec::new(), fake], self.live.kind().desc.g_loss)
    }
}

/// A loss function of the ABI (`d_loss` or `g_loss`).
type LossFn =
    unsafe extern "C" fn(Instance, *const LossCallV1, *mut u32, *const PartsSinkV1, *const ErrorSinkV1) -> Status;

impl PluginLoss {
    /// One loss call across the ABI with D's outputs on the (real, mismatched, fake)
    /// pairs; the terms come back.
    fn terms(&self, ops: &mut dyn Ops, what: &str, [real, wrong, fake]: [&Outs; 3], f: LossFn) -> Result<Terms> {
        let k = self.live.kind();
        let (r_, w_, f_) = (named(real), named(wrong), named(fake));
        let list = |v: &Vec<NamedTensorV1>| NamedListV1 { items: v.as_ptr(), len: v.len() };
        let mut parts: Vec<(String, Tensor)> = Vec::new();
        let psink = PartsSinkV1 { ctx: &mut parts as *mut Vec<(String, Tensor)> as *mut c_void, part: push_part };
        let mut total = abi::NO_TENSOR;
        let mut call = Call::new(ops);
        let args =
            LossCallV1 { host: k.lib.host, ctx: call.as_ctx(), real: list(&r_), wrong: list(&w_), fake: list(&f_) };
        let mut r = Report::default();
        let err = r.sink();
        // SAFETY: a live instance; every buffer outlives the call.
        let st = unsafe { f(self.live.inst, &args, &mut total, &psink, &err) };
        if st != OK {
            return Err(call_error(k.lib, "loss", &k.doc.name, what, st, &r));
        }
        Ok(Terms { total: Tensor(total), parts })
    }
}

impl SamplerKind for PluginSamplerKind {
    fn name(&self) -> &str {
        &self.doc.name
    }
    fn doc(&self) -> &str {
        &self.doc.line
    }
    fn probes(&self) -> Vec<Probe> {
        self.doc.probes.clone()
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<SamplerImpl> {
        let inst = configure(self.lib, "sampler", &self.doc, self.desc.configure, attrs)?;
        let s = Arc::new(PluginSampler(Live::new(self, inst)));
        Ok(if self.desc.role == SAMPLER_MISMATCH { SamplerImpl::Mismatch(s) } else { SamplerImpl::Noise(s) })
    }
}

/// A configured plugin sampler (noise or mismatch, by its kind's role).
#[derive(Debug)]
pub struct PluginSampler(Live<SamplerKindV1>);

unsafe extern "C" fn rng_next(ctx: *mut c_void) -> u64 {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        (ctx as *mut &mut dyn rand::RngCore).as_mut().map_or(0, |r| r.next_u64())
    }))
    .unwrap_or(0)
}

unsafe extern "C" fn push_pair(ctx: *mut c_void, i: usize, j: usize) {
    if let Some(v) = (ctx as *mut Vec<(usize, usize)>).as_mut() {
        v.push((i, j));
    }
}

impl NoiseSampler for PluginSampler {
    fn sample(&self, mut rng: &mut dyn rand::RngCore, batch: usize, dim: usize) -> Result<Vec<f32>> {
        let k = self.0.kind();
        let n = batch
            .checked_mul(dim)
            .filter(|&n| n <= 1 << 32)
            .ok_or_else(|| Error::input("plugin::call", format!("noise of {batch} × {dim} is too large")))?;
        let mut out = vec![0f32; n];
        let raw = RngV1 { ctx: &mut rng as *mut &mut dyn rand::RngCore as *mut c_void, next_u64: rng_next };
        let mut r = Report::default();
        let err = r.sink();
        // SAFETY: a live instance; `out` has `batch × dim` values and outlives the call.
        let st = unsafe { (k.desc.sample)(self.0.inst, &raw, batch, dim, out.as_mut_ptr(), &err) };
        if st != OK {
            return Err(call_error(k.lib, "sampler", &k.doc.name, "sample", st, &r));
        }
        Ok(out)
    }
}

impl MismatchSampler for PluginSampler {
    fn pairs(&self, mut rng: &mut dyn rand::RngCore, tags: &[Vec<u32>]) -> Result<Vec<(usize, usize)>> {
        let k = self.0.kind();
        let t: Vec<TagsV1> = tags.iter().map(|t| TagsV1 { ptr: t.as_ptr(), len: t.len() }).collect();
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        let sink = PairSinkV1 { ctx: &mut pairs as *mut Vec<(usize, usize)> as *mut c_void, pair: push_pair };
        let raw = RngV1 { ctx: &mut rng as *mut &mut dyn rand::RngCore as *mut c_void, next_u64: rng_next };
        let mut r = Report::default();
        let err = r.sink();
        // SAFETY: a live instance; every buffer outlives the call.
        let st = unsafe { (k.desc.pairs)(self.0.inst, &raw, t.as_ptr(), t.len(), &sink, &err) };
        if st != OK {
            return Err(call_error(k.lib, "sampler", &k.doc.name, "pairs", st, &r));
        }
        if let Some((i, j)) = pairs.iter().find(|(i, j)| *i >= tags.len() || *j >= tags.len()) {
            return Err(Error::input(
                "plugin::call",
                format!("{} chose pair ({i}, {j}) in a batch of {}", whose(k.lib, "sampler", &k.doc.name), tags.len()),
            ));
        }
        Ok(pairs)
    }
}
