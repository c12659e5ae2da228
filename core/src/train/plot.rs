//! The loss plot of a run (`losses.png`): one panel per stage, each with its own step
//! axis, one line per term, ticks and labels, drawn from every line of `metrics.jsonl`
//! (so a resumed run shows its whole history).

use std::path::Path;

use image::RgbImage;
use plotters::prelude::*;

use crate::data::grid::{draw_lines_in, save_atomic};
use crate::error::{Error, Result};

const COLOURS: [RGBColor; 6] = [
    RGBColor(220, 40, 40),
    RGBColor(40, 80, 220),
    RGBColor(40, 160, 60),
    RGBColor(230, 140, 20),
    RGBColor(140, 60, 180),
    RGBColor(90, 90, 90),
];

/// Ink of titles, legends and tick labels.
const TEXT: [u8; 3] = [30, 30, 30];

/// Width of the image, and height of one panel, in pixels.
const WIDTH: u32 = 900;
const PANEL_HEIGHT: u32 = 360;
/// Margins of a panel's plot area: left (tick labels), right, top (title, legend), bottom.
const MARGIN: (u32, u32, u32, u32) = (72, 16, 40, 40);

/// One stage's curves: its name and (term, points of (step, value)).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Panel {
    /// Stage name.
    pub title: String,
    /// Curves by term.
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

/// The panels of a run from its `metrics.jsonl`: one per stage, in order of appearance,
/// with the given terms (`G` is drawn from `G_total`, G's whole loss). Lines that are not
/// JSON objects are skipped.
pub fn panels_from_metrics(path: &Path, terms: &[&str]) -> Result<Vec<Panel>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut panels: Vec<Panel> = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let (Some(stage), Some(step)) = (v["stage"].as_str(), v["step"].as_f64()) else { continue };
        if panels.last().is_none_or(|p| p.title != stage) {
            let series = terms.iter().map(|t| (t.to_string(), Vec::new())).collect();
            panels.push(Panel { title: stage.to_string(), series });
        }
        let panel = panels.last_mut().expect("pushed above");
        for (name, pts) in &mut panel.series {
            let key = if name == "G" { "G_total" } else { name.as_str() };
            if let Some(y) = v[key].as_f64() {
                pts.push((step, y));
            }
        }
    }
    Ok(panels)
}

/// Round tick positions covering `lo..hi` (about five), at least `min_step` apart.
fn ticks(lo: f64, hi: f64, min_step: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| span / s <= 6.0).unwrap_or(10.0 * mag);
    let step = step.max(min_step);
    let first = (lo / step).ceil() as i64;
    // k·step, rounded so that 3·0.2 is 0.6.
    (first..).map(|k| (k as f64 * step * 1e9).round() / 1e9).take_while(|t| *t <= hi + step * 1e-9).collect()
}

/// A tick value in at most three decimals, without trailing zeros (`0.5`, `1.25`, `3000`).
fn label(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// Text to draw after plotting (plotters' own text needs system fonts): pixel position
/// and lines.
type Label = (u32, u32, String);

/// Draw one panel into `area`; returns its text labels.
fn draw_panel(area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>, p: &Panel) -> Result<Vec<Label>> {
    let err = |e: &dyn std::fmt::Display| Error::other("plot::draw", e.to_string());
    let finite = || p.series.iter().flat_map(|(_, pts)| pts.iter().filter(|q| q.1.is_finite()));
    let (mut x0, mut x1) = finite().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), q| (a.min(q.0), b.max(q.0)));
    let (mut y0, mut y1) = finite().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), q| (a.min(q.1), b.max(q.1)));
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-9 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-9 {
        y1 = y0 + 1.0;
    }
    let pad = (y1 - y0) * 0.05;
    let (y0, y1) = (y0 - pad, y1 + pad);
    let (l, r, t, b) = MARGIN;
    let plot_area = area.margin(t, b, l, r);
    let mut chart = ChartBuilder::on(&plot_area).build_cartesian_2d(x0..x1, y0..y1).map_err(|e| err(&e))?;
    let frame = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)];
    chart.draw_series(std::iter::once(PathElement::new(frame.to_vec(), BLACK))).map_err(|e| err(&e))?;
    let grid = RGBColor(225, 225, 225);
    // Backend coordinates are the whole image's.
    let to_px = |c: (i32, i32)| (c.0.max(0) as u32, c.1.max(0) as u32);
    let mut labels = Vec::new();
    for x in ticks(x0, x1, 1.0) {
        chart.draw_series(std::iter::once(PathElement::new(vec![(x, y0), (x, y1)], grid))).map_err(|e| err(&e))?;
        let (px, py) = to_px(chart.backend_coord(&(x, y0)));
        let text = label(x);
        labels.push((px.saturating_sub(4 * text.len() as u32), py + 8, text));
    }
    for y in ticks(y0, y1, 0.0) {
        chart.draw_series(std::iter::once(PathElement::new(vec![(x0, y), (x1, y)], grid))).map_err(|e| err(&e))?;
        let (px, py) = to_px(chart.backend_coord(&(x0, y)));
        let text = label(y);
        labels.push((px.saturating_sub(8 * text.len() as u32 + 6), py.saturating_sub(4), text));
    }
    for (i, (_, pts)) in p.series.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let line = LineSeries::new(pts.iter().copied().filter(|q| q.1.is_finite()), c.stroke_width(2));
        chart.draw_series(line).map_err(|e| err(&e))?;
    }
    let (bx, by) = to_px(chart.backend_coord(&(x1, y0)));
    labels.push((bx.saturating_sub(32), by + 22, "step".to_string()));
    Ok(labels)
}

