//! A plugin that fails on purpose, where its attribute says: `panicky.block` with
//! `fail: "configure" | "infer" | "zero_param" | "forward" | "error" | "host" | "huge" | "none"` and
//! `panicky.loss`, whose D loss panics. Every failure must reach the user as a diagnostic
//! naming the plugin and the kind, with exit code 1, never a crash.

use stackflow_plugin_api::prelude::*;

struct Faulty {
    fail: &'static str,
}

impl Block for Faulty {
    const NAME: &'static str = "panicky.block";
    const DOC: &'static str = "identity that fails where `fail` says";
    const ATTRS: &'static [(&'static str, &'static str)] =
        &[("fail", "configure | infer | zero_param | forward | error | host | huge | none")];

    fn configure(attrs: &mut Attrs) -> Result<Self> {
        let fail =
            attrs.choice("fail", &["none", "configure", "infer", "zero_param", "forward", "error", "host", "huge"])?;
        if fail == "configure" {
            panic!("configure blew up");
        }
        Ok(Faulty { fail })
    }

    fn infer(&self, inputs: &[Vec<usize>]) -> std::result::Result<Inferred, String> {
        if self.fail == "infer" {
            let v: Vec<usize> = Vec::new();
            let _ = v[inputs.len() + 3];
        }
        let mut inferred = Inferred::outputs(inputs.iter().take(1).cloned());
        if self.fail == "zero_param" {
            inferred.params.push(ParamSpec::trainable("empty", [0], Init::Zeros));
        }
        Ok(inferred)
    }

    fn forward<'a>(&self, ops: &'a Ops, x: &[Tensor<'a>], _: &[Tensor<'a>]) -> Result<Vec<Tensor<'a>>> {
        match self.fail {
            "forward" => panic!("forward blew up"),
            "error" => Err(Error::new("forward refused politely")),
            // A rank-2 matmul the host must refuse with a message, not a crash.
            "host" => Ok(vec![x[0].matmul(x[0])]),
            // 2^34 elements: refused before anything is allocated.
            "huge" => Ok(vec![ops.full(&[1 << 17, 1 << 17], 0.0)]),
            _ => Ok(vec![x[0] * 1.0]),
        }
    }
}

struct Loud;

impl Loss for Loud {
    const NAME: &'static str = "panicky.loss";
    const DOC: &'static str = "a loss whose D loss panics";
    fn configure(_: &mut Attrs) -> Result<Self> {
        Ok(Loud)
    }
    fn needs(&self) -> Vec<String> {
        vec!["cond_prob".into()]
    }
    fn d_loss<'a>(&self, _: &'a Ops, _: &Outs<'a>, _: &Outs<'a>, _: &Outs<'a>) -> Result<Terms<'a>> {
        panic!("d_loss blew up")
    }
    fn g_loss<'a>(&self, _: &'a Ops, _: &Outs<'a>, fake: &Outs<'a>) -> Result<Terms<'a>> {
        Ok(Terms::total(fake.need("cond_prob")?.mean()))
    }
}

export_plugin!(name: "panicky", blocks: [Faulty], losses: [Loud]);
