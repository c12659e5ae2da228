//! The C ABI between the stackflow host and a plugin library, version 3.
//!
//! Version 3 (from version 2): functions with many arguments take one `#[repr(C)]`
//! struct instead: a loss's `d_loss`/`g_loss` receive a [`LossCallV1`] (host table, call
//! context and the named outputs of each pair), the host's `batch_norm` a
//! [`BatchNormV1`]. A plugin's Rust source needs no change beyond a rebuild, unless it
//! calls `Tensor::batch_norm`, whose statistics are now one [`crate::ops::BnStats`].
//! Every kind's [`KindInfoV1`] also lists probes ([`ProbeV1`]): the configurations (and
//! a block's input shapes) the host's test suite exercises it with.
//!
//! Version 2 (from version 1): a loss's `g_loss` also receives D's outputs on the real
//! batch (`real`, `n_real`), for relativistic and feature-matching losses. A plugin built
//! for version 1 is refused with a message saying to rebuild it; its Rust source needs
//! one change, the extra `real` argument of `Loss::g_loss`. The type names keep their
//! `V1` suffix: they name the layout family, and the version is the constant below.
//!
//! Only `#[repr(C)]` structs, integers, floats, raw pointers and `extern "C"` function
//! pointers appear here: no Rust type, no allocation ownership and no panic crosses the
//! boundary, so host and plugin may be built by different compilers.
//!
//! # Rules
//! - A plugin exports one static named [`SYMBOL`] of type [`PluginV1`]. Its first field is
//!   the ABI version; the host reads that `u32` first and touches nothing else unless it
//!   equals [`ABI_VERSION`]. It then requires `api_version <= ` its own [`API_VERSION`].
//! - Strings are borrowed UTF-8 ([`Str`]), valid only for the call they are passed to.
//!   Whoever receives one copies it. Results travel through host-provided sinks
//!   ([`SinkV1`], [`InferSinkV1`], …) or into host-allocated buffers.
//! - Every function returns a [`Status`]: [`OK`], [`ERR`] (a message was written to the
//!   error sink) or [`PANIC`] (the plugin caught a panic; its message was written).
//!   Neither side ever unwinds across the boundary.
//! - A configured instance ([`Instance`]) belongs to the plugin; the host frees it with the
//!   kind's `release`. Instances are called from any thread, one call at a time per
//!   computation, so they must be thread-safe.
//! - Tensors are opaque `u32` handles into the host's executor, valid during the call that
//!   received them; [`NO_TENSOR`] marks an absent optional tensor.
//! - The host never unloads a library.
//! - Every function pointer in a declaration or kind descriptor is non-null (a kind that
//!   does not use one, such as a noise sampler's `pairs`, points it at a stub); the host
//!   refuses a descriptor with a null one before calling anything.

use std::ffi::c_void;

/// Version of the layout of every type in this module. Any change to an existing type or
/// signature bumps it; host and plugin must agree exactly.
pub const ABI_VERSION: u32 = 3;

/// Revision of the host function table ([`HostV1`]); revisions count on across ABI
/// versions (version 3 began at revision 3). New host functions are only appended, so a plugin built for revision `n` runs on any host that
/// provides revision `>= n`.
pub const API_VERSION: u32 = 4;

/// Name of the exported declaration ([`PluginV1`]), NUL-terminated for `dlsym`.
pub const SYMBOL: &[u8] = b"STACKFLOW_PLUGIN_V1\0";

/// Result of every call: [`OK`], [`ERR`] or [`PANIC`].
pub type Status = i32;
/// Success.
pub const OK: Status = 0;
/// Failure; a message was written to the error sink (or is held by the host).
pub const ERR: Status = 1;
/// A panic was caught; its message was written to the error sink.
pub const PANIC: Status = 2;

/// Handle of "no tensor" where a tensor is optional (a bias).
pub const NO_TENSOR: u32 = u32::MAX;

/// A configured kind instance, owned by the plugin.
pub type Instance = *mut c_void;

/// Borrowed UTF-8 text: valid for the duration of the call it is passed to.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Str {
    /// First byte.
    pub ptr: *const u8,
    /// Length in bytes.
    pub len: usize,
}

// A `Str` is a read-only view; the declaration static holds ones to string literals.
unsafe impl Send for Str {}
unsafe impl Sync for Str {}

