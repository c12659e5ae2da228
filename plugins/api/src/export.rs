//! The plugin side of the ABI: generic `extern "C"` trampolines from the C entry points to
//! the kind traits ([`crate::Block`], [`crate::Loss`], …), each wrapped so that an error or a panic becomes a
//! status and a message, and [`export_plugin!`](crate::export_plugin), which writes the
//! exported declaration. Used through the macro; not a stable API of its own.

use std::cell::RefCell;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use crate::abi::*;
use crate::attrs::Attrs;
use crate::error::{Error, Result};
use crate::kinds::{Block, Loss, MismatchSampler, NoiseSampler, Outs, Probe};
use crate::ops::{Ops, Tensor};
use crate::rng::Rng;

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    /// How many [`guard`]s this thread is inside: panics there are the plugin's.
    static GUARDED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

static HOOK: Once = Once::new();

/// Record panic messages inside a [`guard`] with their location instead of printing them
/// (the host shows them as diagnostics); with `STACKFLOW_PLUGIN_DEBUG=1` the previous hook
/// runs too. Panics outside a guard go to the previous hook: kinds linked into the host's
/// own binary share its panic hook, and the host's panics must still print.
fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.with(|g| g.get()) == 0 {
                return previous(info);
            }
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_string());
            let at =
                info.location().map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column())).unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{at}")));
            if std::env::var_os("STACKFLOW_PLUGIN_DEBUG").is_some_and(|v| v == "1") {
                previous(info);
            }
        }));
    });
}

fn report(err: *const ErrorSinkV1, e: &Error) {
    if err.is_null() {
        return;
    }
    // SAFETY: the host's error sink is live for this call.
    unsafe {
        let sink = &*err;
        (sink.message)(sink.ctx, Str::new(e.message()));
        if let Some(a) = e.attribute() {
            (sink.attribute)(sink.ctx, Str::new(a));
        }
    }
}

/// Run `f`, turning `Err` into [`ERR`] and a panic into [`PANIC`], with the message written
/// to `err`. Nothing unwinds past this function.
pub fn guard(err: *const ErrorSinkV1, f: impl FnOnce() -> Result<()>) -> Status {
    LAST_PANIC.with(|p| p.borrow_mut().take());
    GUARDED.with(|g| g.set(g.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get() - 1));
    match result {
        Ok(Ok(())) => OK,
        Ok(Err(e)) => {
            report(err, &e);
            ERR
        }
        Err(payload) => {
            let msg = LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or_else(|| {
                payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into())
            });
            // Dropping a payload can itself panic; keep that inside the plugin too.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            report(err, &Error::new(msg));
            PANIC
        }
    }
}

/// Describes the plugin's kinds to the host during `register`.
pub struct Registrar<'r> {
    raw: &'r RegistrarV1,
}

/// What a kind's [`KindInfoV1`] points to, alive while the host copies it.
struct Described {
    attrs: Vec<AttrDocV1>,
    /// What `probes` point into; kept alive, never read.
    _shapes: Vec<Vec<ShapeV1>>,
    probes: Vec<ProbeV1>,
}

impl Described {
    fn new(attrs: &[(&str, &str)], probes: &[Probe]) -> Self {
        let attrs = attrs.iter().map(|(n, d)| AttrDocV1 { name: Str::new(n), doc: Str::new(d) }).collect();
        let shapes: Vec<Vec<ShapeV1>> = probes
            .iter()
            .map(|(_, ins)| ins.iter().map(|d| ShapeV1 { dims: d.as_ptr(), rank: d.len() }).collect())
            .collect();
        let probes = probes
            .iter()
            .zip(&shapes)
            .map(|((a, _), ins)| ProbeV1 { attrs: Str::new(a), inputs: ins.as_ptr(), n_inputs: ins.len() })
            .collect();
        Self { attrs, _shapes: shapes, probes }
    }

    fn info(&self, name: &str, doc: &str) -> KindInfoV1 {
        KindInfoV1 {
            name: Str::new(name),
            doc: Str::new(doc),
            attrs: self.attrs.as_ptr(),
            n_attrs: self.attrs.len(),
            probes: self.probes.as_ptr(),
            n_probes: self.probes.len(),
        }
    }
}

fn refused(what: &str, name: &str) -> Error {
    Error::new(format!("the host refused {what} kind `{name}`"))
}

