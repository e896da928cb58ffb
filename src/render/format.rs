//! Caption format strings: text with `{placeholder}`s filled per frame.
//!
//! Strings are parsed once, when the template is loaded, so an unknown placeholder is an
//! error before anything renders, and a frame only concatenates pieces. `{{` and `}}` stand for
//! literal braces.

use std::fmt::Write as _;

/// A value a caption can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    /// The model's name or path.
    Model,
    /// The architecture: "Swin Transformer", "Swin Transformer V2".
    Architecture,
    /// The top prediction's class name.
    Label,
    /// The top prediction's probability, as a percentage.
    Probability,
    /// Stage number, from 1.
    Stage,
    /// Number of stages.
    Stages,
    /// Block number within its stage, from 1.
    Block,
    /// Number of blocks in the current stage.
    Blocks,
    /// Block number over the whole network, from 1.
    Layer,
    /// Number of blocks in the network.
    Layers,
    /// The block's cyclic shift in tokens (0 for regular blocks).
    Shift,
    /// The window side M in tokens.
    Window,
    /// Number of windows in the block.
    Windows,
    /// The number of windows with its noun: "1 window", "16 windows".
    WindowCount,
    /// The prefix tokens before the patches with their noun: "1 prefix token" for a ViT
    /// (CLS), "2 prefix tokens" for a distilled DeiT.
    Prefix,
    /// Token rows of the stage.
    Height,
    /// Token columns of the stage.
    Width,
    /// Tokens of the block: H·W, plus the prefix tokens (CLS, distillation) of a ViT.
    Tokens,
    /// Attention heads of the block.
    Heads,
    /// "W-MSA" for regular blocks, "SW-MSA" for shifted ones ("cosine W-MSA", "cosine
    /// SW-MSA" for Swin V2's scaled cosine attention).
    Attention,
    /// The window being filled, from 1.
    Filling,
    /// The token (raster index over the stage's grid, from 0) of the query being filled.
    Query,
    /// How many queries of the block are filled so far.
    Filled,
    /// Token rows after the coming patch merge.
    NextHeight,
    /// Token columns after the coming patch merge.
    NextWidth,
    /// Tokens after the coming patch merge.
    NextTokens,
    /// "token order" or "window order": how the matrix panel orders its rows and columns.
    Order,
    /// Head fusion of the rollout ("mean", "max", "min").
    Fusion,
    /// Residual weight of the rollout.
    Residual,
    /// Input pixels per token side in this stage.
    Patch,
    /// First block (network-wide number) of a figure column.
    First,
    /// Last block (network-wide number) of a figure column.
    Last,
    /// Input height in pixels.
    ImageHeight,
    /// Input width in pixels.
    ImageWidth,
    /// The class explained: the top prediction for the rollout, `--class` for relevance.
    Class,
    /// What the maps show: "rollout", or "relevance for “CLASS”".
    Explanation,
}

impl Var {
    /// Every placeholder with its name, in the order error messages list them.
    pub const ALL: [(Var, &'static str); 36] = [
        (Var::Model, "model"),
        (Var::Architecture, "architecture"),
        (Var::Label, "label"),
        (Var::Probability, "probability"),
        (Var::Stage, "stage"),
        (Var::Stages, "stages"),
        (Var::Block, "block"),
        (Var::Blocks, "blocks"),
        (Var::Layer, "layer"),
        (Var::Layers, "layers"),
        (Var::Shift, "shift"),
        (Var::Window, "window"),
        (Var::Windows, "windows"),
        (Var::WindowCount, "window_count"),
        (Var::Prefix, "prefix_tokens"),
        (Var::Height, "height"),
        (Var::Width, "width"),
        (Var::Tokens, "tokens"),
        (Var::Heads, "heads"),
        (Var::Attention, "attention"),
        (Var::Filling, "filling"),
        (Var::Query, "query"),
        (Var::Filled, "filled"),
        (Var::NextHeight, "next_height"),
        (Var::NextWidth, "next_width"),
        (Var::NextTokens, "next_tokens"),
        (Var::Order, "order"),
        (Var::Fusion, "fusion"),
        (Var::Residual, "residual"),
        (Var::Patch, "patch"),
        (Var::First, "first"),
        (Var::Last, "last"),
        (Var::ImageHeight, "image_height"),
        (Var::ImageWidth, "image_width"),
        (Var::Class, "class"),
        (Var::Explanation, "explanation"),
    ];

    /// The placeholder's name, without braces.
    pub fn name(self) -> &'static str {
        Var::ALL
            .iter()
            .find(|(v, _)| *v == self)
            .map_or("?", |(_, n)| n)
    }

