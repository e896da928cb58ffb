//! `swin_rollout._native`: the Rust side of the Python package. Each function translates its
//! arguments (already checked and named by the Python wrapper in `swin_rollout/__init__.py`)
//! and calls the library; the work runs without the GIL.

mod arrays;
mod errors;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use arrays::{ArrayIn, ArrayOut};
use errors::to_py;
use swin_rollout::encode::EncodeOptions;
use swin_rollout::error::{Error, Result};
use swin_rollout::explain::{ExplainOptions, Explained, Explanation};
use swin_rollout::model::{Model, ModelSource, EMBEDDED_VIT_ARG};
use swin_rollout::progress::ProgressBar;
use swin_rollout::render::{write_png, write_video, Mode, Stories, Story, Template};
use swin_rollout::rollout::{HeadFusion, Rollout, RolloutOptions};
use swin_rollout::trace::{Trace, TraceArrays};

/// An image as Python hands it over: a file, or `(height, width, RGB bytes)`.
type ImageIn<'py> = (Option<PathBuf>, Option<(u32, u32, Bound<'py, PyBytes>)>);

/// A trace as Python hands it over: `geometry`, the attentions, `logits`, `pixel_values`,
/// `prefix_tokens`.
type TraceIn<'py> = (
    ArrayIn<'py>,
    Vec<ArrayIn<'py>>,
    Option<ArrayIn<'py>>,
    Option<ArrayIn<'py>>,
    Option<ArrayIn<'py>>,
    Option<ArrayIn<'py>>,
);

/// Models loaded once per process: the embedded one and hub ids (a folder is read again each
/// time, since its files may have changed).
fn cached_model(source: Option<&str>) -> Result<Arc<Model>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Model>>>> = OnceLock::new();
    let source = source.map(ModelSource::parse).unwrap_or_default();
    let key = match &source {
        ModelSource::Folder(_) => return Model::load(&source).map(Arc::new),
        ModelSource::Embedded => String::new(),
        ModelSource::EmbeddedVit => EMBEDDED_VIT_ARG.to_string(),
        ModelSource::Hub(id) => id.clone(),
    };
    let cache = CACHE.get_or_init(Default::default);
    if let Some(model) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(model);
    }
    let model = Arc::new(Model::load(&source)?);
    if let Ok(mut c) = cache.lock() {
        c.insert(key, Arc::clone(&model));
    }
    Ok(model)
}

fn rollout_options(head_fusion: &str, residual: f32, discard: f32) -> Result<RolloutOptions> {
    let options = RolloutOptions {
        fusion: head_fusion.parse::<HeadFusion>()?,
        residual,
        discard,
    };
    options.validate()?;
    Ok(options)
}

fn explain_options(explain: &str, target: Option<String>) -> Result<ExplainOptions> {
    let options = ExplainOptions {
        explanation: explain.parse::<Explanation>()?,
        class: target,
    };
    options.validate()?;
    Ok(options)
}

/// The RGB image of a path or of raw pixels; `None` when neither is given.
fn read_image(
    path: Option<&Path>,
    pixels: Option<(u32, u32, Vec<u8>)>,
) -> Result<Option<image::RgbImage>> {
    match (path, pixels) {
        (Some(path), _) => swin_rollout::preprocess::read_rgb(path).map(Some),
        (None, Some((h, w, bytes))) => {
            let len = bytes.len();
            image::RgbImage::from_raw(w, h, bytes)
                .map(Some)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "image: {len} bytes are not a {h}×{w}×3 uint8 image"
                    ))
                })
        }
        (None, None) => Ok(None),
    }
}

fn trace_arrays(trace: &TraceIn) -> PyResult<TraceArrays> {
    let (geometry, attentions, logits, pixel_values, prefix_tokens, roll_before_pad) = trace;
    let scalar =
        |name: &str, a: &Option<ArrayIn>| a.as_ref().map(|a| arrays::nd_array(name, a)).transpose();
    Ok(TraceArrays {
        geometry: arrays::nd_array("geometry", geometry)?,
        attentions: attentions
            .iter()
            .enumerate()
            .map(|(k, a)| arrays::nd_array(&swin_rollout::trace::attention_name(k), a))
            .collect::<PyResult<_>>()?,
        logits: logits
            .as_ref()
            .map(|l| arrays::nd_array("logits", l))
            .transpose()?,
        pixel_values: pixel_values
            .as_ref()
            .map(|p| arrays::nd_array("pixel_values", p))
            .transpose()?,
        prefix_tokens: scalar("prefix_tokens", prefix_tokens)?,
        roll_before_pad: scalar(swin_rollout::trace::ROLL_BEFORE_PAD, roll_before_pad)?,
    })
}

