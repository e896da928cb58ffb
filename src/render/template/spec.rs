//! The template's sections as the TOML declares them: each field once, with its type, its
//! default and (through its `deserialize_with` check in [`super::fields`]) its range.
//!
//! A section is a [`section!`] block: it becomes a serde struct with
//! `#[serde(deny_unknown_fields, default)]`, a `Default` made of the declared defaults, and a
//! list of its [`Format`] fields (for [`super::Template::literal_chars`]). Checks that need more
//! than one field (a place against the canvas, a window against the grid) are in
//! [`super::resolve`].

use std::any::Any;

use serde::Deserialize;

use super::fields::{
    class_count, fill, font_size, format, grid, hex, hex_list, opt_font_size, pair, place, seconds,
    sigma, tokens, unit,
};
use crate::explain::Explanation;
use crate::render::canvas::{Rect, Rgb};
use crate::render::colormap::{Colormap, Scale};
use crate::render::format::Format;
use crate::render::text::Align;

/// A section's [`Format`] fields, in declaration order.
pub trait Formats {
    /// Every [`Format`] field of the section.
    fn formats(&self) -> Vec<&Format>;
}

/// Declares a section: the struct, its `Default` (each field's `= default`) and its
/// [`Formats`]. Field attributes (docs, `#[serde(deserialize_with = …)]`) pass through.
macro_rules! section {
    (
        $(#[$m:meta])*
        pub struct $name:ident {
            $( $(#[$fm:meta])* pub $f:ident : $t:ty = $d:expr ),* $(,)?
        }
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            $( $(#[$fm])* pub $f: $t, )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $f: $d, )* }
            }
        }

        impl Formats for $name {
            fn formats(&self) -> Vec<&Format> {
                let mut out = Vec::new();
                $( out.extend((&self.$f as &dyn Any).downcast_ref::<Format>()); )*
                out
            }
        }
    };
}

/// The place of a panel that is off (`place = "off"`, the default): never a real place, since
/// a real one has a positive width and height.
pub(super) const OFF: Rect = Rect {
    x: 0,
    y: 0,
    w: -1,
    h: -1,
};

/// What a template renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A model's trace, block by block (needs a model and an image).
    #[default]
    Story,
    /// The schematic of window attention on a small synthetic grid (needs no model).
    Mechanism,
    /// One still figure: the input, each stage's pair maps and the final rollout.
    Figure,
    /// One still figure: the top classes' relevance maps side by side.
    Classes,
    /// Two models' stories side by side and in step (needs two models and an image): the
    /// story panels are drawn once in each of `[compare]`'s boxes.
    Compare,
}

impl Mode {
    /// Whether the template is one still picture rather than a video.
    pub fn is_still(self) -> bool {
        matches!(self, Mode::Figure | Mode::Classes)
    }
}

/// How the matrix panel orders tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Raster order of the stage's grid: windows are scattered.
    #[default]
    Token,
    /// Tokens grouped window by window: the matrix is block diagonal.
    Window,
    /// Fill in window order, then move every row and column to its token-order place.
    Both,
}

/// Where a value range comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RangeMode {
    /// One range over every block, so colours compare across blocks.
    #[default]
    Global,
    /// Each block its own range, so each block's structure uses the whole map.
    Block,
}

/// Which beats a caption shows in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum During {
    /// The opening.
    Intro,
    /// Every block.
    Block,
    /// Blocks without a shift.
    Regular,
    /// Shifted blocks.
    Shifted,
    /// Patch merges.
    Merge,
    /// The closing figure.
    Finale,
}

/// Which attention a caption is about: it shows only for a trace of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttentionKind {
    /// Window attention (Swin, V1 or V2).
    Window,
    /// Global attention: every token attends to every token (ViT, DeiT).
    Global,
}

/// The matrix panel's value scale, by name (its parameters are the panel's `decades`, `gamma`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScaleKind {
    /// Logarithmic over `decades`.
    Log,
    /// A power `gamma`.
    Gamma,
    /// Linear.
    Linear,
}

/// The canvas (every key required; checked in resolution, after serde has named any key
/// missing).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canvas {
    /// Width in pixels: even, in [16, 8192].
    pub width: u32,
    /// Height in pixels: even, in [16, 8192].
    pub height: u32,
    /// Frames per second, in [1, 240].
    pub fps: u32,
}

