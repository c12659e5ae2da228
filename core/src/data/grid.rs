//! PNG output of pictures: one picture, or a grid of them with captions in an 8×8
//! bitmap font, always written atomically (temporary file, fsync, rename).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use font8x8::legacy::BASIC_LEGACY;
use image::codecs::png::PngEncoder;
use image::{ImageEncoder, RgbImage};

use crate::error::{Error, Result};

/// Space between cells and around the grid, in pixels.
const PAD: u32 = 2;
/// Text line height: the 8-pixel glyph plus 2 pixels of leading.
const LINE: u32 = 10;
/// Caption lines under a cell at most; longer captions end in `...`.
const MAX_CELL_LINES: usize = 5;
/// Columns with captions under their cells are at least this wide (15 characters and a gap).
const MIN_CAPTION_WIDTH: u32 = 128;
/// Characters per line of a caption beside a row.
const ROW_CHARS: usize = 40;
const BACKGROUND: [u8; 3] = [32, 32, 32];
const INK: [u8; 3] = [230, 230, 230];

/// Writes one 3×size×size CHW picture in [-1, 1] as a size×size PNG.
pub fn write_png(path: &Path, image: &[f32], size: usize) -> Result<()> {
    check_image(image, size, 0)?;
    let mut img = RgbImage::new(size as u32, size as u32);
    paste(&mut img, image, size, 0, 0);
    save_atomic(path, &img)
}

/// Writes pictures (3×size×size CHW in [-1, 1], values clamped) as a PNG grid of `cols`
/// columns, row-major, with a 2-pixel gap. With `captions`:
/// - one caption per row (`captions.len()` = number of rows, which wins when `cols` is
///   1): each caption is written beside its row, wrapped at 40 characters and cut to the
///   lines that fit the row's height;
/// - one caption per picture: each is written under its cell, wrapped to the column's
///   width (the picture's, but at least 128 pixels, pictures centred) and cut at 5
///   lines.
///
/// Cut text ends in `...`; characters outside ASCII are drawn as `?`.
pub fn write_grid_png(
    path: &Path,
    images: &[Vec<f32>],
    size: usize,
    cols: usize,
    captions: Option<&[String]>,
) -> Result<()> {
    if images.is_empty() || cols == 0 || size == 0 {
        return Err(Error::other(
            "grid::empty",
            format!(
                "cannot draw a grid of {} pictures of size {size} in {cols} columns into `{}`",
                images.len(),
                path.display()
            ),
        ));
    }
    for (i, img) in images.iter().enumerate() {
        check_image(img, size, i)?;
    }
    let n = images.len();
    let cols = cols.min(n);
    let rows = n.div_ceil(cols);
    let layout = Layout::new(captions, n, rows, size as u32)?;
    let canvas = draw_grid(images, size, cols, &layout);
    save_atomic(path, &canvas)
}

/// Where a grid's captions go, already wrapped.
enum Layout {
    /// No captions.
    Plain,
    /// One caption per row, and the width of the text panel beside the rows.
    Beside(Vec<Vec<String>>, u32),
    /// One caption per picture, and the height of the text under each cell.
    Under(Vec<Vec<String>>, u32),
}

impl Layout {
    /// Chooses the layout from the number of captions (rows win over pictures) and wraps
    /// them for it.
    fn new(captions: Option<&[String]>, n: usize, rows: usize, cell: u32) -> Result<Layout> {
        Ok(match captions {
            None => Layout::Plain,
            Some(c) if c.len() == rows => {
                let max_lines = ((cell / LINE) as usize).max(1);
                let wrapped: Vec<Vec<String>> = c.iter().map(|t| wrap(t, ROW_CHARS, max_lines)).collect();
                let chars = wrapped.iter().flatten().map(|l| l.len()).max().unwrap_or(0) as u32;
                Layout::Beside(wrapped, chars * 8 + 2 * PAD)
            }
            Some(c) if c.len() == n => {
                let width = ((cell.max(MIN_CAPTION_WIDTH) - 2 * PAD) / 8) as usize;
                let wrapped: Vec<Vec<String>> = c.iter().map(|t| wrap(t, width, MAX_CELL_LINES)).collect();
                let lines = wrapped.iter().map(Vec::len).max().unwrap_or(0) as u32;
                Layout::Under(wrapped, lines * LINE)
            }
            Some(c) => {
                return Err(Error::other(
                    "grid::captions",
                    format!(
                        "{} captions for a grid of {n} pictures in {rows} rows; give one per row or one per picture",
                        c.len()
                    ),
                ))
            }
        })
    }

    /// Column width, width of the text panel beside the rows, height of the text under cells.
    fn extents(&self, cell: u32) -> (u32, u32, u32) {
        match self {
            Layout::Plain => (cell, 0, 0),
            Layout::Beside(_, w) => (cell, *w, 0),
            Layout::Under(_, h) => (cell.max(MIN_CAPTION_WIDTH), 0, *h),
        }
    }
}

