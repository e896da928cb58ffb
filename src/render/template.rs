//! Templates: what a video or still looks like — canvas, timing, where each panel goes, colours,
//! colour maps, font sizes and every caption — read from TOML.
//!
//! The built-in templates live in `templates/` and are embedded in the binary; a user's file is
//! read the same way. Parsing is strict: an unknown key, a value of the wrong type or out of
//! range, an odd canvas size or an unknown caption placeholder is an error of one line naming
//! the file, the line, the key and what would be accepted.

use std::ops::Range;
use std::path::Path;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::canvas::{Rect, Rgb};
use super::colormap::{Colormap, Scale};
use super::format::{placeholder_names, Format, FormatError};
use super::text::Align;
use crate::error::{Error, Result};
use crate::explain::Explanation;

/// The built-in templates: name, file name (for messages) and text.
const BUILTIN: [(&str, &str, &str); 6] = [
    (
        "explainer",
        "templates/explainer.toml",
        include_str!("../../templates/explainer.toml"),
    ),
    (
        "conference",
        "templates/conference.toml",
        include_str!("../../templates/conference.toml"),
    ),
    (
        "timelapse",
        "templates/timelapse.toml",
        include_str!("../../templates/timelapse.toml"),
    ),
    (
        "mechanism",
        "templates/mechanism.toml",
        include_str!("../../templates/mechanism.toml"),
    ),
    (
        "stages",
        "templates/stages.toml",
        include_str!("../../templates/stages.toml"),
    ),
    (
        "classes",
        "templates/classes.toml",
        include_str!("../../templates/classes.toml"),
    ),
];

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

/// Seconds for each part of the story.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Opening.
    pub intro: f64,
    /// Each block.
    pub block: f64,
    /// Each patch merge (0 skips merge beats).
    pub merge: f64,
    /// Closing.
    pub finale: f64,
    /// Share of a block's time in which its matrix fills, in (0, 1].
    pub fill: f64,
    /// Seconds of the window-order → token-order move (order = "both").
    pub reorder: f64,
    /// Seconds of the rollout cross-fade at the start of each block.
    pub crossfade: f64,
    /// Seconds of the finale's fade-in.
    pub fade: f64,
    /// Longest the whole video may last; blocks and merges are shortened to fit (0: no limit).
    pub max_duration: f64,
}

/// The template's named colours.
#[derive(Debug, Clone, PartialEq)]
pub struct Colors {
    /// Canvas.
    pub background: Rgb,
    /// Panel backgrounds and empty matrix areas.
    pub panel: Rgb,
    /// Main text.
    pub text: Rgb,
    /// Secondary text, ticks, frames.
    pub muted: Rgb,
    /// Highlights: the window being filled, the current query, arrows.
    pub accent: Rgb,
    /// Window grid lines.
    pub grid: Rgb,
    /// Tints of the shift-mask sub-regions of wrapped windows.
    pub regions: Vec<Rgb>,
}

/// Font sizes in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fonts {
    /// Titles.
    pub title: f32,
    /// Captions.
    pub caption: f32,
    /// Panel titles.
    pub label: f32,
    /// Colour-bar ticks and notes.
    pub tick: f32,
}

/// The image-and-windows panel.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSpec {
    /// Where it goes.
    pub place: Rect,
    /// Title above it.
    pub title: Format,
    /// Note under it (shifted blocks only: explains the tinted sub-regions).
    pub shifted_note: Format,
    /// Brightness outside the highlighted window, in [0, 1].
    pub dim: f32,
}

/// The attention-matrix panel.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixSpec {
    /// Where it goes.
    pub place: Rect,
    /// Title above it.
    pub title: Format,
    /// Note under it.
    pub note: Format,
    /// Colour-bar label.
    pub bar: Format,
    /// Token order.
    pub order: Order,
    /// Colour map.
    pub colormap: Colormap,
    /// Value scale (its range is filled in from the data).
    pub scale: Scale,
    /// Range over all blocks or per block.
    pub range: RangeMode,
}

/// A rollout overlay panel (the window-aware rollout, or the naive one).
#[derive(Debug, Clone, PartialEq)]
pub struct OverlaySpec {
    /// Where it goes.
    pub place: Rect,
    /// Title above it.
    pub title: Format,
    /// Colour-bar label.
    pub bar: Format,
    /// Colour map.
    pub colormap: Colormap,
    /// Opacity of the map over the image, in [0, 1].
    pub alpha: f32,
    /// Range over all blocks or per block.
    pub range: RangeMode,
}