impl Str {
    /// A view of a string literal (usable in statics).
    pub const fn from_static(s: &'static str) -> Self {
        Str { ptr: s.as_ptr(), len: s.len() }
    }

    /// A view of `s` for the duration of a call.
    pub fn new(s: &str) -> Self {
        Str { ptr: s.as_ptr(), len: s.len() }
    }

    /// Copy the text out (lossy on invalid UTF-8).
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes (or `len` must be 0).
    pub unsafe fn to_string_lossy(self) -> String {
        if self.ptr.is_null() || self.len == 0 {
            return String::new();
        }
        String::from_utf8_lossy(std::slice::from_raw_parts(self.ptr, self.len)).into_owned()
    }
}

/// Where the callee writes text (a message, a name): the caller's collector.
#[repr(C)]
pub struct SinkV1 {
    /// The caller's state.
    pub ctx: *mut c_void,
    /// Append one piece (for lists: one item per call).
    pub write: unsafe extern "C" fn(ctx: *mut c_void, s: Str),
}

/// Where a failing plugin call reports: a message, and optionally the attribute it is
/// about (so the host can point at it in the graph file).
#[repr(C)]
pub struct ErrorSinkV1 {
    /// The host's state.
    pub ctx: *mut c_void,
    /// The message.
    pub message: unsafe extern "C" fn(ctx: *mut c_void, s: Str),
    /// The attribute name the message is about.
    pub attribute: unsafe extern "C" fn(ctx: *mut c_void, s: Str),
}

/// The exported declaration. Its first field must stay the ABI version in every future
/// version of this ABI.
#[repr(C)]
pub struct PluginV1 {
    /// [`ABI_VERSION`] of the api crate the plugin was built with.
    pub abi_version: u32,
    /// [`API_VERSION`] of the api crate the plugin was built with.
    pub api_version: u32,
    /// The plugin's name (by convention its kinds' namespace).
    pub name: Str,
    /// The plugin's own version.
    pub version: Str,
    /// Called once, after the version checks: describe every kind through `reg`. `host`
    /// stays valid for the life of the process.
    pub register: unsafe extern "C" fn(host: *const HostV1, reg: *const RegistrarV1, err: *const ErrorSinkV1) -> Status,
}

// The declaration is immutable data and function pointers.
unsafe impl Sync for PluginV1 {}

/// Host callbacks through which `register` describes the plugin's kinds. The host copies
/// every string during the call and keeps the function pointers.
#[repr(C)]
pub struct RegistrarV1 {
    /// The host's state.
    pub ctx: *mut c_void,
    /// Add a block kind.
    pub block: unsafe extern "C" fn(ctx: *mut c_void, desc: *const BlockKindV1) -> Status,
    /// Add a loss kind.
    pub loss: unsafe extern "C" fn(ctx: *mut c_void, desc: *const LossKindV1) -> Status,
    /// Add a sampler kind.
    pub sampler: unsafe extern "C" fn(ctx: *mut c_void, desc: *const SamplerKindV1) -> Status,
}

/// Documentation of one attribute.
#[repr(C)]
pub struct AttrDocV1 {
    /// Attribute name.
    pub name: Str,
    /// What it does, its type and default.
    pub doc: Str,
}

/// Name and documentation of a kind.
#[repr(C)]
pub struct KindInfoV1 {
    /// Namespaced kind name (`example.self_attention`).
    pub name: Str,
    /// One-line description.
    pub doc: Str,
    /// Attribute docs.
    pub attrs: *const AttrDocV1,
    /// Number of attribute docs.
    pub n_attrs: usize,
    /// Configurations the host's test suite exercises the kind with.
    pub probes: *const ProbeV1,
    /// Number of probes.
    pub n_probes: usize,
}

/// One configuration of a kind to test: attributes as RON text and, for a block, the
/// per-sample shapes of its inputs.
#[repr(C)]
pub struct ProbeV1 {
    /// Attributes (`(heads: 2)`).
    pub attrs: Str,
    /// Input shapes (none for losses and samplers).
    pub inputs: *const ShapeV1,
    /// Number of inputs.
    pub n_inputs: usize,
}

/// Host services while a kind reads its attributes.
#[repr(C)]
pub struct ConfigureV1 {
    /// The host's state.
    pub ctx: *mut c_void,
    /// Evaluate an integer expression (`"df_dim * 8"`) written in attribute `attr` over the
    /// graph's variables. On failure the host keeps a diagnostic pointing at the attribute.
    pub eval_int: unsafe extern "C" fn(ctx: *mut c_void, attr: Str, expr: Str, out: *mut i64) -> Status,
}