/// Draws checked pictures and their captions onto a new canvas, `cols` to a row.
fn draw_grid(images: &[Vec<f32>], size: usize, cols: usize, layout: &Layout) -> RgbImage {
    let rows = images.len().div_ceil(cols);
    let cell = size as u32;
    let (col_w, text_w, text_h) = layout.extents(cell);
    let (cols32, rows32) = (cols as u32, rows as u32);
    let width = PAD + cols32 * (col_w + PAD) + text_w;
    let height = PAD + rows32 * (cell + text_h + PAD);
    let mut canvas = RgbImage::from_pixel(width, height, image::Rgb(BACKGROUND));
    for (i, img) in images.iter().enumerate() {
        let (r, c) = ((i / cols) as u32, (i % cols) as u32);
        let (x, y) = (PAD + c * (col_w + PAD), PAD + r * (cell + text_h + PAD));
        paste(&mut canvas, img, size, x + (col_w - cell) / 2, y);
        if let Layout::Under(text, _) = layout {
            draw_lines(&mut canvas, &text[i], x, y + cell + 1);
        }
    }
    if let Layout::Beside(text, _) = layout {
        for (r, lines) in text.iter().enumerate() {
            let y = PAD + r as u32 * (cell + PAD);
            let y = y + (cell.saturating_sub(lines.len() as u32 * LINE)) / 2;
            draw_lines(&mut canvas, lines, PAD + cols32 * (col_w + PAD) + PAD, y);
        }
    }
    canvas
}

fn check_image(image: &[f32], size: usize, index: usize) -> Result<()> {
    if size == 0 || image.len() != 3 * size * size {
        return Err(Error::other(
            "grid::image_size",
            format!("picture {index} has {} values; a 3×{size}×{size} picture has {}", image.len(), 3 * size * size),
        ));
    }
    Ok(())
}

/// Copies a CHW [-1, 1] picture into the canvas at (x0, y0).
fn paste(canvas: &mut RgbImage, image: &[f32], size: usize, x0: u32, y0: u32) {
    let plane = size * size;
    let to_u8 = |v: f32| ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
    for y in 0..size {
        for x in 0..size {
            let i = y * size + x;
            let px = [to_u8(image[i]), to_u8(image[plane + i]), to_u8(image[2 * plane + i])];
            canvas.put_pixel(x0 + x as u32, y0 + y as u32, image::Rgb(px));
        }
    }
}

