//! The loss plot of a run (`losses.png`): one line per logged term over steps.

use std::path::Path;

use image::RgbImage;
use plotters::prelude::*;

use crate::error::{Error, Result};

const COLOURS: [RGBColor; 6] = [
    RGBColor(220, 40, 40),
    RGBColor(40, 80, 220),
    RGBColor(40, 160, 60),
    RGBColor(230, 140, 20),
    RGBColor(140, 60, 180),
    RGBColor(90, 90, 90),
];

/// Plot `series` (name, points of (step, value)) to a PNG at `path`.
pub fn write_loss_plot(path: &Path, series: &[(String, Vec<(f64, f64)>)]) -> Result<()> {
    let (w, h) = (900u32, 480u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let (mut x_max, mut y_min, mut y_max) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for (_, pts) in series {
        for &(x, y) in pts {
            if y.is_finite() {
                x_max = x_max.max(x);
                y_min = y_min.min(y);
                y_max = y_max.max(y);
            }
        }
    }
    if !y_min.is_finite() {
        (y_min, y_max) = (0.0, 1.0);
    }
    if y_max - y_min < 1e-9 {
        y_max = y_min + 1.0;
    }
    let err = |e: &dyn std::fmt::Display| Error::other("plot::draw", e.to_string());
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let area = root.margin(40, 20, 20, 20);
        let mut chart = ChartBuilder::on(&area).build_cartesian_2d(0.0..x_max, y_min..y_max).map_err(|e| err(&e))?;
        let frame = [(0.0, y_min), (x_max, y_min), (x_max, y_max), (0.0, y_max), (0.0, y_min)];
        chart.draw_series(std::iter::once(PathElement::new(frame.to_vec(), BLACK))).map_err(|e| err(&e))?;
        for (i, (_, pts)) in series.iter().enumerate() {
            let c = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied().filter(|p| p.1.is_finite()), c.stroke_width(2)))
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    let mut img = RgbImage::from_raw(w, h, buf).ok_or_else(|| Error::other("plot::draw", "buffer size"))?;
    // Legend and axis ranges in the bitmap font (plotters' text needs system fonts).
    let mut x = 24u32;
    for (i, (name, _)) in series.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        for dx in 0..14 {
            for dy in 0..4 {
                img.put_pixel(x + dx, 12 + dy, image::Rgb([c.0, c.1, c.2]));
            }
        }
        crate::data::grid::draw_lines(&mut img, std::slice::from_ref(name), x + 18, 10);
        x += 18 + 8 * name.len() as u32 + 16;
    }
    let axis = format!("y {y_min:.3} .. {y_max:.3}   x: step 0 .. {x_max:.0}");
    crate::data::grid::draw_lines(&mut img, &[axis], 24, h - 14);
    crate::data::grid::save_atomic(path, &img)
}
