//! Templates: what a video or still looks like — canvas, timing, where each panel goes, colours,
//! colour maps, font sizes and every caption — read from TOML.
//!
//! The built-in templates live in `templates/` and are embedded in the binary; a user's file is
//! read the same way. Parsing is strict: an unknown key, a value of the wrong type or out of
//! range, an odd canvas size or an unknown caption placeholder is an error of one line naming
//! the file, the line, the key and what would be accepted.

//!
//! Each section is declared once in [`spec`] (its fields' types, defaults and ranges); single
//! values are checked as they are read ([`fields`]), checks across keys follow ([`resolve`]),
//! and [`diagnostics`] words every failure as `origin:line: what`.

mod diagnostics;
mod fields;
mod resolve;
mod spec;

use std::path::Path;

pub use spec::{
    AttentionKind, Canvas, Caption, ClassesSpec, Colors, CompareSpec, During, FigureSpec, Fonts,
    Formats, ImageSpec, MatrixSpec, MechanismSpec, Mode, Order, OverlaySpec, Paint, RangeMode,
    ScaleKind, Timing, TrackSpec,
};

use super::format::Format;
use crate::error::{Error, Result};
use diagnostics::Cx;

/// The built-in templates: name, file name (for messages) and text.
const BUILTIN: [(&str, &str, &str); 7] = [
    (
        "explainer",
        "templates/explainer.toml",
        include_str!("../../../templates/explainer.toml"),
    ),
    (
        "conference",
        "templates/conference.toml",
        include_str!("../../../templates/conference.toml"),
    ),
    (
        "timelapse",
        "templates/timelapse.toml",
        include_str!("../../../templates/timelapse.toml"),
    ),
    (
        "mechanism",
        "templates/mechanism.toml",
        include_str!("../../../templates/mechanism.toml"),
    ),
    (
        "stages",
        "templates/stages.toml",
        include_str!("../../../templates/stages.toml"),
    ),
    (
        "classes",
        "templates/classes.toml",
        include_str!("../../../templates/classes.toml"),
    ),
    (
        "compare",
        "templates/compare.toml",
        include_str!("../../../templates/compare.toml"),
    ),
];

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
    /// The two models' boxes (compare mode only).
    pub compare: Option<CompareSpec>,
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
        let cx = Cx::new(text, origin);
        let doc: spec::Document = toml::from_str(text).map_err(|e| cx.explain(&e))?;
        doc.resolve(&cx)
    }

    /// Whether rendering needs a model's trace (story and figure modes) rather than the
    /// built-in schematic.
    pub fn needs_model(&self) -> bool {
        self.mode != Mode::Mechanism
    }

    /// The story template that draws one model's side of a compare template in a box of
    /// `size`: every panel and caption as placed (relative to the box), with the block and
    /// merge beats lasting `stretch` times as long, so that two models of different depths
    /// go through their blocks together.
    pub fn side(&self, size: (u32, u32), stretch: f64) -> Template {
        let mut t = self.clone();
        t.mode = Mode::Story;
        (t.width, t.height) = size;
        t.compare = None;
        t.timing.block *= stretch;
        t.timing.merge *= stretch;
        t
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
        out.extend(self.captions.iter().map(|c| (c.size_in(f), c.bold)));
        out
    }

    /// The literal characters of every caption and title, so glyphs can be prepared.
    pub fn literal_chars(&self) -> String {
        let sections: [Option<&dyn Formats>; 7] = [
            self.image.as_ref().map(|p| p as &dyn Formats),
            self.matrix.as_ref().map(|p| p as &dyn Formats),
            self.rollout.as_ref().map(|p| p as &dyn Formats),
            self.naive.as_ref().map(|p| p as &dyn Formats),
            self.track.as_ref().map(|p| p as &dyn Formats),
            self.classes.as_ref().map(|p| p as &dyn Formats),
            self.figure.as_ref().map(|p| p as &dyn Formats),
        ];
        let captions = self.captions.iter().map(|c| c as &dyn Formats);
        captions
            .chain(sections.into_iter().flatten())
            .flat_map(|s| s.formats())
            .map(Format::literal_chars)
            .collect()
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
        use super::diagnostics::{key_at, table_at};
        let text = "a = 1\n[matrix]\ncolour_map = 2\n";
        assert_eq!(table_at(text, text.find("colour").unwrap()), "[matrix]");
        assert_eq!(
            key_at(text, text.find('2').unwrap()).as_deref(),
            Some("colour_map")
        );
        assert_eq!(table_at(text, 1), "top level");
    }
}
