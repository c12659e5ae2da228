//! `--set` on the recipe: `--set stage1.epochs=4`, `--set stage2.discriminator=d2_patch`,
//! `--set stage1.loss=gan_losses.hinge`, `--set stage1.lr=1e-4`. The stage is named by its
//! `name` (or `stageN`, counting from 1); the value replaces the field before the flow is
//! checked, so every later check applies to it. Variable overrides (`--set gf_dim=16`)
//! are `build`'s; this module takes the flags whose name has a dot.

use crate::dsl::{Optimizer, Parsed, StageDef};
use crate::error::{did_you_mean, Error, Result, SourceFile};

/// The recipe fields `--set` reaches, with what each takes.
pub const FIELDS: &[(&str, &str)] = &[
    ("generator", "a net name"),
    ("discriminator", "a net name"),
    ("loss", "a loss kind"),
    ("noise", "a noise sampler kind"),
    ("mismatch", "a mismatch sampler kind"),
    ("epochs", "a whole number ≥ 1"),
    ("batch", "a whole number ≥ 2"),
    ("kl_weight", "a number ≥ 0"),
    ("lr", "a number > 0: G's learning rate (and D's, unless the stage has `d_optimizer`)"),
    ("d_lr", "a number > 0: D's learning rate"),
    ("ema", "a decay between 0 and 1: keep a moving average of G's weights"),
];

/// Whether a `--set` flag addresses the recipe (`stage.field=value`) rather than a variable.
pub fn is_recipe(flag: &str) -> bool {
    flag.split_once('=').is_some_and(|(k, _)| k.contains('.'))
}

/// `parsed` with the recipe flags among `flags` applied. `flags` are all the `--set`
/// values in order (their positions make the carets of errors).
pub fn apply(parsed: &Parsed, flags: &[String]) -> Result<Option<Parsed>> {
    if !flags.iter().any(|f| is_recipe(f)) {
        return Ok(None);
    }
    let src = SourceFile::new("--set", flags.join(" "));
    let mut out = parsed.clone();
    let mut offset = 0;
    for flag in flags {
        if is_recipe(flag) {
            set_one(&mut out.doc.train, flag, offset, &src)?;
        }
        offset += flag.len() + 1;
    }
    Ok(Some(out))
}

fn set_one(stages: &mut [StageDef], flag: &str, offset: usize, src: &SourceFile) -> Result<()> {
    let (key, value) = flag.split_once('=').unwrap_or((flag, ""));
    let (stage_name, field) = key.split_once('.').unwrap_or((key, ""));
    let (stage_name, field, value) = (stage_name.trim(), field.trim(), value.trim());
    let at = |start: usize, len: usize| -> miette::SourceSpan { (offset + start, len.max(1)).into() };
    let field_at = at(key.find('.').map_or(0, |i| i + 1), field.len());
    let value_at = at(key.len() + 1, value.len());
    let index = stages.iter().position(|s| s.name == stage_name).or_else(|| {
        stage_name.strip_prefix("stage")?.parse::<usize>().ok()?.checked_sub(1).filter(|&i| i < stages.len())
    });
    let Some(index) = index else {
        let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
        return Err(src
            .error("cli::unknown_stage", at(0, stage_name.len()), format!("the recipe has no stage `{stage_name}`"))
            .with_help(
                did_you_mean(stage_name, names.iter().copied())
                    .unwrap_or_else(|| format!("stages: {} (or `stage1` … `stage{}`)", names.join(", "), stages.len())),
            ));
    };
    let st = &mut stages[index];
    let bad =
        |what: &str| -> Error { src.error("cli::bad_set", value_at, format!("`{field}` takes {what}, not `{value}`")) };
    let text = || -> Result<String> {
        let v = value.trim_matches('"');
        if v.is_empty() {
            return Err(bad("a name"));
        }
        Ok(v.to_string())
    };
    let whole = |min: u64| -> Result<u64> {
        value.parse::<u64>().ok().filter(|&n| n >= min).ok_or_else(|| bad(&format!("a whole number ≥ {min}")))
    };
    let number = |positive: bool| -> Result<f64> {
        value
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && (*x > 0.0 || (!positive && *x == 0.0)))
            .ok_or_else(|| bad(if positive { "a number > 0" } else { "a number ≥ 0" }))
    };
    let set_lr = |opt: &mut Optimizer, lr: f64| {
        let Optimizer::Adam { lr: old, .. } = opt;
        *old = lr;
    };
    match field {
        "generator" => st.generator = text()?,
        "discriminator" => st.discriminator = text()?,
        "loss" => st.loss = text()?,
        "noise" => st.noise = text()?,
        "mismatch" => st.mismatch = text()?,
        "epochs" => st.epochs = whole(1)?,
        "batch" => st.batch = whole(2)?,
        "kl_weight" => st.kl_weight = number(false)?,
        "ema" => {
            let decay = value.parse::<f64>().ok().filter(|d| *d > 0.0 && *d < 1.0);
            st.ema = Some(decay.ok_or_else(|| bad("a decay between 0 and 1"))?);
        }
        "lr" => set_lr(&mut st.optimizer, number(true)?),
        "d_lr" => {
            let lr = number(true)?;
            let d = st.d_optimizer.get_or_insert_with(|| st.optimizer.clone());
            set_lr(d, lr);
        }
        _ => {
            let names = FIELDS.iter().map(|(n, _)| *n);
            return Err(src
                .error("cli::unknown_field", field_at, format!("`--set` cannot change the stage field `{field}`"))
                .with_help(
                    did_you_mean(field, names.clone())
                        .unwrap_or_else(|| format!("fields: {}", names.collect::<Vec<_>>().join(", "))),
                ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed() -> Parsed {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/graphs/tiny2.ron")).unwrap();
        crate::dsl::parse(SourceFile::new("tiny2.ron", text)).unwrap()
    }

    fn set(flags: &[&str]) -> Result<Parsed> {
        let flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        apply(&parsed(), &flags).map(|p| p.expect("recipe flags"))
    }

    #[test]
    fn fields_are_set_by_stage_name_or_number() {
        let p = set(&["gf_dim=8", "stage1.epochs=7", "stage2.discriminator=d1", "stage1.lr=1e-3", "stage2.d_lr=5e-4"])
            .unwrap();
        let t = &p.doc.train;
        assert_eq!((t[0].epochs, t[1].discriminator.as_str()), (7, "d1"));
        assert_eq!(t[0].optimizer, Optimizer::Adam { lr: 1e-3, betas: (0.5, 0.999), eps: 1e-8 });
        assert!(matches!(t[1].d_optimizer, Some(Optimizer::Adam { lr, .. }) if lr == 5e-4));
        assert!(apply(&parsed(), &["gf_dim=8".to_string()]).unwrap().is_none(), "variables are not the recipe");
    }

    #[test]
    fn bad_flags_point_into_the_flag() {
        let e = set(&["gf_dim=8", "stage3.epochs=2"]).unwrap_err();
        assert_eq!(e.code_str(), "cli::unknown_stage");
        let e = set(&["stage1.epoch=2"]).unwrap_err();
        assert_eq!(e.code_str(), "cli::unknown_field");
        assert!(e.help_text().unwrap_or_default().contains("epochs"), "{e:?}");
        let e = set(&["stage1.epochs=0"]).unwrap_err();
        assert_eq!(e.code_str(), "cli::bad_set");
        let e = set(&["stage1.lr=-1"]).unwrap_err();
        assert_eq!(e.code_str(), "cli::bad_set");
    }
}
