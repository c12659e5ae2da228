//! A plugin whose loss has the same name as one in gan_losses: loading both is a
//! `registry::duplicate_kind` error naming both libraries.

use stackflow_plugin_api::prelude::*;

struct Hinge;

impl Loss for Hinge {
    const NAME: &'static str = "gan_losses.hinge";
    const DOC: &'static str = "a second hinge loss";
    fn configure(_: &mut Attrs) -> Result<Self> {
        Ok(Hinge)
    }
    fn needs(&self) -> Vec<String> {
        vec!["cond_prob".into()]
    }
    fn d_loss<'a>(&self, _: &'a Ops, real: &Outs<'a>, _: &Outs<'a>, _: &Outs<'a>) -> Result<Terms<'a>> {
        Ok(Terms::total(real.need("cond_prob")?.mean()))
    }
    fn g_loss<'a>(&self, _: &'a Ops, _: &Outs<'a>, fake: &Outs<'a>) -> Result<Terms<'a>> {
        Ok(Terms::total(fake.need("cond_prob")?.mean()))
    }
}

export_plugin!(name: "duplicate", losses: [Hinge]);
