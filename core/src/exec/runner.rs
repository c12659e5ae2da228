//! The executor: runs checked nets on a dfdx device, implementing [`Ops`] for block
//! forwards. Values live in a slab without tapes; every op's backward closures go to one
//! tape for the whole pass, so a value read by several nodes gets every consumer's
//! gradient, and nothing depends on which consumer happened to own a tape.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use dfdx::prelude::*;

use super::noise::NoiseSource;
use super::params::ParamStore;
use super::plan::NetPlan;
use super::value::Val;
use crate::error::{Error, Result};
use crate::ir::{ModeOverride, Net, ValueId};
use crate::kernels::{self, KernelDevice, KernelError};
use crate::kind::Role;
use crate::ops::{Binary, BnStats, Compare, Noise, Ops, PoolKind, Reduce, Tensor as H, Unary};

/// A kernel's refusal as the executor's error.
pub(crate) fn kerr(e: KernelError) -> Error {
    Error::other("exec::kernel", e.to_string())
}

fn shape_err(op: &str, msg: impl std::fmt::Display) -> Error {
    Error::other("exec::shape", format!("{op}: {msg}"))
}

/// Frees one tensor's gradient slot during backward.
type GradRelease<D> = Box<dyn FnOnce(&mut Gradients<f32, D>) -> std::result::Result<(), <D as HasErr>::Err>>;

/// The state of one net run: the handle of each live value, reads left per value,
/// handles the run must not free, and the parameters it pushed (its buffers are the
/// runner's `buffers`, which [`Ops::assign`] reads).
struct NetRun {
    slot: HashMap<ValueId, H>,
    reads: Vec<usize>,
    /// The plan's [`NetPlan::upsamples_into_conv`].
    upsamples_into_conv: Vec<usize>,
    keep: std::collections::HashSet<H>,
    params: HashMap<usize, H>,
}

/// Runs nets and records one tape (`OwnedTape`) or none (`NoneTape`).
pub struct Runner<'n, D: KernelDevice, T> {
    dev: D,
    /// Values by handle; `None` once released (nothing reads it any more).
    vals: Vec<Option<Val<D>>>,
    /// Per handle: whether no gradient is wanted for it (an input given as a constant, a
    /// parameter this pass does not train, or what only such values computed).
    constant: Vec<bool>,
    /// Parameters pushed as constants (not trained by the pass this runner records).
    fixed_params: std::collections::HashSet<String>,
    /// Handles whose tensor shares its id (and gradient slot) with an older tensor, mapped
    /// to the handle that first had the id: dfdx's reshape and broadcast keep the id. Their
    /// gradients are not released early.
    aliases: std::collections::HashMap<u32, u32>,
    /// The buffer parameters the net being run has pushed (parameter index, handle): what
    /// [`Ops::assign`] may overwrite, written back to the store when the run ends.
    buffers: Vec<(usize, H)>,
    /// Whether the node running is an upsampling whose output only a convolution reads
    /// (see [`NetPlan::upsamples_into_conv`]).
    upsample_into_conv: bool,
    /// Such upsampled values, each with the map it was upsampled from: the convolution
    /// that reads one computes from that map, through the upsampling.
    upsampled: HashMap<H, kernels::T4<D>>,
    tape: T,
    record: bool,
    net_training: bool,
    node_training: bool,
    node_path: String,
    noise: &'n mut NoiseSource,
}

impl<'n, D: KernelDevice, T: Tape<f32, D>> Runner<'n, D, T> {
    /// A runner on `dev`; `training` selects BatchNorm batch statistics.
    pub fn new(dev: D, training: bool, noise: &'n mut NoiseSource) -> Self {
        Self {
            dev,
            vals: Vec::new(),
            constant: Vec::new(),
            fixed_params: Default::default(),
            aliases: Default::default(),
            buffers: Vec::new(),
            upsample_into_conv: false,
            upsampled: HashMap::new(),
            tape: T::default(),
            record: true,
            net_training: training,
            node_training: training,
            node_path: String::new(),
            noise,
        }
    }

    /// Put a value in the slab; backward computes its gradient.
    pub fn push(&mut self, v: Val<D>) -> H {
        self.vals.push(Some(v));
        self.constant.push(false);
        H((self.vals.len() - 1) as u32)
    }

    /// Put a value in the slab that no gradient is wanted for (real images, a detached
    /// condition): the ops that read only constants record no backward, and a convolution
    /// skips the gradient of a constant input or of constant weights.
    pub fn push_constant(&mut self, v: Val<D>) -> H {
        let h = self.push(v);
        self.constant[h.0 as usize] = true;
        h
    }

