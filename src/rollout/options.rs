//! The settings of a rollout and their validation.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// How the heads of a block are fused into one attention matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HeadFusion {
    /// The mean over heads (the usual choice).
    #[default]
    Mean,
    /// The largest value over heads.
    Max,
    /// The smallest value over heads.
    Min,
}

impl HeadFusion {
    /// Every fusion, in the order the CLI lists them.
    pub const ALL: [HeadFusion; 3] = [HeadFusion::Mean, HeadFusion::Max, HeadFusion::Min];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            HeadFusion::Mean => "mean",
            HeadFusion::Max => "max",
            HeadFusion::Min => "min",
        }
    }
}

impl fmt::Display for HeadFusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HeadFusion {
    type Err = Error;

    /// Parses `mean`, `max` or `min` (case-insensitive).
    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().to_ascii_lowercase();
        HeadFusion::ALL
            .into_iter()
            .find(|f| f.name() == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = HeadFusion::ALL.iter().map(|f| f.name()).collect();
                Error::InvalidArgument(format!(
                    "unknown --head-fusion '{s}'; expected one of: {}",
                    names.join(", ")
                ))
            })
    }
}

/// The settings that turn a block's attention into the matrix Â that rollout multiplies.
///
/// Per block, in this order: fuse the heads; drop the attention paid to padding and
/// renormalize each row; discard the lowest `discard` fraction of each row (never the diagonal)
/// and renormalize; mix in the identity, Â = (1 − residual)·A + residual·I.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RolloutOptions {
    /// How heads are fused (`--head-fusion`).
    pub fusion: HeadFusion,
    /// Weight α of the identity standing for the residual connection, in [0, 1]
    /// (`--residual`, default 0.5).
    pub residual: f32,
    /// Fraction of each row's entries to zero, in [0, 1) (`--discard`, default 0).
    pub discard: f32,
}

impl Default for RolloutOptions {
    fn default() -> Self {
        RolloutOptions {
            fusion: HeadFusion::Mean,
            residual: 0.5,
            discard: 0.0,
        }
    }
}

impl RolloutOptions {
    /// Checks that every setting is in range, naming the command-line flag that is not.
    pub fn validate(&self) -> Result<()> {
        if !self.residual.is_finite() || !(0.0..=1.0).contains(&self.residual) {
            return Err(Error::InvalidArgument(format!(
                "--residual must be a number in [0, 1], got {}",
                self.residual
            )));
        }
        // discard = 1 would zero whole rows and leave nothing to renormalize.
        if !self.discard.is_finite() || !(0.0..1.0).contains(&self.discard) {
            return Err(Error::InvalidArgument(format!(
                "--discard must be a number in [0, 1) (1 would discard whole rows), got {}",
                self.discard
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fusion_names_round_trip() {
        for f in HeadFusion::ALL {
            assert_eq!(f.to_string().parse::<HeadFusion>().unwrap(), f);
        }
        assert_eq!(" MAX ".parse::<HeadFusion>().unwrap(), HeadFusion::Max);
    }

    #[test]
    fn unknown_fusion_lists_the_valid_ones() {
        let msg = "median".parse::<HeadFusion>().unwrap_err().to_string();
        assert!(msg.contains("--head-fusion"), "{msg}");
        assert!(msg.contains("mean, max, min"), "{msg}");
    }

    #[test]
    fn defaults_are_valid() {
        assert!(RolloutOptions::default().validate().is_ok());
    }
}
