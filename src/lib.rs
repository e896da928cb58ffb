//! swin-rollout: run a Swin Transformer, record every block's window attention, and compute a
//! window-aware attention rollout from it.
//!
//! Data flows one way: image → [`preprocess`] → [`model`] → [`trace`] → [`rollout`] / [`relevance`] →
//! [`export`] (and frames → encoder). [`geometry`] describes windows for all of them.

#![warn(missing_docs)]

#[cfg(feature = "cli")]
pub mod allocator;
pub mod demo;
pub mod encode;
pub mod error;
pub mod evaluate;
pub mod explain;
pub mod export;
pub mod geometry;
pub mod model;
pub mod npz;
pub mod output;
pub mod preprocess;
#[cfg(feature = "progress")]
pub mod progress;
pub mod relevance;
pub mod render;
pub mod rng;
pub mod rollout;
pub mod scene;
pub mod shard;
pub mod trace;

pub use error::{Error, Result};
pub use explain::{ExplainOptions, Explained, Explanation};
pub use geometry::{Geometry, RollOrder};
pub use model::{Model, ModelSource};
pub use relevance::{Relevance, RelevanceMap};
pub use rollout::{HeadFusion, Map, PairMap, Rollout, RolloutOptions, SparseAttention};
pub use shard::{Shard, ShardSpec};
pub use trace::{AttentionGradients, BlockTrace, Trace, TraceArrays};
