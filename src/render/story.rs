//! Everything a video shows, computed once from a trace: the input image, every block's
//! head-fused attention, the pooled rollout maps (window-aware and naive), the per-pair maps and
//! the prediction.

use image::RgbImage;

use crate::error::{Error, Result};
use crate::explain::{ExplainOptions, Explained, Explanation};
use crate::geometry::Geometry;
use crate::model::{top_k, Model, Prediction};
use crate::preprocess::{resize, Filter, Preprocessor};
use crate::relevance::{Relevance, RelevanceMap};
use crate::render::format::{Var, Vars};
use crate::render::template::{AttentionKind, Mode, Template};
use crate::rollout::{Map, PairMap, Rollout, RolloutOptions, SparseAttention};
use crate::trace::Trace;

/// The map of one stage figure tile: what a (regular, shifted) pair of blocks does on its own,
/// or a single block that has no partner (a stage of odd depth).
#[derive(Debug, Clone, PartialEq)]
pub struct StageMap {
    /// The stage.
    pub stage: usize,
    /// First and last block (trace indices); equal for a single block.
    pub blocks: (usize, usize),
    /// Mean of the rows of the blocks' Â (window-aware, with the rollout's residual), over the
    /// stage's own grid, normalized to sum 1.
    pub map: Map,
}

/// One class's relevance, for the side-by-side classes figure.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassMap {
    /// The class and its probability.
    pub prediction: Prediction,
    /// The class-specific part of its final relevance map, normalized to sum 1.
    pub map: Map,
}

/// The data of one video: what the renderer draws, independent of how it looks.
#[derive(Debug, Clone)]
pub struct Story {
    pub(crate) image: RgbImage,
    pub(crate) input_size: (usize, usize),
    pub(crate) patch: usize,
    pub(crate) geometries: Vec<Geometry>,
    pub(crate) heads: Vec<usize>,
    pub(crate) attention: Vec<SparseAttention>,
    pub(crate) pooled: Vec<Map>,
    pub(crate) naive: Vec<Map>,
    pub(crate) pairs: Vec<PairMap>,
    pub(crate) stage_maps: Vec<StageMap>,
    pub(crate) prediction: Option<Prediction>,
    /// What `pooled` and `naive` hold: the rollout, or one class's relevance.
    pub(crate) explanation: Explanation,
    /// The class relevance explains (`None` for the rollout).
    pub(crate) explained: Option<Prediction>,
    pub(crate) class_maps: Vec<ClassMap>,
    pub(crate) model: String,
    /// The architecture's name and attention style, as the model describes itself (a
    /// Swin Transformer computing W-MSA where nothing says otherwise).
    pub(crate) architecture: &'static str,
    pub(crate) attention_style: &'static str,
    pub(crate) options: RolloutOptions,
    pub(crate) schematic: bool,
}

impl Story {
    /// A story of `trace`, drawn over `image` (the input as the model saw it; any resolution
    /// with the input's aspect ratio), with the rollout computed with `options`.
    ///
    /// The matrix panel shows each block's attention as the model computed it after head
    /// fusion (`options.fusion`), with attention to padding dropped and rows renormalized, but
    /// without the residual and discard that only the rollout applies.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a trace the rollout rejects, an empty image, or an image
    /// whose aspect ratio differs from the input's.
    pub fn new(trace: &Trace, image: RgbImage, options: &RolloutOptions) -> Result<Story> {
        let rollout = Rollout::new(trace, options)?;
        let (ih, iw) = trace.image_size;
        if image.width() == 0 || image.height() == 0 || ih == 0 || iw == 0 {
            return Err(Error::InvalidArgument(
                "the story needs a non-empty image and input size".into(),
            ));
        }
        let aspect = |h: f64, w: f64| w / h;
        let (a, b) = (
            aspect(f64::from(image.height()), f64::from(image.width())),
            aspect(ih as f64, iw as f64),
        );
        if (a / b - 1.0).abs() > 0.02 {
            return Err(Error::InvalidArgument(format!(
                "the image is {}×{} but the model's input is {iw}×{ih}; pass the image as the \
                 model saw it (same aspect ratio)",
                image.width(),
                image.height()
            )));
        }
        let matrix_options = RolloutOptions {
            fusion: options.fusion,
            residual: 0.0,
            discard: 0.0,
        };
        let attention = trace
            .blocks
            .iter()
            .map(|b| SparseAttention::from_block(b, &matrix_options, false))
            .collect::<Result<Vec<_>>>()?;
        let geometries: Vec<Geometry> = trace.blocks.iter().map(|b| b.geometry).collect();
        let h0 = geometries[0].height;
        let pairs = rollout.pair_maps();
        let stage_maps = stage_maps(&rollout, &pairs);
        Ok(Story {
            image,
            input_size: (ih, iw),
            patch: ih.div_ceil(h0).max(1),
            heads: trace.blocks.iter().map(|b| b.heads).collect(),
            geometries,
            attention,
            pooled: rollout.pooled_maps(),
            naive: rollout.naive_pooled_maps(),
            pairs,
            stage_maps,
            prediction: None,
            explanation: Explanation::Rollout,
            explained: None,
            class_maps: Vec::new(),
            model: String::new(),
            architecture: "Swin Transformer",
            attention_style: "",
            options: *options,
            schematic: false,
        })
    }

