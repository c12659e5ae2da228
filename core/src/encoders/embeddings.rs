//! Files of embeddings: captions (a dataset split's or a file's) encoded into float32
//! `[N, K, D]` `.npy`, with the record beside it (`embeddings.encoder.json`) that says
//! which encoder and weights made them, so that sampling from typed captions uses the same
//! encoder or refuses.

use std::fs;
use std::path::{Path, PathBuf};

use npyz::WriterBuilder;

use crate::data::folder::{read_names, read_text};
use crate::error::{Error, Result};
use crate::kind::{Record, SentenceEncoder};

/// The record of `npy`: `embeddings.npy` → `embeddings.encoder.json`.
pub fn record_path(npy: &Path) -> PathBuf {
    npy.with_extension("encoder.json")
}

/// The record beside `npy`, if there is a readable one.
pub fn read_record(npy: &Path) -> Option<Record> {
    serde_json::from_str(&fs::read_to_string(record_path(npy)).ok()?).ok()
}

/// The captions of a dataset split: per image (in `filenames.txt` order) the non-empty
/// lines of `<split>/captions/<name>.txt`; every image must have the same number.
pub fn dataset_captions(root: &Path, split: &str) -> Result<Vec<Vec<String>>> {
    let split_dir = root.join(split);
    let names = read_names(&split_dir.join("filenames.txt"))?;
    let mut out: Vec<Vec<String>> = Vec::with_capacity(names.len());
    for name in &names {
        let path = split_dir.join("captions").join(format!("{name}.txt"));
        let lines = caption_lines(&read_text(&path)?);
        if let Some(first) = out.first().filter(|f| f.len() != lines.len()) {
            return Err(Error::input(
                "data::captions",
                format!("`{}` has {} captions; the images before it have {}", path.display(), lines.len(), first.len()),
            )
            .with_help("embeddings hold the same number of captions per image: give every image as many lines"));
        }
        if lines.is_empty() {
            return Err(Error::input("data::captions", format!("`{}` has no captions", path.display())));
        }
        out.push(lines);
    }
    Ok(out)
}

/// The non-empty lines of a captions text, trimmed.
pub fn caption_lines(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
}

/// Encodes `rows` (each the same number of captions) with `enc` into a float32
/// `[N, K, dim]` `.npy` at `out`, with its record beside it; returns `(N, K)`. `progress`
/// hears how many captions are done.
pub fn write_embeddings(
    out: &Path,
    rows: &[Vec<String>],
    enc: &mut dyn SentenceEncoder,
    progress: &mut dyn FnMut(usize),
) -> Result<(usize, usize)> {
    let (n, k) = (rows.len(), rows.first().map_or(0, Vec::len));
    if n == 0 || k == 0 || rows.iter().any(|r| r.len() != k) {
        return Err(Error::input("encode::empty", "nothing to encode: give at least one caption per item"));
    }
    let captions: Vec<String> = rows.iter().flatten().cloned().collect();
    let data = enc.encode(&captions, progress)?;
    let dim = enc.dim();
    let write_err = |e: std::io::Error| Error::io(out, e);
    let mut bytes = Vec::new();
    {
        let mut w = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&[n as u64, k as u64, dim as u64])
            .writer(&mut bytes)
            .begin_nd()
            .map_err(write_err)?;
        w.extend(data).map_err(write_err)?;
        w.finish().map_err(write_err)?;
    }
    fs::write(out, bytes).map_err(write_err)?;
    let record =
        serde_json::to_string_pretty(&enc.record()).map_err(|e| Error::other("encode::record", e.to_string()))?;
    let record_file = record_path(out);
    fs::write(&record_file, record + "\n").map_err(|e| Error::io(&record_file, e))?;
    Ok((n, k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::TextEncoder;
    use crate::encoders::hashed::NAME;

    #[test]
    fn written_embeddings_read_back_with_their_record() {
        let dir = std::env::temp_dir().join(format!("stackflow-encode-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let out = dir.join("embeddings.npy");
        let rows =
            vec![vec!["a red circle".to_string(), "red round".into()], vec!["a blue square".into(), "blue".into()]];
        let mut enc = TextEncoder::new(8);
        assert_eq!(write_embeddings(&out, &rows, &mut enc, &mut |_| {}).unwrap(), (2, 2));
        let (data, n, k, d) = crate::data::folder::read_embeddings_any(&out).unwrap();
        assert_eq!((n, k, d), (2, 2, 8));
        assert_eq!(&data[8..16], &TextEncoder::new(8).encode("red round")[..]);
        assert_eq!(read_record(&out), Some(Record { encoder: NAME.into(), dim: 8, weights: None }));
        assert!(write_embeddings(&out, &[], &mut enc, &mut |_| {}).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
