//! A rollout map over the image: the pooled map after the current block, upsampled bilinearly
//! and alpha-blended over a muted copy of the input, with a colour bar in units of the uniform
//! share. Each block's raster is made once; frames cross-fade between neighbours.

use std::sync::OnceLock;

use image::RgbImage;

use super::image::upscale;
use super::{draw_vbar, fit, overlay_raster, relative, vbar_room, Ctx, Sampling};
use crate::render::canvas::{blit, blit_mix, muted, stroke_rect, Rect};
use crate::render::colormap::{Lut, Norm, Scale};
use crate::render::format::Vars;
use crate::render::story::Story;
use crate::render::template::{OverlaySpec, RangeMode};
use crate::rollout::Map;

/// What an overlay panel shows in a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OverlayState {
    /// The image alone.
    Plain,
    /// Block `block`'s map, faded in by `crossfade` over the previous block's (or the image).
    Block {
        /// Block index.
        block: usize,
        /// Weight of this block's map, in [0, 1].
        crossfade: f64,
    },
}

/// A rollout (or naive rollout) panel.
#[derive(Debug)]
pub struct OverlayPanel {
    /// The panel's place.
    pub place: Rect,
    /// Where the image lies.
    pub content: Rect,
    bar: Rect,
    plain: RgbImage,
    underlay: RgbImage,
    lut: Lut,
    alpha: f32,
    norms: Vec<Norm>,
    maps: Vec<Vec<f32>>,
    grid: (usize, usize),
    cover: (f64, f64),
    rasters: Vec<OnceLock<RgbImage>>,
}

impl OverlayPanel {
    /// Lays the panel out for `maps` (one per block). The colour range spans `maps` and
    /// `range_with` (the other overlay panel's maps, or nothing) — over all blocks for a global
    /// range, block by block otherwise — so both panels share colours.
    pub fn new(
        ctx: &Ctx,
        spec: &OverlaySpec,
        story: &Story,
        maps: &[Map],
        range_with: &[Map],
    ) -> OverlayPanel {
        let place = spec.place;
        let top = ctx.title_height();
        let room = vbar_room(ctx);
        let (ih, iw) = story.input_size;
        let area = Rect::new(place.x, place.y + top, place.w - room, place.h - top);
        let mut content = fit(area, iw as f64, ih as f64);
        // Keep the bar next to the image rather than at the panel's far edge.
        content.x = place.x;
        let tick = ctx.template.fonts.tick;
        let bar = Rect::new(
            content.right() + 12,
            content.y + (tick * 1.2) as i32,
            room - 12,
            content.h - (tick * 1.2) as i32,
        );
        let plain = upscale(
            &story.image,
            content.w.max(1) as u32,
            content.h.max(1) as u32,
        );
        let underlay = muted(&plain, 0.25, 0.8);
        let rel: Vec<Vec<f32>> = maps.iter().map(relative).collect();
        let range = |vals: &mut dyn Iterator<Item = f32>| {
            vals.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            })
        };
        let others: Vec<Vec<f32>> = range_with.iter().map(relative).collect();
        let global = range(&mut rel.iter().chain(&others).flatten().copied());
        let norms = rel
            .iter()
            .enumerate()
            .map(|(k, v)| {
                // Per block, the other panel's map of the same block shares the range, so the
                // window-aware and naive maps compare colour for colour.
                let (lo, hi) = match spec.range {
                    RangeMode::Global => global,
                    RangeMode::Block => {
                        range(&mut v.iter().chain(others.get(k).into_iter().flatten()).copied())
                    }
                };
                let (lo, hi) = if lo.is_finite() && hi > lo {
                    (lo, hi)
                } else {
                    (lo.min(1.0) - 0.5, hi.max(1.0) + 0.5)
                };
                Norm {
                    scale: Scale::Linear,
                    lo,
                    hi,
                }
            })
            .collect();
        let g0 = story.geometries[0];
        let side = story.patch as f64;
        let cover = (
            g0.height as f64 * side / ih as f64 * f64::from(content.h),
            g0.width as f64 * side / iw as f64 * f64::from(content.w),
        );
        OverlayPanel {
            place,
            content,
            bar,
            plain,
            underlay,
            lut: spec.colormap.lut(),
            alpha: spec.alpha,
            norms,
            rasters: rel.iter().map(|_| OnceLock::new()).collect(),
            maps: rel,
            grid: (g0.height, g0.width),
            cover,
        }
    }

    /// Block `k`'s overlay raster.
    pub fn raster(&self, k: usize) -> &RgbImage {
        self.rasters[k].get_or_init(|| {
            overlay_raster(
                &self.underlay,
                &self.maps[k],
                self.grid,
                self.cover,
                &self.norms[k],
                &self.lut,
                self.alpha,
                Sampling::Bilinear,
            )
        })
    }

    /// Draws the panel.
    pub fn draw(
        &self,
        img: &mut RgbImage,
        ctx: &Ctx,
        spec: &OverlaySpec,
        state: OverlayState,
        vars: &Vars,
    ) {
        ctx.draw_title(img, self.place, &spec.title, vars);
        let (x, y) = (self.content.x, self.content.y);
        let shown = match state {
            OverlayState::Plain => {
                blit(img, &self.plain, x, y);
                None
            }
            OverlayState::Block { block, crossfade } if block < self.maps.len() => {
                let before = if block == 0 {
                    &self.plain
                } else {
                    self.raster(block - 1)
                };
                blit_mix(img, before, self.raster(block), crossfade as f32, x, y);
                Some(block)
            }
            OverlayState::Block { .. } => None,
        };
        stroke_rect(
            img,
            self.content.inset(-1),
            1,
            ctx.template.colors.muted,
            0.5,
        );
        if let Some(k) = shown {
            let label = spec.bar.render(vars);
            draw_vbar(img, ctx, self.bar, &self.lut, &self.norms[k], &label);
        }
    }
}