/// A per-sample shape (no batch dimension).
#[repr(C)]
pub struct ShapeV1 {
    /// Dims.
    pub dims: *const usize,
    /// Number of dims.
    pub rank: usize,
}

/// Parameter initialisers: `kind` is one of the `INIT_*` constants.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InitV1 {
    /// [`INIT_ZEROS`], [`INIT_ONES`], [`INIT_NORMAL`] (a = mean, b = std) or
    /// [`INIT_UNIFORM`] (a = bound: U(−a, a)).
    pub kind: u32,
    /// First parameter.
    pub a: f32,
    /// Second parameter.
    pub b: f32,
}

/// All zeros.
pub const INIT_ZEROS: u32 = 0;
/// All ones.
pub const INIT_ONES: u32 = 1;
/// N(a, b²).
pub const INIT_NORMAL: u32 = 2;
/// U(−a, a).
pub const INIT_UNIFORM: u32 = 3;

/// A parameter a block declares; the host creates, stores, initialises and trains it.
#[repr(C)]
pub struct ParamSpecV1 {
    /// Local name (`query.weight`); the host prefixes the node path.
    pub name: Str,
    /// Shape (no batch dimension).
    pub dims: *const usize,
    /// Rank.
    pub rank: usize,
    /// Initialiser.
    pub init: InitV1,
    /// 1: trained by the optimiser; 0: a buffer (running statistic) saved in checkpoints.
    pub trainable: u32,
}

/// What shape inference reports, in order: outputs (one call per port), parameters, FLOPs.
#[repr(C)]
pub struct InferSinkV1 {
    /// The host's state.
    pub ctx: *mut c_void,
    /// Shape of the next output port.
    pub output: unsafe extern "C" fn(ctx: *mut c_void, dims: *const usize, rank: usize),
    /// Declare a parameter (forward receives its handle in declaration order).
    pub param: unsafe extern "C" fn(ctx: *mut c_void, spec: *const ParamSpecV1),
    /// Forward FLOPs per sample.
    pub flops: unsafe extern "C" fn(ctx: *mut c_void, flops: u64),
}

/// A block kind.
#[repr(C)]
pub struct BlockKindV1 {
    /// Name and docs.
    pub info: KindInfoV1,
    /// Read the attributes (RON text of a map) and create an instance.
    pub configure: unsafe extern "C" fn(
        attrs: Str,
        cfg: *const ConfigureV1,
        out: *mut Instance,
        err: *const ErrorSinkV1,
    ) -> Status,
    /// Output port names, one `write` each; the first is the default output.
    pub ports: unsafe extern "C" fn(inst: Instance, out: *const SinkV1, err: *const ErrorSinkV1) -> Status,
    /// Shape inference for these per-sample input shapes.
    pub infer: unsafe extern "C" fn(
        inst: Instance,
        inputs: *const ShapeV1,
        n_inputs: usize,
        out: *const InferSinkV1,
        err: *const ErrorSinkV1,
    ) -> Status,
    /// Forward: write one handle per port into `outputs` (capacity `cap`), the count into
    /// `n_out`. `params` follow the declaration order of `infer`.
    #[allow(clippy::type_complexity)]
    pub forward: unsafe extern "C" fn(
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
    ) -> Status,
    /// Free an instance.
    pub release: unsafe extern "C" fn(inst: Instance),
}

/// A named discriminator output.
#[repr(C)]
pub struct NamedTensorV1 {
    /// Output name (`cond_prob`).
    pub name: Str,
    /// Its tensor.
    pub tensor: u32,
}

/// Named discriminator outputs of one kind of pair, borrowed for one call.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NamedListV1 {
    /// The first output (may be null when `len` is 0).
    pub items: *const NamedTensorV1,
    /// How many.
    pub len: usize,
}

/// What a loss function is called with: the host table and call context its tensors
/// live in, and D's outputs on each kind of pair.
#[repr(C)]
pub struct LossCallV1 {
    /// The host function table.
    pub host: *const HostV1,
    /// The call context for the host's tensor functions.
    pub ctx: *mut c_void,
    /// On (real image, its text).
    pub real: NamedListV1,
    /// On (real image, mismatched text); empty for `g_loss`.
    pub wrong: NamedListV1,
    /// On (fake image, its text).
    pub fake: NamedListV1,
}