section! {
    /// Seconds for each part of the story (each in [0, 3600]).
    #[derive(Copy)]
    pub struct Timing {
        /// Opening.
        #[serde(deserialize_with = "seconds")]
        pub intro: f64 = 2.0,
        /// Each block.
        #[serde(deserialize_with = "seconds")]
        pub block: f64 = 3.0,
        /// Each patch merge (0 skips merge beats).
        #[serde(deserialize_with = "seconds")]
        pub merge: f64 = 1.5,
        /// Closing.
        #[serde(deserialize_with = "seconds")]
        pub finale: f64 = 4.0,
        /// Share of a block's time in which its matrix fills, in (0, 1] (kept at `f32`
        /// precision).
        #[serde(deserialize_with = "fill")]
        pub fill: f64 = f64::from(0.6f32),
        /// Seconds of the window-order → token-order move (order = "both").
        #[serde(deserialize_with = "seconds")]
        pub reorder: f64 = 0.6,
        /// Seconds of the rollout cross-fade at the start of each block.
        #[serde(deserialize_with = "seconds")]
        pub crossfade: f64 = 0.6,
        /// Seconds of the finale's fade-in.
        #[serde(deserialize_with = "seconds")]
        pub fade: f64 = 0.5,
        /// Longest the whole video may last; blocks and merges are shortened to fit (0: no
        /// limit).
        #[serde(deserialize_with = "seconds")]
        pub max_duration: f64 = 0.0,
    }
}

section! {
    /// The template's named colours (`"#rrggbb"`).
    pub struct Colors {
        /// Canvas.
        #[serde(deserialize_with = "hex")]
        pub background: Rgb = Rgb([0x0e, 0x10, 0x16]),
        /// Panel backgrounds and empty matrix areas.
        #[serde(deserialize_with = "hex")]
        pub panel: Rgb = Rgb([0x1a, 0x1d, 0x26]),
        /// Main text.
        #[serde(deserialize_with = "hex")]
        pub text: Rgb = Rgb([0xec, 0xee, 0xf4]),
        /// Secondary text, ticks, frames.
        #[serde(deserialize_with = "hex")]
        pub muted: Rgb = Rgb([0x90, 0x97, 0xa8]),
        /// Highlights: the window being filled, the current query, arrows.
        #[serde(deserialize_with = "hex")]
        pub accent: Rgb = Rgb([0xff, 0xc5, 0x3d]),
        /// Window grid lines.
        #[serde(deserialize_with = "hex")]
        pub grid: Rgb = Rgb([0xff, 0xff, 0xff]),
        /// Tints of the shift-mask sub-regions of wrapped windows (at least one).
        #[serde(deserialize_with = "hex_list")]
        pub regions: Vec<Rgb> = vec![
            Rgb([0xff, 0x8a, 0x5c]),
            Rgb([0x4d, 0xd0, 0xe1]),
            Rgb([0xb3, 0x9d, 0xff]),
            Rgb([0xa5, 0xd6, 0x6f]),
        ],
    }
}

impl Colors {
    /// The colour a [`Paint`] names.
    pub fn paint(&self, paint: Paint) -> Rgb {
        match paint {
            Paint::Rgb(rgb) => rgb,
            Paint::Background => self.background,
            Paint::Panel => self.panel,
            Paint::Text => self.text,
            Paint::Muted => self.muted,
            Paint::Accent => self.accent,
            Paint::Grid => self.grid,
        }
    }
}

/// A colour: `"#rrggbb"` or the name of one of the template's [`Colors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Paint {
    /// A colour of its own.
    Rgb(Rgb),
    /// `background`.
    Background,
    /// `panel`.
    Panel,
    /// `text`.
    #[default]
    Text,
    /// `muted`.
    Muted,
    /// `accent`.
    Accent,
    /// `grid`.
    Grid,
}

section! {
    /// Font sizes in pixels (each in [4, 400]).
    #[derive(Copy)]
    pub struct Fonts {
        /// Titles.
        #[serde(deserialize_with = "font_size")]
        pub title: f32 = 40.0,
        /// Captions.
        #[serde(deserialize_with = "font_size")]
        pub caption: f32 = 26.0,
        /// Panel titles.
        #[serde(deserialize_with = "font_size")]
        pub label: f32 = 22.0,
        /// Colour-bar ticks and notes.
        #[serde(deserialize_with = "font_size")]
        pub tick: f32 = 16.0,
    }
}