    /// A story of a model's trace: the image is the model's input turned back into colours,
    /// the prediction its top class, the name the model's.
    ///
    /// # Errors
    /// As [`Story::new`].
    pub fn from_model(model: &Model, trace: &Trace, options: &RolloutOptions) -> Result<Story> {
        let image = input_image(&trace.pixel_values, trace.image_size, &model.preprocessor)?;
        let mut story = Story::new(trace, image, options)?;
        story.prediction = model.top_k(&trace.logits, 1).into_iter().next();
        story.model = model.name.clone();
        story.architecture = model.network.architecture();
        story.attention_style = model.network.attention_style();
        Ok(story)
    }

    /// A story of a trace made without this crate's model (`Trace::load_npz` of an export or
    /// of a Python capture): nothing here depends on which model family made it.
    ///
    /// It is drawn over `image` resized (bicubic, as Swin's processors do) to the trace's
    /// input size, or without one over the trace's own `pixel_values` with the ImageNet
    /// normalization of every published Swin undone. The prediction comes from the logits,
    /// named by `labels` (`class N` where there are none); without logits there is none, and
    /// captions that show it are left out.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if there is neither an image nor `pixel_values`, and as
    /// [`Story::new`].
    pub fn from_trace(
        trace: &Trace,
        image: Option<&RgbImage>,
        labels: Option<&[String]>,
        options: &RolloutOptions,
    ) -> Result<Story> {
        let (h, w) = trace.image_size;
        let image = match image {
            Some(image) => resize(image, w, h, Filter::Bicubic),
            None if !trace.pixel_values.is_empty() => input_image(
                &trace.pixel_values,
                trace.image_size,
                &Preprocessor::imagenet((h, w)),
            )?,
            None => {
                return Err(Error::InvalidArgument(
                    "the trace holds no pixel_values to draw; give the image it was made from \
                     (--image)"
                        .into(),
                ))
            }
        };
        let story = Story::new(trace, image, options)?;
        if trace.logits.is_empty() {
            return Ok(story);
        }
        let named: Vec<String>;
        let labels = match labels {
            Some(l) => l,
            None => {
                named = (0..trace.logits.len())
                    .map(|i| format!("class {i}"))
                    .collect();
                &named
            }
        };
        Ok(story.with_logits(&trace.logits, labels))
    }

