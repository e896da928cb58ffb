//! The stage figure: the input, then each stage's per-pair maps (what each regular + shifted
//! pair of blocks does on its own, at the stage's own resolution), then the final rollout, left
//! to right with arrows, each map with its own colour bar.

use image::RgbImage;

use super::image::upscale;
use super::{
    draw_hbar, overlay_raster, relative, Ctx, Frame, Layer, Panel, Prepare, Sampling, Wash,
};
use crate::render::canvas::{arrow_right, blit, muted, stroke_rect, Rect};
use crate::render::colormap::{Lut, Norm, Scale};
use crate::render::format::Vars;
use crate::render::story::StageMap;
use crate::render::story::Story;
use crate::render::template::{FigureSpec, Mode};
use crate::render::text::Align;
use crate::rollout::Map;

/// What a tile of the figure shows.
pub(super) enum Content {
    /// The input image.
    Image,
    /// A map over a `grid` of stage `stage`, relative to uniform.
    Map {
        values: Vec<f32>,
        grid: (usize, usize),
        stage: usize,
        sampling: Sampling,
    },
}

/// One tile: a small title, the picture, a colour bar for maps.
pub(super) struct Tile {
    pub(super) title: String,
    pub(super) content: Content,
}

impl Tile {
    /// A map over the first stage's grid, untitled, drawn smooth.
    pub(super) fn input_map(map: &Map) -> Tile {
        Tile {
            title: String::new(),
            content: Content::Map {
                values: relative(map),
                grid: (map.height, map.width),
                stage: 0,
                sampling: Sampling::Bilinear,
            },
        }
    }
}

/// A column: its header and its tiles, stacked.
pub(super) struct Column {
    pub(super) header: String,
    pub(super) tiles: Vec<Tile>,
}

/// A figure of columns, left to right, laid out to fill `place`.
pub(super) struct Columns<'a> {
    pub(super) place: Rect,
    pub(super) columns: Vec<Column>,
    pub(super) lut: &'a Lut,
    /// Opacity of the maps over the image.
    pub(super) alpha: f32,
    /// The line under the figure.
    pub(super) note: String,
    /// Whether arrows between the columns say that each feeds the next.
    pub(super) arrows: bool,
}

/// The input image as a column of its own.
pub(super) fn input_column(header: String) -> Column {
    Column {
        header,
        tiles: vec![Tile {
            title: String::new(),
            content: Content::Image,
        }],
    }
}

/// The stage figure.
#[derive(Debug)]
pub struct FigurePanel {
    spec: FigureSpec,
}

/// The stage figure, if the template has one (a classes template shows its classes instead).
pub fn prepare(p: &Prepare) -> Option<Box<dyn Panel>> {
    let spec = p.template().figure.as_ref()?;
    if p.template().mode == Mode::Classes {
        return None;
    }
    Some(Box::new(FigurePanel { spec: spec.clone() }))
}

impl Panel for FigurePanel {
    fn layer(&self) -> Layer {
        Layer::Figure
    }

    fn draw(&self, f: &mut Frame) {
        // The figure shows the whole network: its captions speak of the last block.
        let mut v = f.vars.clone();
        f.story.set_block_vars(&mut v, f.story.geometries.len() - 1);
        draw_figure(f.img, f.ctx, &self.spec, f.story, &v);
    }
}

/// Draws the stage figure into `img` (which already holds the background).
fn draw_figure(img: &mut RgbImage, ctx: &Ctx, spec: &FigureSpec, story: &Story, vars: &Vars) {
    let lut = spec.colormap.lut();
    // Columns: input, one per stage that has pairs, final rollout.
    let mut columns = vec![input_column(spec.input_title.render(vars))];
    let stages = story.geometries.last().map_or(0, |g| g.stage + 1);
    for s in 0..stages {
        let pairs: Vec<&StageMap> = story.stage_maps.iter().filter(|p| p.stage == s).collect();
        let Some(first) = story.geometries.iter().position(|g| g.stage == s) else {
            continue;
        };
        if pairs.is_empty() {
            continue;
        }
        let g = story.geometries[first];
        let mut v = vars.clone();
        v.stage = s + 1;
        v.height = g.height;
        v.width = g.width;
        v.window = g.window;
        v.windows = g.windows();
        v.prefix = g.prefix;
        v.global = g.is_global();
        v.heads = story.heads.get(first).copied().unwrap_or(0);
        let mut tiles = pairs
            .iter()
            .map(|p| {
                let mut v = v.clone();
                v.first = p.blocks.0 + 1;
                v.last = p.blocks.1 + 1;
                let title = if p.blocks.0 == p.blocks.1 {
                    &spec.single_title
                } else {
                    &spec.pair_title
                };
                Tile {
                    title: title.render(&v),
                    content: Content::Map {
                        values: relative(&p.map),
                        grid: (p.map.height, p.map.width),
                        stage: s,
                        // Flat tokens show each stage's real resolution.
                        sampling: Sampling::Nearest,
                    },
                }
            })
            .collect::<Vec<Tile>>();
        // A ViT's one stage holds every block: a column of three at most keeps them legible.
        let per_column = if v.global { 3 } else { tiles.len() };
        let mut header = spec.stage_title.render(&v);
        while !tiles.is_empty() {
            let rest = tiles.split_off(per_column.min(tiles.len()));
            columns.push(Column {
                header: std::mem::take(&mut header),
                tiles: std::mem::replace(&mut tiles, rest),
            });
        }
    }
    if let Some(map) = story.pooled.last() {
        columns.push(Column {
            header: spec.final_title.render(vars),
            tiles: vec![Tile::input_map(map)],
        });
    }

    let figure = Columns {
        place: spec.place,
        columns,
        lut: &lut,
        alpha: spec.alpha,
        note: spec.bar.render(vars),
        arrows: true,
    };
    draw_columns(img, ctx, story, &figure);
}