section! {
    /// The image-and-windows panel.
    pub struct ImageSpec {
        /// Where it goes.
        #[serde(deserialize_with = "place")]
        pub place: Rect = OFF,
        /// Title above it.
        #[serde(deserialize_with = "format")]
        pub title: Format = Format::default(),
        /// Note under it (shifted blocks only: explains the tinted sub-regions).
        #[serde(deserialize_with = "format")]
        pub shifted_note: Format = Format::default(),
        /// Brightness outside the highlighted window, in [0, 1].
        #[serde(deserialize_with = "unit")]
        pub dim: f32 = 0.45,
    }
}

section! {
    /// The attention-matrix panel.
    pub struct MatrixSpec {
        /// Where it goes.
        #[serde(deserialize_with = "place")]
        pub place: Rect = OFF,
        /// Title above it.
        #[serde(deserialize_with = "format")]
        pub title: Format = Format::default(),
        /// Note under it.
        #[serde(deserialize_with = "format")]
        pub note: Format = Format::default(),
        /// Colour-bar label.
        #[serde(deserialize_with = "format")]
        pub bar: Format = Format::default(),
        /// Token order.
        pub order: Order = Order::Both,
        /// Colour map.
        pub colormap: Colormap = Colormap::Magma,
        /// Value scale (its range is filled in from the data); see [`MatrixSpec::scale`].
        #[serde(rename = "scale")]
        pub scale_kind: ScaleKind = ScaleKind::Log,
        /// Decades of the log scale, in [0.5, 12] (checked where the scale is log).
        pub decades: f64 = 3.0,
        /// Power of the gamma scale, in (0, 10] (checked where the scale is gamma).
        pub gamma: f64 = 0.5,
        /// Range over all blocks or per block.
        pub range: RangeMode = RangeMode::Global,
    }
}

impl MatrixSpec {
    /// The value scale.
    pub fn scale(&self) -> Scale {
        match self.scale_kind {
            ScaleKind::Linear => Scale::Linear,
            ScaleKind::Gamma => Scale::Gamma(self.gamma as f32),
            ScaleKind::Log => Scale::Log {
                decades: self.decades as f32,
            },
        }
    }
}

section! {
    /// A rollout overlay panel (the window-aware rollout, or the naive one).
    pub struct OverlaySpec {
        /// Where it goes.
        #[serde(deserialize_with = "place")]
        pub place: Rect = OFF,
        /// Title above it.
        #[serde(deserialize_with = "format")]
        pub title: Format = Format::default(),
        /// Colour-bar label.
        #[serde(deserialize_with = "format")]
        pub bar: Format = Format::default(),
        /// Colour map.
        pub colormap: Colormap = Colormap::Inferno,
        /// Opacity of the map over the image, in [0, 1].
        #[serde(deserialize_with = "unit")]
        pub alpha: f32 = 0.65,
        /// Range over all blocks or per block.
        pub range: RangeMode = RangeMode::Global,
    }
}

section! {
    /// The stage figure (finale and still).
    pub struct FigureSpec {
        /// Where it goes.
        #[serde(deserialize_with = "place")]
        pub place: Rect = OFF,
        /// Title of the input column.
        #[serde(deserialize_with = "format")]
        pub input_title: Format = Format::default(),
        /// Header of each stage column.
        #[serde(deserialize_with = "format")]
        pub stage_title: Format = Format::default(),
        /// Title of each pair map.
        #[serde(deserialize_with = "format")]
        pub pair_title: Format = Format::default(),
        /// Title of the map of a block without a partner (a stage of odd depth).
        #[serde(deserialize_with = "format")]
        pub single_title: Format = Format::default(),
        /// Title of the final rollout.
        #[serde(deserialize_with = "format")]
        pub final_title: Format = Format::default(),
        /// Colour-bar label.
        #[serde(deserialize_with = "format")]
        pub bar: Format = Format::default(),
        /// Colour map.
        pub colormap: Colormap = Colormap::Inferno,
        /// Opacity of the maps over the image, in [0, 1].
        #[serde(deserialize_with = "unit")]
        pub alpha: f32 = 0.7,
    }
}

section! {
    /// The classes figure: the input, then the relevance of each of the top classes.
    pub struct ClassesSpec {
        /// Where it goes.
        #[serde(deserialize_with = "place")]
        pub place: Rect = OFF,
        /// How many of the most probable classes are shown, in [1, 10].
        #[serde(deserialize_with = "class_count")]
        pub count: usize = 3,
        /// Title of the input column.
        #[serde(deserialize_with = "format")]
        pub input_title: Format = Format::default(),
        /// Header of each class's column (`{label}`, `{probability}` are that class's).
        #[serde(deserialize_with = "format")]
        pub title: Format = Format::default(),
        /// The note under the figure.
        #[serde(deserialize_with = "format")]
        pub bar: Format = Format::default(),
        /// Colour map.
        pub colormap: Colormap = Colormap::Inferno,
        /// Opacity of the maps over the image, in [0, 1].
        #[serde(deserialize_with = "unit")]
        pub alpha: f32 = 0.7,
    }
}