/// The operands of the host's `batch_norm`: `x`, the trainable scale and shift, the
/// running statistics (buffers) and the constants.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BatchNormV1 {
    /// Input, normalised over every axis but 1.
    pub x: u32,
    /// Scale, `[C]`.
    pub gamma: u32,
    /// Shift, `[C]`.
    pub beta: u32,
    /// Running mean, `[C]` (a buffer).
    pub mean: u32,
    /// Running variance, `[C]` (a buffer).
    pub var: u32,
    /// Batches seen, `[1]` (a buffer).
    pub count: u32,
    /// Weight of the batch statistics in the running ones.
    pub momentum: f32,
    /// Added to the variance.
    pub eps: f32,
}

/// Named loss parts reported for logs.
#[repr(C)]
pub struct PartsSinkV1 {
    /// The host's state.
    pub ctx: *mut c_void,
    /// One named part, a tensor of shape `[1]`.
    pub part: unsafe extern "C" fn(ctx: *mut c_void, name: Str, tensor: u32),
}

/// A loss kind.
#[repr(C)]
pub struct LossKindV1 {
    /// Name and docs.
    pub info: KindInfoV1,
    /// Read the attributes and create an instance.
    pub configure: unsafe extern "C" fn(
        attrs: Str,
        cfg: *const ConfigureV1,
        out: *mut Instance,
        err: *const ErrorSinkV1,
    ) -> Status,
    /// Discriminator outputs the loss needs, one `write` each.
    pub needs: unsafe extern "C" fn(inst: Instance, out: *const SinkV1, err: *const ErrorSinkV1) -> Status,
    /// Outputs used when the discriminator has them, one `write` each.
    pub optional: unsafe extern "C" fn(inst: Instance, out: *const SinkV1, err: *const ErrorSinkV1) -> Status,
    /// D loss from the outputs on (real, text), (real, mismatched text), (fake, text).
    pub d_loss: unsafe extern "C" fn(
        inst: Instance,
        call: *const LossCallV1,
        total: *mut u32,
        parts: *const PartsSinkV1,
        err: *const ErrorSinkV1,
    ) -> Status,
    /// G's adversarial loss from D's outputs on fakes, with D's outputs on the real batch
    /// (constants: no gradient flows into them); `call.wrong` is empty.
    pub g_loss: unsafe extern "C" fn(
        inst: Instance,
        call: *const LossCallV1,
        total: *mut u32,
        parts: *const PartsSinkV1,
        err: *const ErrorSinkV1,
    ) -> Status,
    /// Free an instance.
    pub release: unsafe extern "C" fn(inst: Instance),
}

/// The host's random number generator, lent for one call.
#[repr(C)]
pub struct RngV1 {
    /// The host's state.
    pub ctx: *mut c_void,
    /// 64 uniformly random bits.
    pub next_u64: unsafe extern "C" fn(ctx: *mut c_void) -> u64,
}

/// The labels of one sample (dataset tags).
#[repr(C)]
pub struct TagsV1 {
    /// First tag.
    pub ptr: *const u32,
    /// Number of tags.
    pub len: usize,
}

/// Where a mismatch sampler writes its pairs.
#[repr(C)]
pub struct PairSinkV1 {
    /// The host's state.
    pub ctx: *mut c_void,
    /// One (image index, text index) pair.
    pub pair: unsafe extern "C" fn(ctx: *mut c_void, image: usize, text: usize),
}

/// What a sampler kind draws.
pub const SAMPLER_NOISE: u32 = 0;
/// A mismatched-pair sampler.
pub const SAMPLER_MISMATCH: u32 = 1;

