//! A rollout map over the image: the pooled map after the current block, upsampled bilinearly
//! and alpha-blended over a muted copy of the input, with a colour bar in units of the uniform
//! share. Each block's raster is made once; frames cross-fade between neighbours.

use std::sync::OnceLock;

use image::RgbImage;

use super::image::upscale;
use super::{
    draw_vbar, fit, overlay_raster, relative, vbar_room, Frame, Panel, Prepare, Sampling, Wash,
};
use crate::render::canvas::{blit, blit_mix, muted, stroke_rect, Rect};
use crate::render::colormap::{Lut, Norm};
use crate::render::template::OverlaySpec;
use crate::render::timeline::Beat;
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
    spec: OverlaySpec,
    norms: Vec<Norm>,
    maps: Vec<Vec<f32>>,
    grid: (usize, usize),
    cover: (f64, f64),
    rasters: Vec<OnceLock<RgbImage>>,
}

/// The rollout panel, if the template has one.
pub fn prepare_rollout(p: &Prepare) -> Option<Box<dyn Panel>> {
    let spec = p.video(&p.template().rollout)?;
    Some(Box::new(OverlayPanel::new(p, spec, &p.story.pooled)))
}

/// The naive-rollout panel, if the template has one.
pub fn prepare_naive(p: &Prepare) -> Option<Box<dyn Panel>> {
    let spec = p.video(&p.template().naive)?;
    Some(Box::new(OverlayPanel::new(p, spec, &p.story.naive)))
}

impl OverlayPanel {
    /// Lays the panel out for `maps` (one per block), coloured on the shared map scale (so
    /// that the rollout and naive panels share colours).
    fn new(p: &Prepare, spec: &OverlaySpec, maps: &[Map]) -> OverlayPanel {
        let (ctx, story) = (p.ctx, p.story);
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
        let norms = p.scales.maps.norms(spec.range, rel.len());
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
            spec: spec.clone(),
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
                &Wash {
                    norm: &self.norms[k],
                    lut: &self.lut,
                    alpha: self.alpha,
                },
                Sampling::Bilinear,
            )
        })
    }

    /// What the panel shows at the frame's moment: during merges and the finale, the last
    /// map of the block shown.
    fn state(&self, f: &Frame) -> OverlayState {
        let m = f.moment;
        match m.beat {
            Beat::Intro => OverlayState::Plain,
            Beat::Block(b) => OverlayState::Block {
                block: b,
                crossfade: m.crossfade,
            },
            _ => OverlayState::Block {
                block: f.focus.block.min(self.maps.len().saturating_sub(1)),
                crossfade: 1.0,
            },
        }
    }
}

impl Panel for OverlayPanel {
    fn draw(&self, f: &mut Frame) {
        let spec = &self.spec;
        f.title(self.place, &spec.title);
        let state = self.state(f);
        let (ctx, img) = (f.ctx, &mut *f.img);
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
            let label = spec.bar.render(f.vars);
            draw_vbar(img, ctx, self.bar, &self.lut, &self.norms[k], &label);
        }
    }
}