/// The stage figure (finale and still).
#[derive(Debug, Clone, PartialEq)]
pub struct FigureSpec {
    /// Where it goes.
    pub place: Rect,
    /// Title of the input column.
    pub input_title: Format,
    /// Header of each stage column.
    pub stage_title: Format,
    /// Title of each pair map.
    pub pair_title: Format,
    /// Title of the map of a block without a partner (a stage of odd depth).
    pub single_title: Format,
    /// Title of the final rollout.
    pub final_title: Format,
    /// Colour-bar label.
    pub bar: Format,
    /// Colour map.
    pub colormap: Colormap,
    /// Opacity of the maps over the image.
    pub alpha: f32,
}

/// The classes figure: the input, then the relevance of each of the top classes.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassesSpec {
    /// Where it goes.
    pub place: Rect,
    /// How many of the most probable classes are shown.
    pub count: usize,
    /// Title of the input column.
    pub input_title: Format,
    /// Header of each class's column (`{label}`, `{probability}` are that class's).
    pub title: Format,
    /// The note under the figure.
    pub bar: Format,
    /// Colour map.
    pub colormap: Colormap,
    /// Opacity of the maps over the image.
    pub alpha: f32,
}

/// The progress track: one segment per block, grouped by stage, with the merges between.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackSpec {
    /// Where it goes.
    pub place: Rect,
    /// Label under each stage's group of blocks.
    pub stage_label: Format,
    /// Label above each block's segment (drawn where it fits).
    pub block_label: Format,
}

/// The schematic's synthetic grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MechanismSpec {
    /// Token grid side of the first stage.
    pub grid: usize,
    /// Window side.
    pub window: usize,
    /// Width, in tokens, of the synthetic distance-based attention.
    pub sigma: f32,
}

/// One caption.
#[derive(Debug, Clone, PartialEq)]
pub struct Caption {
    /// Its text.
    pub text: Format,
    /// Anchor: x as `align` says, y the top of the line.
    pub at: (i32, i32),
    /// Font size in pixels.
    pub size: f32,
    /// Bold weight.
    pub bold: bool,
    /// Colour.
    pub color: Rgb,
    /// Alignment against `at`.
    pub align: Align,
    /// Which beats it shows in (empty: all).
    pub during: Vec<During>,
    /// Shown only when the maps show this explanation (`None`: always).
    pub explain: Option<Explanation>,
}

/// A parsed, checked template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// Its name: the built-in's name, or the path it was read from.
    pub name: String,
    /// One line saying what it is for.
    pub description: String,
    /// What it renders.
    pub mode: Mode,
    /// Canvas width (even).
    pub width: u32,
    /// Canvas height (even).
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Durations.
    pub timing: Timing,
    /// Colours.
    pub colors: Colors,
    /// Font sizes.
    pub fonts: Fonts,
    /// Image panel, if shown.
    pub image: Option<ImageSpec>,
    /// Matrix panel, if shown.
    pub matrix: Option<MatrixSpec>,
    /// Rollout panel, if shown.
    pub rollout: Option<OverlaySpec>,
    /// Naive rollout panel, if shown.
    pub naive: Option<OverlaySpec>,
    /// Stage figure, if shown (finale, or the whole still in figure mode).
    pub figure: Option<FigureSpec>,
    /// The classes figure (the whole still in classes mode).
    pub classes: Option<ClassesSpec>,
    /// Progress track, if shown.
    pub track: Option<TrackSpec>,
    /// The schematic's grid.
    pub mechanism: MechanismSpec,
    /// Captions.
    pub captions: Vec<Caption>,
}

