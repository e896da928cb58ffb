//! Text with the embedded DejaVu Sans fonts (see `assets/fonts/LICENSE-DejaVu.txt`), rendered
//! with `ab_glyph` as antialiased coverage and alpha-blended onto the frame.
//!
//! Rasterizing outlines is the slow part of text, so [`Typesetter::new`] rasterizes every
//! character the frames can need once per size and weight; drawing a string then only blends
//! stored coverage. A character missing from that set (a label in an unexpected script) is
//! rasterized on the spot, which is slower but gives the same pixels.

use std::collections::HashMap;

use ab_glyph::{Font, FontRef, GlyphId, PxScale, ScaleFont};
use image::RgbImage;

use super::canvas::{blend_pixel, Rgb};
use crate::error::{Error, Result};

/// DejaVu Sans, embedded so that frames never depend on the fonts of the machine.
static REGULAR: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// DejaVu Sans Bold.
static BOLD: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");

/// Characters prepared for every style: printable ASCII and the symbols captions use.
const COMMON: &str = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`\
abcdefghijklmnopqrstuvwxyz{|}~×·–—→←↓↑²³⁰¹⁴⁵⁶⁷⁸⁹⁻…°ÂâαβγσΣ≈≤≥±√";

/// How a string is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Style {
    /// Font size in pixels (ascent to descent).
    pub size: f32,
    /// Bold weight.
    pub bold: bool,
    /// Colour.
    pub color: Rgb,
}

/// Horizontal alignment against the anchor point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Align {
    /// The anchor is the left end.
    #[default]
    Left,
    /// The anchor is the middle.
    Center,
    /// The anchor is the right end.
    Right,
}

/// One rasterized glyph: coverage relative to the pen position on the baseline.
#[derive(Debug, Clone)]
struct Glyph {
    id: GlyphId,
    left: i32,
    top: i32,
    width: usize,
    height: usize,
    advance: f32,
    coverage: Vec<u8>,
}

/// Glyphs of one size and weight.
#[derive(Debug)]
struct Face {
    size_key: u32,
    bold: bool,
    ascent: f32,
    glyphs: HashMap<char, Glyph>,
}

/// Measures and draws text; holds pre-rasterized glyphs for the styles a renderer uses.
#[derive(Debug)]
pub struct Typesetter {
    regular: FontRef<'static>,
    bold: FontRef<'static>,
    faces: Vec<Face>,
}

/// Sizes are keyed in quarter pixels, so 20.0 and 20.1 px share glyphs but 20 and 21 don't.
fn size_key(size: f32) -> u32 {
    (size * 4.0).round().max(1.0) as u32
}

impl Typesetter {
    /// Prepares glyphs for every `(size, bold)` in `styles` and every character of
    /// [`COMMON`] and `extra`.
    ///
    /// # Errors
    /// Never in practice: the embedded fonts are known to parse; an error would mean a
    /// corrupted build.
    pub fn new(styles: &[(f32, bool)], extra: &str) -> Result<Self> {
        let parse = |bytes: &'static [u8]| {
            FontRef::try_from_slice(bytes).map_err(|e| {
                Error::InvalidArgument(format!("the embedded DejaVu font does not parse: {e}"))
            })
        };
        let mut t = Typesetter {
            regular: parse(REGULAR)?,
            bold: parse(BOLD)?,
            faces: Vec::new(),
        };
        let mut chars: Vec<char> = COMMON.chars().chain(extra.chars()).collect();
        chars.sort_unstable();
        chars.dedup();
        for &(size, bold) in styles {
            let key = size_key(size);
            if t.faces.iter().any(|f| f.size_key == key && f.bold == bold) {
                continue;
            }
            let font = if bold { &t.bold } else { &t.regular };
            let glyphs = chars
                .iter()
                .map(|&c| (c, rasterize(font, key, c)))
                .collect();
            let ascent = font.as_scaled(PxScale::from(key as f32 / 4.0)).ascent();
            t.faces.push(Face {
                size_key: key,
                bold,
                ascent,
                glyphs,
            });
        }
        Ok(t)
    }

    fn font(&self, bold: bool) -> &FontRef<'static> {
        if bold {
            &self.bold
        } else {
            &self.regular
        }
    }

    fn face(&self, style: &Style) -> Option<&Face> {
        let key = size_key(style.size);
        self.faces
            .iter()
            .find(|f| f.size_key == key && f.bold == style.bold)
    }

    /// Calls `visit(glyph, pen_x)` for each character of `text` laid out from x = 0, and
    /// returns the advance width.
    fn layout(&self, text: &str, style: &Style, mut visit: impl FnMut(&Glyph, f32)) -> f32 {
        let key = size_key(style.size);
        let font = self.font(style.bold);
        let scaled = font.as_scaled(PxScale::from(key as f32 / 4.0));
        let face = self.face(style);
        let mut pen = 0.0f32;
        let mut prev: Option<GlyphId> = None;
        for c in text.chars() {
            let owned;
            let glyph = match face.and_then(|f| f.glyphs.get(&c)) {
                Some(g) => g,
                None => {
                    owned = rasterize(font, key, c);
                    &owned
                }
            };
            if let Some(p) = prev {
                pen += scaled.kern(p, glyph.id);
            }
            visit(glyph, pen);
            pen += glyph.advance;
            prev = Some(glyph.id);
        }
        pen
    }

    /// Width of `text` in pixels.
    pub fn width(&self, text: &str, style: &Style) -> f32 {
        self.layout(text, style, |_, _| {})
    }

    /// Distance from the top of a line to its baseline.
    pub fn ascent(&self, style: &Style) -> f32 {
        match self.face(style) {
            Some(f) => f.ascent,
            None => self
                .font(style.bold)
                .as_scaled(PxScale::from(style.size))
                .ascent(),
        }
    }

    /// Draws `text` with its baseline at `y`, aligned at `x` as `align` says; returns the
    /// drawn width.
    pub fn draw(
        &self,
        img: &mut RgbImage,
        text: &str,
        x: f32,
        y: f32,
        align: Align,
        style: &Style,
    ) -> f32 {
        let width = self.width(text, style);
        let x0 = match align {
            Align::Left => x,
            Align::Center => x - width / 2.0,
            Align::Right => x - width,
        };
        let base = y.round() as i32;
        self.layout(text, style, |g, pen| {
            let gx = (x0 + pen).round() as i32 + g.left;
            let gy = base + g.top;
            for row in 0..g.height {
                let cov = &g.coverage[row * g.width..(row + 1) * g.width];
                for (col, &a) in cov.iter().enumerate() {
                    if a != 0 {
                        blend_pixel(img, gx + col as i32, gy + row as i32, style.color, a.into());
                    }
                }
            }
        });
        width
    }

    /// Draws `text` with the top of its line at `top` (rather than its baseline).
    pub fn draw_top(
        &self,
        img: &mut RgbImage,
        text: &str,
        x: f32,
        top: f32,
        align: Align,
        style: &Style,
    ) -> f32 {
        let baseline = top + self.ascent(style);
        self.draw(img, text, x, baseline, align, style)
    }
}

/// Rasterizes one character at a size given in quarter pixels, at pen position (0, 0).
fn rasterize(font: &FontRef<'static>, size_key: u32, c: char) -> Glyph {
    let scale = PxScale::from(size_key as f32 / 4.0);
    let scaled = font.as_scaled(scale);
    let id = font.glyph_id(c);
    let advance = scaled.h_advance(id);
    let glyph = id.with_scale_and_position(scale, ab_glyph::point(0.0, 0.0));
    match font.outline_glyph(glyph) {
        Some(outline) => {
            let b = outline.px_bounds();
            let (width, height) = (b.width() as usize, b.height() as usize);
            let mut coverage = vec![0u8; width * height];
            outline.draw(|x, y, v| {
                let i = y as usize * width + x as usize;
                if let Some(px) = coverage.get_mut(i) {
                    *px = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            });
            Glyph {
                id,
                left: b.min.x as i32,
                top: b.min.y as i32,
                width,
                height,
                advance,
                coverage,
            }
        }
        // Spaces and unknown characters have nothing to draw, only an advance.
        None => Glyph {
            id,
            left: 0,
            top: 0,
            width: 0,
            height: 0,
            advance,
            coverage: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::canvas::solid;

    #[test]
    fn prepared_and_on_the_spot_glyphs_draw_the_same() {
        let style = Style {
            size: 18.0,
            bold: false,
            color: Rgb::WHITE,
        };
        let prepared = Typesetter::new(&[(18.0, false)], "").unwrap();
        let bare = Typesetter::new(&[], "").unwrap();
        let mut a = solid(200, 40, Rgb::BLACK);
        let mut b = solid(200, 40, Rgb::BLACK);
        let wa = prepared.draw(&mut a, "Swin · 56×56 → ok", 4.0, 28.0, Align::Left, &style);
        let wb = bare.draw(&mut b, "Swin · 56×56 → ok", 4.0, 28.0, Align::Left, &style);
        assert_eq!(wa, wb);
        assert_eq!(a, b);
        assert!(a.pixels().any(|p| p.0[0] > 200), "text must be visible");
    }
}