    /// The story `template` needs of an imported trace, as [`Story::from_trace`]; `explain`
    /// must be the rollout, which is all that attention alone gives.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for relevance or the classes figure (both need the model's
    /// backward pass, which a trace does not hold) and for the schematic (it shows no trace),
    /// and as [`Story::from_trace`].
    pub fn for_trace_template(
        trace: &Trace,
        image: Option<&RgbImage>,
        labels: Option<&[String]>,
        template: &Template,
        options: &RolloutOptions,
        explain: &ExplainOptions,
    ) -> Result<Story> {
        let refuse = |why: &str| Err(Error::InvalidArgument(why.to_string()));
        if explain.explanation == Explanation::Relevance {
            return refuse(
                "--explain relevance needs the model's backward pass, which a trace does not \
                 hold; render the trace's rollout, or the image with its model instead of --trace",
            );
        }
        match template.mode {
            Mode::Classes => refuse(&format!(
                "template '{}' shows each top class's relevance, which needs the model's \
                 backward pass; render the image with its model instead of --trace",
                template.name
            )),
            Mode::Mechanism => refuse(&format!(
                "template '{}' draws the schematic, which shows no trace; leave out --trace",
                template.name
            )),
            _ => Story::from_trace(trace, image, labels, options),
        }
    }

    /// A story of what [`Explained::new`] computed: the rollout as [`Story::from_model`], or
    /// with relevance, its maps in place of the rollout's (see [`Story::with_relevance`]).
    ///
    /// # Errors
    /// As [`Story::new`].
    pub fn from_explained(
        model: &Model,
        explained: &Explained,
        options: &RolloutOptions,
    ) -> Result<Story> {
        let story = Story::from_model(model, &explained.trace, options)?;
        Ok(match &explained.relevance {
            Some(relevance) => {
                let class = top_k(&explained.trace.logits, model.labels(), usize::MAX)
                    .into_iter()
                    .find(|p| p.index == relevance.target());
                story.with_relevance(relevance, class)
            }
            None => story,
        })
    }

    /// Shows `relevance` instead of the rollout: every map panel and the figure's final map
    /// show the class-specific part of the relevance after each block (the map minus what the
    /// identities and merges alone give), normalized to sum 1, window-aware and naive; captions
    /// name `class`.
    pub fn with_relevance(mut self, relevance: &Relevance, class: Option<Prediction>) -> Story {
        let parts = |maps: Vec<RelevanceMap>| -> Vec<Map> {
            maps.into_iter().map(|m| class_part_share(&m)).collect()
        };
        self.pooled = parts(relevance.maps());
        self.naive = parts(relevance.naive_maps());
        self.explanation = Explanation::Relevance;
        self.explained = class.or_else(|| {
            Some(Prediction {
                index: relevance.target(),
                label: format!("class {}", relevance.target()),
                probability: f32::NAN,
            })
        });
        self
    }

    /// The story a template needs of `image` through `model`: the rollout or the relevance
    /// `explain` asks for and, for a classes figure, the relevance of each top class.
    ///
    /// # Errors
    /// As [`Explained::new`] and [`Story::new`].
    pub fn for_template(
        model: &Model,
        image: &RgbImage,
        template: &Template,
        options: &RolloutOptions,
        explain: &ExplainOptions,
    ) -> Result<Story> {
        let explained = Explained::from_rgb(model, image, explain)?;
        let story = Story::from_explained(model, &explained, options)?;
        Ok(match (&template.classes, template.mode) {
            (Some(spec), Mode::Classes) => {
                let maps = class_maps(model, &explained.trace, spec.count)?;
                story.with_class_maps(maps)
            }
            _ => story,
        })
    }

    /// Sets the classes the classes figure shows side by side, each with its relevance.
    pub fn with_class_maps(mut self, maps: Vec<ClassMap>) -> Story {
        self.class_maps = maps;
        self
    }

    /// The classes of the classes figure.
    pub fn class_maps(&self) -> &[ClassMap] {
        &self.class_maps
    }

    /// The label `{class}` shows: the class relevance explains, else the top prediction.
    pub fn explained_label(&self) -> &str {
        self.explained
            .as_ref()
            .or(self.prediction.as_ref())
            .map_or("—", |p| p.label.as_str())
    }

    /// What `{explanation}` shows: "rollout", or "relevance for “CLASS”".
    pub fn explanation_name(&self) -> String {
        match self.explanation {
            Explanation::Rollout => "rollout".into(),
            Explanation::Relevance => format!("relevance for “{}”", self.explained_label()),
        }
    }

    /// Sets the prediction the captions show.
    pub fn with_prediction(mut self, prediction: Prediction) -> Story {
        self.prediction = Some(prediction);
        self
    }

