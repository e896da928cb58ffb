//! The options of a benchmark run and the baselines that deleted patches become.

use super::{DEFAULT_SCENES, DEFAULT_SEED, PATCH_GRID};
use crate::error::{Error, Result};
use crate::rollout::RolloutOptions;

/// The settings of a benchmark run.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluateOptions {
    /// Number of held-out scenes (at least 1).
    pub scenes: usize,
    /// Base seed: scene i is scene i of this seed.
    pub seed: u64,
    /// How the rollouts are computed (the last-block map uses the same head fusion and
    /// discard, but no residual identity).
    pub rollout: RolloutOptions,
    /// Deletion/insertion steps from fraction 0 to fraction 1 (at least 1).
    pub steps: usize,
    /// Images per batched forward pass of the deletion/insertion curves (at least 1).
    pub batch: usize,
    /// What deleted patches become (default [`Baseline::Mean`]).
    pub deletion_baseline: Baseline,
    /// What insertion reveals patches onto (default [`Baseline::Blur`]).
    pub insertion_baseline: Baseline,
}

/// A "no information" image: what a deleted patch becomes, or what insertion reveals patches
/// onto.
///
/// The defaults follow RISE (Petsiuk et al., 2018): deletion replaces patches with a constant
/// (here the mean colour), insertion starts from a blurred copy. Insertion onto the flat mean
/// colour was measured and rejected as the default: a few sharp item patches on a flat canvas
/// are far from anything the model saw. On an early checkpoint of the default model it ranked
/// the uniform map above the rollouts; on the final one (200 scenes) it barely separated them
/// (insertion AUC 0.33 against 0.30, where the blurred start gives 0.58 against 0.49).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Baseline {
    /// Zero in the preprocessed input: the normalization mean colour (a flat grey-brown).
    #[default]
    Mean,
    /// A Gaussian-blurred copy of the scene (σ = [`BLUR_SIGMA`](super::BLUR_SIGMA) canvas
    /// pixels), which keeps the colours and the layout but not the item's shape: the RISE
    /// convention for insertion.
    Blur,
}

impl Baseline {
    /// Every baseline, in the order the CLI lists them.
    pub const ALL: [Baseline; 2] = [Baseline::Mean, Baseline::Blur];

    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Mean => "mean",
            Baseline::Blur => "blur",
        }
    }

    /// What the baseline image is, for the report.
    pub fn describe(self) -> &'static str {
        match self {
            Baseline::Mean => "the mean colour",
            Baseline::Blur => "the blurred scene",
        }
    }
}

impl std::fmt::Display for Baseline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Baseline {
    type Err = Error;

    /// Parses `mean` or `blur` (case-insensitive).
    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().to_ascii_lowercase();
        Baseline::ALL
            .into_iter()
            .find(|b| b.name() == wanted)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown --baseline '{s}'; expected one of: mean, blur"
                ))
            })
    }
}

impl Default for EvaluateOptions {
    fn default() -> Self {
        EvaluateOptions {
            scenes: DEFAULT_SCENES,
            seed: DEFAULT_SEED,
            rollout: RolloutOptions::default(),
            steps: 16,
            batch: 8,
            deletion_baseline: Baseline::Mean,
            insertion_baseline: Baseline::Blur,
        }
    }
}

impl EvaluateOptions {
    /// Checks that every setting is in range.
    pub fn validate(&self) -> Result<()> {
        self.rollout.validate()?;
        if self.scenes == 0 {
            return Err(Error::InvalidArgument("--scenes must be at least 1".into()));
        }
        if self.steps == 0 || self.steps > PATCH_GRID * PATCH_GRID {
            return Err(Error::InvalidArgument(format!(
                "deletion/insertion steps must be in 1..={}, got {}",
                PATCH_GRID * PATCH_GRID,
                self.steps
            )));
        }
        if self.batch == 0 {
            return Err(Error::InvalidArgument(
                "batch size must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_parse() {
        assert_eq!(" Blur".parse::<Baseline>().unwrap(), Baseline::Blur);
        assert!("gray"
            .parse::<Baseline>()
            .unwrap_err()
            .to_string()
            .contains("mean, blur"));
    }
}