/// A sampler kind: a noise sampler (`sample`) or a mismatch sampler (`pairs`).
#[repr(C)]
pub struct SamplerKindV1 {
    /// Name and docs.
    pub info: KindInfoV1,
    /// [`SAMPLER_NOISE`] or [`SAMPLER_MISMATCH`].
    pub role: u32,
    /// Read the attributes and create an instance.
    pub configure: unsafe extern "C" fn(
        attrs: Str,
        cfg: *const ConfigureV1,
        out: *mut Instance,
        err: *const ErrorSinkV1,
    ) -> Status,
    /// Noise: fill `out` (`batch × dim` values, C order, host-allocated).
    pub sample: unsafe extern "C" fn(
        inst: Instance,
        rng: *const RngV1,
        batch: usize,
        dim: usize,
        out: *mut f32,
        err: *const ErrorSinkV1,
    ) -> Status,
    /// Mismatch: write pairs for a batch whose sample `i` has labels `tags[i]`.
    pub pairs: unsafe extern "C" fn(
        inst: Instance,
        rng: *const RngV1,
        tags: *const TagsV1,
        n: usize,
        out: *const PairSinkV1,
        err: *const ErrorSinkV1,
    ) -> Status,
    /// Free an instance.
    pub release: unsafe extern "C" fn(inst: Instance),
}

/// Window reductions of [`HostV1::pool2d`].
pub mod pool {
    /// The largest value of each window (the padding never wins).
    pub const MAX: u32 = 0;
    /// The mean over the whole window, padding counted.
    pub const AVG: u32 = 1;
    /// The mean over the window's input pixels (PyTorch's `count_include_pad=False`).
    pub const AVG_EXCLUDE_PADDING: u32 = 2;
}

/// Unary op codes for [`HostV1::unary`] (`a`, `b` are the op's scalars).
pub mod unary {
    /// max(x, 0)
    pub const RELU: u32 = 0;
    /// x if x > 0 else a·x
    pub const LEAKY_RELU: u32 = 1;
    /// tanh x
    pub const TANH: u32 = 2;
    /// 1 / (1 + e^−x)
    pub const SIGMOID: u32 = 3;
    /// e^x
    pub const EXP: u32 = 4;
    /// ln x
    pub const LN: u32 = 5;
    /// −x
    pub const NEG: u32 = 6;
    /// x²
    pub const SQUARE: u32 = 7;
    /// √x
    pub const SQRT: u32 = 8;
    /// |x|
    pub const ABS: u32 = 9;
    /// a·x
    pub const SCALE: u32 = 10;
    /// x + a
    pub const ADD_SCALAR: u32 = 11;
    /// min(max(x, a), b)
    pub const CLAMP: u32 = 12;
}

/// Binary op codes for [`HostV1::binary`] (equal shapes).
pub mod binary {
    /// a + b
    pub const ADD: u32 = 0;
    /// a − b
    pub const SUB: u32 = 1;
    /// a · b
    pub const MUL: u32 = 2;
    /// a / b
    pub const DIV: u32 = 3;
}

/// Reductions for [`HostV1::reduce`] (over all elements, to shape `[1]`) and
/// [`HostV1::reduce_axis`].
pub mod reduce {
    /// Σ x
    pub const SUM: u32 = 0;
    /// mean x
    pub const MEAN: u32 = 1;
    /// max x (revision 3, [`super::HostV1::reduce_axis`] only)
    pub const MAX: u32 = 2;
}

/// Comparisons for [`HostV1::compare`] (revision 3).
pub mod compare {
    /// a > b
    pub const GT: u32 = 0;
    /// a ≥ b
    pub const GE: u32 = 1;
    /// a < b
    pub const LT: u32 = 2;
    /// a ≤ b
    pub const LE: u32 = 3;
    /// a = b
    pub const EQ: u32 = 4;
    /// a ≠ b
    pub const NE: u32 = 5;
}

/// Noise distributions for [`HostV1::noise`].
pub mod noise {
    /// N(0, 1).
    pub const NORMAL: u32 = 0;
    /// N(0, 1) re-drawn until |x| < the parameter.
    pub const TRUNCATED_NORMAL: u32 = 1;
}

/// Log levels for [`HostV1::log`].
pub mod level {
    /// Shown only with `STACKFLOW_PLUGIN_DEBUG=1`.
    pub const DEBUG: u32 = 0;
    /// Shown.
    pub const INFO: u32 = 1;
    /// Shown as a warning.
    pub const WARN: u32 = 2;
}