    /// Sets the prediction from logits and class names (most probable class).
    pub fn with_logits(mut self, logits: &[f32], labels: &[String]) -> Story {
        self.prediction = top_k(logits, labels, 1).into_iter().next();
        self
    }

    /// Sets the model name the captions show.
    pub fn with_model_name(mut self, name: impl Into<String>) -> Story {
        self.model = name.into();
        self
    }

    /// The image drawn under the panels.
    pub fn image(&self) -> &RgbImage {
        &self.image
    }

    /// Every block's geometry, in forward order.
    pub fn geometries(&self) -> &[Geometry] {
        &self.geometries
    }

    /// Block `k`'s head-fused attention (what the matrix panel shows).
    pub fn attention(&self, k: usize) -> Option<&SparseAttention> {
        self.attention.get(k)
    }

    /// The pooled window-aware rollout after each block, over the first stage's grid.
    pub fn pooled_maps(&self) -> &[Map] {
        &self.pooled
    }

    /// The pooled naive (shift-unaware) rollout after each block.
    pub fn naive_maps(&self) -> &[Map] {
        &self.naive
    }

    /// The per-pair maps of each stage.
    pub fn pair_maps(&self) -> &[PairMap] {
        &self.pairs
    }

    /// The stage figure's maps: every pair, and every block without a partner, in block order.
    pub fn stage_maps(&self) -> &[StageMap] {
        &self.stage_maps
    }

    /// The top prediction, if known.
    pub fn prediction(&self) -> Option<&Prediction> {
        self.prediction.as_ref()
    }

    /// Which attention the trace holds: every block's is of the same kind.
    pub fn attention_kind(&self) -> AttentionKind {
        if self.geometries.first().is_some_and(Geometry::is_global) {
            AttentionKind::Global
        } else {
            AttentionKind::Window
        }
    }

    /// Whether the attention is synthetic (mechanism mode).
    pub fn is_schematic(&self) -> bool {
        self.schematic
    }

    /// Input pixels per token side in the first stage.
    pub fn patch(&self) -> usize {
        self.patch
    }

    /// Whether this story has a value for `var`: the model's name, the prediction and the
    /// class explained may be unknown (a trace without logits, or made by an unnamed model).
    /// Captions showing an unknown value are left out rather than drawn with a blank.
    pub fn knows(&self, var: Var) -> bool {
        let class = self.explained.is_some() || self.prediction.is_some();
        match var {
            Var::Model => !self.model.is_empty(),
            Var::Label | Var::Probability => self.prediction.is_some(),
            Var::Class => class,
            Var::Explanation => class || self.explanation == Explanation::Rollout,
            _ => true,
        }
    }

    /// The caption placeholders that never change within a video.
    pub(crate) fn base_vars(&self) -> Vars {
        let (label, probability) = match &self.prediction {
            Some(p) => (p.label.clone(), format!("{:.1}%", p.probability * 100.0)),
            None => ("—".into(), "—".into()),
        };
        Vars {
            model: self.model.clone(),
            architecture: self.architecture.to_string(),
            attention_style: self.attention_style.to_string(),
            label,
            probability,
            stages: self.geometries.last().map_or(0, |g| g.stage + 1),
            layers: self.geometries.len(),
            fusion: self.options.fusion.to_string(),
            residual: self.options.residual,
            image_height: self.input_size.0,
            image_width: self.input_size.1,
            class: self.explained_label().to_string(),
            explanation: self.explanation_name(),
            ..Vars::default()
        }
    }

    /// Fills the block-dependent placeholders for block `k`.
    pub(crate) fn set_block_vars(&self, v: &mut Vars, k: usize) {
        let g = &self.geometries[k];
        v.stage = g.stage + 1;
        v.block = g.block + 1;
        v.blocks = self
            .geometries
            .iter()
            .filter(|o| o.stage == g.stage)
            .count();
        v.layer = k + 1;
        v.shift = g.shift;
        v.window = g.window;
        v.windows = g.windows();
        v.prefix = g.prefix;
        v.global = g.is_global();
        v.height = g.height;
        v.width = g.width;
        v.heads = self.heads.get(k).copied().unwrap_or(0);
        v.patch = self.patch << g.stage;
        let next = self.geometries.get(k + 1).filter(|n| n.stage != g.stage);
        (v.next_height, v.next_width) = match next {
            Some(n) => (n.height, n.width),
            None => g.merged_size(),
        };
    }
}