section! {
    /// The progress track: one segment per block, grouped by stage, with the merges between.
    pub struct TrackSpec {
        /// Where it goes.
        #[serde(deserialize_with = "place")]
        pub place: Rect = OFF,
        /// Label under each stage's group of blocks.
        #[serde(deserialize_with = "format")]
        pub stage_label: Format = Format::default(),
        /// Label above each block's segment (drawn where it fits).
        #[serde(deserialize_with = "format")]
        pub block_label: Format = Format::default(),
    }
}

section! {
    /// The two boxes of a compare template. Each draws one model's story: the panels' places
    /// and the captions' anchors are relative to the box, and must fit the smaller one.
    pub struct CompareSpec {
        /// The first model's box on the canvas (`--model`).
        #[serde(deserialize_with = "place")]
        pub left: Rect = OFF,
        /// The second model's box on the canvas (`--compare`).
        #[serde(deserialize_with = "place")]
        pub right: Rect = OFF,
    }
}

section! {
    /// The schematic's synthetic grid.
    #[derive(Copy)]
    pub struct MechanismSpec {
        /// Token grid side of the first stage: even, in [2, 32].
        #[serde(deserialize_with = "grid")]
        pub grid: usize = 8,
        /// Window side: at least 2, dividing `grid` (checked against it in resolution).
        #[serde(deserialize_with = "tokens")]
        pub window: usize = 4,
        /// Width, in tokens, of the synthetic distance-based attention, in (0, 100].
        #[serde(deserialize_with = "sigma")]
        pub sigma: f32 = 1.2,
    }
}

/// One caption (`[[caption]]`; `text` and `at` are required).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Caption {
    /// Its text.
    #[serde(deserialize_with = "format")]
    pub text: Format,
    /// Anchor: x as `align` says, y the top of the line.
    #[serde(deserialize_with = "pair")]
    pub at: (i32, i32),
    /// Font size in pixels, in [4, 400] (`None`: the template's caption size).
    #[serde(default, deserialize_with = "opt_font_size")]
    pub size: Option<f32>,
    /// Bold weight.
    #[serde(default)]
    pub bold: bool,
    /// Colour.
    #[serde(default)]
    pub color: Paint,
    /// Alignment against `at`.
    #[serde(default)]
    pub align: Align,
    /// Which beats it shows in (empty: all).
    #[serde(default)]
    pub during: Vec<During>,
    /// Shown only when the maps show this explanation (`None`: always).
    #[serde(default)]
    pub explain: Option<Explanation>,
    /// Shown only for a trace of this kind of attention (`None`: always).
    #[serde(default)]
    pub attention: Option<AttentionKind>,
    /// In a compare template: drawn once, anchored on the whole canvas, with the first
    /// model's placeholders and beats, instead of in each model's box.
    #[serde(default)]
    pub canvas: bool,
}

impl Caption {
    /// Its font size: its own, or else the template's caption size.
    pub fn size_in(&self, fonts: &Fonts) -> f32 {
        self.size.unwrap_or(fonts.caption)
    }
}

/// The whole file as it is written: every section, before the checks across sections.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Document {
    pub description: String,
    #[serde(default)]
    pub mode: Mode,
    pub canvas: Canvas,
    #[serde(default)]
    pub timing: Timing,
    #[serde(default)]
    pub colors: Colors,
    #[serde(default)]
    pub fonts: Fonts,
    #[serde(default)]
    pub image: ImageSpec,
    #[serde(default)]
    pub matrix: MatrixSpec,
    #[serde(default)]
    pub rollout: OverlaySpec,
    #[serde(default)]
    pub naive: OverlaySpec,
    #[serde(default)]
    pub figure: FigureSpec,
    #[serde(default)]
    pub classes: ClassesSpec,
    #[serde(default)]
    pub track: TrackSpec,
    #[serde(default)]
    pub mechanism: MechanismSpec,
    #[serde(default)]
    pub compare: CompareSpec,
    #[serde(default)]
    pub caption: Vec<Caption>,
}

impl Formats for Caption {
    fn formats(&self) -> Vec<&Format> {
        vec![&self.text]
    }
}
