//! A runtime value: a dfdx tensor of rank 1–4 with runtime dims (batch first).

use dfdx::prelude::*;

use crate::error::{Error, Result};
use crate::kernels::{AdamKernel, AdamStep, AdamVisit};

/// Rank-erased tensor without a tape; the executor keeps one tape for the whole pass.
#[derive(Clone, Debug)]
pub enum Val<D: Storage<f32>> {
    /// [N]
    R1(Tensor<(usize,), f32, D>),
    /// [B, F]
    R2(Tensor<(usize, usize), f32, D>),
    /// [B, M, N]
    R3(Tensor<(usize, usize, usize), f32, D>),
    /// [B, C, H, W]
    R4(Tensor<(usize, usize, usize, usize), f32, D>),
}

impl<D: Device<f32>> Val<D> {
    /// Full shape.
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Val::R1(t) => vec![t.shape().0],
            Val::R2(t) => {
                let s = t.shape();
                vec![s.0, s.1]
            }
            Val::R3(t) => {
                let s = t.shape();
                vec![s.0, s.1, s.2]
            }
            Val::R4(t) => {
                let s = t.shape();
                vec![s.0, s.1, s.2, s.3]
            }
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.dims().iter().product()
    }

    /// Host copy in C order.
    pub fn to_vec(&self) -> Vec<f32> {
        crate::mem::count_to_host(self.numel());
        // One bulk copy of a contiguous tensor (a view is made contiguous first; for a
        // contiguous one that is a reference); `as_vec` walks element by element.
        let mut buf = vec![0.0; self.numel()];
        macro_rules! copy {
            ($t:expr) => {
                match $t.clone().try_contiguous() {
                    Ok(c) => c.copy_into(&mut buf),
                    Err(_) => buf = $t.as_vec(),
                }
            };
        }
        match self {
            Val::R1(t) => copy!(t),
            Val::R2(t) => copy!(t),
            Val::R3(t) => copy!(t),
            Val::R4(t) => copy!(t),
        }
        buf
    }

    /// A value from host data.
    pub fn from_host(dev: &D, data: Vec<f32>, dims: &[usize]) -> Result<Self> {
        let n: usize = dims.iter().product();
        if n != data.len() {
            return Err(Error::input("exec::shape", format!("{} values do not fill shape {dims:?}", data.len())));
        }
        crate::mem::count_to_device(n);
        Ok(match *dims {
            [a] => Val::R1(dev.tensor_from_vec(data, (a,))),
            [a, b] => Val::R2(dev.tensor_from_vec(data, (a, b))),
            [a, b, c] => Val::R3(dev.tensor_from_vec(data, (a, b, c))),
            [a, b, c, d] => Val::R4(dev.tensor_from_vec(data, (a, b, c, d))),
            _ => return Err(Error::input("exec::shape", format!("tensors have rank 1 to 4, got shape {dims:?}"))),
        })
    }

    /// Same data in another shape of equal size (contiguous copy when needed).
    pub fn reshaped(&self, dims: &[usize]) -> Result<Self> {
        let n: usize = dims.iter().product();
        if n != self.numel() {
            return Err(Error::other("exec::shape", format!("cannot reshape {:?} to {dims:?}", self.dims())));
        }
        macro_rules! to {
            ($t:expr) => {
                match *dims {
                    [a] => Val::R1($t.clone().reshape_like(&(a,))),
                    [a, b] => Val::R2($t.clone().reshape_like(&(a, b))),
                    [a, b, c] => Val::R3($t.clone().reshape_like(&(a, b, c))),
                    [a, b, c, d] => Val::R4($t.clone().reshape_like(&(a, b, c, d))),
                    _ => return Err(Error::other("exec::shape", format!("rank of {dims:?} is not 1–4"))),
                }
            };
        }
        Ok(match self {
            Val::R1(t) => to!(t),
            Val::R2(t) => to!(t),
            Val::R3(t) => to!(t),
            Val::R4(t) => to!(t),
        })
    }
}

impl<D: AdamKernel> Val<D> {
    /// This parameter after one Adam step from its gradient in `grads`, its moments moved;
    /// `None` when backward released the gradient (see [`AdamKernel::adam`]).
    pub fn adam(
        &self,
        step: &AdamStep,
        moments: (&mut D::Moment, &mut D::Moment),
        grads: &mut Gradients<f32, D>,
        visit: Option<AdamVisit<'_>>,
    ) -> Result<Option<Self>> {
        let err = super::runner::kerr;
        Ok(match self {
            Val::R1(t) => D::adam(step, t, moments, grads, visit).map_err(err)?.map(Val::R1),
            Val::R2(t) => D::adam(step, t, moments, grads, visit).map_err(err)?.map(Val::R2),
            Val::R3(t) => D::adam(step, t, moments, grads, visit).map_err(err)?.map(Val::R3),
            Val::R4(t) => D::adam(step, t, moments, grads, visit).map_err(err)?.map(Val::R4),
        })
    }
}