/// The host function table: the tensor operations of stackflow's executor on opaque
/// handles, as block forwards and losses use them. Shapes include the batch dimension.
/// Every tensor function takes the call context `ctx` it was handed, writes the new
/// handle to `out` and returns a [`Status`]; on [`ERR`], `last_error` tells why.
#[repr(C)]
#[allow(clippy::type_complexity)]
pub struct HostV1 {
    /// The host's [`ABI_VERSION`].
    pub abi_version: u32,
    /// The host's [`API_VERSION`] (functions of later revisions follow the ones below).
    pub api_version: u32,
    /// `size_of::<HostV1>()` on the host.
    pub size: usize,
    /// Identifies the plugin to `log`.
    pub plugin: *const c_void,
    /// Write a log line.
    pub log: unsafe extern "C" fn(plugin: *const c_void, level: u32, msg: Str),
    /// The message of the last failed host function in this call context.
    pub last_error: unsafe extern "C" fn(ctx: *mut c_void, out: *const SinkV1),
    /// Full shape: writes up to `cap` dims, the rank into `rank`.
    pub shape: unsafe extern "C" fn(ctx: *mut c_void, t: u32, dims: *mut usize, cap: usize, rank: *mut usize) -> Status,
    /// 1 when BatchNorm-like blocks should use batch statistics.
    pub training: unsafe extern "C" fn(ctx: *mut c_void) -> u32,
    /// Path of the node being run (`d1.attn`), one `write`.
    pub node_path: unsafe extern "C" fn(ctx: *mut c_void, out: *const SinkV1) -> Status,
    /// A constant from host data (`len` values, C order).
    pub constant: unsafe extern "C" fn(
        ctx: *mut c_void,
        data: *const f32,
        len: usize,
        dims: *const usize,
        rank: usize,
        out: *mut u32,
    ) -> Status,
    /// Noise by name (tests and the trainer may supply it): `dist` from [`noise`].
    pub noise: unsafe extern "C" fn(
        ctx: *mut c_void,
        name: Str,
        dist: u32,
        param: f32,
        dims: *const usize,
        rank: usize,
        out: *mut u32,
    ) -> Status,
    /// Copy values to `out` (capacity `cap`); the element count goes to `len`.
    pub read: unsafe extern "C" fn(ctx: *mut c_void, t: u32, out: *mut f32, cap: usize, len: *mut usize) -> Status,
    /// Element-wise unary op from [`unary`].
    pub unary: unsafe extern "C" fn(ctx: *mut c_void, op: u32, a: f32, b: f32, x: u32, out: *mut u32) -> Status,
    /// Element-wise binary op from [`binary`] on equal shapes.
    pub binary: unsafe extern "C" fn(ctx: *mut c_void, op: u32, a: u32, b: u32, out: *mut u32) -> Status,
    /// y = x·wᵀ + b for x [B, in], w [out, in], b `[out]` or [`NO_TENSOR`].
    pub linear: unsafe extern "C" fn(ctx: *mut c_void, x: u32, w: u32, b: u32, out: *mut u32) -> Status,
    /// [B, M, K] × [B, K, N] → [B, M, N].
    pub matmul: unsafe extern "C" fn(ctx: *mut c_void, a: u32, b: u32, out: *mut u32) -> Status,
    /// 2-d convolution of x [B, C, H, W] with w [O, C, kh, kw], b `[O]` or [`NO_TENSOR`].
    pub conv2d: unsafe extern "C" fn(
        ctx: *mut c_void,
        x: u32,
        w: u32,
        b: u32,
        stride: usize,
        padding: usize,
        out: *mut u32,
    ) -> Status,
    /// BatchNorm over all dims but 1; in train mode updates mean/var/count (buffers).
    pub batch_norm: unsafe extern "C" fn(ctx: *mut c_void, args: *const BatchNormV1, out: *mut u32) -> Status,
    /// Nearest-neighbour upsampling of [B, C, H, W].
    pub upsample_nearest: unsafe extern "C" fn(ctx: *mut c_void, x: u32, scale: usize, out: *mut u32) -> Status,
    /// Concatenate `n` tensors along `axis` (0 is the batch).
    pub concat: unsafe extern "C" fn(ctx: *mut c_void, xs: *const u32, n: usize, axis: usize, out: *mut u32) -> Status,
    /// Rows of the batch axis in the given order (repeats allowed).
    pub select_rows:
        unsafe extern "C" fn(ctx: *mut c_void, x: u32, rows: *const usize, n: usize, out: *mut u32) -> Status,
    /// Elements `start..end` along `axis`.
    pub slice:
        unsafe extern "C" fn(ctx: *mut c_void, x: u32, axis: usize, start: usize, end: usize, out: *mut u32) -> Status,
    /// Same elements, new full shape.
    pub reshape:
        unsafe extern "C" fn(ctx: *mut c_void, x: u32, dims: *const usize, rank: usize, out: *mut u32) -> Status,
    /// Reorder axes: output axis `i` is input axis `perm[i]`.
    pub permute:
        unsafe extern "C" fn(ctx: *mut c_void, x: u32, perm: *const usize, rank: usize, out: *mut u32) -> Status,
    /// Broadcast to a full shape (numpy rules, aligned from the last axis).
    pub broadcast:
        unsafe extern "C" fn(ctx: *mut c_void, x: u32, dims: *const usize, rank: usize, out: *mut u32) -> Status,
    /// [B, C] → [B, C, H, W] by repetition.
    pub replicate: unsafe extern "C" fn(ctx: *mut c_void, x: u32, h: usize, w: usize, out: *mut u32) -> Status,
    /// Softmax along the last axis.
    pub softmax: unsafe extern "C" fn(ctx: *mut c_void, x: u32, out: *mut u32) -> Status,
    /// Reduction from [`reduce`] over all elements → `[1]`.
    pub reduce: unsafe extern "C" fn(ctx: *mut c_void, op: u32, x: u32, out: *mut u32) -> Status,
    /// Same values, no gradient flows back.
    pub detach: unsafe extern "C" fn(ctx: *mut c_void, x: u32, out: *mut u32) -> Status,
    // Revision 2.
    /// Pooling of [B, C, H, W] over `kernel`² windows moved by `stride`, `padding` on every
    /// side (at most `kernel`/2); `kind` from [`pool`].
    pub pool2d: unsafe extern "C" fn(
        ctx: *mut c_void,
        x: u32,
        kind: u32,
        kernel: usize,
        stride: usize,
        padding: usize,
        out: *mut u32,
    ) -> Status,
    /// Bilinear resizing of [B, C, H, W] to `h`×`w` (PyTorch, `align_corners=False`).
    pub resize_bilinear: unsafe extern "C" fn(ctx: *mut c_void, x: u32, h: usize, w: usize, out: *mut u32) -> Status,
    // Revision 3.
    /// Reduction from [`reduce`] along `axis` (0 is the batch), kept with length 1.
    pub reduce_axis: unsafe extern "C" fn(ctx: *mut c_void, op: u32, x: u32, axis: usize, out: *mut u32) -> Status,
    /// 1 where the comparison from [`compare`] holds, else 0 (equal shapes); no gradient.
    pub compare: unsafe extern "C" fn(ctx: *mut c_void, op: u32, a: u32, b: u32, out: *mut u32) -> Status,
    /// `a` where `cond` ≠ 0, else `b` (equal shapes); gradients flow to `a` and `b`.
    pub select: unsafe extern "C" fn(ctx: *mut c_void, cond: u32, a: u32, b: u32, out: *mut u32) -> Status,
    /// Group normalisation of [B, C, …] (ranks 3–4) in `groups` groups of channels, times
    /// `weight` plus `bias` (both `[C]`).
    pub group_norm: unsafe extern "C" fn(
        ctx: *mut c_void,
        x: u32,
        groups: usize,
        weight: u32,
        bias: u32,
        eps: f32,
        out: *mut u32,
    ) -> Status,
    /// Layer normalisation over the last axis (ranks 2–3), times `weight` plus `bias` (`[D]`).
    pub layer_norm:
        unsafe extern "C" fn(ctx: *mut c_void, x: u32, weight: u32, bias: u32, eps: f32, out: *mut u32) -> Status,
    /// Swap axes `a` and `b` (ranks 2–4, the batch axis included).
    pub transpose: unsafe extern "C" fn(ctx: *mut c_void, x: u32, a: usize, b: usize, out: *mut u32) -> Status,
    // Revision 4.
    /// Overwrite `buffer`, a buffer parameter of the node's net (declared with
    /// `ParamSpec::buffer`), with `value`'s values (same shape) as a constant; the host
    /// saves it when the net's run ends. `out` gets the buffer's handle.
    pub assign: unsafe extern "C" fn(ctx: *mut c_void, buffer: u32, value: u32, out: *mut u32) -> Status,
}

// The table is immutable and lives as long as the process.
unsafe impl Sync for HostV1 {}
unsafe impl Send for HostV1 {}