impl Registrar<'_> {
    /// Register block kind `B`.
    pub fn block<B: Block>(&mut self) -> Result<()> {
        let d = Described::new(B::ATTRS, B::PROBES);
        let desc = BlockKindV1 {
            info: d.info(B::NAME, B::DOC),
            configure: configure::<B, BlockCtor>,
            ports: block_ports::<B>,
            infer: block_infer::<B>,
            forward: block_forward::<B>,
            release: release::<B>,
        };
        // SAFETY: the registrar is live during `register`; `desc` outlives the call.
        match unsafe { (self.raw.block)(self.raw.ctx, &desc) } {
            OK => Ok(()),
            _ => Err(refused("block", B::NAME)),
        }
    }

    /// Register loss kind `L`.
    pub fn loss<L: Loss>(&mut self) -> Result<()> {
        let d = Described::new(L::ATTRS, L::PROBES);
        let desc = LossKindV1 {
            info: d.info(L::NAME, L::DOC),
            configure: configure::<L, LossCtor>,
            needs: loss_needs::<L>,
            optional: loss_optional::<L>,
            d_loss: loss_d::<L>,
            g_loss: loss_g::<L>,
            release: release::<L>,
        };
        // SAFETY: as above.
        match unsafe { (self.raw.loss)(self.raw.ctx, &desc) } {
            OK => Ok(()),
            _ => Err(refused("loss", L::NAME)),
        }
    }

    /// Register noise sampler kind `N`.
    pub fn noise<N: NoiseSampler>(&mut self) -> Result<()> {
        let d = Described::new(N::ATTRS, N::PROBES);
        let desc = SamplerKindV1 {
            info: d.info(N::NAME, N::DOC),
            role: SAMPLER_NOISE,
            configure: configure::<N, NoiseCtor>,
            sample: noise_sample::<N>,
            pairs: no_pairs,
            release: release::<N>,
        };
        // SAFETY: as above.
        match unsafe { (self.raw.sampler)(self.raw.ctx, &desc) } {
            OK => Ok(()),
            _ => Err(refused("sampler", N::NAME)),
        }
    }

    /// Register mismatch sampler kind `M`.
    pub fn mismatch<M: MismatchSampler>(&mut self) -> Result<()> {
        let d = Described::new(M::ATTRS, M::PROBES);
        let desc = SamplerKindV1 {
            info: d.info(M::NAME, M::DOC),
            role: SAMPLER_MISMATCH,
            configure: configure::<M, MismatchCtor>,
            sample: no_sample,
            pairs: mismatch_pairs::<M>,
            release: release::<M>,
        };
        // SAFETY: as above.
        match unsafe { (self.raw.sampler)(self.raw.ctx, &desc) } {
            OK => Ok(()),
            _ => Err(refused("sampler", M::NAME)),
        }
    }
}

/// The body of the exported `register`: remember the host table, install the panic hook,
/// then let `f` describe the kinds.
///
/// # Safety
/// The pointers are the ones the host passed to `register`.
pub unsafe fn register(
    host: *const HostV1,
    reg: *const RegistrarV1,
    err: *const ErrorSinkV1,
    f: impl FnOnce(&mut Registrar) -> Result<()>,
) -> Status {
    install_panic_hook();
    guard(err, || {
        if host.is_null() || reg.is_null() {
            return Err(Error::new("register called without a host"));
        }
        let h = &*host;
        if h.abi_version != ABI_VERSION || h.api_version < API_VERSION {
            return Err(Error::new(format!(
                "host speaks ABI {} / API {}, this plugin needs ABI {ABI_VERSION} / API >= {API_VERSION}",
                h.abi_version, h.api_version
            )));
        }
        crate::log::set_host(host);
        f(&mut Registrar { raw: &*reg })
    })
}

/// How a family's instances are made from attributes: one marker type per family, so
/// one generic `configure` trampoline serves all of them.
pub trait Ctor<T> {
    /// Read the attributes into an instance.
    fn make(attrs: &mut Attrs) -> Result<T>;
}

/// [`Ctor`] of blocks.
pub struct BlockCtor;
/// [`Ctor`] of losses.
pub struct LossCtor;
/// [`Ctor`] of noise samplers.
pub struct NoiseCtor;
/// [`Ctor`] of mismatch samplers.
pub struct MismatchCtor;

