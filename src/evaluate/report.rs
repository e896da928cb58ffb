//! The benchmark's results: per scene, per method, and as a table or CSV.

use std::path::Path;

use super::method::{ByMethod, Method};
use super::metrics::Scores;
use super::{Baseline, EvaluateOptions};
use crate::error::{Error, Result};

/// Everything measured on one scene.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneResult {
    /// Scene index within the seed's scene set.
    pub index: u64,
    /// True class.
    pub label: usize,
    /// The model's most probable class on the intact scene.
    pub predicted: usize,
    /// Softmax probability of the true class on the intact scene.
    pub probability: f64,
    /// Share of the canvas covered by the item's mask.
    pub mask_fraction: f64,
    /// Scores of each method.
    pub scores: ByMethod<Scores>,
}

/// One method's averaged scores.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodSummary {
    /// The method.
    pub method: Method,
    /// Means over scenes.
    pub mean: Scores,
    /// Standard errors of the means (sample standard deviation / √n; 0 for one scene).
    pub std_error: Scores,
}

/// The benchmark's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Where the model came from.
    pub model: String,
    /// Number of scenes.
    pub scenes: usize,
    /// Base seed.
    pub seed: u64,
    /// What deleted patches became.
    pub deletion_baseline: Baseline,
    /// What insertion started from.
    pub insertion_baseline: Baseline,
    /// Share of scenes the model classifies correctly (top-1).
    pub accuracy: f64,
    /// Mean share of the canvas covered by the item's mask.
    pub mask_fraction: f64,
    /// Whether the model attends over the whole sequence (a ViT): the table then leaves out
    /// the window-unaware variants, which equal the others.
    pub global_attention: bool,
    /// One summary per method.
    pub methods: ByMethod<MethodSummary>,
    /// Every scene's numbers, in scene order.
    pub per_scene: Vec<SceneResult>,
    /// Wall-clock seconds per scene (all threads together); not part of the table or CSV, so
    /// those stay identical from run to run.
    pub seconds_per_scene: f64,
}

/// Means and standard errors of every method over the scenes.
pub(super) fn summarize(
    model: String,
    global_attention: bool,
    options: &EvaluateOptions,
    per_scene: Vec<SceneResult>,
    seconds_per_scene: f64,
) -> Report {
    let n = per_scene.len() as f64;
    let methods = ByMethod::from_fn(|method: Method| {
        let values: Vec<[f64; 4]> = per_scene
            .iter()
            .map(|s| s.scores[method].as_array())
            .collect();
        let mean: [f64; 4] = std::array::from_fn(|j| values.iter().map(|v| v[j]).sum::<f64>() / n);
        let se: [f64; 4] = std::array::from_fn(|j| {
            if values.len() < 2 {
                return 0.0;
            }
            let var = values.iter().map(|v| (v[j] - mean[j]).powi(2)).sum::<f64>() / (n - 1.0);
            (var / n).sqrt()
        });
        MethodSummary {
            method,
            mean: Scores::from_array(mean),
            std_error: Scores::from_array(se),
        }
    });
    let correct = per_scene.iter().filter(|s| s.predicted == s.label).count();
    Report {
        model,
        scenes: per_scene.len(),
        seed: options.seed,
        deletion_baseline: options.deletion_baseline,
        insertion_baseline: options.insertion_baseline,
        accuracy: correct as f64 / n,
        mask_fraction: per_scene.iter().map(|s| s.mask_fraction).sum::<f64>() / n,
        global_attention,
        methods,
        per_scene,
        seconds_per_scene,
    }
}

impl Report {
    /// The results as a markdown table (one row per method, ± one standard error), followed by
    /// the model's accuracy.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "Faithfulness on {} held-out cluttered Fashion-MNIST scenes (seed {}), model {}; \
             deleted patches become {}, insertion starts from {}\n\n",
            self.scenes,
            self.seed,
            self.model,
            self.deletion_baseline.describe(),
            self.insertion_baseline.describe()
        );
        out.push_str(
            "| method | pointing game ↑ | mass in mask ↑ | deletion AUC ↓ | insertion AUC ↑ |\n",
        );
        out.push_str("|---|---|---|---|---|\n");
        for m in &self.methods {
            let Some(title) = m.method.row_title(self.global_attention) else {
                continue;
            };
            let cell = |mean: f64, se: f64| format!("{mean:.3} ± {se:.3}");
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                title,
                cell(m.mean.pointing, m.std_error.pointing),
                cell(m.mean.mask_mass, m.std_error.mask_mass),
                cell(m.mean.deletion_auc, m.std_error.deletion_auc),
                cell(m.mean.insertion_auc, m.std_error.insertion_auc),
            ));
        }
        let correct = self
            .per_scene
            .iter()
            .filter(|s| s.predicted == s.label)
            .count();
        out.push_str(&format!(
            "\nModel accuracy: {:.3} ({correct}/{} scenes). The item's mask covers {:.3} of the canvas on average.\n",
            self.accuracy, self.scenes, self.mask_fraction
        ));
        out
    }

    /// The results as CSV: a header, then one row per method with every metric's mean and
    /// standard error, the model accuracy, the number of scenes, the seed and both baselines.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "method,pointing_game,pointing_game_se,mask_mass,mask_mass_se,deletion_auc,deletion_auc_se,insertion_auc,insertion_auc_se,model_accuracy,scenes,seed,deletion_baseline,insertion_baseline\n",
        );
        for m in &self.methods {
            let (a, s) = (m.mean, m.std_error);
            out.push_str(&format!(
                "{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{},{},{},{}\n",
                m.method.name(),
                a.pointing,
                s.pointing,
                a.mask_mass,
                s.mask_mass,
                a.deletion_auc,
                s.deletion_auc,
                a.insertion_auc,
                s.insertion_auc,
                self.accuracy,
                self.scenes,
                self.seed,
                self.deletion_baseline,
                self.insertion_baseline
            ));
        }
        out
    }

    /// Writes [`Report::csv`] to `path` atomically.
    ///
    /// # Errors
    /// If the folder does not exist or the file cannot be written.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        crate::output::write_atomically(path, |out| {
            out.write_all(self.csv().as_bytes())
                .map_err(|e| Error::io(path, e))
        })
    }
}