/// Plot `panels` (one per stage, stacked) to a PNG at `path`.
pub fn write_loss_plot(path: &Path, panels: &[Panel]) -> Result<()> {
    let n = panels.len().max(1) as u32;
    let (w, h) = (WIDTH, PANEL_HEIGHT * n);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let err = |e: &dyn std::fmt::Display| Error::other("plot::draw", e.to_string());
    let mut labels = Vec::new();
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        for (area, p) in root.split_evenly((n as usize, 1)).iter().zip(panels) {
            labels.extend(draw_panel(area, p)?);
        }
        root.present().map_err(|e| err(&e))?;
    }
    let mut img = RgbImage::from_raw(w, h, buf).ok_or_else(|| Error::other("plot::draw", "buffer size"))?;
    for (i, p) in panels.iter().enumerate() {
        let top = i as u32 * PANEL_HEIGHT;
        // Title, then a legend: a colour swatch and the term's name for each curve.
        draw_lines_in(&mut img, &[format!("stage {} ({})", i + 1, p.title)], (8, top + 10), TEXT);
        let mut x = MARGIN.0 + 160;
        for (j, (name, _)) in p.series.iter().enumerate() {
            let c = COLOURS[j % COLOURS.len()];
            for dx in 0..14 {
                for dy in 0..4 {
                    img.put_pixel((x + dx).min(w - 1), top + 14 + dy, image::Rgb([c.0, c.1, c.2]));
                }
            }
            draw_lines_in(&mut img, std::slice::from_ref(name), (x + 18, top + 10), TEXT);
            x += 18 + 8 * name.len() as u32 + 16;
        }
    }
    for (x, y, text) in labels {
        if y + 8 < h && x < w {
            draw_lines_in(&mut img, &[text], (x, y), TEXT);
        }
    }
    save_atomic(path, &img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 100.0, 0.0), [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(ticks(1.0, 4.0, 1.0), [1.0, 2.0, 3.0, 4.0], "steps are whole");
        assert_eq!(ticks(0.3, 1.2, 0.0), [0.4, 0.6, 0.8, 1.0, 1.2]);
        assert_eq!([label(0.5), label(3000.0), label(1.25), label(-0.0)], ["0.5", "3000", "1.25", "0"]);
        let t = ticks(1.0, 3072.0, 1.0);
        assert!(t.len() >= 3 && t.len() <= 7 && t[0] >= 1.0 && *t.last().unwrap() <= 3072.0, "{t:?}");
    }

    #[test]
    fn metrics_become_one_panel_per_stage_with_every_line() {
        let dir = std::env::temp_dir().join(format!("stackflow-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let m = dir.join("metrics.jsonl");
        let lines = [
            r#"{"stage":"stage1","step":10,"D":1.0,"G_total":2.0,"KL":0.1}"#,
            r#"{"stage":"stage1","step":20,"D":0.9,"G_total":2.1,"KL":0.1}"#,
            "not json",
            r#"{"stage":"stage2","step":10,"D":1.3,"G_total":0.7,"KL":0.2}"#,
        ];
        std::fs::write(&m, lines.join("\n")).unwrap();
        let panels = panels_from_metrics(&m, &["D", "G", "KL"]).unwrap();
        assert_eq!(panels.len(), 2);
        assert_eq!(panels[0].title, "stage1");
        assert_eq!(panels[0].series[1], ("G".to_string(), vec![(10.0, 2.0), (20.0, 2.1)]));
        assert_eq!(panels[1].series[0].1, [(10.0, 1.3)]);
        let png = dir.join("losses.png");
        write_loss_plot(&png, &panels).unwrap();
        let img = image::open(&png).unwrap();
        assert_eq!((img.width(), img.height()), (WIDTH, 2 * PANEL_HEIGHT));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
