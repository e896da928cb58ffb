//! Traces from arrays in the export layout (`geometry` and `attn_00`…, as `export` writes and
//! as Python captures them), validated as the user data they are: every problem is one line
//! naming the array and the block.

use std::path::Path;

use super::{BlockTrace, Trace};
use crate::error::{Error, Result};
use crate::geometry::{Geometry, RollOrder};
use crate::npz::{self, NpyArray, Values};

/// Input pixels per token side assumed when a window trace carries no `pixel_values`: every
/// published Swin (v1 and v2, Hugging Face and timm) embeds 4×4 patches. It only sets the input
/// size that captions show and the image is resized to.
pub const DEFAULT_PATCH: usize = 4;

/// The same for a global-attention trace (a ViT's): the published ViTs and DeiTs at 224 pixels
/// embed 16×16 patches.
pub const DEFAULT_GLOBAL_PATCH: usize = 16;

/// How far a row of attention may sum from 1 (f32 softmax over a few hundred keys is far closer).
pub const ROW_SUM_TOLERANCE: f64 = 1e-3;

/// The columns of the `geometry` table, in order.
pub const GEOMETRY_COLUMNS: [&str; 8] = [
    "stage",
    "block_in_stage",
    "height",
    "width",
    "padded_height",
    "padded_width",
    "window",
    "shift",
];

/// An owned array: its shape and row-major elements.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NdArray<T> {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Elements, row-major (C order).
    pub values: Vec<T>,
}

impl<T> NdArray<T> {
    /// An array of `shape` holding `values`.
    pub fn new(shape: Vec<usize>, values: Vec<T>) -> Self {
        NdArray { shape, values }
    }
}

/// A trace as the arrays of the export format. Only `geometry` and the attentions are needed;
/// see [`Trace::from_export`].
#[derive(Debug, Clone, Default)]
pub struct TraceArrays {
    /// `geometry`: int64 `[L, 8]`, one row per block: stage, block_in_stage, height, width,
    /// padded_height, padded_width, window, shift (see [`GEOMETRY_COLUMNS`]).
    pub geometry: NdArray<i64>,
    /// `attn_00`, `attn_01`, …: block k's softmax attention `[windows, heads, M², M²]`, windows
    /// row-major over the shifted, padded grid; for global attention (window 0)
    /// `[1, heads, T, T]` with T = prefix_tokens + H·W, the prefix tokens first, then the
    /// patches row-major.
    pub attentions: Vec<NdArray<f32>>,
    /// `logits` `[num_labels]` (or `[1, num_labels]`), if known.
    pub logits: Option<NdArray<f32>>,
    /// `pixel_values` `[3, H, W]` (or `[1, 3, H, W]`), the preprocessed input, if known.
    pub pixel_values: Option<NdArray<f32>>,
    /// `prefix_tokens`, an int64 scalar: tokens before the patches in every attention matrix
    /// (CLS and distillation tokens of a ViT: 1 or 2). Window traces have none: 0, or absent.
    pub prefix_tokens: Option<NdArray<i64>>,
    /// `roll_before_pad` ([`ROLL_BEFORE_PAD`]), an int64 scalar: 1 where the shifted blocks
    /// rolled their grid before padding it, as timm's Swins do; 0 or absent for Hugging
    /// Face's order, pad then roll (see [`roll_order`]). Where a shifted grid is padded the two
    /// orders put different tokens at a window's places.
    pub roll_before_pad: Option<NdArray<i64>>,
}

/// The name of block `k`'s attention array in the export format.
pub fn attention_name(k: usize) -> String {
    format!("attn_{k:02}")
}

