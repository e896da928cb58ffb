//! The progress track: where in the network the video is. One segment per block, grouped by
//! stage and labelled, a marker for each patch merge; finished blocks are filled, the current
//! one fills as its beat goes by.

use super::{Frame, Layer, Panel, Prepare};
use crate::render::canvas::{fill_rect, triangle, Rect, Rgb};
use crate::render::format::Vars;
use crate::render::template::TrackSpec;
use crate::render::text::Align;
use crate::render::timeline::Beat;

/// Width of the gap that holds a merge marker.
const MERGE_GAP: i32 = 28;
/// Gap between blocks of one stage.
const BLOCK_GAP: i32 = 4;

/// The progress track.
#[derive(Debug)]
pub struct TrackPanel {
    spec: TrackSpec,
}

/// The track, if the template (a video's) has one.
pub fn prepare(p: &Prepare) -> Option<Box<dyn Panel>> {
    let spec = p.video(&p.template().track)?;
    Some(Box::new(TrackPanel { spec: spec.clone() }))
}

/// The placeholders of block `k` for the track's labels.
fn block_vars(f: &Frame, k: usize) -> Vars {
    let mut v = f.base.clone();
    f.story.set_block_vars(&mut v, k);
    v
}

impl Panel for TrackPanel {
    fn layer(&self) -> Layer {
        Layer::Chrome
    }

    fn draw(&self, f: &mut Frame) {
        let spec = &self.spec;
        let (ctx, story, m) = (f.ctx, f.story, f.moment);
        let g = &story.geometries;
        let n = g.len() as i32;
        if n == 0 {
            return;
        }
        let merges = g.windows(2).filter(|p| p[0].stage != p[1].stage).count() as i32;
        let place = spec.place;
        let inner = place.w - merges * MERGE_GAP - (n - 1 - merges).max(0) * BLOCK_GAP;
        let seg_w = (inner / n).max(2);
        let colors = &ctx.template.colors;
        let tick = ctx.tick();
        let label_h = (tick.size * 1.5).ceil() as i32;
        let bar = Rect::new(
            place.x,
            place.y + label_h,
            0,
            (tick.size * 0.8).ceil() as i32,
        );
        let finished = colors.muted.mix(colors.panel, 0.35);
        let todo = colors.panel.mix(Rgb::WHITE, 0.06);

        // Progress: blocks before `done` are finished; `active` fills; a merge marker may be lit.
        let (done, active, merge_at, progress) = match m.beat {
            Beat::Intro => (0, None, None, 0.0),
            Beat::Block(k) => (k, Some(k), None, m.progress),
            Beat::Merge { to, .. } => (to, None, Some(to), m.progress),
            Beat::Finale => (g.len(), None, None, 0.0),
        };
        let mut x = place.x;
        let mut stage_start = place.x;
        for k in 0..g.len() {
            if k > 0 && g[k - 1].stage != g[k].stage {
                stage_label(f, spec, k - 1, (stage_start, x), &bar);
                // The merge marker: a downward triangle, lit while merging.
                let cx = (x + MERGE_GAP / 2) as f32;
                let cy = (bar.y + bar.h / 2) as f32;
                let lit = merge_at == Some(k);
                let passed = done >= k;
                let c = if lit {
                    colors.accent
                } else if passed {
                    colors.muted
                } else {
                    todo
                };
                triangle(
                    f.img,
                    [(cx - 7.0, cy - 6.0), (cx + 7.0, cy - 6.0), (cx, cy + 6.0)],
                    c,
                    1.0,
                );
                x += MERGE_GAP;
                stage_start = x;
            } else if k > 0 {
                x += BLOCK_GAP;
            }
            let r = Rect::new(x, bar.y, seg_w, bar.h);
            if active == Some(k) {
                fill_rect(f.img, r, todo);
                let w = (f64::from(seg_w) * progress.clamp(0.0, 1.0)).round() as i32;
                fill_rect(f.img, Rect::new(r.x, r.y, w.max(2), r.h), colors.accent);
            } else if k < done {
                fill_rect(f.img, r, finished);
            } else {
                fill_rect(f.img, r, todo);
            }
            if !spec.block_label.is_empty() {
                let s = spec.block_label.render(&block_vars(f, k));
                let style = crate::render::text::Style {
                    color: if active == Some(k) {
                        colors.accent
                    } else {
                        colors.muted
                    },
                    ..tick
                };
                if ctx.text.width(&s, &style) <= seg_w as f32 {
                    ctx.text.draw_top(
                        f.img,
                        &s,
                        (x + seg_w / 2) as f32,
                        place.y as f32,
                        Align::Center,
                        &style,
                    );
                }
            }
            x += seg_w;
        }
        stage_label(f, spec, g.len() - 1, (stage_start, x), &bar);
    }
}

/// The label under one stage's blocks (from `x0` to `x1`), if it fits.
fn stage_label(f: &mut Frame, spec: &TrackSpec, block: usize, (x0, x1): (i32, i32), bar: &Rect) {
    if spec.stage_label.is_empty() {
        return;
    }
    let s = spec.stage_label.render(&block_vars(f, block));
    let style = f.ctx.tick();
    if f.ctx.text.width(&s, &style) <= (x1 - x0) as f32 + 8.0 {
        f.ctx.text.draw_top(
            f.img,
            &s,
            (x0 + x1) as f32 / 2.0,
            (bar.bottom() + 6) as f32,
            Align::Center,
            &style,
        );
    }
}