/// Runs `work` on another thread while this one, holding the GIL between waits, checks for
/// Ctrl-C: Python handles signals only on its main thread, so a render started from a notebook
/// stays interruptible. On an interrupt `work` is told to stop (it leaves no output) and the
/// `KeyboardInterrupt` is raised.
fn interruptible<T: Send>(
    py: Python<'_>,
    work: impl FnOnce(&AtomicBool) -> Result<T> + Send,
) -> PyResult<T> {
    let stop = AtomicBool::new(false);
    let mut interrupt: Option<PyErr> = None;
    let result = std::thread::scope(|scope| {
        let handle = scope.spawn(|| work(&stop));
        while !handle.is_finished() {
            py.detach(|| std::thread::sleep(Duration::from_millis(20)));
            if interrupt.is_none() {
                if let Err(e) = py.check_signals() {
                    stop.store(true, Ordering::SeqCst);
                    interrupt = Some(e);
                }
            }
        }
        handle.join()
    });
    if let Some(e) = interrupt {
        return Err(e);
    }
    match result {
        Ok(r) => r.map_err(to_py),
        Err(_) => Err(pyo3::exceptions::PyRuntimeError::new_err(
            "swin_rollout: the render thread panicked; please report this with the arguments used",
        )),
    }
}

/// The export arrays of one image: see `swin_rollout.explain`.
#[pyfunction]
#[pyo3(signature = (image, model, explain, target, head_fusion, residual, discard))]
#[allow(clippy::too_many_arguments)]
fn explain(
    py: Python<'_>,
    image: ImageIn,
    model: Option<String>,
    explain: &str,
    target: Option<String>,
    head_fusion: &str,
    residual: f32,
    discard: f32,
) -> PyResult<Vec<ArrayOut>> {
    let options = rollout_options(head_fusion, residual, discard).map_err(to_py)?;
    let explain = explain_options(explain, target).map_err(to_py)?;
    let (path, pixels) = image;
    // The one copy of the pixels: the image owns them.
    let pixels = pixels.map(|(h, w, b)| (h, w, b.as_bytes().to_vec()));
    let computed = py.detach(|| -> Result<_> {
        let image = read_image(path.as_deref(), pixels)?
            .ok_or_else(|| Error::InvalidArgument("image: give a path or an array".into()))?;
        let model = cached_model(model.as_deref())?;
        let Explained { trace, relevance } = Explained::from_rgb(&model, &image, &explain)?;
        let rollout = Rollout::new(&trace, &options)?;
        Ok((trace, rollout, relevance))
    });
    let (trace, rollout, relevance) = computed.map_err(to_py)?;
    Ok(swin_rollout::export::with_arrays(
        &trace,
        Some(&rollout),
        relevance.as_ref(),
        |arrays| arrays.iter().map(|a| arrays::export_out(py, a)).collect(),
    ))
}

/// The pooled window-aware rollout after every block, `[L, H₀, W₀]`: see
/// `swin_rollout.rollout`.
#[pyfunction]
#[pyo3(signature = (geometry, attentions, roll_before_pad, head_fusion, residual, discard))]
fn rollout(
    py: Python<'_>,
    geometry: ArrayIn,
    attentions: Vec<ArrayIn>,
    roll_before_pad: Option<ArrayIn>,
    head_fusion: &str,
    residual: f32,
    discard: f32,
) -> PyResult<ArrayOut> {
    let options = rollout_options(head_fusion, residual, discard).map_err(to_py)?;
    let arrays = trace_arrays(&(geometry, attentions, None, None, None, roll_before_pad))?;
    let maps = py
        .detach(|| -> Result<_> {
            let trace = Trace::from_export(arrays)?;
            Ok(Rollout::new(&trace, &options)?.pooled_maps())
        })
        .map_err(to_py)?;
    let (h, w) = maps
        .first()
        .map(|m| (m.height, m.width))
        .ok_or_else(|| PyValueError::new_err("geometry: no blocks to roll out"))?;
    let values: Vec<f32> = maps.iter().flat_map(|m| m.values.iter().copied()).collect();
    Ok(arrays::f32_out(py, "rollout", &[maps.len(), h, w], &values))
}

/// Where a render's data comes from.
enum Source {
    /// The model (`None`: the embedded Swin) and, for a compare template, the second model
    /// (`None`: the embedded ViT).
    Model(Option<String>, Option<String>),
    Trace(Box<TraceArrays>),
    TraceFile(PathBuf),
}