impl Trace {
    /// Builds a trace from arrays in the export layout, checking everything the rollout and
    /// the renderer rely on.
    ///
    /// Without `pixel_values` the input size is the first stage's grid times
    /// [`DEFAULT_PATCH`] ([`DEFAULT_GLOBAL_PATCH`] for global attention) and
    /// [`Trace::pixel_values`] stays empty; without `logits`, [`Trace::logits`] is empty.
    ///
    /// A trace is either a ViT's, every block global (window 0) over `prefix_tokens` and the
    /// patches, or a Swin's, every block windowed and `prefix_tokens` 0 or absent.
    ///
    /// Attention rows must be probabilities: finite, non-negative, and summing to 1 within
    /// [`ROW_SUM_TOLERANCE`] over all M² keys of the window — padding keys included, since
    /// Swin (Hugging Face, timm and this crate's model) does not mask padding, so a real
    /// query's mass on real keys alone is below 1 where a window holds padding. Rows of padding
    /// queries carry nothing the rollout reads and may also be all zeros.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`], one line naming the array (`geometry`, `attn_07`, …) and
    /// the block: a geometry table that is not `[L, 8]`, a negative or inconsistent value (a
    /// padded size that is not the grid padded to a multiple of the window, a shift not below
    /// the window, stages or grids that do not follow each other through the patch merges), a
    /// missing or surplus attention array, a shape that disagrees with the geometry, or values
    /// that are not probabilities.
    pub fn from_export(arrays: TraceArrays) -> Result<Trace> {
        let roll = roll_order(arrays.roll_before_pad.as_ref())?;
        let prefix = prefix_count(arrays.prefix_tokens.as_ref())?;
        let geometries = geometries(&arrays.geometry, prefix, roll)?;
        if arrays.attentions.len() != geometries.len() {
            let n = geometries.len();
            return Err(invalid(if arrays.attentions.len() < n {
                format!(
                    "{} is missing: geometry has {n} blocks but {} attention arrays were given",
                    attention_name(arrays.attentions.len()),
                    arrays.attentions.len()
                )
            } else {
                format!(
                    "{} has no row in geometry, which has {n} blocks; pass one attention array \
                     per block",
                    attention_name(n)
                )
            }));
        }
        let blocks = geometries
            .into_iter()
            .zip(arrays.attentions)
            .enumerate()
            .map(|(k, (g, a))| block(k, g, a))
            .collect::<Result<Vec<_>>>()?;
        let (h0, w0) = (blocks[0].geometry.height, blocks[0].geometry.width);
        let logits = match arrays.logits {
            Some(l) => logits(l)?,
            None => Vec::new(),
        };
        let global = blocks[0].geometry.is_global();
        let patch = if global {
            DEFAULT_GLOBAL_PATCH
        } else {
            DEFAULT_PATCH
        };
        let (pixel_values, image_size) = match arrays.pixel_values {
            Some(p) => pixels(p, (h0, w0), global)?,
            None => (Vec::new(), (h0 * patch, w0 * patch)),
        };
        Ok(Trace {
            pixel_values,
            image_size,
            logits,
            blocks,
        })
    }

    /// Reads a trace from an `.npz` in the export layout: `geometry` and `attn_00`… are
    /// required; `logits`, `pixel_values`, `prefix_tokens` and `roll_before_pad` (int64
    /// scalar, 1 when the shifted blocks rolled their grid before padding it, as timm does) are
    /// used when there, every other array ignored.
    /// `numpy.savez(path, geometry=…, attn_00=…, …)` of a capture is enough.
    ///
    /// # Errors
    /// As [`npz::Reader`] for the file, and as [`Trace::from_export`] for its arrays, each
    /// message starting with the file's path.
    pub fn load_npz(path: &Path) -> Result<Trace> {
        let mut reader = npz::Reader::open(path)?;
        let in_file = |e: Error| match e {
            Error::InvalidArgument(m) => Error::InvalidArgument(format!("{}: {m}", path.display())),
            other => other,
        };
        let names = reader.names();
        let geometry = reader.read("geometry")?.ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{}: the trace has no `geometry` array (int64 [L, 8]); is it an export or a \
                 capture of a Swin?",
                path.display()
            ))
        })?;
        let geometry = int_array(geometry, path)?;
        let prefix_tokens = reader
            .read("prefix_tokens")?
            .map(|a| int_array(a, path))
            .transpose()?;
        let prefix = prefix_count(prefix_tokens.as_ref()).map_err(in_file)?;
        let roll_before_pad = reader
            .read(ROLL_BEFORE_PAD)?
            .map(|a| int_array(a, path))
            .transpose()?;
        let roll = roll_order(roll_before_pad.as_ref()).map_err(in_file)?;
        // Block k's attention is `attn_{k:02}`; other spellings of the same index (`attn_7`)
        // would be ambiguous, so only that one is read, and a missing one is named.
        // The table first: how many attention arrays there must be follows from it.
        let blocks = geometries(&geometry, prefix, roll).map_err(in_file)?.len();
        let mut attentions = Vec::new();
        for k in 0..blocks {
            let name = attention_name(k);
            let Some(a) = reader.read(&name)? else {
                return Err(Error::InvalidArgument(format!(
                    "{}: {name} is missing: geometry has {blocks} blocks, so attn_00 … {} are \
                     needed",
                    path.display(),
                    attention_name(blocks.saturating_sub(1))
                )));
            };
            attentions.push(float_array(a, path)?);
        }
        if let Some(extra) = names.iter().find(|n| is_surplus_attention(n, blocks)) {
            return Err(Error::InvalidArgument(format!(
                "{}: {extra} has no row in geometry, which has {blocks} blocks",
                path.display()
            )));
        }
        let mut optional = |name: &str| -> Result<Option<NdArray<f32>>> {
            reader.read(name)?.map(|a| float_array(a, path)).transpose()
        };
        let logits = optional("logits")?;
        let pixel_values = optional("pixel_values")?;
        Trace::from_export(TraceArrays {
            geometry,
            attentions,
            logits,
            pixel_values,
            prefix_tokens,
            roll_before_pad,
        })
        .map_err(in_file)
    }
}