    fn from_name(name: &str) -> Option<Var> {
        Var::ALL.iter().find(|(_, n)| *n == name).map(|(v, _)| *v)
    }
}

/// The values of every placeholder for one frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vars {
    /// See [`Var::Model`].
    pub model: String,
    /// See [`Var::Architecture`].
    pub architecture: String,
    /// What [`Var::Attention`] puts before "W-MSA" ("" or "cosine ").
    pub attention_style: String,
    /// See [`Var::Label`].
    pub label: String,
    /// See [`Var::Probability`] (already formatted).
    pub probability: String,
    /// See [`Var::Stage`].
    pub stage: usize,
    /// See [`Var::Stages`].
    pub stages: usize,
    /// See [`Var::Block`].
    pub block: usize,
    /// See [`Var::Blocks`].
    pub blocks: usize,
    /// See [`Var::Layer`].
    pub layer: usize,
    /// See [`Var::Layers`].
    pub layers: usize,
    /// See [`Var::Shift`].
    pub shift: usize,
    /// See [`Var::Window`].
    pub window: usize,
    /// See [`Var::Windows`].
    pub windows: usize,
    /// Prefix tokens (CLS, distillation) before the grid's tokens: 0 for Swin.
    pub prefix: usize,
    /// Whether the block attends globally (a ViT's), not in windows.
    pub global: bool,
    /// See [`Var::Height`].
    pub height: usize,
    /// See [`Var::Width`].
    pub width: usize,
    /// See [`Var::Heads`].
    pub heads: usize,
    /// See [`Var::Filling`].
    pub filling: usize,
    /// See [`Var::Query`].
    pub query: usize,
    /// See [`Var::Filled`].
    pub filled: usize,
    /// See [`Var::NextHeight`].
    pub next_height: usize,
    /// See [`Var::NextWidth`].
    pub next_width: usize,
    /// Whether the matrix is in window order (see [`Var::Order`]).
    pub window_order: bool,
    /// See [`Var::Fusion`].
    pub fusion: String,
    /// See [`Var::Residual`].
    pub residual: f32,
    /// See [`Var::Patch`].
    pub patch: usize,
    /// See [`Var::First`].
    pub first: usize,
    /// See [`Var::Last`].
    pub last: usize,
    /// See [`Var::ImageHeight`].
    pub image_height: usize,
    /// See [`Var::ImageWidth`].
    pub image_width: usize,
    /// See [`Var::Class`].
    pub class: String,
    /// See [`Var::Explanation`].
    pub explanation: String,
}