impl Template {
    /// A built-in template by name, or else a TOML file at that path.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a name that is neither (listing the built-ins), or for a
    /// file that does not parse (see [`Template::parse`]); [`Error::Io`] if the file cannot
    /// be read.
    pub fn load(name_or_path: &str) -> Result<Template> {
        if let Some((name, file, text)) = BUILTIN.iter().find(|b| b.0 == name_or_path) {
            let mut t = Template::parse(text, file)?;
            t.name = (*name).to_string();
            return Ok(t);
        }
        let path = Path::new(name_or_path);
        if path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            return Template::parse(&text, name_or_path);
        }
        let names: Vec<&str> = BUILTIN.iter().map(|b| b.0).collect();
        Err(Error::InvalidArgument(format!(
            "unknown template '{name_or_path}': it is neither a built-in template ({}) nor a \
             template file",
            names.join(", ")
        )))
    }

    /// The built-in templates' names with their one-line descriptions.
    pub fn builtin_list() -> Vec<(&'static str, String)> {
        BUILTIN
            .iter()
            .map(|(name, file, text)| {
                let description = match Template::parse(text, file) {
                    Ok(t) => t.description,
                    Err(e) => format!("(broken: {e})"),
                };
                (*name, description)
            })
            .collect()
    }

    /// The TOML text of a built-in template, to copy and edit.
    pub fn builtin_source(name: &str) -> Option<&'static str> {
        BUILTIN.iter().find(|b| b.0 == name).map(|b| b.2)
    }

    /// Parses template text; `origin` names it in error messages (a path, usually).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] with one line `origin:line: what is wrong`.
    pub fn parse(text: &str, origin: &str) -> Result<Template> {
        let raw: RawTemplate =
            toml::from_str(text).map_err(|e| Error::InvalidArgument(explain(&e, text, origin)))?;
        let cx = Cx { text, origin };
        raw.resolve(&cx, origin)
    }

    /// Whether rendering needs a model's trace (story and figure modes) rather than the
    /// built-in schematic.
    pub fn needs_model(&self) -> bool {
        self.mode != Mode::Mechanism
    }

    /// Every `(size, bold)` the template draws text with, so glyphs can be prepared.
    pub fn text_styles(&self) -> Vec<(f32, bool)> {
        let f = &self.fonts;
        let mut out = vec![
            (f.title, true),
            (f.title, false),
            (f.caption, false),
            (f.caption, true),
            (f.label, false),
            (f.label, true),
            (f.tick, false),
        ];
        out.extend(self.captions.iter().map(|c| (c.size, c.bold)));
        out
    }

    /// The literal characters of every caption and title, so glyphs can be prepared.
    pub fn literal_chars(&self) -> String {
        let mut s = String::new();
        let mut add = |f: &Format| s.push_str(&f.literal_chars());
        for c in &self.captions {
            add(&c.text);
        }
        if let Some(p) = &self.image {
            add(&p.title);
            add(&p.shifted_note);
        }
        if let Some(p) = &self.matrix {
            add(&p.title);
            add(&p.note);
            add(&p.bar);
        }
        for p in self.rollout.iter().chain(&self.naive) {
            add(&p.title);
            add(&p.bar);
        }
        if let Some(p) = &self.track {
            add(&p.stage_label);
            add(&p.block_label);
        }
        if let Some(p) = &self.classes {
            for f in [&p.input_title, &p.title, &p.bar] {
                add(f);
            }
        }
        if let Some(p) = &self.figure {
            for f in [
                &p.input_title,
                &p.stage_title,
                &p.pair_title,
                &p.single_title,
                &p.final_title,
                &p.bar,
            ] {
                add(f);
            }
        }
        s
    }
}

/// The text being parsed, for locating spans.
struct Cx<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Cx<'_> {
    /// `origin:line: [table] message` for a value at `span`.
    fn err(&self, span: &Range<usize>, message: impl AsRef<str>) -> Error {
        let line = line_of(self.text, span.start);
        let table = table_at(self.text, span.start);
        Error::InvalidArgument(format!(
            "{}:{line}: {} {}",
            self.origin,
            table,
            message.as_ref()
        ))
    }

    fn format(&self, s: &Spanned<String>, key: &str) -> Result<Format> {
        Format::parse(s.get_ref()).map_err(|e| match e {
            FormatError::Unknown(name) => self.err(
                &s.span(),
                format!(
                    "{key}: unknown placeholder '{{{name}}}'; known placeholders: {}",
                    placeholder_names()
                ),
            ),
            FormatError::Unbalanced => self.err(
                &s.span(),
                format!("{key}: unbalanced brace; write {{{{ and }}}} for literal braces"),
            ),
        })
    }

    fn seconds(&self, v: &Spanned<f64>, key: &str) -> Result<f64> {
        let x = *v.get_ref();
        if !x.is_finite() || !(0.0..=3600.0).contains(&x) {
            return Err(self.err(
                &v.span(),
                format!("{key} = {x} is not a number of seconds in [0, 3600]"),
            ));
        }
        Ok(x)
    }

    fn unit(&self, v: &Spanned<f64>, key: &str) -> Result<f32> {
        let x = *v.get_ref();
        if !x.is_finite() || !(0.0..=1.0).contains(&x) {
            return Err(self.err(&v.span(), format!("{key} = {x} must lie in [0, 1]")));
        }
        Ok(x as f32)
    }

    fn size(&self, v: &Spanned<f64>, key: &str) -> Result<f32> {
        let x = *v.get_ref();
        if !x.is_finite() || !(4.0..=400.0).contains(&x) {
            return Err(self.err(
                &v.span(),
                format!("{key} = {x} is not a font size in [4, 400] pixels"),
            ));
        }
        Ok(x as f32)
    }

    fn place(&self, p: &Spanned<Place>, key: &str, w: u32, h: u32) -> Result<Option<Rect>> {
        match p.get_ref() {
            Place::Off => Ok(None),
            Place::At([x, y, pw, ph]) => {
                let fits = *pw > 0
                    && *ph > 0
                    && i64::from(*x) + i64::from(*pw) <= i64::from(w)
                    && i64::from(*y) + i64::from(*ph) <= i64::from(h);
                if !fits {
                    return Err(self.err(
                        &p.span(),
                        format!(
                            "{key} = [{x}, {y}, {pw}, {ph}] does not fit the {w}×{h} canvas \
                             (x, y, width, height with width and height > 0)"
                        ),
                    ));
                }
                Ok(Some(Rect::new(
                    *x as i32, *y as i32, *pw as i32, *ph as i32,
                )))
            }
        }
    }

    fn color(&self, c: &Spanned<String>, colors: &Colors, key: &str) -> Result<Rgb> {
        let s = c.get_ref().trim();
        if let Some(rgb) = parse_hex(s) {
            return Ok(rgb);
        }
        let named = match s {
            "background" => Some(colors.background),
            "panel" => Some(colors.panel),
            "text" => Some(colors.text),
            "muted" => Some(colors.muted),
            "accent" => Some(colors.accent),
            "grid" => Some(colors.grid),
            _ => None,
        };
        named.ok_or_else(|| {
            self.err(
                &c.span(),
                format!(
                    "{key} = '{s}' is not a colour; expected \"#rrggbb\" or one of background, \
                     panel, text, muted, accent, grid"
                ),
            )
        })
    }
}

