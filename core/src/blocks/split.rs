//! `core.split`: cut a value into parts along a per-sample axis; ports are named.

use std::sync::Arc;

use crate::error::Result;
use crate::kind::{Attrs, Block, BlockKind, Inferred, Probe, Shape};
use crate::ops::{Ops, Tensor};

pub(super) struct Split;

impl BlockKind for Split {
    fn name(&self) -> &str {
        "core.split"
    }
    fn doc(&self) -> &str {
        "split along per-sample `axis` (default 0) into `sizes` (a list) or `parts` equal pieces; ports `0`, `1`, …"
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Block>> {
        let axis = attrs.uint_or("axis", 0)?;
        let sizes = attrs.dims("sizes")?;
        let parts = attrs.uint_or("parts", 0)?;
        let how = match (sizes, parts) {
            (Some(s), 0) if s.len() >= 2 => How::Sizes(s),
            (None, p) if p >= 2 => How::Parts(p),
            _ => return Err(attrs.error("`core.split` needs either `sizes` (two or more) or `parts` (>= 2)")),
        };
        Ok(Arc::new(SplitBlock { axis, how }))
    }
    fn probes(&self) -> Vec<Probe> {
        vec![Probe::new("(sizes: [1, 3])", &[&[4, 2]]), Probe::new("(parts: 2, axis: 1)", &[&[2, 4]])]
    }
}

#[derive(Debug)]
enum How {
    Sizes(Vec<usize>),
    Parts(usize),
}

#[derive(Debug)]
struct SplitBlock {
    axis: usize,
    how: How,
}

impl SplitBlock {
    fn sizes(&self, n: usize) -> std::result::Result<Vec<usize>, String> {
        match &self.how {
            How::Sizes(s) if s.iter().sum::<usize>() == n => Ok(s.clone()),
            How::Sizes(s) => Err(format!("sizes {s:?} do not add up to {n}")),
            How::Parts(p) if n.is_multiple_of(*p) => Ok(vec![n / p; *p]),
            How::Parts(p) => Err(format!("{n} does not split into {p} equal parts")),
        }
    }
}

impl Block for SplitBlock {
    fn ports(&self) -> Vec<String> {
        let n = match &self.how {
            How::Sizes(s) => s.len(),
            How::Parts(p) => *p,
        };
        (0..n).map(|i| i.to_string()).collect()
    }

    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        super::arity(inputs, 1)?;
        let s = &inputs[0];
        if self.axis >= s.rank() {
            return Err(format!("axis {} is out of range for {s}", self.axis));
        }
        let outputs = self
            .sizes(s.0[self.axis])?
            .into_iter()
            .map(|n| {
                let mut d = s.0.clone();
                d[self.axis] = n;
                Shape(d)
            })
            .collect();
        Ok(Inferred { outputs, ..Default::default() })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], _: &[Tensor]) -> Result<Vec<Tensor>> {
        let n = ops.shape(inputs[0])?[self.axis + 1];
        let sizes = self.sizes(n).map_err(|m| crate::Error::other("exec::shape", m))?;
        let mut start = 0;
        let mut out = Vec::new();
        for s in sizes {
            out.push(ops.slice(inputs[0], self.axis + 1, start, start + s)?);
            start += s;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::blocks::testing::configure;
    use crate::kind::Shape;

    #[test]
    fn splits_into_named_ports() {
        let b = configure("core.split", "(sizes: [3, 5])").unwrap();
        assert_eq!(b.ports(), vec!["0", "1"]);
        let i = b.infer(&[Shape::new([8, 2])]).unwrap();
        assert_eq!(i.outputs, vec![Shape::new([3, 2]), Shape::new([5, 2])]);
        assert!(b.infer(&[Shape::new([9])]).is_err());
        let b = configure("core.split", "(parts: 2, axis: 1)").unwrap();
        assert_eq!(b.infer(&[Shape::new([3, 4])]).unwrap().outputs[1], Shape::new([3, 2]));
        assert!(configure("core.split", "(parts: 1)").is_err());
    }
}
