//! TensorBoard event files of a run (`stackflow run --tensorboard`): every number of a
//! `metrics.jsonl` line as a scalar tagged `<stage>/<name>`, and the sample grids as
//! images, in `<run>/tensorboard/`, so `tensorboard --logdir runs/` shows the runs.
//! Written with the `tboard` crate, behind the `tensorboard` cargo feature (its build
//! needs `protoc`); a build without it refuses the flag with a diagnostic.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// An open event file.
pub struct Board {
    #[cfg(feature = "tensorboard")]
    writer: tboard::EventWriter<std::fs::File>,
    dir: PathBuf,
}

/// Fields of a metrics line that are positions, not measurements.
const NOT_SCALARS: [&str; 3] = ["stage", "epoch", "step"];

/// Whether this build writes TensorBoard events: a diagnostic when it does not.
pub fn available() -> Result<()> {
    if cfg!(feature = "tensorboard") {
        return Ok(());
    }
    Err(Error::input("run::no_tensorboard", "--tensorboard: this stackflow was built without TensorBoard support")
        .with_help(
            "rebuild with `cargo build --release -p stackflow-cli --features tensorboard` (its build needs `protoc`, \
             e.g. the `protobuf-compiler` package); metrics.jsonl and losses.png hold the same numbers",
        ))
}

impl Board {
    /// Start a new event file in `dir` (created). A resumed run adds a file beside the
    /// earlier ones; TensorBoard reads them as one run.
    pub fn open(dir: &Path) -> Result<Board> {
        available()?;
        Ok(Board {
            #[cfg(feature = "tensorboard")]
            writer: tboard::EventWriter::create(dir).map_err(|e| failed(dir, e))?,
            dir: dir.to_path_buf(),
        })
    }

    /// Every numeric field of a metrics line (`stage`, `step` and the rest), as scalars
    /// tagged `<stage>/<field>` at the line's step.
    pub fn metrics_line(&mut self, line: &serde_json::Value) -> Result<()> {
        let (Some(stage), Some(step), Some(fields)) = (line["stage"].as_str(), line["step"].as_u64(), line.as_object())
        else {
            return Ok(());
        };
        for (name, v) in fields.iter().filter(|(n, _)| !NOT_SCALARS.contains(&n.as_str())) {
            if let Some(v) = v.as_f64() {
                self.scalar(step, &format!("{stage}/{name}"), v)?;
            }
        }
        Ok(())
    }

    /// One scalar.
    #[cfg_attr(not(feature = "tensorboard"), allow(unused_variables))]
    pub fn scalar(&mut self, step: u64, tag: &str, value: f64) -> Result<()> {
        #[cfg(feature = "tensorboard")]
        self.writer.write_scalar(step as i64, tag, value as f32).map_err(|e| failed(&self.dir, e))?;
        Ok(())
    }

    /// An image from a PNG file (a sample grid).
    #[cfg_attr(not(feature = "tensorboard"), allow(unused_variables))]
    pub fn image(&mut self, step: u64, tag: &str, png: &Path) -> Result<()> {
        let (w, h) = image::image_dimensions(png).map_err(|e| Error::other("run::tensorboard", e.to_string()))?;
        let bytes = std::fs::read(png).map_err(|e| Error::io(png, e))?;
        #[cfg(feature = "tensorboard")]
        self.writer.write_image(step as i64, tag, w as i32, h as i32, 3, bytes).map_err(|e| failed(&self.dir, e))?;
        #[cfg(not(feature = "tensorboard"))]
        let _ = (w, h, bytes);
        Ok(())
    }

    /// The folder of the event files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(feature = "tensorboard")]
fn failed(dir: &Path, e: impl std::fmt::Display) -> Error {
    Error::other("run::tensorboard", format!("TensorBoard events in `{}`: {e}", dir.display()))
}

/// One value read back from event files.
#[derive(Clone, Debug, PartialEq)]
pub struct Logged {
    /// `<stage>/<name>`.
    pub tag: String,
    /// The stage's iteration.
    pub step: u64,
    /// A scalar's value, or an image's width and height.
    pub value: LoggedValue,
}

/// What a [`Logged`] holds.
#[derive(Clone, Debug, PartialEq)]
pub enum LoggedValue {
    /// A scalar.
    Scalar(f32),
    /// An encoded image of this width and height.
    Image(u32, u32),
}

/// Every scalar and image in the event files of `dir`, file by file (the way
/// TensorBoard reads them), with each record's checksums verified.
#[cfg(feature = "tensorboard")]
pub fn read(dir: &Path) -> Result<Vec<Logged>> {
    use tboard::tensorboard::{event::What, summary::value::Value};
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("events.out.tfevents.")))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let file = std::fs::File::open(&f).map_err(|e| Error::io(&f, e))?;
        for ev in tboard::SummaryReader::new(std::io::BufReader::new(file)) {
            let ev = ev.map_err(|e| failed(&f, e))?;
            let Some(What::Summary(s)) = ev.what else { continue };
            for v in s.value {
                let value = match v.value {
                    Some(Value::SimpleValue(x)) => LoggedValue::Scalar(x),
                    Some(Value::Image(i)) => LoggedValue::Image(i.width as u32, i.height as u32),
                    _ => continue,
                };
                out.push(Logged { tag: v.tag, step: ev.step as u64, value });
            }
        }
    }
    Ok(out)
}

#[cfg(all(test, feature = "tensorboard"))]
mod tests {
    use super::*;

    #[test]
    fn events_read_back_with_their_tags_steps_and_values() {
        let dir = std::env::temp_dir().join(format!("stackflow-board-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let png = dir.join("grid.png");
        std::fs::create_dir_all(&dir).unwrap();
        image::RgbImage::from_pixel(6, 4, image::Rgb([200, 10, 10])).save(&png).unwrap();
        let mut b = Board::open(&dir.join("tb")).unwrap();
        b.metrics_line(&serde_json::json!({"stage": "stage1", "epoch": 0, "step": 10, "D": 1.25, "G": 0.5})).unwrap();
        b.image(10, "stage1/samples", &png).unwrap();
        drop(b);
        let logged = read(&dir.join("tb")).unwrap();
        let at = |tag: &str, value| Logged { tag: tag.into(), step: 10, value };
        assert_eq!(
            logged,
            [
                at("stage1/D", LoggedValue::Scalar(1.25)),
                at("stage1/G", LoggedValue::Scalar(0.5)),
                at("stage1/samples", LoggedValue::Image(6, 4)),
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
