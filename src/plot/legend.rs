//! Legends drawn in a right margin, outside the plotting area, so they never cover data.
//!
//! A figure lays out its drawing area with [`layout`], draws its chart on the left part and its
//! legend entries with [`draw_legend`] on the right part.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::err;

/// How a legend entry is drawn.
#[derive(Debug, Clone, Copy)]
pub(super) enum Mark {
    /// A solid line.
    Line(RGBColor),
    /// A dashed line.
    Dashed(RGBColor),
    /// A filled patch (a band or a shaded region); `f64` is its opacity.
    Patch(RGBColor, f64),
}

/// One legend entry: its label and mark.
pub(super) type Entry = (String, Mark);

/// Font size of legend labels, in pixels.
const FONT: u32 = 14;

/// Width of the right margin needed for `entries` (about 0.6 em per character).
fn width(entries: &[Entry]) -> u32 {
    let chars = entries.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0) as u32;
    (48 + chars * FONT * 6 / 10).clamp(120, 380)
}

/// The plotting area and, to its right, the legend's.
type PlotAndLegend<DB> = (DrawingArea<DB, Shift>, DrawingArea<DB, Shift>);

/// Writes `title` across the top of `root` and splits the rest into the plotting area (left)
/// and the legend margin (right) for `entries`.
pub(super) fn layout<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    entries: &[Entry],
) -> Result<PlotAndLegend<DB>, String> {
    let below = root.titled(title, ("sans-serif", 20)).map_err(err)?;
    let total = below.dim_in_pixel().0;
    Ok(below.split_horizontally(total.saturating_sub(width(entries))))
}

/// Draws `entries` top-down in `area` (a margin from [`layout`]), from the top.
pub(super) fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, entries: &[Entry]) -> Result<(), String> {
    let font = ("sans-serif", FONT).into_font();
    for (i, (label, mark)) in entries.iter().enumerate() {
        let y = 24 + 24 * i as i32;
        let (x0, x1) = (6, 30);
        match *mark {
            Mark::Line(c) => area.draw(&PathElement::new(vec![(x0, y), (x1, y)], c.stroke_width(2))).map_err(err)?,
            Mark::Dashed(c) => {
                for (a, b) in [(x0, x0 + 7), (x0 + 11, x0 + 17), (x0 + 21, x1)] {
                    area.draw(&PathElement::new(vec![(a, y), (b, y)], c.stroke_width(2))).map_err(err)?;
                }
            }
            Mark::Patch(c, opacity) => area.draw(&Rectangle::new([(x0, y - 6), (x1, y + 6)], c.mix(opacity).filled())).map_err(err)?,
        }
        area.draw(&Text::new(label.clone(), (x1 + 8, y - FONT as i32 / 2 - 1), font.clone())).map_err(err)?;
    }
    Ok(())
}