impl Vars {
    fn write(&self, var: Var, out: &mut String) {
        // Writing into a String cannot fail.
        let _ = match var {
            Var::Model => write!(out, "{}", self.model),
            Var::Architecture => write!(out, "{}", self.architecture),
            Var::Label => write!(out, "{}", self.label),
            Var::Probability => write!(out, "{}", self.probability),
            Var::Stage => write!(out, "{}", self.stage),
            Var::Stages => write!(out, "{}", self.stages),
            Var::Block => write!(out, "{}", self.block),
            Var::Blocks => write!(out, "{}", self.blocks),
            Var::Layer => write!(out, "{}", self.layer),
            Var::Layers => write!(out, "{}", self.layers),
            Var::Shift => write!(out, "{}", self.shift),
            Var::Window => write!(out, "{}", self.window),
            Var::Windows => write!(out, "{}", self.windows),
            Var::WindowCount => match self.windows {
                1 => write!(out, "1 window"),
                n => write!(out, "{n} windows"),
            },
            Var::Prefix => match self.prefix {
                1 => write!(out, "1 prefix token"),
                n => write!(out, "{n} prefix tokens"),
            },
            Var::Height => write!(out, "{}", self.height),
            Var::Width => write!(out, "{}", self.width),
            Var::Tokens => write!(out, "{}", self.prefix + self.height * self.width),
            Var::Heads => write!(out, "{}", self.heads),
            Var::Attention => write!(
                out,
                "{}{}",
                self.attention_style,
                match (self.global, self.shift > 0) {
                    (true, _) => "global MSA",
                    (false, true) => "SW-MSA",
                    (false, false) => "W-MSA",
                }
            ),
            Var::Filling => write!(out, "{}", self.filling),
            Var::Query => write!(out, "{}", self.query),
            Var::Filled => write!(out, "{}", self.filled),
            Var::NextHeight => write!(out, "{}", self.next_height),
            Var::NextWidth => write!(out, "{}", self.next_width),
            Var::NextTokens => write!(out, "{}", self.next_height * self.next_width),
            Var::Order => write!(
                out,
                "{}",
                if self.window_order {
                    "window order"
                } else {
                    "token order"
                }
            ),
            Var::Fusion => write!(out, "{}", self.fusion),
            Var::Residual => write!(out, "{}", self.residual),
            Var::Patch => write!(out, "{}", self.patch),
            Var::First => write!(out, "{}", self.first),
            Var::Last => write!(out, "{}", self.last),
            Var::ImageHeight => write!(out, "{}", self.image_height),
            Var::ImageWidth => write!(out, "{}", self.image_width),
            Var::Class => write!(out, "{}", self.class),
            Var::Explanation => write!(out, "{}", self.explanation),
        };
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Var(Var),
}

/// A parsed caption: literal text and placeholders.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Format {
    pieces: Vec<Piece>,
}

/// Why a format string does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// `{name}` with a name no placeholder has.
    Unknown(String),
    /// A `{` without its `}`, or a lone `}`.
    Unbalanced,
}

impl Format {
    /// Parses `text`.
    ///
    /// # Errors
    /// [`FormatError::Unknown`] for a placeholder that does not exist (names are listed in
    /// [`Var::ALL`]); [`FormatError::Unbalanced`] for a stray brace.
    pub fn parse(text: &str) -> Result<Format, FormatError> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some('{') | None => return Err(FormatError::Unbalanced),
                            Some(c) => name.push(c),
                        }
                    }
                    let var = Var::from_name(name.trim())
                        .ok_or_else(|| FormatError::Unknown(name.clone()))?;
                    if !lit.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Var(var));
                }
                '}' => return Err(FormatError::Unbalanced),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Text(lit));
        }
        Ok(Format { pieces })
    }

    /// The text with every placeholder filled from `vars`.
    pub fn render(&self, vars: &Vars) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(v) => vars.write(*v, &mut out),
            }
        }
        out
    }

    /// The placeholders it shows, in order.
    pub fn vars(&self) -> impl Iterator<Item = Var> + '_ {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var(v) => Some(*v),
            Piece::Text(_) => None,
        })
    }

    /// Whether there is nothing to draw.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The literal characters, so glyphs for them can be prepared.
    pub fn literal_chars(&self) -> String {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Text(t) => Some(t.as_str()),
                Piece::Var(_) => None,
            })
            .collect()
    }
}

/// The names of every placeholder, comma-separated, for error messages.
pub fn placeholder_names() -> String {
    Var::ALL
        .iter()
        .map(|(_, n)| format!("{{{n}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_fill_and_braces_escape() {
        let f = Format::parse("stage {stage} · {height}×{width} {{x}}").unwrap();
        let vars = Vars {
            stage: 2,
            height: 28,
            width: 28,
            ..Default::default()
        };
        assert_eq!(f.render(&vars), "stage 2 · 28×28 {x}");
    }

    #[test]
    fn unknown_and_unbalanced_are_errors() {
        assert_eq!(
            Format::parse("a {colour} b"),
            Err(FormatError::Unknown("colour".into()))
        );
        assert_eq!(Format::parse("a {stage"), Err(FormatError::Unbalanced));
        assert_eq!(Format::parse("a } b"), Err(FormatError::Unbalanced));
    }
}
