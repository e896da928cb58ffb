//! The explanations under test, and the values kept per explanation.

use std::ops::{Index, IndexMut};

use super::metrics::normalized;
use super::{EvaluateOptions, DOMAIN_RANDOM_MAP};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::relevance::{Relevance, RelevanceMap};
use crate::rollout::{Map, Rollout, RolloutOptions, SparseAttention};
use crate::scene::Rng;

/// An explanation under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// The window-aware pooled rollout after the last block.
    WindowAware,
    /// The rollout with every shifted block read as unshifted.
    Naive,
    /// The class part of the window-aware relevance after the last block, for the scene's
    /// true class: the relevance map less the baseline that identities and merges alone give.
    Relevance,
    /// The same with every shifted block read as unshifted.
    NaiveRelevance,
    /// The last block's head-fused attention, pooled over its rows.
    LastBlock,
    /// A seeded random map.
    Random,
    /// The uniform map.
    Uniform,
}

/// Every method in report order with its CSV name and its table description. A new method is
/// a variant, one line here and the arm of [`explanations`] that computes its map.
const METHODS: [(Method, &str, &str); 7] = [
    (Method::WindowAware, "window-aware", "window-aware rollout"),
    (Method::Naive, "naive", "naive rollout (shifts ignored)"),
    (
        Method::Relevance,
        "relevance",
        "window-aware relevance (true class)",
    ),
    (
        Method::NaiveRelevance,
        "naive-relevance",
        "naive relevance (shifts ignored)",
    ),
    (Method::LastBlock, "last-block", "last block attention"),
    (Method::Random, "random", "random map"),
    (Method::Uniform, "uniform", "uniform map"),
];

impl Method {
    /// Every method, in report order.
    pub const ALL: [Method; METHODS.len()] = {
        let mut all = [Method::WindowAware; METHODS.len()];
        let mut i = 0;
        while i < METHODS.len() {
            all[i] = METHODS[i].0;
            i += 1;
        }
        all
    };

    /// Its place in [`Method::ALL`].
    fn position(self) -> usize {
        // Every method is in the table (see the test below), so the fallback is never taken.
        METHODS.iter().position(|m| m.0 == self).unwrap_or(0)
    }

    /// Short name, used in the CSV.
    pub fn name(self) -> &'static str {
        METHODS[self.position()].1
    }

    /// Description, used in the table.
    pub fn description(self) -> &'static str {
        METHODS[self.position()].2
    }

    /// The table's row for a model whose attention is `global` (a ViT's) or windowed: with no
    /// windows to be aware of, the rollout and relevance are the plain ones and their naive
    /// twins (the same numbers) have no row.
    pub fn row_title(self, global: bool) -> Option<&'static str> {
        match (global, self) {
            (false, _) => Some(self.description()),
            (true, Method::WindowAware) => Some("attention rollout"),
            (true, Method::Relevance) => Some("relevance (true class)"),
            (true, Method::Naive | Method::NaiveRelevance) => None,
            (true, other) => Some(other.description()),
        }
    }
}

/// One value per method, in [`Method::ALL`] order, read by method rather than by position.
#[derive(Debug, Clone, PartialEq)]
pub struct ByMethod<T>(Vec<T>);

impl<T> ByMethod<T> {
    /// `f(method)` for every method.
    pub fn from_fn(f: impl FnMut(Method) -> T) -> Self {
        ByMethod(Method::ALL.into_iter().map(f).collect())
    }

    /// `f(method)` for every method, or the first error.
    pub fn try_from_fn<E>(
        f: impl FnMut(Method) -> std::result::Result<T, E>,
    ) -> std::result::Result<Self, E> {
        Method::ALL
            .into_iter()
            .map(f)
            .collect::<std::result::Result<_, _>>()
            .map(ByMethod)
    }

    /// The values in [`Method::ALL`] order.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    /// Each method with its value, in [`Method::ALL`] order.
    pub fn pairs(&self) -> impl Iterator<Item = (Method, &T)> {
        Method::ALL.into_iter().zip(&self.0)
    }

    /// The number of methods.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no methods (never, for a value built by [`ByMethod::from_fn`]).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T> Index<Method> for ByMethod<T> {
    type Output = T;