/// Draws `figure`'s columns, each tile with its title and (maps) colour bar, and its note.
pub(super) fn draw_columns(img: &mut RgbImage, ctx: &Ctx, story: &Story, figure: &Columns) {
    let Columns {
        place,
        columns,
        lut,
        alpha,
        note,
        arrows,
    } = figure;
    let place = *place;
    let colors = &ctx.template.colors;
    let label = ctx.label();
    let tick = ctx.tick();
    let (ih, iw) = story.input_size;
    let aspect = ih as f64 / iw as f64;
    let n_cols = columns.len() as i32;
    let gap = 60;
    let colw = ((place.w - (n_cols - 1) * gap) / n_cols).max(8);
    let header_h = (ctx.template.fonts.label * 1.8).ceil() as i32;
    let title_h = (tick.size * 1.6).ceil() as i32;
    let bar_h = (tick.size * 0.7).ceil() as i32;
    let under = 6 + bar_h + (tick.size * 1.9).ceil() as i32;
    let gap_rows = 12;
    let note_h = (tick.size * 2.5).ceil() as i32;
    let avail = place.h - header_h - note_h;
    let rows = columns
        .iter()
        .map(|c| c.tiles.len())
        .max()
        .unwrap_or(1)
        .max(1) as i32;
    // Tile width such that `n` tiles with their titles and bars fit the height.
    let width_for = |n: i32| -> i32 {
        let per = (avail - (n - 1) * gap_rows) / n;
        let h = (per - title_h - under).max(8);
        colw.min((f64::from(h) / aspect).floor() as i32).max(8)
    };
    let height_of = |w: i32| (f64::from(w) * aspect).round() as i32;
    let stack = |n: i32| {
        let w = width_for(n);
        n * (title_h + height_of(w) + under) + (n - 1) * gap_rows
    };
    let tallest = stack(rows).max(stack(1));
    let top = place.y + (place.h - header_h - tallest - note_h).max(0) / 2 + header_h;
    let col_x = |i: i32| place.x + i * (colw + gap);
    let mut centre_y = top + tallest / 2;

    for (c, column) in columns.iter().enumerate() {
        let c = c as i32;
        let n = column.tiles.len() as i32;
        let w = width_for(n);
        let h = height_of(w);
        let mut y = top + (tallest - stack(n)) / 2;
        ctx.text.draw_top(
            img,
            &column.header,
            (col_x(c) + colw / 2) as f32,
            (y - header_h) as f32,
            Align::Center,
            &label,
        );
        let x = col_x(c) + (colw - w) / 2;
        for tile in &column.tiles {
            if !tile.title.is_empty() {
                ctx.text.draw_top(
                    img,
                    &tile.title,
                    (x + w / 2) as f32,
                    y as f32,
                    Align::Center,
                    &tick,
                );
            }
            let ty = y + title_h;
            let (picture, norm) = tile_raster(story, *alpha, lut, &tile.content, w, h);
            blit(img, &picture, x, ty);
            stroke_rect(
                img,
                Rect::new(x - 1, ty - 1, w + 2, h + 2),
                1,
                colors.muted,
                0.5,
            );
            if let Some(norm) = norm {
                draw_hbar(img, ctx, Rect::new(x, ty + h + 6, w, bar_h), lut, &norm, 4);
            }
            if c == 0 {
                centre_y = ty + h / 2;
            }
            y += title_h + h + under + gap_rows;
        }
    }

    // Arrows between columns, in the gaps.
    for i in 0..if *arrows { n_cols - 1 } else { 0 } {
        let x0 = (col_x(i) + colw) as f32 + 8.0;
        let x1 = col_x(i + 1) as f32 - 8.0;
        arrow_right(img, x0, x1, centre_y as f32, 3.0, colors.accent);
    }

    if !note.is_empty() {
        ctx.text.draw_top(
            img,
            note,
            (place.x + place.w / 2) as f32,
            (top + tallest) as f32 + tick.size * 0.8,
            Align::Center,
            &tick,
        );
    }
}

/// A tile's picture at `w`×`h`, and the norm of its colour bar (maps only).
fn tile_raster(
    story: &Story,
    alpha: f32,
    lut: &Lut,
    content: &Content,
    w: i32,
    h: i32,
) -> (RgbImage, Option<Norm>) {
    let (ih, iw) = story.input_size;
    let plain = upscale(&story.image, w.max(1) as u32, h.max(1) as u32);
    match content {
        Content::Image => (plain, None),
        Content::Map {
            values,
            grid,
            stage,
            sampling,
        } => {
            let under = muted(&plain, 0.25, 0.8);
            let (lo, hi) = values
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            let (lo, hi) = if hi > lo {
                (lo, hi)
            } else {
                (lo - 0.5, hi + 0.5)
            };
            let norm = Norm {
                scale: Scale::Linear,
                lo,
                hi,
            };
            let side = (story.patch << stage) as f64;
            let cover = (
                grid.0 as f64 * side / ih as f64 * f64::from(h),
                grid.1 as f64 * side / iw as f64 * f64::from(w),
            );
            let wash = Wash {
                norm: &norm,
                lut,
                alpha,
            };
            let raster = overlay_raster(&under, values, *grid, cover, &wash, *sampling);
            (raster, Some(norm))
        }
    }
}