/// The relevance of each of the `count` most probable classes of `trace` (one backward pass
/// each), most probable first.
///
/// # Errors
/// As [`Model::trace_pixels_with_gradients`].
pub fn class_maps(model: &Model, trace: &Trace, count: usize) -> Result<Vec<ClassMap>> {
    if !model.has_classifier() {
        return Err(model.no_classifier(
            "the classes template shows the relevance of its top classes; use another template",
        ));
    }
    model
        .top_k(&trace.logits, count)
        .into_iter()
        .map(|prediction| {
            let (t, gradients) = model
                .trace_pixels_with_gradients(trace.pixel_values.clone(), Some(prediction.index))?;
            let relevance = Relevance::new(&t, &gradients)?;
            let last = relevance.maps().pop().ok_or_else(|| {
                Error::InvalidArgument("the trace holds no blocks to explain".into())
            })?;
            Ok(ClassMap {
                prediction,
                map: class_part_share(&last),
            })
        })
        .collect()
}

/// The class-specific part of a relevance map as shares summing to 1 (all zeros stay zeros).
pub fn class_part_share(m: &RelevanceMap) -> Map {
    let sum: f64 = m
        .class_part
        .values
        .iter()
        .map(|&v| f64::from(v.max(0.0)))
        .sum();
    let scale = if sum > 0.0 { 1.0 / sum } else { 0.0 };
    Map {
        height: m.class_part.height,
        width: m.class_part.width,
        values: m
            .class_part
            .values
            .iter()
            .map(|&v| (f64::from(v.max(0.0)) * scale) as f32)
            .collect(),
    }
}

/// Pair maps plus a map for each block that is in no pair, in block order.
fn stage_maps(rollout: &Rollout, pairs: &[PairMap]) -> Vec<StageMap> {
    let mut out: Vec<StageMap> = pairs
        .iter()
        .map(|p| StageMap {
            stage: p.stage,
            blocks: p.blocks,
            map: p.stage_map.clone(),
        })
        .collect();
    for (k, a) in rollout.blocks().iter().enumerate() {
        if pairs.iter().any(|p| p.blocks.0 == k || p.blocks.1 == k) {
            continue;
        }
        let g = a.geometry();
        // As the rollout reads it: a ViT's CLS row over the patches, else the rows' mean.
        let v = a.vec_mul(&g.readout_row());
        let v = &v[g.prefix..];
        let sum: f64 = v.iter().sum();
        out.push(StageMap {
            stage: g.stage,
            blocks: (k, k),
            map: Map {
                height: g.height,
                width: g.width,
                values: v
                    .iter()
                    .map(|x| (x / sum.max(f64::MIN_POSITIVE)) as f32)
                    .collect(),
            },
        });
    }
    out.sort_by_key(|m| m.blocks.0);
    out
}

/// The preprocessed input `[3, H, W]` turned back into 8-bit colours by undoing
/// `preprocessor`'s normalization.
///
/// # Errors
/// [`Error::InvalidArgument`] if `pixels` does not hold `3·H·W` values.
pub fn input_image(
    pixels: &[f32],
    size: (usize, usize),
    preprocessor: &Preprocessor,
) -> Result<RgbImage> {
    let (h, w) = size;
    if pixels.len() != 3 * h * w || h == 0 || w == 0 {
        return Err(Error::InvalidArgument(format!(
            "the trace's input holds {} values, not 3×{h}×{w}",
            pixels.len()
        )));
    }
    let rescale = if preprocessor.rescale > 0.0 {
        preprocessor.rescale
    } else {
        1.0 / 255.0
    };
    let mut img = RgbImage::new(w as u32, h as u32);
    for (i, px) in img.pixels_mut().enumerate() {
        for c in 0..3 {
            let v = (pixels[c * h * w + i] * preprocessor.std[c] + preprocessor.mean[c]) / rescale;
            px.0[c] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    Ok(img)
}