/// Word-wraps `text` to lines of at most `width` characters (longer words are split),
/// keeping at most `max_lines`; a cut ends in `...`.
fn wrap(text: &str, width: usize, max_lines: usize) -> Vec<String> {
    let width = width.max(1);
    let ascii: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() {
                c
            } else if c.is_whitespace() {
                ' '
            } else {
                '?'
            }
        })
        .collect();
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in ascii.split_whitespace() {
        let mut word = word;
        loop {
            let sep = usize::from(!line.is_empty());
            if line.len() + sep + word.len() <= width {
                if sep == 1 {
                    line.push(' ');
                }
                line.push_str(word);
                break;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            let (head, tail) = word.split_at(width);
            lines.push(head.to_string());
            word = tail;
            if word.is_empty() {
                break;
            }
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    if lines.len() > max_lines {
        lines.truncate(max_lines);
        if let Some(last) = lines.last_mut() {
            let keep = width.saturating_sub(3).min(last.len());
            last.truncate(keep);
            last.push_str(&"..."[..3.min(width)]);
        }
    }
    lines
}

/// Draws lines of ASCII text with the 8×8 font in the grids' light ink, top-left at
/// (x0, y0), clipped to the canvas.
pub(crate) fn draw_lines(canvas: &mut RgbImage, lines: &[String], x0: u32, y0: u32) {
    draw_lines_in(canvas, lines, (x0, y0), INK);
}

/// [`draw_lines`] in the colour `ink`.
pub(crate) fn draw_lines_in(canvas: &mut RgbImage, lines: &[String], (x0, y0): (u32, u32), ink: [u8; 3]) {
    for (l, line) in lines.iter().enumerate() {
        for (i, ch) in line.bytes().enumerate() {
            let glyph = BASIC_LEGACY[usize::from(ch & 0x7f)];
            for (gy, bits) in glyph.iter().enumerate() {
                for gx in 0..8 {
                    if bits >> gx & 1 == 1 {
                        let x = x0 + i as u32 * 8 + gx;
                        let y = y0 + l as u32 * LINE + gy as u32;
                        if x < canvas.width() && y < canvas.height() {
                            canvas.put_pixel(x, y, image::Rgb(ink));
                        }
                    }
                }
            }
        }
    }
}

/// Encodes a PNG and writes it atomically: a temporary file beside the target, fsync,
/// rename. Parent folders are created.
pub(crate) fn save_atomic(path: &Path, img: &RgbImage) -> Result<()> {
    let mut bytes = Vec::new();
    PngEncoder::new(&mut bytes)
        .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
        .map_err(|e| Error::other("grid::encode", format!("cannot encode `{}`", path.display())).with_cause(e))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp: PathBuf = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_dir::TestDir;

    fn solid(size: usize, rgb: [f32; 3]) -> Vec<f32> {
        rgb.iter().flat_map(|&v| vec![v; size * size]).collect()
    }

    fn decode(path: &Path) -> RgbImage {
        image::open(path).unwrap().to_rgb8()
    }

    #[test]
    fn plain_grid_has_the_expected_size_and_pixels() {
        let dir = TestDir::new("grid_plain");
        let path = dir.path().join("out/grid.png");
        let imgs: Vec<Vec<f32>> = (0..5).map(|i| solid(8, [1.0, -1.0, i as f32 / 4.0])).collect();
        write_grid_png(&path, &imgs, 8, 3, None).unwrap();
        let png = decode(&path);
        assert_eq!(png.dimensions(), (2 + 3 * 10, 2 + 2 * 10));
        assert_eq!(png.get_pixel(2, 2).0, [255, 0, 128]);
        assert_eq!(png.get_pixel(2 + 10 + 7, 2 + 10 + 7).0, [255, 0, 255]);
        assert_eq!(png.get_pixel(2 + 20 + 3, 2 + 10 + 3).0, BACKGROUND, "empty last cell");
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("out")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn captions_beside_rows() {
        let dir = TestDir::new("grid_rows");
        let path = dir.path().join("rows.png");
        let imgs: Vec<Vec<f32>> = (0..4).map(|_| solid(16, [0.0; 3])).collect();
        let caps = vec!["a large red circle on a blue background".to_string(), "short".to_string()];
        write_grid_png(&path, &imgs, 16, 2, Some(caps.as_slice())).unwrap();
        let png = decode(&path);
        // 40 characters per line at most: the longest line decides the panel width.
        let longest = wrap(&caps[0], ROW_CHARS, 1)[0].len() as u32;
        assert_eq!(png.dimensions(), (2 + 2 * 18 + longest * 8 + 4, 2 + 2 * 18));
        let ink = png.pixels().filter(|p| p.0 == INK).count();
        assert!(ink > 100, "caption text drawn: {ink}");
    }

    #[test]
    fn captions_under_cells() {
        let dir = TestDir::new("grid_cells");
        let path = dir.path().join("cells.png");
        let imgs: Vec<Vec<f32>> = (0..3).map(|_| solid(32, [0.5; 3])).collect();
        let long = "a large red circle on a blue background with a long tail of extra words";
        let caps: Vec<String> = [long, "x", "é"].iter().map(|s| s.to_string()).collect();
        write_grid_png(&path, &imgs, 32, 3, Some(caps.as_slice())).unwrap();
        let png = decode(&path);
        // Columns 128 pixels (15 characters and a gap) wide, pictures centred; the long caption
        // needs 6 lines and is cut at 5.
        assert_eq!(png.dimensions(), (2 + 3 * 130, 2 + 32 + 5 * LINE + 2));
        assert_eq!(png.get_pixel(2 + 48, 2).0, [191; 3]);
        assert_eq!(png.get_pixel(2 + 47, 2).0, BACKGROUND);
        assert_eq!(
            wrap(long, 15, 5),
            ["a large red", "circle on a", "blue background", "with a long", "tail of extr..."]
        );
    }

    #[test]
    fn single_png_round_trips() {
        let dir = TestDir::new("grid_single");
        let path = dir.path().join("one.png");
        write_png(&path, &solid(4, [-1.0, 0.0, 2.0]), 4).unwrap();
        let png = decode(&path);
        assert_eq!(png.dimensions(), (4, 4));
        assert_eq!(png.get_pixel(3, 3).0, [0, 128, 255]);
    }

    #[test]
    fn wrapping() {
        assert_eq!(wrap("a large red circle", 9, 4), ["a large", "red", "circle"]);
        assert_eq!(wrap("abcdefghij", 4, 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("one two three four five", 5, 2), ["one", "tw..."]);
        assert_eq!(wrap("  ", 5, 2), Vec::<String>::new());
        assert_eq!(wrap("naïve\tcafé", 20, 1), ["na?ve caf?"]);
        assert_eq!(wrap("abc def", 1, 1), ["."]);
    }

    #[test]
    fn bad_input_is_an_error() {
        let dir = TestDir::new("grid_bad");
        let path = dir.path().join("bad.png");
        let img = solid(4, [0.0; 3]);
        assert_eq!(write_grid_png(&path, &[], 4, 2, None).unwrap_err().code_str(), "grid::empty");
        assert_eq!(
            write_grid_png(&path, std::slice::from_ref(&img), 4, 0, None).unwrap_err().code_str(),
            "grid::empty"
        );
        assert_eq!(
            write_grid_png(&path, std::slice::from_ref(&img), 5, 1, None).unwrap_err().code_str(),
            "grid::image_size"
        );
        let caps = vec!["a".to_string(); 2];
        let three = vec![img.clone(), img.clone(), img];
        assert_eq!(write_grid_png(&path, &three, 4, 2, Some(&caps[..1])).unwrap_err().code_str(), "grid::captions");
        assert!(write_grid_png(&path, &three, 4, 2, Some(caps.as_slice())).is_ok(), "2 rows, 2 captions");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "only bad.png");
    }
}