/// Whether `name` is `attn_` + digits for a block the geometry does not have.
fn is_surplus_attention(name: &str, blocks: usize) -> bool {
    name.strip_prefix("attn_")
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<usize>().ok())
        .is_some_and(|k| k >= blocks)
}

fn float_array(a: NpyArray, path: &Path) -> Result<NdArray<f32>> {
    match a.values {
        Values::Float(v) => Ok(NdArray::new(a.shape, v)),
        Values::Int(_) => Err(Error::InvalidArgument(format!(
            "{}: `{}` has dtype {}; it must be float32 or float64",
            path.display(),
            a.name,
            a.dtype
        ))),
    }
}

fn int_array(a: NpyArray, path: &Path) -> Result<NdArray<i64>> {
    match a.values {
        Values::Int(v) => Ok(NdArray::new(a.shape, v)),
        Values::Float(_) => Err(Error::InvalidArgument(format!(
            "{}: `{}` has dtype {}; it must be int64 or int32",
            path.display(),
            a.name,
            a.dtype
        ))),
    }
}

fn invalid(message: String) -> Error {
    Error::InvalidArgument(format!("invalid trace: {message}"))
}

/// The value of `prefix_tokens`: one non-negative int64 (shape `[]` or `[1]`), 0 when absent.
fn prefix_count(array: Option<&NdArray<i64>>) -> Result<usize> {
    let Some(prefix) = array else {
        return Ok(0);
    };
    match prefix.values[..] {
        [p] => usize::try_from(p).map_err(|_| {
            invalid(format!(
                "prefix_tokens is {p}; it must be 0 (Swin), 1 (a ViT's CLS token) or 2 (CLS and \
                 distillation tokens of a distilled DeiT)"
            ))
        }),
        _ => Err(invalid(format!(
            "prefix_tokens has shape {:?}; it must be one int64 (0 for Swin, 1 or 2 for a ViT)",
            prefix.shape
        ))),
    }
}

/// The name of the optional int64 scalar that says a trace's shifted blocks rolled their grid
/// before padding it (timm's order): 1 then, 0 or absent for Hugging Face's pad-then-roll.
pub const ROLL_BEFORE_PAD: &str = "roll_before_pad";

/// The roll order that the optional [`ROLL_BEFORE_PAD`] scalar (shape `[]` or `[1]`) names:
/// [`RollOrder::PadThenRoll`] when absent or 0, [`RollOrder::RollThenPad`] when 1.
///
/// # Errors
/// [`Error::InvalidArgument`] for any other value or shape.
pub fn roll_order(array: Option<&NdArray<i64>>) -> Result<RollOrder> {
    let Some(roll) = array else {
        return Ok(RollOrder::PadThenRoll);
    };
    match roll.values[..] {
        [0] => Ok(RollOrder::PadThenRoll),
        [1] => Ok(RollOrder::RollThenPad),
        [v] => Err(invalid(format!(
            "{ROLL_BEFORE_PAD} is {v}; it must be 1 (the shifted grid is rolled, then padded: \
             timm) or 0 (padded, then rolled: Hugging Face, the default)"
        ))),
        _ => Err(invalid(format!(
            "{ROLL_BEFORE_PAD} has shape {:?}; it must be one int64 (1: roll before padding, \
             as timm; 0 or absent: pad first, as Hugging Face)",
            roll.shape
        ))),
    }
}