/// A video (`.mp4`, `.gif`, a folder of PNG frames) or a still (`.png`): see
/// `swin_rollout.render`.
#[pyfunction]
#[pyo3(signature = (
    output, template, model, compare, image, trace_file, trace, labels, name, explain, target,
    head_fusion, residual, discard, at, crf, preset, progress
))]
#[allow(clippy::too_many_arguments)]
fn render(
    py: Python<'_>,
    output: PathBuf,
    template: &str,
    model: Option<String>,
    compare: Option<String>,
    image: ImageIn,
    trace_file: Option<PathBuf>,
    trace: Option<TraceIn>,
    labels: Option<Vec<String>>,
    name: Option<String>,
    explain: &str,
    target: Option<String>,
    head_fusion: &str,
    residual: f32,
    discard: f32,
    at: f64,
    crf: u8,
    preset: String,
    progress: bool,
) -> PyResult<()> {
    let options = rollout_options(head_fusion, residual, discard).map_err(to_py)?;
    let explain = explain_options(explain, target).map_err(to_py)?;
    let encoder = EncodeOptions {
        preset,
        crf,
        ..EncodeOptions::default()
    };
    let source = match (trace_file, trace) {
        (Some(path), _) => Source::TraceFile(path),
        (None, Some(t)) => Source::Trace(Box::new(trace_arrays(&t)?)),
        (None, None) => Source::Model(model, compare),
    };
    let (path, pixels) = image;
    let pixels = pixels.map(|(h, w, b)| (h, w, b.as_bytes().to_vec()));
    let still = output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    interruptible(py, move |stop| {
        let template = Template::load(template)?;
        if !still {
            // A bad output name is reported before any work.
            swin_rollout::encode::OutputFormat::from_path(&output)?;
        }
        let image = read_image(path.as_deref(), pixels)?;
        let stories = stories(source, image, labels, name, &template, &options, &explain)?;
        let frames = stories.frames(&template)?;
        if still {
            return write_png(&frames.frame_at(at)?, &output);
        }
        let bar = if progress {
            progress_bar(frames.frame_count(), &output)
        } else {
            ProgressBar::hidden()
        };
        let check = || {
            if stop.load(Ordering::SeqCst) {
                Err(Error::Interrupted)
            } else {
                Ok(())
            }
        };
        let result = write_video(&*frames, &output, &encoder, &check, Some(&|| bar.inc(1)));
        bar.finish_and_clear();
        result
    })
}

fn stories(
    source: Source,
    image: Option<image::RgbImage>,
    labels: Option<Vec<String>>,
    name: Option<String>,
    template: &Template,
    options: &RolloutOptions,
    explain: &ExplainOptions,
) -> Result<Stories> {
    let compares = template.mode == Mode::Compare;
    let trace = match source {
        Source::Model(model, compare) => {
            if !template.needs_model() {
                return Ok(Stories::One(Box::new(Story::mechanism(
                    &template.mechanism,
                )?)));
            }
            if compare.is_some() && !compares {
                return Err(Error::InvalidArgument(format!(
                    "compare= names the second model of a compare template, and template \
                     '{}' shows one model; pass template=\"compare\"",
                    template.name
                )));
            }
            let image = image.ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "template '{}' shows a model's attention: give an image (a path or an \
                     H×W×3 uint8 array) or a trace",
                    template.name
                ))
            })?;
            let model = cached_model(model.as_deref())?;
            if !compares {
                return Stories::for_template(&[&model], &image, template, options, explain);
            }
            let second = cached_model(Some(compare.as_deref().unwrap_or(EMBEDDED_VIT_ARG)))?;
            return Stories::for_template(&[&model, &second], &image, template, options, explain);
        }
        _ if compares => {
            return Err(Error::InvalidArgument(format!(
                "template '{}' runs two models on an image; give an image (and model=, \
                 compare=), not a trace",
                template.name
            )))
        }
        Source::Trace(arrays) => Trace::from_export(*arrays)?,
        Source::TraceFile(path) => Trace::load_npz(&path)?,
    };
    let story = Story::for_trace_template(
        &trace,
        image.as_ref(),
        labels.as_deref(),
        template,
        options,
        explain,
    )?;
    Ok(Stories::One(Box::new(match name {
        Some(name) => story.with_model_name(name),
        None => story,
    })))
}

fn progress_bar(frames: usize, output: &Path) -> ProgressBar {
    let label = output
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    swin_rollout::progress::frames_bar(frames, &label)
}

/// The names of the built-in templates, with what each shows.
#[pyfunction]
fn templates() -> Vec<(&'static str, String)> {
    Template::builtin_list()
}

/// The labels of a model (`None`: the embedded one), in logit order.
#[pyfunction]
#[pyo3(signature = (model=None))]
fn labels(py: Python<'_>, model: Option<String>) -> PyResult<Vec<String>> {
    py.detach(|| cached_model(model.as_deref()).map(|m| m.labels().to_vec()))
        .map_err(to_py)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(explain, m)?)?;
    m.add_function(wrap_pyfunction!(rollout, m)?)?;
    m.add_function(wrap_pyfunction!(render, m)?)?;
    m.add_function(wrap_pyfunction!(templates, m)?)?;
    m.add_function(wrap_pyfunction!(labels, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
