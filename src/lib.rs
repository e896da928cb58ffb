//! swin-rollout: run a Swin Transformer, record every block's window attention, and compute a
//! window-aware attention rollout from it.
//!
//! Data flows one way: image → [`model`] → [`trace`] → [`rollout`] → frames → encoder.

pub mod error;
pub mod geometry;
pub mod trace;

pub use error::{Error, Result};
pub use geometry::Geometry;
pub use trace::{BlockTrace, Trace};
pub mod model;
pub mod preprocess;

pub use model::{Model, ModelSource};
pub mod cli;
pub mod export;
pub mod npz;
pub mod output;