    fn index(&self, method: Method) -> &T {
        &self.0[method.position()]
    }
}

impl<T> IndexMut<Method> for ByMethod<T> {
    fn index_mut(&mut self, method: Method) -> &mut T {
        &mut self.0[method.position()]
    }
}

impl<'a, T> IntoIterator for &'a ByMethod<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The model's logits on the intact scene and every explanation of it, over the first stage's
/// grid, each summing to 1. The relevance explains class `label` (the scene's true class).
///
/// One forward and backward pass serves every method: its trace is the plain forward pass's,
/// bit for bit.
pub(super) fn explanations(
    model: &Model,
    pixels: Vec<f32>,
    label: usize,
    options: &EvaluateOptions,
    index: u64,
    grid: (usize, usize),
) -> Result<(Vec<f32>, ByMethod<Vec<f64>>)> {
    let (trace, gradients) = model.trace_pixels_with_gradients(pixels, Some(label))?;
    let relevance = Relevance::new(&trace, &gradients)?;
    drop(gradients);
    let rollout = Rollout::new(&trace, &options.rollout)?;
    if rollout.input_size() != grid {
        return Err(Error::Model(format!(
            "the rollout's {}×{} grid does not match the {}×{} patch grid of the input",
            rollout.input_size().0,
            rollout.input_size().1,
            grid.0,
            grid.1
        )));
    }
    let last_map = |maps: Vec<Map>| -> Result<Vec<f64>> {
        let map = maps
            .into_iter()
            .next_back()
            .ok_or_else(|| Error::Model("the rollout has no blocks".into()))?;
        Ok(normalized(
            map.values.iter().map(|&v| f64::from(v)).collect(),
        ))
    };
    // The class part only: the full map adds the baseline (uniform on even grids), which
    // would swamp the mass in the mask and leaves every ordering unchanged.
    let last_class_part = |maps: Vec<RelevanceMap>| -> Result<Vec<f64>> {
        last_map(maps.into_iter().map(|m| m.class_part).collect())
    };
    let cells = grid.0 * grid.1;
    let maps = ByMethod::try_from_fn(|method| match method {
        Method::WindowAware => last_map(rollout.pooled_maps()),
        Method::Naive => last_map(rollout.naive_pooled_maps()),
        Method::Relevance => last_class_part(relevance.maps()),
        Method::NaiveRelevance => last_class_part(relevance.naive_maps()),
        Method::LastBlock => last_block_map(&trace, options, grid),
        Method::Random => {
            let mut rng = Rng::for_stream(options.seed, index, DOMAIN_RANDOM_MAP);
            Ok(normalized((0..cells).map(|_| rng.unit()).collect()))
        }
        Method::Uniform => Ok(vec![1.0 / cells as f64; cells]),
    })?;
    Ok((trace.logits, maps))
}

/// The last block's head-fused attention without the residual identity, pooled over its rows
/// (uniform vᵀ·A), upsampled to the first stage's grid: each merge halves the grid, rounding
/// up, so a stage-s token covers the first-stage tokens whose coordinates shifted right by s are
/// its own.
fn last_block_map(
    trace: &crate::trace::Trace,
    options: &EvaluateOptions,
    (h0, w0): (usize, usize),
) -> Result<Vec<f64>> {
    let (first, last) = match (trace.blocks.first(), trace.blocks.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => return Err(Error::Model("the trace has no blocks".into())),
    };
    let attention_only = RolloutOptions {
        residual: 0.0,
        ..options.rollout
    };
    let a = SparseAttention::from_block(last, &attention_only, false)?;
    let n = a.tokens();
    let pooled = a.vec_mul(&vec![1.0 / n as f64; n]);
    let g = a.geometry();
    let s = g.stage - first.geometry.stage;
    Ok(normalized(
        (0..h0 * w0)
            .map(|i| pooled[((i / w0) >> s) * g.width + ((i % w0) >> s)])
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_is_in_the_table_once() {
        for (i, m) in Method::ALL.into_iter().enumerate() {
            assert_eq!(m.position(), i);
        }
        let by = ByMethod::from_fn(|m| m.name());
        assert_eq!(by[Method::Uniform], "uniform");
        assert_eq!(by.len(), Method::ALL.len());
    }
}