impl<B: Block> Ctor<B> for BlockCtor {
    fn make(attrs: &mut Attrs) -> Result<B> {
        B::configure(attrs)
    }
}
impl<L: Loss> Ctor<L> for LossCtor {
    fn make(attrs: &mut Attrs) -> Result<L> {
        L::configure(attrs)
    }
}
impl<N: NoiseSampler> Ctor<N> for NoiseCtor {
    fn make(attrs: &mut Attrs) -> Result<N> {
        N::configure(attrs)
    }
}
impl<M: MismatchSampler> Ctor<M> for MismatchCtor {
    fn make(attrs: &mut Attrs) -> Result<M> {
        M::configure(attrs)
    }
}

unsafe extern "C" fn configure<T: 'static, C: Ctor<T>>(
    attrs: Str,
    cfg: *const ConfigureV1,
    out: *mut Instance,
    err: *const ErrorSinkV1,
) -> Status {
    guard(err, || {
        let text = attrs.to_string_lossy();
        let mut a = Attrs::parse(&text, cfg.as_ref())?;
        let inst = C::make(&mut a)?;
        a.finish()?;
        if out.is_null() {
            return Err(Error::new("configure called without an output slot"));
        }
        *out = Box::into_raw(Box::new(inst)) as Instance;
        Ok(())
    })
}

unsafe extern "C" fn release<T: 'static>(inst: Instance) {
    if inst.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(inst as *mut T))));
}

unsafe fn instance<'i, T>(inst: Instance) -> Result<&'i T> {
    (inst as *const T).as_ref().ok_or_else(|| Error::new("called without an instance"))
}

unsafe fn write_list(out: *const SinkV1, items: &[String]) {
    if let Some(s) = out.as_ref() {
        for i in items {
            (s.write)(s.ctx, Str::new(i));
        }
    }
}

unsafe extern "C" fn block_ports<B: Block>(inst: Instance, out: *const SinkV1, err: *const ErrorSinkV1) -> Status {
    guard(err, || {
        let b = instance::<B>(inst)?;
        write_list(out, &b.ports());
        Ok(())
    })
}

unsafe fn shapes(inputs: *const ShapeV1, n: usize) -> Vec<Vec<usize>> {
    if inputs.is_null() {
        return Vec::new();
    }
    std::slice::from_raw_parts(inputs, n)
        .iter()
        .map(|s| if s.dims.is_null() { Vec::new() } else { std::slice::from_raw_parts(s.dims, s.rank).to_vec() })
        .collect()
}

unsafe extern "C" fn block_infer<B: Block>(
    inst: Instance,
    inputs: *const ShapeV1,
    n: usize,
    out: *const InferSinkV1,
    err: *const ErrorSinkV1,
) -> Status {
    guard(err, || {
        let b = instance::<B>(inst)?;
        let inf = b.infer(&shapes(inputs, n)).map_err(Error::new)?;
        let sink = out.as_ref().ok_or_else(|| Error::new("no infer sink"))?;
        for o in &inf.outputs {
            (sink.output)(sink.ctx, o.as_ptr(), o.len());
        }
        for p in &inf.params {
            let init = match p.init {
                crate::Init::Zeros => InitV1 { kind: INIT_ZEROS, a: 0.0, b: 0.0 },
                crate::Init::Ones => InitV1 { kind: INIT_ONES, a: 0.0, b: 0.0 },
                crate::Init::Normal { mean, std } => InitV1 { kind: INIT_NORMAL, a: mean, b: std },
                crate::Init::Uniform { bound } => InitV1 { kind: INIT_UNIFORM, a: bound, b: 0.0 },
            };
            let spec = ParamSpecV1 {
                name: Str::new(&p.name),
                dims: p.shape.as_ptr(),
                rank: p.shape.len(),
                init,
                trainable: u32::from(p.trainable),
            };
            (sink.param)(sink.ctx, &spec);
        }
        (sink.flops)(sink.ctx, inf.flops);
        Ok(())
    })
}

unsafe fn host_ref(host: *const HostV1) -> Result<&'static HostV1> {
    host.as_ref().ok_or_else(|| Error::new("called without a host table"))
}

unsafe fn handles<'a>(ops: &'a Ops, ids: *const u32, n: usize) -> Vec<Tensor<'a>> {
    if ids.is_null() {
        return Vec::new();
    }
    std::slice::from_raw_parts(ids, n).iter().map(|&i| ops.handle(i)).collect()
}