    /// Push the parameters at `paths` as constants from now on: the pass this runner
    /// records does not train them (D's weights in the G step, frozen parameters).
    pub fn fix_params<'a>(&mut self, paths: impl IntoIterator<Item = &'a str>) {
        self.fixed_params.extend(paths.into_iter().map(str::to_string));
    }

    /// Whether no gradient is wanted for `h`.
    fn is_constant(&self, h: H) -> bool {
        self.constant.get(h.0 as usize).copied().unwrap_or(false)
    }

    /// A value by handle.
    pub fn val(&self, h: H) -> Result<&Val<D>> {
        match self.vals.get(h.0 as usize) {
            Some(Some(v)) => Ok(v),
            Some(None) => Err(Error::other("exec::handle", format!("tensor {} was released after its last use", h.0))),
            None => Err(Error::other("exec::handle", format!("no tensor {}", h.0))),
        }
    }

    /// `h`'s values under a new tensor id with no backward op: gradients stop there.
    fn fresh_copy(&self, h: H) -> Result<Val<D>> {
        Ok(match self.val(h)?.clone() {
            Val::R1(t) => Val::R1(t * 1.0),
            Val::R2(t) => Val::R2(t * 1.0),
            Val::R3(t) => Val::R3(t * 1.0),
            Val::R4(t) => Val::R4(t * 1.0),
        })
    }

    /// Drop the runner's reference to a value. Its memory is freed unless a recorded
    /// backward op still holds it.
    fn release(&mut self, h: H) {
        if let Some(slot) = self.vals.get_mut(h.0 as usize) {
            *slot = None;
        }
        self.upsampled.remove(&h);
    }

    /// Record a backward op that frees the gradients in the returned list (filled after
    /// the node ran). Recorded before the ops that produce those tensors, it runs after
    /// their backward (the tape runs newest first), when nothing reads the gradients.
    fn release_grads_later(&mut self) -> Rc<RefCell<Vec<GradRelease<D>>>> {
        let list: Rc<RefCell<Vec<GradRelease<D>>>> = Rc::default();
        if T::OWNS_TAPE {
            let pending = list.clone();
            self.tape.add_backward_op(move |grads| {
                for release in pending.borrow_mut().drain(..) {
                    release(grads)?;
                }
                Ok(())
            });
        }
        list
    }

    /// A closure that replaces the gradient of `h`'s tensor with an empty buffer.
    fn grad_release(&self, h: H) -> Option<GradRelease<D>> {
        macro_rules! rel {
            ($t:expr) => {{
                let ghost = $t.ghost();
                Some(Box::new(move |grads: &mut Gradients<f32, D>| {
                    D::release_grad(grads.get_or_alloc_mut(&ghost)?);
                    Ok(())
                }) as GradRelease<D>)
            }};
        }
        match self.vals.get(h.0 as usize)? {
            Some(Val::R1(t)) => rel!(t),
            Some(Val::R2(t)) => rel!(t),
            Some(Val::R3(t)) => rel!(t),
            Some(Val::R4(t)) => rel!(t),
            None => None,
        }
    }

    fn tr<S: Shape>(&self, t: &Tensor<S, f32, D>) -> Tensor<S, f32, D, T> {
        t.clone().put_tape(T::default())
    }

    fn keep<S: Shape>(&mut self, y: Tensor<S, f32, D, T>) -> Tensor<S, f32, D> {
        let (y, tape) = y.split_tape();
        if self.record {
            self.tape = std::mem::take(&mut self.tape).merge(tape);
        }
        y
    }

    fn put<S: Shape>(&mut self, y: Tensor<S, f32, D, T>, wrap: fn(Tensor<S, f32, D>) -> Val<D>) -> H {
        let y = self.keep(y);
        self.push(wrap(y))
    }

    /// Run `net` with `feeds` (inputs by name, or any value by id) and return the handles
    /// of `wanted` values. Only nodes those values need are run. Parameters come from
    /// `store`; BatchNorm statistics updated in train mode are written back to it.
    pub fn run_net(
        &mut self,
        net: &Net,
        store: &mut ParamStore<D>,
        feeds: &[(ValueId, H)],
        wanted: &[ValueId],
    ) -> Result<Vec<H>> {
        for &(v, h) in feeds {
            let want = net.values[v].shape.dims();
            let got = self.val(h)?.dims();
            if got.len() != want.len() + 1 || got[1..] != want[..] {
                return Err(Error::input(
                    "exec::input_shape",
                    format!(
                        "`{}` of net `{}` must be [batch, {}], got {got:?}",
                        net.values[v].name,
                        net.name,
                        want.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        let fed: Vec<ValueId> = feeds.iter().map(|&(v, _)| v).collect();
        let NetPlan { nodes, reads, upsamples_into_conv } = NetPlan::new(net, &fed, wanted)?;
        let mut run = NetRun {
            slot: feeds.iter().copied().collect(),
            reads,
            upsamples_into_conv,
            // The caller's feeds and the wanted values are kept; the rest is let go of after
            // its last reader.
            keep: feeds.iter().map(|&(_, h)| h).collect(),
            params: HashMap::new(),
        };
        // What a failed earlier run left.
        self.buffers.clear();
        self.upsampled.clear();
        for i in nodes {
            self.run_node(net, i, store, &mut run)?;
            for &v in &net.nodes[i].inputs {
                run.reads[v] -= 1;
                if run.reads[v] == 0 && !wanted.contains(&v) {
                    self.release_value(&mut run.slot, v, &run.keep);
                }
            }
        }
        let NetRun { mut slot, mut keep, .. } = run;
        keep.extend(wanted.iter().filter_map(|v| slot.get(v).copied()));
        let dead: Vec<ValueId> = slot.keys().copied().filter(|v| !wanted.contains(v)).collect();
        for v in dead {
            self.release_value(&mut slot, v, &keep);
        }
        for (p, h) in std::mem::take(&mut self.buffers) {
            store.set(&net.params[p].path, self.val(h)?.clone())?;
        }
        wanted
            .iter()
            .map(|v| {
                slot.get(v).copied().ok_or_else(|| {
                    Error::other("exec::missing", format!("value `{}` was not computed", net.values[*v].name))
                })
            })
            .collect()
    }

    /// The handle of parameter `p` of `net` in this run, pushed from `store` on first use.
    fn param(&mut self, net: &Net, p: usize, store: &ParamStore<D>, run: &mut NetRun) -> Result<H> {
        if let Some(h) = run.params.get(&p) {
            return Ok(*h);
        }
        let path = &net.params[p].path;
        let e = store
            .get(path)
            .ok_or_else(|| Error::other("exec::param", format!("parameter `{path}` is not instantiated")))?;
        let h = if self.fixed_params.contains(path) {
            self.push_constant(e.value.clone())
        } else {
            self.push(e.value.clone())
        };
        run.params.insert(p, h);
        if e.role == Role::Buffer {
            self.buffers.push((p, h));
        }
        Ok(h)
    }

    /// Run node `i` of `net`: its block's forward in the node's mode, every tensor it made
    /// but did not return released, its outputs checked against the inferred shapes.
    fn run_node(&mut self, net: &Net, i: usize, store: &ParamStore<D>, run: &mut NetRun) -> Result<()> {
        let node = &net.nodes[i];
        let inputs = node
            .inputs
            .iter()
            .map(|v| {
                run.slot.get(v).copied().ok_or_else(|| {
                    Error::input("exec::missing_input", format!("net `{}` needs `{}`", net.name, net.values[*v].name))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let ph = node.params.iter().map(|&p| self.param(net, p, store, run)).collect::<Result<Vec<_>>>()?;
        // A node that reads only constants has no gradient to pass back: nothing recorded.
        let reads_variable = inputs.iter().chain(&ph).any(|&h| !self.is_constant(h));
        self.record = !node.frozen && reads_variable;
        self.node_training = match node.mode {
            ModeOverride::Follow => self.net_training,
            ModeOverride::Train => true,
            ModeOverride::Eval => false,
        };
        self.node_path = node.path.clone();
        let profile = super::profile::active();
        let label = profile.as_ref().map(|p| p.borrow().label(&node.kind, &node.path).to_string());
        if let (Some(p), Some(kind)) = (profile.as_ref().filter(|_| T::OWNS_TAPE), label.clone()) {
            // Fires after this node's backward: the time since the marker below is its own.
            let (p, net_name) = (p.clone(), net.name.clone());
            self.tape.add_backward_op(move |_| {
                p.borrow_mut().mark(Some((&net_name, &kind)));
                Ok(())
            });
        }
        let releases = self.release_grads_later();
        let start = self.vals.len();
        self.upsample_into_conv = run.upsamples_into_conv.contains(&i);
        let began = profile.as_ref().map(|_| std::time::Instant::now());
        let outs = node
            .block
            .forward(self, &inputs, &ph)
            .map_err(|e| e.context(format!("node `{}` ({})", node.path, node.kind)));
        self.upsample_into_conv = false;
        let outs = outs?;
        if let (Some(p), Some(began), Some(label)) = (&profile, began, &label) {
            p.borrow_mut().forward(&net.name, label, began.elapsed());
            if T::OWNS_TAPE {
                let p = p.clone();
                self.tape.add_backward_op(move |_| {
                    p.borrow_mut().mark(None);
                    Ok(())
                });
            }
        }
        let recorded = std::mem::replace(&mut self.record, true);
        // Every tensor the node made: its gradient is spent once the node's backward ran;
        // the runner keeps only the outputs (backward ops hold what they need).
        for i in start..self.vals.len() {
            let h = H(i as u32);
            // A constant the node pushed (a mask, a detached copy) stays one.
            self.constant[i] |= !recorded;
            // (A node that recorded nothing left no gradient to free.)
            // (Nor does an upsampling a convolution computes through: nothing writes its gradient.)
            let spent = recorded && !self.aliases.contains_key(&h.0) && !self.upsampled.contains_key(&h);
            if let Some(r) = self.grad_release(h).filter(|_| spent) {
                releases.borrow_mut().push(r);
            }
            if !outs.contains(&h) {
                self.release(h);
            }
        }
        self.bind_outputs(net, i, outs, run)
    }

    /// Bind node `i`'s outputs to its values after checking them against its ports and
    /// the inferred shapes (batch first).
    fn bind_outputs(&self, net: &Net, i: usize, outs: Vec<H>, run: &mut NetRun) -> Result<()> {
        let node = &net.nodes[i];
        if outs.len() != node.outputs.len() {
            return Err(Error::other(
                "exec::ports",
                format!("node `{}` returned {} outputs for {} ports", node.path, outs.len(), node.outputs.len()),
            ));
        }
        for (&v, h) in node.outputs.iter().zip(outs) {
            let got = self.val(h)?.dims();
            let want = net.values[v].shape.dims();
            if got.len() != want.len() + 1 || got[1..] != want[..] {
                return Err(Error::other(
                    "exec::shape",
                    format!("node `{}` ({}) produced {got:?}, its inferred shape is {want:?}", node.path, node.kind),
                ));
            }
            run.slot.insert(v, h);
        }
        Ok(())
    }

    /// Forget value `v` of a net run; its tensor is released unless another live value,
    /// a feed or a wanted value shares the handle.
    fn release_value(&mut self, slot: &mut HashMap<ValueId, H>, v: ValueId, keep: &std::collections::HashSet<H>) {
        if let Some(h) = slot.remove(&v) {
            if !keep.contains(&h) && !slot.values().any(|&o| o == h) {
                self.release(h);
            }
        }
    }

    /// Take the recorded tape.
    pub fn take_tape(&mut self) -> T {
        std::mem::take(&mut self.tape)
    }
}

impl<D: KernelDevice> Runner<'_, D, OwnedTape<f32, D>> {
    /// Back-propagate from the scalar `loss` ([1]) through everything recorded. Gradients
    /// of tensors that net nodes computed are freed as backward passes them; those of
    /// leaves (parameters, values given with [`Runner::push`]) remain in the result.
    pub fn backward(&mut self, loss: H) -> Result<Gradients<f32, D>> {
        let Val::R1(l) = self.val(loss)?.clone() else {
            return Err(shape_err("backward", "loss must have shape [1]"));
        };
        let tape = self.take_tape();
        if let Some(p) = super::profile::active() {
            p.borrow_mut().begin_backward();
        }
        let scalar = l.put_tape(tape).sum::<(), _>();
        scalar.try_backward().map_err(|e| Error::other("exec::backward", format!("{e:?}")))
    }
}

/// Host copy of the gradient of `v`: zeros if it got none, empty if backward already freed
/// it (the gradient of a value a net computed; see [`Runner::backward`]).
pub fn grad_of<D: KernelDevice>(grads: &mut Gradients<f32, D>, v: &Val<D>) -> Vec<f32> {
    macro_rules! host {
        ($t:expr) => {{
            let dev = $t.device().clone();
            match grads.get_or_alloc_mut($t) {
                Ok(g) if Storage::<f32>::len(&dev, g) > 0 || $t.shape().num_elements() == 0 => {
                    crate::mem::count_to_host($t.shape().num_elements());
                    let mut buf = vec![0.0; $t.shape().num_elements()];
                    grads.get($t).copy_into(&mut buf);
                    buf
                }
                _ => Vec::new(),
            }
        }};
    }
    match v {
        Val::R1(t) => host!(t),
        Val::R2(t) => host!(t),
        Val::R3(t) => host!(t),
        Val::R4(t) => host!(t),
    }
}

/// GELU with the exact normal CDF. dfdx 0.13's `accurate_gelu` has the right values but
/// not the right derivative: its Gaussian term is x·e^(−x²/2)/√π where x·e^(−x²/2)/√(2π)
/// is due. `c(x) = −k·e^(−x²/2)` with k = 1/√(2π) − 1/√π adds the difference to the
/// gradient (`c(x) − c(x)` without a tape adds nothing to the value), on every device.
fn gelu<S: Shape, D: KernelDevice, T: Tape<f32, D>>(
    t: Tensor<S, f32, D, T>,
    t2: Tensor<S, f32, D, T>,
    raw: &Tensor<S, f32, D>,
) -> Tensor<S, f32, D, T> {
    use std::f32::consts::PI;
    let k = 1.0 / (2.0 * PI).sqrt() - 1.0 / PI.sqrt();
    let taped = (t2.square() * -0.5).exp() * -k;
    let value = (raw.clone().square() * -0.5).exp() * -k;
    t.accurate_gelu() + taped - value
}

macro_rules! unary_all {
    ($self:ident, $v:expr, $t:ident => $body:expr) => {{
        match $v {
            Val::R1(x) => {
                let $t = $self.tr(&x);
                let y = $body;
                $self.put(y, Val::R1)
            }
            Val::R2(x) => {
                let $t = $self.tr(&x);
                let y = $body;
                $self.put(y, Val::R2)
            }
            Val::R3(x) => {
                let $t = $self.tr(&x);
                let y = $body;
                $self.put(y, Val::R3)
            }
            Val::R4(x) => {
                let $t = $self.tr(&x);
                let y = $body;
                $self.put(y, Val::R4)
            }
        }
    }};
}

impl<D: KernelDevice, T: Tape<f32, D>> Runner<'_, D, T> {
    fn reshape_tensor<S: Shape>(&mut self, t: &Tensor<S, f32, D>, dims: &[usize]) -> Result<H> {
        let x = self.tr(t);
        let h = match *dims {
            [a] => self.put(x.reshape_like(&(a,)), Val::R1),
            [a, b] => self.put(x.reshape_like(&(a, b)), Val::R2),
            [a, b, c] => self.put(x.reshape_like(&(a, b, c)), Val::R3),
            [a, b, c, d] => self.put(x.reshape_like(&(a, b, c, d)), Val::R4),
            _ => return Err(shape_err("reshape", format!("rank of {dims:?} is not 1–4"))),
        };
        Ok(h)
    }

    fn reduce<S: Shape>(&mut self, t: &Tensor<S, f32, D>, mean: bool) -> H {
        let x = self.tr(t);
        let s = if mean { x.mean::<(), _>() } else { x.sum::<(), _>() };
        let y = s.reshape_like(&(1usize,));
        self.put(y, Val::R1)
    }
}

impl<D: KernelDevice, T: Tape<f32, D>> Runner<'_, D, T> {
    /// Record that `h` holds the tensor id of `of`.
    fn alias(&mut self, h: H, of: H) {
        let root = self.root(of);
        self.aliases.insert(h.0, root.0);
    }

    /// The handle that first held `h`'s tensor id.
    fn root(&self, h: H) -> H {
        self.aliases.get(&h.0).map_or(h, |&r| H(r))
    }

    /// `b`, or a copy of it when it is the same tensor as `a` (`x + x`, `concat(x, x)`,
    /// `x + reshape(x)`): dfdx's backward of a two-operand op cannot take one id twice.
    fn distinct(&mut self, a: H, b: H) -> Result<H> {
        if self.root(a) != self.root(b) {
            return Ok(b);
        }
        let v = self.val(b)?.clone();
        Ok(unary_all!(self, v, t => t * 1.0f32))
    }
}

impl<D: KernelDevice, T: Tape<f32, D>> Ops for Runner<'_, D, T> {
    fn shape(&self, t: H) -> Result<Vec<usize>> {
        Ok(self.val(t)?.dims())
    }

    fn training(&self) -> bool {
        self.node_training
    }

    fn linear(&mut self, x: H, w: H, b: Option<H>) -> Result<H> {
        let (Val::R2(x), Val::R2(w)) = (self.val(x)?.clone(), self.val(w)?.clone()) else {
            return Err(shape_err("linear", "needs x [B, in] and w [out, in]"));
        };
        let ((bsz, n), (out, n2)) = (*x.shape(), *w.shape());
        if n != n2 {
            return Err(shape_err("linear", format!("x has {n} features, w expects {n2}")));
        }
        let wt = self.tr(&w).permute::<(usize, usize), Axes2<1, 0>>();
        let y = self.tr(&x).matmul(wt);
        let y = match b {
            Some(b) => {
                let Val::R1(b) = self.val(b)?.clone() else {
                    return Err(shape_err("linear", "bias must be [out]"));
                };
                if b.shape().0 != out {
                    return Err(shape_err("linear", "bias length differs from out"));
                }
                y + self.tr(&b).broadcast_like::<_, Axis<0>>(&(bsz, out))
            }
            None => y,
        };
        Ok(self.put(y, Val::R2))
    }

    fn matmul(&mut self, a: H, b: H) -> Result<H> {
        let b = self.distinct(a, b)?;
        let (Val::R3(a), Val::R3(b)) = (self.val(a)?.clone(), self.val(b)?.clone()) else {
            return Err(shape_err("matmul", "needs [B, M, K] × [B, K, N]"));
        };
        let (sa, sb) = (*a.shape(), *b.shape());
        if sa.0 != sb.0 || sa.2 != sb.1 {
            return Err(shape_err("matmul", format!("{sa:?} × {sb:?}")));
        }
        let y = self.tr(&a).matmul(self.tr(&b));
        Ok(self.put(y, Val::R3))
    }

    fn conv2d(&mut self, xh: H, wh: H, b: Option<H>, stride: usize, padding: (usize, usize)) -> Result<H> {
        let (Val::R4(x), Val::R4(w)) = (self.val(xh)?.clone(), self.val(wh)?.clone()) else {
            return Err(shape_err("conv2d", "needs x [B, C, H, W] and w [O, C, kh, kw]"));
        };
        let bias = match b {
            Some(b) => match self.val(b)?.clone() {
                Val::R1(b) => Some(self.tr(&b)),
                _ => return Err(shape_err("conv2d", "bias must be [O]")),
            },
            None => None,
        };
        let need = kernels::ConvGrads {
            input: !self.is_constant(xh),
            weights: !self.is_constant(wh) || b.is_some_and(|b| !self.is_constant(b)),
        };
        let y = match self.upsampled.remove(&xh) {
            Some(small) if stride == 1 && padding == (1, 1) && (w.shape().2, w.shape().3) == (3, 3) => {
                kernels::upsample2_conv3x3(self.tr(&small), self.tr(&w), bias, need)
            }
            // Another geometry: the upsampling again, this time on the tape.
            Some(small) => kernels::upsample_nearest(self.tr(&small), 2)
                .and_then(|x| kernels::conv2d_for(x, self.tr(&w), bias, (stride, padding), need)),
            None => kernels::conv2d_for(self.tr(&x), self.tr(&w), bias, (stride, padding), need),
        };
        Ok(self.put(y.map_err(kerr)?, Val::R4))
    }

    fn batch_norm(&mut self, x: H, gamma: H, beta: H, stats: BnStats, momentum: f32, eps: f32) -> Result<H> {
        let xv = self.val(x)?.clone();
        let dims = xv.dims();
        let x4 = match &xv {
            Val::R4(t) => self.tr(t),
            Val::R2(t) => self.tr(t).reshape_like(&(dims[0], dims[1], 1usize, 1usize)),
            _ => return Err(shape_err("batch_norm", "needs [B, F] or [B, C, H, W]")),
        };
        let (Val::R1(g), Val::R1(b), Val::R1(mut m), Val::R1(mut v)) = (
            self.val(gamma)?.clone(),
            self.val(beta)?.clone(),
            self.val(stats.mean)?.clone(),
            self.val(stats.var)?.clone(),
        ) else {
            return Err(shape_err("batch_norm", "statistics must be vectors"));
        };
        let train = self.node_training;
        let y = kernels::batch_norm(
            x4,
            self.tr(&g),
            self.tr(&b),
            &mut m,
            &mut v,
            kernels::BatchNormMode { train, momentum, eps },
        )
        .map_err(kerr)?;
        self.vals[stats.mean.0 as usize] = Some(Val::R1(m));
        self.vals[stats.var.0 as usize] = Some(Val::R1(v));
        if train {
            let count = self.val(stats.count)?.to_vec();
            let next = Val::from_host(&self.dev, vec![count.first().copied().unwrap_or(0.0) + 1.0], &[1])?;
            self.vals[stats.count.0 as usize] = Some(next);
        }
        Ok(match xv {
            Val::R2(_) => {
                let y = y.reshape_like(&(dims[0], dims[1]));
                self.put(y, Val::R2)
            }
            _ => self.put(y, Val::R4),
        })
    }

    fn unary(&mut self, op: Unary, x: H) -> Result<H> {
        let v = self.val(x)?.clone();
        Ok(match op {
            // ReLU is leaky ReLU with slope 0: our kernel keeps a byte mask for backward
            // where dfdx's `relu` keeps the input and the output.
            Unary::Relu => unary_all!(self, v, t => kernels::leaky_relu(t, 0.0).map_err(kerr)?),
            Unary::LeakyRelu(s) => unary_all!(self, v, t => kernels::leaky_relu(t, s).map_err(kerr)?),
            Unary::Tanh => unary_all!(self, v, t => kernels::tanh(t).map_err(kerr)?),
            Unary::Sigmoid => unary_all!(self, v, t => t.sigmoid()),
            Unary::Exp => unary_all!(self, v, t => t.exp()),
            Unary::Ln => unary_all!(self, v, t => t.ln()),
            Unary::Neg => unary_all!(self, v, t => t.negate()),
            Unary::Square => unary_all!(self, v, t => t.square()),
            Unary::Sqrt => unary_all!(self, v, t => t.sqrt()),
            Unary::Abs => unary_all!(self, v, t => t.abs()),
            Unary::Scale(a) => unary_all!(self, v, t => t * a),
            Unary::AddScalar(a) => unary_all!(self, v, t => t + a),
            Unary::Clamp(lo, hi) => unary_all!(self, v, t => t.clamp(lo, hi)),
            Unary::Gelu => match v {
                Val::R1(x) => {
                    let y = gelu(self.tr(&x), self.tr(&x), &x);
                    self.put(y, Val::R1)
                }
                Val::R2(x) => {
                    let y = gelu(self.tr(&x), self.tr(&x), &x);
                    self.put(y, Val::R2)
                }
                Val::R3(x) => {
                    let y = gelu(self.tr(&x), self.tr(&x), &x);
                    self.put(y, Val::R3)
                }
                Val::R4(x) => {
                    let y = gelu(self.tr(&x), self.tr(&x), &x);
                    self.put(y, Val::R4)
                }
            },
        })
    }

    fn binary(&mut self, op: Binary, a: H, b: H) -> Result<H> {
        let b = self.distinct(a, b)?;
        let (a, b) = (self.val(a)?.clone(), self.val(b)?.clone());
        if a.dims() != b.dims() {
            return Err(shape_err("binary", format!("{:?} vs {:?}", a.dims(), b.dims())));
        }
        macro_rules! bin {
            ($x:expr, $y:expr, $w:expr) => {{
                let (x, y) = (self.tr(&$x), self.tr(&$y));
                let z = match op {
                    Binary::Add => x + y,
                    Binary::Sub => x - y,
                    Binary::Mul => x * y,
                    Binary::Div => x / y,
                };
                self.put(z, $w)
            }};
        }
        Ok(match (a, b) {
            (Val::R1(x), Val::R1(y)) => bin!(x, y, Val::R1),
            (Val::R2(x), Val::R2(y)) => bin!(x, y, Val::R2),
            (Val::R3(x), Val::R3(y)) => bin!(x, y, Val::R3),
            (Val::R4(x), Val::R4(y)) => bin!(x, y, Val::R4),
            _ => return Err(shape_err("binary", "ranks differ")),
        })
    }

    fn upsample_nearest(&mut self, x: H, scale: usize) -> Result<H> {
        let Val::R4(small) = self.val(x)?.clone() else {
            return Err(shape_err("upsample_nearest", "needs [B, C, H, W]"));
        };
        if self.upsample_into_conv && scale == 2 {
            // Only a convolution reads the result, and it computes through this op from
            // `small` (and backward with it): the values, with no backward here.
            let y = kernels::upsample_nearest(small.clone(), 2).map_err(kerr)?;
            let h = if self.is_constant(x) { self.push_constant(Val::R4(y)) } else { self.push(Val::R4(y)) };
            self.upsampled.insert(h, small);
            return Ok(h);
        }
        let y = kernels::upsample_nearest(self.tr(&small), scale).map_err(kerr)?;
        Ok(self.put(y, Val::R4))
    }

    fn pool2d(&mut self, x: H, kind: PoolKind, kernel: usize, stride: usize, padding: usize) -> Result<H> {
        let Val::R4(x) = self.val(x)?.clone() else {
            return Err(shape_err("pool2d", "needs [B, C, H, W]"));
        };
        let y = kernels::pool2d(self.tr(&x), kind, kernel, stride, padding).map_err(kerr)?;
        Ok(self.put(y, Val::R4))
    }

    fn resize_bilinear(&mut self, x: H, size: (usize, usize)) -> Result<H> {
        let Val::R4(x) = self.val(x)?.clone() else {
            return Err(shape_err("resize_bilinear", "needs [B, C, H, W]"));
        };
        let y = kernels::resize_bilinear(self.tr(&x), size).map_err(kerr)?;
        Ok(self.put(y, Val::R4))
    }

    fn concat(&mut self, xs: &[H], axis: usize) -> Result<H> {
        let Some((&first, rest)) = xs.split_first() else {
            return Err(shape_err("concat", "nothing to concatenate"));
        };
        let mut acc = first;
        for &next in rest {
            let next = self.distinct(acc, next)?;
            let (a, b) = (self.val(acc)?.clone(), self.val(next)?.clone());
            let (da, db) = (a.dims(), b.dims());
            let same_rest =
                da.len() == db.len() && da.iter().zip(&db).enumerate().all(|(i, (p, q))| i == axis || p == q);
            if !same_rest || axis >= da.len() {
                return Err(shape_err("concat", format!("{da:?} and {db:?} along axis {axis}")));
            }
            macro_rules! cat {
                ($x:expr, $y:expr, $w:expr) => {{
                    let (x, y) = (self.tr(&$x), self.tr(&$y));
                    match axis {
                        0 => {
                            let z = (x, y).concat_along(Axis::<0>);
                            self.put(z, $w)
                        }
                        1 => {
                            let z = (x, y).concat_along(Axis::<1>);
                            self.put(z, $w)
                        }
                        _ => return Err(shape_err("concat", "only axes 0 and 1 are supported")),
                    }
                }};
            }
            acc = match (a, b) {
                (Val::R1(x), Val::R1(y)) => {
                    let z = (self.tr(&x), self.tr(&y)).concat_along(Axis::<0>);
                    self.put(z, Val::R1)
                }
                (Val::R2(x), Val::R2(y)) => cat!(x, y, Val::R2),
                (Val::R3(x), Val::R3(y)) => cat!(x, y, Val::R3),
                (Val::R4(x), Val::R4(y)) => cat!(x, y, Val::R4),
                _ => return Err(shape_err("concat", "ranks differ")),
            };
        }
        Ok(acc)
    }

    fn select_rows(&mut self, x: H, rows: &[usize]) -> Result<H> {
        let v = self.val(x)?.clone();
        let b = v.dims()[0];
        if rows.is_empty() || rows.iter().any(|&r| r >= b) {
            return Err(shape_err("select_rows", format!("rows {rows:?} of a batch of {b}")));
        }
        let idx = || self.dev.tensor_from_vec(rows.to_vec(), (rows.len(),));
        Ok(match v {
            Val::R1(t) => {
                let y = self.tr(&t).gather::<(usize,), _>(idx());
                self.put(y, Val::R1)
            }
            Val::R2(t) => {
                let y = self.tr(&t).gather::<(usize, usize), _>(idx());
                self.put(y, Val::R2)
            }
            Val::R3(t) => {
                let y = self.tr(&t).gather::<(usize, usize, usize), _>(idx());
                self.put(y, Val::R3)
            }
            Val::R4(t) => {
                let y = self.tr(&t).gather::<(usize, usize, usize, usize), _>(idx());
                self.put(y, Val::R4)
            }
        })
    }

    fn slice(&mut self, x: H, axis: usize, start: usize, end: usize) -> Result<H> {
        let v = self.val(x)?.clone();
        let dims = v.dims();
        if axis >= dims.len() || start >= end || end > dims[axis] {
            return Err(shape_err("slice", format!("{start}..{end} along axis {axis} of {dims:?}")));
        }
        // Gather, not dfdx's `slice`: its CPU backward overwrites instead of adding. The
        // index has the tensor's dims up to `axis`, then the kept range.
        let z = end - start;
        let prefix: usize = dims[..axis].iter().product();
        let data: Vec<usize> = (0..prefix).flat_map(|_| start..end).collect();
        let dev = self.dev.clone();
        let i1 = || dev.tensor_from_vec(data.clone(), (z,));
        let i2 = || dev.tensor_from_vec(data.clone(), (dims[0], z));
        let i3 = || dev.tensor_from_vec(data.clone(), (dims[0], dims[1], z));
        let i4 = || dev.tensor_from_vec(data.clone(), (dims[0], dims[1], dims[2], z));
        type S1 = (usize,);
        type S2 = (usize, usize);
        type S3 = (usize, usize, usize);
        type S4 = (usize, usize, usize, usize);
        Ok(match (v, axis) {
            (Val::R1(t), _) => {
                let y = self.tr(&t).gather::<S1, _>(i1());
                self.put(y, Val::R1)
            }
            (Val::R2(t), 0) => {
                let y = self.tr(&t).gather::<S2, _>(i1());
                self.put(y, Val::R2)
            }
            (Val::R2(t), _) => {
                let y = self.tr(&t).gather::<S2, _>(i2());
                self.put(y, Val::R2)
            }
            (Val::R3(t), 0) => {
                let y = self.tr(&t).gather::<S3, _>(i1());
                self.put(y, Val::R3)
            }
            (Val::R3(t), 1) => {
                let y = self.tr(&t).gather::<S3, _>(i2());
                self.put(y, Val::R3)
            }
            (Val::R3(t), _) => {
                let y = self.tr(&t).gather::<S3, _>(i3());
                self.put(y, Val::R3)
            }
            (Val::R4(t), 0) => {
                let y = self.tr(&t).gather::<S4, _>(i1());
                self.put(y, Val::R4)
            }
            (Val::R4(t), 1) => {
                let y = self.tr(&t).gather::<S4, _>(i2());
                self.put(y, Val::R4)
            }
            (Val::R4(t), 2) => {
                let y = self.tr(&t).gather::<S4, _>(i3());
                self.put(y, Val::R4)
            }
            (Val::R4(t), _) => {
                let y = self.tr(&t).gather::<S4, _>(i4());
                self.put(y, Val::R4)
            }
        })
    }

    fn reshape(&mut self, x: H, shape: &[usize]) -> Result<H> {
        let v = self.val(x)?.clone();
        if shape.iter().product::<usize>() != v.numel() {
            return Err(shape_err("reshape", format!("{:?} to {shape:?}", v.dims())));
        }
        let h = match v {
            Val::R1(t) => self.reshape_tensor(&t, shape),
            Val::R2(t) => self.reshape_tensor(&t, shape),
            Val::R3(t) => self.reshape_tensor(&t, shape),
            Val::R4(t) => self.reshape_tensor(&t, shape),
        }?;
        self.alias(h, x);
        Ok(h)
    }

    fn replicate(&mut self, x: H, h: usize, w: usize) -> Result<H> {
        let Val::R2(t) = self.val(x)?.clone() else {
            return Err(shape_err("replicate", "needs [B, C]"));
        };
        let (b, c) = *t.shape();
        let y = self.tr(&t).broadcast_like::<_, Axes2<2, 3>>(&(b, c, h, w));
        let h = self.put(y, Val::R4);
        self.alias(h, x);
        Ok(h)
    }

    fn transpose(&mut self, x: H, a: usize, b: usize) -> Result<H> {
        let v = self.val(x)?.clone();
        let (a, b) = (a.min(b), a.max(b));
        macro_rules! swap {
            ($t:expr, $sh:ty, $axes:ty, $w:expr) => {{
                let y = self.tr(&$t).permute::<$sh, $axes>().contiguous();
                self.put(y, $w)
            }};
        }
        type S2 = (usize, usize);
        type S3 = (usize, usize, usize);
        type S4 = (usize, usize, usize, usize);
        Ok(match (v, a, b) {
            (_, a, b) if a == b => return Err(shape_err("transpose", format!("axes {a} and {b} are the same"))),
            (Val::R2(t), 0, 1) => swap!(t, S2, Axes2<1, 0>, Val::R2),
            (Val::R3(t), 0, 1) => swap!(t, S3, Axes3<1, 0, 2>, Val::R3),
            (Val::R3(t), 0, 2) => swap!(t, S3, Axes3<2, 1, 0>, Val::R3),
            (Val::R3(t), 1, 2) => swap!(t, S3, Axes3<0, 2, 1>, Val::R3),
            (Val::R4(t), 0, 1) => swap!(t, S4, Axes4<1, 0, 2, 3>, Val::R4),
            (Val::R4(t), 0, 2) => swap!(t, S4, Axes4<2, 1, 0, 3>, Val::R4),
            (Val::R4(t), 0, 3) => swap!(t, S4, Axes4<3, 1, 2, 0>, Val::R4),
            (Val::R4(t), 1, 2) => swap!(t, S4, Axes4<0, 2, 1, 3>, Val::R4),
            (Val::R4(t), 1, 3) => swap!(t, S4, Axes4<0, 3, 2, 1>, Val::R4),
            (Val::R4(t), 2, 3) => swap!(t, S4, Axes4<0, 1, 3, 2>, Val::R4),
            (v, a, b) => return Err(shape_err("transpose", format!("axes {a} and {b} of {:?}", v.dims()))),
        })
    }

    fn layer_norm(&mut self, x: H, weight: H, bias: H, eps: f32) -> Result<H> {
        let (Val::R1(w), Val::R1(b)) = (self.val(weight)?.clone(), self.val(bias)?.clone()) else {
            return Err(shape_err("layer_norm", "weight and bias must be [D]"));
        };
        let v = self.val(x)?.clone();
        let d = *v.dims().last().unwrap_or(&0);
        if w.shape().0 != d || b.shape().0 != d {
            return Err(shape_err("layer_norm", format!("weight/bias of {} for {:?}", w.shape().0, v.dims())));
        }
        Ok(match v {
            Val::R2(t) => {
                let sh = *t.shape();
                let y = self.tr(&t).normalize::<Axis<1>>(eps);
                let y =
                    y * self.tr(&w).broadcast_like::<_, Axis<0>>(&sh) + self.tr(&b).broadcast_like::<_, Axis<0>>(&sh);
                self.put(y, Val::R2)
            }
            Val::R3(t) => {
                let sh = *t.shape();
                let y = self.tr(&t).normalize::<Axis<2>>(eps);
                let y = y * self.tr(&w).broadcast_like::<_, Axes2<0, 1>>(&sh)
                    + self.tr(&b).broadcast_like::<_, Axes2<0, 1>>(&sh);
                self.put(y, Val::R3)
            }
            v => return Err(shape_err("layer_norm", format!("needs rank 2 or 3, got {:?}", v.dims()))),
        })
    }

    fn softmax(&mut self, x: H) -> Result<H> {
        Ok(match self.val(x)?.clone() {
            Val::R1(t) => {
                let y = self.tr(&t).softmax::<Axis<0>>();
                self.put(y, Val::R1)
            }
            Val::R2(t) => {
                let y = self.tr(&t).softmax::<Axis<1>>();
                self.put(y, Val::R2)
            }
            Val::R3(t) => {
                let y = self.tr(&t).softmax::<Axis<2>>();
                self.put(y, Val::R3)
            }
            Val::R4(t) => {
                let y = self.tr(&t).softmax::<Axis<3>>();
                self.put(y, Val::R4)
            }
        })
    }

    fn group_norm(&mut self, x: H, groups: usize, weight: H, bias: H, eps: f32) -> Result<H> {
        let (Val::R1(w), Val::R1(b)) = (self.val(weight)?.clone(), self.val(bias)?.clone()) else {
            return Err(shape_err("group_norm", "weight and bias must be [C]"));
        };
        let v = self.val(x)?.clone();
        let dims = v.dims();
        let c = dims.get(1).copied().unwrap_or(0);
        if !(3..=4).contains(&dims.len()) || groups == 0 || c % groups != 0 {
            return Err(shape_err("group_norm", format!("{groups} groups of the channels of {dims:?}")));
        }
        if w.shape().0 != c || b.shape().0 != c {
            return Err(shape_err("group_norm", format!("weight/bias of {} for {c} channels", w.shape().0)));
        }
        let per_group = dims[1..].iter().product::<usize>() / groups;
        Ok(match v {
            Val::R3(t) => {
                let sh = *t.shape();
                let y =
                    self.tr(&t).reshape_like(&(sh.0, groups, per_group)).normalize::<Axis<2>>(eps).reshape_like(&sh);
                let y = y * self.tr(&w).broadcast_like::<_, Axes2<0, 2>>(&sh)
                    + self.tr(&b).broadcast_like::<_, Axes2<0, 2>>(&sh);
                self.put(y, Val::R3)
            }
            Val::R4(t) => {
                let sh = *t.shape();
                let y =
                    self.tr(&t).reshape_like(&(sh.0, groups, per_group)).normalize::<Axis<2>>(eps).reshape_like(&sh);
                let y = y * self.tr(&w).broadcast_like::<_, Axes3<0, 2, 3>>(&sh)
                    + self.tr(&b).broadcast_like::<_, Axes3<0, 2, 3>>(&sh);
                self.put(y, Val::R4)
            }
            v => return Err(shape_err("group_norm", format!("needs rank 3 or 4, got {:?}", v.dims()))),
        })
    }

    fn reduce_axis(&mut self, x: H, op: Reduce, axis: usize) -> Result<H> {
        let v = self.val(x)?.clone();
        let mut kept = v.dims();
        if axis >= kept.len() {
            return Err(shape_err("reduce", format!("axis {axis} of {kept:?}")));
        }
        kept[axis] = 1;
        macro_rules! red {
            ($t:expr, $dst:ty, $ax:ty, $wrap:expr, $keep:expr) => {{
                let t = self.tr(&$t);
                let y: Tensor<$dst, f32, D, T> = match op {
                    Reduce::Sum => t.sum::<$dst, $ax>(),
                    Reduce::Mean => t.mean::<$dst, $ax>(),
                    Reduce::Max => t.max::<$dst, $ax>(),
                };
                let y = y.reshape_like(&$keep);
                self.put(y, $wrap)
            }};
        }
        type S1 = (usize,);
        type S2 = (usize, usize);
        type S3 = (usize, usize, usize);
        let k = &kept;
        Ok(match (v, axis) {
            (Val::R1(t), _) => red!(t, (), Axis<0>, Val::R1, (1usize,)),
            (Val::R2(t), 0) => red!(t, S1, Axis<0>, Val::R2, (k[0], k[1])),
            (Val::R2(t), _) => red!(t, S1, Axis<1>, Val::R2, (k[0], k[1])),
            (Val::R3(t), 0) => red!(t, S2, Axis<0>, Val::R3, (k[0], k[1], k[2])),
            (Val::R3(t), 1) => red!(t, S2, Axis<1>, Val::R3, (k[0], k[1], k[2])),
            (Val::R3(t), _) => red!(t, S2, Axis<2>, Val::R3, (k[0], k[1], k[2])),
            (Val::R4(t), 0) => red!(t, S3, Axis<0>, Val::R4, (k[0], k[1], k[2], k[3])),
            (Val::R4(t), 1) => red!(t, S3, Axis<1>, Val::R4, (k[0], k[1], k[2], k[3])),
            (Val::R4(t), 2) => red!(t, S3, Axis<2>, Val::R4, (k[0], k[1], k[2], k[3])),
            (Val::R4(t), _) => red!(t, S3, Axis<3>, Val::R4, (k[0], k[1], k[2], k[3])),
        })
    }

    fn compare(&mut self, op: Compare, a: H, b: H) -> Result<H> {
        let (a, b) = (self.val(a)?.clone(), self.val(b)?.clone());
        if a.dims() != b.dims() {
            return Err(shape_err("compare", format!("{:?} vs {:?}", a.dims(), b.dims())));
        }
        macro_rules! cmp {
            ($x:expr, $y:expr, $w:expr) => {{
                let mask = match op {
                    Compare::Gt => $x.gt(&$y),
                    Compare::Ge => $x.ge(&$y),
                    Compare::Lt => $x.lt(&$y),
                    Compare::Le => $x.le(&$y),
                    Compare::Eq => $x.eq(&$y),
                    Compare::Ne => $x.ne(&$y),
                };
                let sh = *$x.shape();
                let dev = $x.device().clone();
                $w(mask.choose(dev.ones_like(&sh), dev.zeros_like(&sh)))
            }};
        }
        let v = match (a, b) {
            (Val::R1(x), Val::R1(y)) => cmp!(x, y, Val::R1),
            (Val::R2(x), Val::R2(y)) => cmp!(x, y, Val::R2),
            (Val::R3(x), Val::R3(y)) => cmp!(x, y, Val::R3),
            (Val::R4(x), Val::R4(y)) => cmp!(x, y, Val::R4),
            _ => return Err(shape_err("compare", "ranks differ")),
        };
        Ok(self.push_constant(v))
    }

    fn select(&mut self, cond: H, a: H, b: H) -> Result<H> {
        let b = self.distinct(a, b)?;
        let (c, a, b) = (self.val(cond)?.clone(), self.val(a)?.clone(), self.val(b)?.clone());
        if c.dims() != a.dims() || a.dims() != b.dims() {
            return Err(shape_err("select", format!("{:?}, {:?} and {:?}", c.dims(), a.dims(), b.dims())));
        }
        macro_rules! sel {
            ($c:expr, $x:expr, $y:expr, $w:expr) => {{
                let z = $c.ne(0.0).choose(self.tr(&$x), self.tr(&$y));
                self.put(z, $w)
            }};
        }
        Ok(match (c, a, b) {
            (Val::R1(c), Val::R1(x), Val::R1(y)) => sel!(c, x, y, Val::R1),
            (Val::R2(c), Val::R2(x), Val::R2(y)) => sel!(c, x, y, Val::R2),
            (Val::R3(c), Val::R3(x), Val::R3(y)) => sel!(c, x, y, Val::R3),
            (Val::R4(c), Val::R4(x), Val::R4(y)) => sel!(c, x, y, Val::R4),
            _ => return Err(shape_err("select", "ranks differ")),
        })
    }

    fn sum(&mut self, x: H) -> Result<H> {
        Ok(match self.val(x)?.clone() {
            Val::R1(t) => self.reduce(&t, false),
            Val::R2(t) => self.reduce(&t, false),
            Val::R3(t) => self.reduce(&t, false),
            Val::R4(t) => self.reduce(&t, false),
        })
    }

    fn mean(&mut self, x: H) -> Result<H> {
        Ok(match self.val(x)?.clone() {
            Val::R1(t) => self.reduce(&t, true),
            Val::R2(t) => self.reduce(&t, true),
            Val::R3(t) => self.reduce(&t, true),
            Val::R4(t) => self.reduce(&t, true),
        })
    }

    fn detach(&mut self, x: H) -> Result<H> {
        let v = self.fresh_copy(x)?;
        Ok(self.push_constant(v))
    }

    fn assign(&mut self, buffer: H, value: H) -> Result<H> {
        if !self.buffers.iter().any(|&(_, h)| h == buffer) {
            return Err(shape_err("assign", "the target is not a buffer parameter of the net being run"));
        }
        let (want, got) = (self.val(buffer)?.dims(), self.val(value)?.dims());
        if want != got {
            return Err(shape_err("assign", format!("the buffer is {want:?}, the value {got:?}")));
        }
        // Later reads of the buffer are constants.
        self.vals[buffer.0 as usize] = Some(self.fresh_copy(value)?);
        self.constant[buffer.0 as usize] = true;
        Ok(buffer)
    }

    fn noise(&mut self, name: &str, shape: &[usize], dist: Noise) -> Result<H> {
        let data = self.noise.draw(name, shape, dist)?;
        let v = Val::from_host(&self.dev, data, shape)?;
        Ok(self.push(v))
    }

    fn constant(&mut self, data: &[f32], shape: &[usize]) -> Result<H> {
        let v = Val::from_host(&self.dev, data.to_vec(), shape)?;
        Ok(self.push(v))
    }

    fn read(&mut self, t: H) -> Result<Vec<f32>> {
        Ok(self.val(t)?.to_vec())
    }

    fn node_path(&self) -> &str {
        &self.node_path
    }
}