fn parse_hex(s: &str) -> Option<Rgb> {
    let h = s.strip_prefix('#')?;
    if h.len() != 6 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let v = |i: usize| u8::from_str_radix(&h[i..i + 2], 16).ok();
    Some(Rgb([v(0)?, v(2)?, v(4)?]))
}

/// 1-based line of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The `[table]` (or `[[table]]`) header in force at byte offset `at`, or "top level".
fn table_at(text: &str, at: usize) -> String {
    let before = &text[..floor_char_boundary(text, at)];
    // The current line may itself be a header (an error on the header's span).
    let line_end = text[before.len()..]
        .find('\n')
        .map_or(text.len(), |i| before.len() + i);
    text[..line_end]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| match l.find(']') {
            Some(i) if l.starts_with("[[") => format!("[[{}]]", l[2..i].trim()),
            Some(i) => format!("[{}]", l[1..i].trim()),
            None => l.to_string(),
        })
        .unwrap_or_else(|| "top level".into())
}

fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut i = at.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The whole line holding byte offset `at`.
fn line_text(text: &str, at: usize) -> &str {
    let at = floor_char_boundary(text, at);
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    &text[start..end]
}

/// `[a.b]` → `[a]`; a top-level table → "top level".
fn parent_table(table: &str) -> String {
    let inner = table.trim_matches(|c| c == '[' || c == ']');
    match inner.rsplit_once('.') {
        Some((parent, _)) => format!("[{parent}]"),
        None => "top level".into(),
    }
}

/// The key on the line at `at` (`key = value`), if the line has one.
fn key_at(text: &str, at: usize) -> Option<String> {
    let (key, _) = line_text(text, at).split_once('=')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty() && !key.starts_with('[')).then(|| key.to_string())
}

/// Turns a TOML or serde error into one line: `origin:line: what, in [table], expected …`.
fn explain(e: &toml::de::Error, text: &str, origin: &str) -> String {
    let span = e.span().unwrap_or(0..0);
    let line = line_of(text, span.start);
    let table = table_at(text, span.start);
    let message = e.message().trim().replace('\n', " ");
    let quote = |s: &str| s.replace('`', "'");
    // An unknown table is reported on its own header: the key belongs to the table above.
    let header = line_text(text, span.start).trim_start().starts_with('[');
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let table = if header { parent_table(&table) } else { table };
        let (key, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let expected = expected
            .trim_start_matches(',')
            .trim()
            .trim_start_matches("expected")
            .trim()
            .trim_start_matches("one of")
            .trim()
            .replace('`', "");
        let expected = if expected.is_empty() {
            "none (this table takes no keys)".into()
        } else {
            expected
        };
        let place = if table == "top level" {
            "at the top level".to_string()
        } else {
            format!("in {table}")
        };
        return format!("{origin}:{line}: unknown key '{key}' {place}; expected one of {expected}");
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let key = rest.split('`').next().unwrap_or(rest);
        return format!("{origin}:{line}: missing key '{key}' in {table}");
    }
    match key_at(text, span.start) {
        Some(key) if e.span().is_some() => format!(
            "{origin}:{line}: bad value for '{key}' in {table}: {}",
            quote(&message)
        ),
        // Syntax errors and the like: show the line so the reader sees what is meant.
        _ => format!(
            "{origin}:{line}: {} (at '{}')",
            quote(&message),
            line_text(text, span.start).trim()
        ),
    }
}

