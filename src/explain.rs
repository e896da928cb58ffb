//! Which explanation a user asked for — the rollout (where information flows, the same for
//! every class) or the relevance of one class (why the model says it) — and running a model
//! for it.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::relevance::Relevance;
use crate::trace::Trace;

/// An explanation method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Explanation {
    /// The window-aware attention rollout.
    #[default]
    Rollout,
    /// The class-specific, gradient-weighted window-aware relevance.
    Relevance,
}

impl Explanation {
    /// Every method, in the order the CLI lists them.
    pub const ALL: [Explanation; 2] = [Explanation::Rollout, Explanation::Relevance];

    /// The name used on the command line and in captions.
    pub fn name(self) -> &'static str {
        match self {
            Explanation::Rollout => "rollout",
            Explanation::Relevance => "relevance",
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Explanation {
    type Err = Error;

    /// Parses `rollout` or `relevance` (case-insensitive).
    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().to_ascii_lowercase();
        Explanation::ALL
            .into_iter()
            .find(|e| e.name() == wanted)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown --explain '{s}'; expected rollout or relevance"
                ))
            })
    }
}

/// What to explain: the method and, for relevance, the class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExplainOptions {
    /// The method (`--explain`).
    pub explanation: Explanation,
    /// The class relevance explains, as a label or an index (`--class`); `None`: the top
    /// prediction.
    pub class: Option<String>,
}

impl ExplainOptions {
    /// Checks the combination before any work: a class makes sense only for relevance.
    pub fn validate(&self) -> Result<()> {
        if self.class.is_some() && self.explanation == Explanation::Rollout {
            return Err(Error::InvalidArgument(
                "--class picks the class that --explain relevance explains; the rollout is the \
                 same for every class: add --explain relevance"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// A model's trace of one image and, when asked for, the relevance of one class.
#[derive(Debug, Clone)]
pub struct Explained {
    /// What the forward pass recorded.
    pub trace: Trace,
    /// The relevance of the class explained (`None` for the rollout).
    pub relevance: Option<Relevance>,
}

impl Explained {
    /// Runs `model` on a preprocessed image (`[3, H, W]`), forward only for the rollout,
    /// forward and back for relevance.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown class (see [`Model::class_index`]) or an
    /// invalid combination of options; model errors as [`Model::trace_pixels`].
    pub fn new(model: &Model, pixel_values: Vec<f32>, options: &ExplainOptions) -> Result<Self> {
        options.validate()?;
        match options.explanation {
            Explanation::Rollout => Ok(Explained {
                trace: model.trace_pixels(pixel_values)?,
                relevance: None,
            }),
            Explanation::Relevance => {
                let target = options
                    .class
                    .as_deref()
                    .map(|c| model.class_index(c))
                    .transpose()?;
                let (trace, gradients) = model.trace_pixels_with_gradients(pixel_values, target)?;
                let relevance = Relevance::new(&trace, &gradients)?;
                Ok(Explained {
                    trace,
                    relevance: Some(relevance),
                })
            }
        }
    }

    /// [`Explained::new`] on an RGB image, preprocessed as the model expects.
    ///
    /// # Errors
    /// As [`Explained::new`].
    pub fn from_rgb(
        model: &Model,
        image: &image::RgbImage,
        options: &ExplainOptions,
    ) -> Result<Self> {
        Explained::new(model, model.preprocessor.apply(image), options)
    }
}