unsafe extern "C" fn block_forward<B: Block>(
    inst: Instance,
    host: *const HostV1,
    ctx: *mut c_void,
    inputs: *const u32,
    n_inputs: usize,
    params: *const u32,
    n_params: usize,
    outputs: *mut u32,
    cap: usize,
    n_out: *mut usize,
    err: *const ErrorSinkV1,
) -> Status {
    guard(err, || {
        let b = instance::<B>(inst)?;
        let ops = Ops::from_raw(host_ref(host)?, ctx);
        let ins = handles(&ops, inputs, n_inputs);
        let ps = handles(&ops, params, n_params);
        let res = b.forward(&ops, &ins, &ps);
        ops.check()?;
        let outs = res?;
        if outs.len() > cap || outputs.is_null() {
            return Err(Error::new(format!("returned {} outputs for {cap} ports", outs.len())));
        }
        for (i, t) in outs.iter().enumerate() {
            *outputs.add(i) = t.id();
        }
        *n_out = outs.len();
        Ok(())
    })
}

unsafe extern "C" fn loss_needs<L: Loss>(inst: Instance, out: *const SinkV1, err: *const ErrorSinkV1) -> Status {
    guard(err, || {
        write_list(out, &instance::<L>(inst)?.needs());
        Ok(())
    })
}

unsafe extern "C" fn loss_optional<L: Loss>(inst: Instance, out: *const SinkV1, err: *const ErrorSinkV1) -> Status {
    guard(err, || {
        write_list(out, &instance::<L>(inst)?.optional());
        Ok(())
    })
}

unsafe fn named<'a>(ops: &'a Ops, items: *const NamedTensorV1, n: usize, pair: &'static str) -> Outs<'a> {
    let v = if items.is_null() {
        Vec::new()
    } else {
        std::slice::from_raw_parts(items, n).iter().map(|t| (t.name.to_string_lossy(), ops.handle(t.tensor))).collect()
    };
    Outs::new(v, pair)
}

unsafe fn write_terms(
    ops: &Ops,
    terms: Result<crate::Terms>,
    total: *mut u32,
    parts: *const PartsSinkV1,
) -> Result<()> {
    ops.check()?;
    let terms = terms?;
    *total = terms.total.id();
    if let Some(p) = parts.as_ref() {
        for (n, t) in &terms.parts {
            (p.part)(p.ctx, Str::new(n), t.id());
        }
    }
    Ok(())
}

/// D's outputs on each kind of pair, as the loss sees them.
unsafe fn pairs<'a>(ops: &'a Ops, call: &LossCallV1) -> [Outs<'a>; 3] {
    [
        named(ops, call.real.items, call.real.len, "real"),
        named(ops, call.wrong.items, call.wrong.len, "mismatched"),
        named(ops, call.fake.items, call.fake.len, "fake"),
    ]
}

unsafe extern "C" fn loss_d<L: Loss>(
    inst: Instance,
    call: *const LossCallV1,
    total: *mut u32,
    parts: *const PartsSinkV1,
    err: *const ErrorSinkV1,
) -> Status {
    guard(err, || {
        let l = instance::<L>(inst)?;
        let call = call.as_ref().ok_or_else(|| Error::new("d_loss called without its operands"))?;
        let ops = Ops::from_raw(host_ref(call.host)?, call.ctx);
        let [r, w, f] = pairs(&ops, call);
        let terms = l.d_loss(&ops, &r, &w, &f);
        write_terms(&ops, terms, total, parts)
    })
}

unsafe extern "C" fn loss_g<L: Loss>(
    inst: Instance,
    call: *const LossCallV1,
    total: *mut u32,
    parts: *const PartsSinkV1,
    err: *const ErrorSinkV1,
) -> Status {
    guard(err, || {
        let l = instance::<L>(inst)?;
        let call = call.as_ref().ok_or_else(|| Error::new("g_loss called without its operands"))?;
        let ops = Ops::from_raw(host_ref(call.host)?, call.ctx);
        let [r, _, f] = pairs(&ops, call);
        let terms = l.g_loss(&ops, &r, &f);
        write_terms(&ops, terms, total, parts)
    })
}