/// The geometry table as checked [`Geometry`]s; `prefix` tokens precede the patches of every
/// global block, and every window block rolls and pads in the order `roll`.
fn geometries(table: &NdArray<i64>, prefix: usize, roll: RollOrder) -> Result<Vec<Geometry>> {
    let rows = match table.shape.as_slice() {
        [rows, 8] if *rows > 0 && rows * 8 == table.values.len() => *rows,
        shape => {
            return Err(invalid(format!(
                "geometry has shape {shape:?}; it must be [L, 8] with L ≥ 1, one row per block: {}",
                GEOMETRY_COLUMNS.join(", ")
            )))
        }
    };
    let mut out: Vec<Geometry> = Vec::with_capacity(rows);
    for (k, row) in table.values.chunks_exact(8).enumerate() {
        let mut v = [0usize; 8];
        for (c, (&x, slot)) in row.iter().zip(&mut v).enumerate() {
            *slot = usize::try_from(x).map_err(|_| {
                invalid(format!(
                    "geometry row {k}: {} is {x}; values must be non-negative",
                    GEOMETRY_COLUMNS[c]
                ))
            })?;
        }
        let g = Geometry {
            stage: v[0],
            block: v[1],
            height: v[2],
            width: v[3],
            padded_height: v[4],
            padded_width: v[5],
            window: v[6],
            shift: v[7],
            prefix: if v[6] == 0 { prefix } else { 0 },
            roll: if v[6] == 0 {
                RollOrder::default()
            } else {
                roll
            },
        };
        // Block 0 decides, unless prefix tokens already make it a ViT's.
        let vit = prefix > 0 || out.first().map_or(g.is_global(), Geometry::is_global);
        if g.is_global() != vit {
            return Err(invalid(format!(
                "geometry row {k} (for {}): window {} in a trace whose {}; a trace is a ViT's \
                 (every window 0, global attention) or a Swin's (no window 0, prefix_tokens 0)",
                attention_name(k),
                g.window,
                if prefix > 0 {
                    format!("prefix_tokens is {prefix}")
                } else {
                    format!("block 0 has window {}", out.first().map_or(0, |f| f.window))
                }
            )));
        }
        check_geometry(k, &g, out.last())?;
        out.push(g);
    }
    Ok(out)
}

/// Checks one geometry row on its own and against the row before it.
fn check_geometry(k: usize, g: &Geometry, prev: Option<&Geometry>) -> Result<()> {
    let bad = |what: String| {
        Err(invalid(format!(
            "geometry row {k} (for {}; stage {}, block_in_stage {}): {what}",
            attention_name(k),
            g.stage,
            g.block
        )))
    };
    g.check().or_else(bad)?;
    let expected = match prev {
        None if (g.stage, g.block) != (0, 0) => {
            return bad("the first block must be stage 0, block_in_stage 0".into())
        }
        None => return Ok(()),
        Some(p) if g.stage == p.stage => {
            if g.block != p.block + 1 {
                return bad(format!(
                    "block_in_stage must be {} after block_in_stage {} of the same stage",
                    p.block + 1,
                    p.block
                ));
            }
            (p.height, p.width)
        }
        Some(p) if g.stage == p.stage + 1 => {
            if g.block != 0 {
                return bad("a stage's first block must have block_in_stage 0".into());
            }
            p.merged_size()
        }
        Some(p) => {
            return bad(format!(
                "stage {} follows stage {}; stages must follow each other",
                g.stage, p.stage
            ))
        }
    };
    if (g.height, g.width) != expected {
        return bad(format!(
            "a {}×{} grid where {}×{} was expected (the same grid within a stage, half of it, \
             rounded up, after a patch merge)",
            g.height, g.width, expected.0, expected.1
        ));
    }
    Ok(())
}