/// `[x, y, w, h]` or `"off"`.
#[derive(Debug, Clone, PartialEq)]
enum Place {
    At([u32; 4]),
    Off,
}

impl<'de> Deserialize<'de> for Place {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Place;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("[x, y, width, height] in pixels, or \"off\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Place, E> {
                if s == "off" {
                    Ok(Place::Off)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(s), &self))
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Place, A::Error> {
                let mut v = [0u32; 4];
                for (i, slot) in v.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                }
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(5, &self));
                }
                Ok(Place::At(v))
            }
        }
        d.deserialize_any(V)
    }
}

fn off() -> Spanned<Place> {
    Spanned::new(0..0, Place::Off)
}

fn text(s: &str) -> Spanned<String> {
    Spanned::new(0..0, s.to_string())
}

fn num(x: f64) -> Spanned<f64> {
    Spanned::new(0..0, x)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    description: String,
    #[serde(default)]
    mode: Mode,
    canvas: RawCanvas,
    #[serde(default)]
    timing: RawTiming,
    #[serde(default)]
    colors: RawColors,
    #[serde(default)]
    fonts: RawFonts,
    #[serde(default)]
    image: RawImage,
    #[serde(default)]
    matrix: RawMatrix,
    #[serde(default)]
    rollout: RawOverlay,
    #[serde(default)]
    naive: RawOverlay,
    #[serde(default)]
    figure: RawFigure,
    #[serde(default)]
    classes: RawClasses,
    #[serde(default)]
    track: RawTrack,
    #[serde(default)]
    mechanism: RawMechanism,
    #[serde(default)]
    caption: Vec<RawCaption>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCanvas {
    width: Spanned<u32>,
    height: Spanned<u32>,
    fps: Spanned<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTiming {
    intro: Spanned<f64>,
    block: Spanned<f64>,
    merge: Spanned<f64>,
    finale: Spanned<f64>,
    fill: Spanned<f64>,
    reorder: Spanned<f64>,
    crossfade: Spanned<f64>,
    fade: Spanned<f64>,
    max_duration: Spanned<f64>,
}

impl Default for RawTiming {
    fn default() -> Self {
        RawTiming {
            intro: num(2.0),
            block: num(3.0),
            merge: num(1.5),
            finale: num(4.0),
            fill: num(0.6),
            reorder: num(0.6),
            crossfade: num(0.6),
            fade: num(0.5),
            max_duration: num(0.0),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawColors {
    background: Spanned<String>,
    panel: Spanned<String>,
    text: Spanned<String>,
    muted: Spanned<String>,
    accent: Spanned<String>,
    grid: Spanned<String>,
    regions: Vec<Spanned<String>>,
}

impl Default for RawColors {
    fn default() -> Self {
        RawColors {
            background: text("#0e1016"),
            panel: text("#1a1d26"),
            text: text("#eceef4"),
            muted: text("#9097a8"),
            accent: text("#ffc53d"),
            grid: text("#ffffff"),
            regions: ["#ff8a5c", "#4dd0e1", "#b39dff", "#a5d66f"]
                .iter()
                .map(|s| text(s))
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFonts {
    title: Spanned<f64>,
    caption: Spanned<f64>,
    label: Spanned<f64>,
    tick: Spanned<f64>,
}

impl Default for RawFonts {
    fn default() -> Self {
        RawFonts {
            title: num(40.0),
            caption: num(26.0),
            label: num(22.0),
            tick: num(16.0),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawImage {
    place: Spanned<Place>,
    title: Spanned<String>,
    shifted_note: Spanned<String>,
    dim: Spanned<f64>,
}

impl Default for RawImage {
    fn default() -> Self {
        RawImage {
            place: off(),
            title: text(""),
            shifted_note: text(""),
            dim: num(0.45),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMatrix {
    place: Spanned<Place>,
    title: Spanned<String>,
    note: Spanned<String>,
    bar: Spanned<String>,
    order: Order,
    colormap: Colormap,
    scale: ScaleName,
    decades: Spanned<f64>,
    gamma: Spanned<f64>,
    range: RangeMode,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ScaleName {
    Log,
    Gamma,
    Linear,
}

impl Default for RawMatrix {
    fn default() -> Self {
        RawMatrix {
            place: off(),
            title: text(""),
            note: text(""),
            bar: text(""),
            order: Order::Both,
            colormap: Colormap::Magma,
            scale: ScaleName::Log,
            decades: num(3.0),
            gamma: num(0.5),
            range: RangeMode::Global,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawOverlay {
    place: Spanned<Place>,
    title: Spanned<String>,
    bar: Spanned<String>,
    colormap: Colormap,
    alpha: Spanned<f64>,
    range: RangeMode,
}

impl Default for RawOverlay {
    fn default() -> Self {
        RawOverlay {
            place: off(),
            title: text(""),
            bar: text(""),
            colormap: Colormap::Inferno,
            alpha: num(0.65),
            range: RangeMode::Global,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFigure {
    place: Spanned<Place>,
    input_title: Spanned<String>,
    stage_title: Spanned<String>,
    pair_title: Spanned<String>,
    single_title: Spanned<String>,
    final_title: Spanned<String>,
    bar: Spanned<String>,
    colormap: Colormap,
    alpha: Spanned<f64>,
}

impl Default for RawFigure {
    fn default() -> Self {
        RawFigure {
            place: off(),
            input_title: text(""),
            stage_title: text(""),
            pair_title: text(""),
            single_title: text(""),
            final_title: text(""),
            bar: text(""),
            colormap: Colormap::Inferno,
            alpha: num(0.7),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawClasses {
    place: Spanned<Place>,
    count: Spanned<u32>,
    input_title: Spanned<String>,
    title: Spanned<String>,
    bar: Spanned<String>,
    colormap: Colormap,
    alpha: Spanned<f64>,
}

impl Default for RawClasses {
    fn default() -> Self {
        RawClasses {
            place: off(),
            count: Spanned::new(0..0, 3),
            input_title: text(""),
            title: text(""),
            bar: text(""),
            colormap: Colormap::Inferno,
            alpha: num(0.7),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTrack {
    place: Spanned<Place>,
    stage_label: Spanned<String>,
    block_label: Spanned<String>,
}

impl Default for RawTrack {
    fn default() -> Self {
        RawTrack {
            place: off(),
            stage_label: text(""),
            block_label: text(""),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMechanism {
    grid: Spanned<u32>,
    window: Spanned<u32>,
    sigma: Spanned<f64>,
}

impl Default for RawMechanism {
    fn default() -> Self {
        RawMechanism {
            grid: Spanned::new(0..0, 8),
            window: Spanned::new(0..0, 4),
            sigma: num(1.2),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCaption {
    text: Spanned<String>,
    at: [i32; 2],
    size: Option<Spanned<f64>>,
    #[serde(default)]
    bold: bool,
    color: Option<Spanned<String>>,
    #[serde(default)]
    align: Align,
    #[serde(default)]
    during: Vec<During>,
    #[serde(default)]
    explain: Option<Explanation>,
}

impl RawTemplate {
    fn resolve(self, cx: &Cx, origin: &str) -> Result<Template> {
        let c = &self.canvas;
        let (width, height, fps) = (*c.width.get_ref(), *c.height.get_ref(), *c.fps.get_ref());
        for (v, key) in [(&c.width, "width"), (&c.height, "height")] {
            let x = *v.get_ref();
            if !(16..=8192).contains(&x) {
                return Err(cx.err(&v.span(), format!("{key} = {x} must lie in [16, 8192]")));
            }
            if x % 2 != 0 {
                return Err(cx.err(
                    &v.span(),
                    format!("{key} = {x} is odd; H.264 video needs even frame sizes"),
                ));
            }
        }
        if !(1..=240).contains(&fps) {
            return Err(cx.err(&c.fps.span(), format!("fps = {fps} must lie in [1, 240]")));
        }

        let t = &self.timing;
        let timing = Timing {
            intro: cx.seconds(&t.intro, "intro")?,
            block: cx.seconds(&t.block, "block")?,
            merge: cx.seconds(&t.merge, "merge")?,
            finale: cx.seconds(&t.finale, "finale")?,
            fill: f64::from(cx.unit(&t.fill, "fill")?),
            reorder: cx.seconds(&t.reorder, "reorder")?,
            crossfade: cx.seconds(&t.crossfade, "crossfade")?,
            fade: cx.seconds(&t.fade, "fade")?,
            max_duration: cx.seconds(&t.max_duration, "max_duration")?,
        };
        if timing.fill <= 0.0 {
            return Err(cx.err(&t.fill.span(), "fill must be above 0"));
        }
        if self.mode == Mode::Story && timing.block <= 0.0 {
            return Err(cx.err(&t.block.span(), "block must be above 0 seconds"));
        }
        if timing.max_duration > 0.0 && timing.intro + timing.finale >= timing.max_duration {
            return Err(cx.err(
                &t.max_duration.span(),
                format!(
                    "max_duration = {} leaves no time for the blocks after intro ({}) and \
                     finale ({})",
                    timing.max_duration, timing.intro, timing.finale
                ),
            ));
        }

        let hex = |s: &Spanned<String>, key: &str| {
            parse_hex(s.get_ref().trim()).ok_or_else(|| {
                cx.err(
                    &s.span(),
                    format!("{key} = '{}' is not a colour \"#rrggbb\"", s.get_ref()),
                )
            })
        };
        let k = &self.colors;
        let colors = Colors {
            background: hex(&k.background, "background")?,
            panel: hex(&k.panel, "panel")?,
            text: hex(&k.text, "text")?,
            muted: hex(&k.muted, "muted")?,
            accent: hex(&k.accent, "accent")?,
            grid: hex(&k.grid, "grid")?,
            regions: k
                .regions
                .iter()
                .map(|r| hex(r, "regions"))
                .collect::<Result<_>>()?,
        };
        if colors.regions.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{origin}: [colors] regions needs at least one colour"
            )));
        }

        let f = &self.fonts;
        let fonts = Fonts {
            title: cx.size(&f.title, "title")?,
            caption: cx.size(&f.caption, "caption")?,
            label: cx.size(&f.label, "label")?,
            tick: cx.size(&f.tick, "tick")?,
        };

        let i = &self.image;
        let image = cx
            .place(&i.place, "place", width, height)?
            .map(|place| -> Result<ImageSpec> {
                Ok(ImageSpec {
                    place,
                    title: cx.format(&i.title, "title")?,
                    shifted_note: cx.format(&i.shifted_note, "shifted_note")?,
                    dim: cx.unit(&i.dim, "dim")?,
                })
            })
            .transpose()?;

        let m = &self.matrix;
        let matrix = cx
            .place(&m.place, "place", width, height)?
            .map(|place| -> Result<MatrixSpec> {
                let scale = match m.scale {
                    ScaleName::Linear => Scale::Linear,
                    ScaleName::Gamma => {
                        let g = *m.gamma.get_ref();
                        if !(g.is_finite() && g > 0.0 && g <= 10.0) {
                            return Err(cx.err(&m.gamma.span(), "gamma must lie in (0, 10]"));
                        }
                        Scale::Gamma(g as f32)
                    }
                    ScaleName::Log => {
                        let d = *m.decades.get_ref();
                        if !(d.is_finite() && (0.5..=12.0).contains(&d)) {
                            return Err(cx.err(&m.decades.span(), "decades must lie in [0.5, 12]"));
                        }
                        Scale::Log { decades: d as f32 }
                    }
                };
                Ok(MatrixSpec {
                    place,
                    title: cx.format(&m.title, "title")?,
                    note: cx.format(&m.note, "note")?,
                    bar: cx.format(&m.bar, "bar")?,
                    order: m.order,
                    colormap: m.colormap,
                    scale,
                    range: m.range,
                })
            })
            .transpose()?;

        let overlay = |o: &RawOverlay| -> Result<Option<OverlaySpec>> {
            cx.place(&o.place, "place", width, height)?
                .map(|place| -> Result<OverlaySpec> {
                    Ok(OverlaySpec {
                        place,
                        title: cx.format(&o.title, "title")?,
                        bar: cx.format(&o.bar, "bar")?,
                        colormap: o.colormap,
                        alpha: cx.unit(&o.alpha, "alpha")?,
                        range: o.range,
                    })
                })
                .transpose()
        };
        let rollout = overlay(&self.rollout)?;
        let naive = overlay(&self.naive)?;

        let g = &self.figure;
        let figure = cx
            .place(&g.place, "place", width, height)?
            .map(|place| -> Result<FigureSpec> {
                Ok(FigureSpec {
                    place,
                    input_title: cx.format(&g.input_title, "input_title")?,
                    stage_title: cx.format(&g.stage_title, "stage_title")?,
                    pair_title: cx.format(&g.pair_title, "pair_title")?,
                    single_title: cx.format(&g.single_title, "single_title")?,
                    final_title: cx.format(&g.final_title, "final_title")?,
                    bar: cx.format(&g.bar, "bar")?,
                    colormap: g.colormap,
                    alpha: cx.unit(&g.alpha, "alpha")?,
                })
            })
            .transpose()?;

        let cl = &self.classes;
        let classes = cx
            .place(&cl.place, "place", width, height)?
            .map(|place| -> Result<ClassesSpec> {
                let count = *cl.count.get_ref() as usize;
                if !(1..=10).contains(&count) {
                    return Err(cx.err(
                        &cl.count.span(),
                        format!("count = {count} must be a number of classes in [1, 10]"),
                    ));
                }
                Ok(ClassesSpec {
                    place,
                    count,
                    input_title: cx.format(&cl.input_title, "input_title")?,
                    title: cx.format(&cl.title, "title")?,
                    bar: cx.format(&cl.bar, "bar")?,
                    colormap: cl.colormap,
                    alpha: cx.unit(&cl.alpha, "alpha")?,
                })
            })
            .transpose()?;

        let tr = &self.track;
        let track = cx
            .place(&tr.place, "place", width, height)?
            .map(|place| -> Result<TrackSpec> {
                Ok(TrackSpec {
                    place,
                    stage_label: cx.format(&tr.stage_label, "stage_label")?,
                    block_label: cx.format(&tr.block_label, "block_label")?,
                })
            })
            .transpose()?;

        let me = &self.mechanism;
        let (grid, window) = (*me.grid.get_ref() as usize, *me.window.get_ref() as usize);
        if !(2..=32).contains(&grid) || grid % 2 != 0 {
            return Err(cx.err(
                &me.grid.span(),
                format!("grid = {grid} must be an even number of tokens in [2, 32]"),
            ));
        }
        if window < 2 || window > grid || grid % window != 0 {
            return Err(cx.err(
                &me.window.span(),
                format!("window = {window} must be at least 2 and divide grid = {grid}"),
            ));
        }
        let sigma = *me.sigma.get_ref();
        if !(sigma.is_finite() && sigma > 0.0 && sigma <= 100.0) {
            return Err(cx.err(&me.sigma.span(), "sigma must lie in (0, 100] tokens"));
        }
        let mechanism = MechanismSpec {
            grid,
            window,
            sigma: sigma as f32,
        };

        let captions = self
            .caption
            .iter()
            .map(|c| -> Result<Caption> {
                Ok(Caption {
                    text: cx.format(&c.text, "text")?,
                    at: (c.at[0], c.at[1]),
                    size: match &c.size {
                        Some(s) => cx.size(s, "size")?,
                        None => fonts.caption,
                    },
                    bold: c.bold,
                    color: match &c.color {
                        Some(s) => cx.color(s, &colors, "color")?,
                        None => colors.text,
                    },
                    align: c.align,
                    during: c.during.clone(),
                    explain: c.explain,
                })
            })
            .collect::<Result<_>>()?;

        let template = Template {
            name: origin.to_string(),
            description: self.description.trim().to_string(),
            mode: self.mode,
            width,
            height,
            fps,
            timing,
            colors,
            fonts,
            image,
            matrix,
            rollout,
            naive,
            figure,
            classes,
            track,
            mechanism,
            captions,
        };
        let nothing = match template.mode {
            Mode::Figure => template.figure.is_none(),
            Mode::Classes => template.classes.is_none(),
            _ => {
                template.image.is_none()
                    && template.matrix.is_none()
                    && template.rollout.is_none()
                    && template.naive.is_none()
            }
        };
        if nothing {
            return Err(Error::InvalidArgument(format!(
                "{origin}: every panel is off; place at least one of [image], [matrix], \
                 [rollout], [naive] (or [figure] for mode = \"figure\", [classes] for mode = \"classes\")"
            )));
        }
        Ok(template)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_parses() {
        for (name, description) in Template::builtin_list() {
            assert!(!description.starts_with("(broken"), "{name}: {description}");
            let t = Template::load(name).unwrap();
            assert_eq!(t.name, name);
        }
    }

    #[test]
    fn table_and_key_are_found() {
        let text = "a = 1\n[matrix]\ncolour_map = 2\n";
        assert_eq!(table_at(text, text.find("colour").unwrap()), "[matrix]");
        assert_eq!(
            key_at(text, text.find('2').unwrap()).as_deref(),
            Some("colour_map")
        );
        assert_eq!(table_at(text, 1), "top level");
    }
}