unsafe extern "C" fn noise_sample<N: NoiseSampler>(
    inst: Instance,
    rng: *const RngV1,
    batch: usize,
    dim: usize,
    out: *mut f32,
    err: *const ErrorSinkV1,
) -> Status {
    guard(err, || {
        let s = instance::<N>(inst)?;
        let raw = rng.as_ref().ok_or_else(|| Error::new("no random generator"))?;
        let v = s.sample(&mut Rng::from_raw(raw), batch, dim)?;
        let n = batch.checked_mul(dim).ok_or_else(|| Error::new("batch × dim overflows"))?;
        if v.len() != n || out.is_null() {
            return Err(Error::new(format!("drew {} values for a batch of {batch} × {dim}", v.len())));
        }
        std::ptr::copy_nonoverlapping(v.as_ptr(), out, n);
        Ok(())
    })
}

unsafe extern "C" fn no_sample(
    _: Instance,
    _: *const RngV1,
    _: usize,
    _: usize,
    _: *mut f32,
    err: *const ErrorSinkV1,
) -> Status {
    guard(err, || Err(Error::new("not a noise sampler")))
}

unsafe extern "C" fn mismatch_pairs<M: MismatchSampler>(
    inst: Instance,
    rng: *const RngV1,
    tags: *const TagsV1,
    n: usize,
    out: *const PairSinkV1,
    err: *const ErrorSinkV1,
) -> Status {
    guard(err, || {
        let s = instance::<M>(inst)?;
        let raw = rng.as_ref().ok_or_else(|| Error::new("no random generator"))?;
        let t: Vec<&[u32]> = if tags.is_null() {
            Vec::new()
        } else {
            std::slice::from_raw_parts(tags, n)
                .iter()
                .map(|t| if t.ptr.is_null() { &[][..] } else { std::slice::from_raw_parts(t.ptr, t.len) })
                .collect()
        };
        let pairs = s.pairs(&mut Rng::from_raw(raw), &t)?;
        let sink = out.as_ref().ok_or_else(|| Error::new("no pair sink"))?;
        for (i, j) in pairs {
            (sink.pair)(sink.ctx, i, j);
        }
        Ok(())
    })
}

unsafe extern "C" fn no_pairs(
    _: Instance,
    _: *const RngV1,
    _: *const TagsV1,
    _: usize,
    _: *const PairSinkV1,
    err: *const ErrorSinkV1,
) -> Status {
    guard(err, || Err(Error::new("not a mismatch sampler")))
}

/// Write the exported declaration `STACKFLOW_PLUGIN_V1` and its `register` entry point.
///
/// ```ignore
/// export_plugin!(
///     name: "gan_losses",
///     losses: [Hinge, LeastSquares, Bce],
/// );
/// ```
/// The groups `blocks`, `losses`, `noise_samplers` and `mismatch_samplers` are optional
/// but must come in this order.
#[macro_export]
macro_rules! export_plugin {
    (
        name: $name:literal
        $(, blocks: [$($block:ty),* $(,)?])?
        $(, losses: [$($loss:ty),* $(,)?])?
        $(, noise_samplers: [$($noise:ty),* $(,)?])?
        $(, mismatch_samplers: [$($mismatch:ty),* $(,)?])?
        $(,)?
    ) => {
        /// The plugin declaration the stackflow host looks up (ABI version first).
        #[no_mangle]
        pub static STACKFLOW_PLUGIN_V1: $crate::abi::PluginV1 = $crate::abi::PluginV1 {
            abi_version: $crate::abi::ABI_VERSION,
            api_version: $crate::abi::API_VERSION,
            name: $crate::abi::Str::from_static($name),
            version: $crate::abi::Str::from_static(env!("CARGO_PKG_VERSION")),
            register: __stackflow_plugin_register,
        };

        unsafe extern "C" fn __stackflow_plugin_register(
            host: *const $crate::abi::HostV1,
            reg: *const $crate::abi::RegistrarV1,
            err: *const $crate::abi::ErrorSinkV1,
        ) -> $crate::abi::Status {
            $crate::export::register(host, reg, err, |_r| {
                $($( _r.block::<$block>()?; )*)?
                $($( _r.loss::<$loss>()?; )*)?
                $($( _r.noise::<$noise>()?; )*)?
                $($( _r.mismatch::<$mismatch>()?; )*)?
                Ok(())
            })
        }
    };
}