/// Block `k`'s trace from its attention array, checked against its geometry.
fn block(k: usize, g: Geometry, a: NdArray<f32>) -> Result<BlockTrace> {
    let name = attention_name(k);
    let bad = |what: String| {
        Err(invalid(format!(
            "{name} (stage {}, block_in_stage {}): {what}",
            g.stage, g.block
        )))
    };
    let area = g.window_area();
    let windows_of = if g.is_global() {
        format!("global attention over {} tokens", g.tokens())
    } else {
        format!(
            "{} windows of {}×{} tokens",
            g.windows(),
            g.window,
            g.window
        )
    };
    let heads = match a.shape.as_slice() {
        &[windows, heads, rows, cols]
            if windows == g.windows() && rows == area && cols == area && heads > 0 =>
        {
            heads
        }
        shape => {
            return bad(format!(
                "shape {shape:?} disagrees with the geometry, which needs [{}, heads, {area}, \
                 {area}] ({windows_of})",
                g.windows(),
            ))
        }
    };
    let expected = g
        .windows()
        .checked_mul(heads)
        .and_then(|n| n.checked_mul(area * area));
    if expected != Some(a.values.len()) {
        return bad(format!(
            "holds {} values where its shape {:?} needs {}",
            a.values.len(),
            a.shape,
            expected.map_or("more than fit in memory".to_string(), |n| n.to_string())
        ));
    }
    let index = g.index_image();
    for (r, row) in a.values.chunks_exact(area).enumerate() {
        let (window, head, query) = (r / (heads * area), (r / area) % heads, r % area);
        let at = || format!("window {window}, head {head}, query place {query}");
        if let Some(v) = row.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
            return bad(format!(
                "{} holds {v}; attention must be softmax probabilities (finite, ≥ 0)",
                at()
            ));
        }
        let sum: f64 = row.iter().map(|&v| f64::from(v)).sum();
        let padding = index[window * area + query] == Geometry::PADDING;
        if (sum - 1.0).abs() > ROW_SUM_TOLERANCE && !(padding && sum == 0.0) {
            return bad(format!(
                "{} sums to {sum:.6} over its {area} keys, not 1 (±{ROW_SUM_TOLERANCE}); pass \
                 softmax probabilities over all of the window's keys, padding included",
                at()
            ));
        }
    }
    Ok(BlockTrace {
        geometry: g,
        heads,
        attention: a.values,
    })
}

fn logits(l: NdArray<f32>) -> Result<Vec<f32>> {
    let ok = matches!(l.shape.as_slice(), [n] | [1, n] if *n > 0 && *n == l.values.len());
    if !ok {
        return Err(invalid(format!(
            "logits has shape {:?}; it must be [num_labels] or [1, num_labels]",
            l.shape
        )));
    }
    if let Some(v) = l.values.iter().find(|v| !v.is_finite()) {
        return Err(invalid(format!("logits holds {v}; logits must be finite")));
    }
    Ok(l.values)
}

type Pixels = (Vec<f32>, (usize, usize));

fn pixels(p: NdArray<f32>, (h0, w0): (usize, usize), global: bool) -> Result<Pixels> {
    let (h, w) = match p.shape.as_slice() {
        [3, h, w] | [1, 3, h, w] if h * w * 3 == p.values.len() && *h > 0 && *w > 0 => (*h, *w),
        shape => {
            return Err(invalid(format!(
                "pixel_values has shape {shape:?}; it must be [3, H, W] or [1, 3, H, W]"
            )))
        }
    };
    // Swin's patch embedding pads the input to a multiple of the patch: some patch p must
    // give ⌈H/p⌉ × ⌈W/p⌉ = the first stage's grid. A ViT's convolution drops the remainder:
    // ⌊H/p⌋ × ⌊W/p⌋.
    let fits = (1..=h).any(|p| {
        if global {
            h / p == h0 && w / p == w0
        } else {
            h.div_ceil(p) == h0 && w.div_ceil(p) == w0
        }
    });
    if !fits {
        return Err(invalid(format!(
            "pixel_values is {h}×{w} pixels, which no patch size turns into geometry's first \
             grid of {h0}×{w0} tokens; pass the input of this trace"
        )));
    }
    if let Some(v) = p.values.iter().find(|v| !v.is_finite()) {
        return Err(invalid(format!(
            "pixel_values holds {v}; pixels must be finite"
        )));
    }
    Ok((p.values, (h, w)))
}
