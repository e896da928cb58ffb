//! The command line: argument definitions and what each subcommand does. It belongs to the
//! binary alone (`main.rs` declares it), so it is no part of the library's API.

use std::path::{Path, PathBuf};

use image::RgbImage;

use clap::{Args, Parser, Subcommand};

mod commands;

use swin_rollout::error::Result;
use swin_rollout::explain::{ExplainOptions, Explained, Explanation};
use swin_rollout::export;
use swin_rollout::model::{Model, ModelSource};
use swin_rollout::rollout::{HeadFusion, Rollout, RolloutOptions};

const EXAMPLES: &str = "\
Examples:
  swin-rollout predict                      # embedded model on the embedded demo scene
  swin-rollout predict photo.jpg --top 3
  swin-rollout predict photo.jpg --model microsoft/swin-tiny-patch4-window7-224
  swin-rollout export photo.jpg -o trace.npz
  swin-rollout export photo.jpg --explain relevance --class Sandal -o trace.npz
  swin-rollout export photo.jpg --model ./my-swin-folder -o trace.npz

Models: a folder with config.json and model.safetensors (or pytorch_model.bin), in Hugging Face
or timm layout, a Hugging Face hub id (downloaded once into ~/.cache/huggingface/hub, then
used offline), or embedded:swin (the default) / embedded:vit, the two small models inside the
binary.";

/// Shows how information flows through a Swin Transformer.
#[derive(Debug, Parser)]
#[command(name = "swin-rollout", version, about, after_help = EXAMPLES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the model's most probable labels for an image.
    #[command(after_help = "Example:\n  swin-rollout predict photo.jpg --top 3")]
    Predict(PredictArgs),
    /// Write the preprocessed input, logits, every block's geometry and attention, and the
    /// rollout after every block as a NumPy .npz file.
    #[command(
        after_help = "Example:\n  swin-rollout export photo.jpg -o trace.npz\n  python -c \"import numpy; print(numpy.load('trace.npz')['geometry'])\""
    )]
    Export(ExportArgs),
    /// Render the explainer video (or another template) of an image, or one video per image
    /// of a folder.
    #[command(after_help = RENDER_EXAMPLES)]
    Render(RenderArgs),
    /// Render one still: the stage figure, or the frame of any template at a given time.
    #[command(
        after_help = "Examples:\n  swin-rollout still -o figure.png\n  swin-rollout still --template compare --at 20 -o compare.png   # embedded Swin beside embedded ViT\n  swin-rollout still --trace trace.npz --image photo.jpg -o figure.png   # a trace, no model\n  swin-rollout still --template classes -o classes.png   # top classes' relevance side by side\n  swin-rollout still photo.jpg --template explainer --at 12.5 -o frame.png"
    )]
    Still(StillArgs),
    /// List the built-in templates, or print one to start your own.
    #[command(
        after_help = "Examples:\n  swin-rollout templates\n  swin-rollout templates --show explainer > my.toml"
    )]
    Templates(TemplatesArgs),
    /// Benchmark the explanations' faithfulness on freshly generated, held-out cluttered
    /// Fashion-MNIST scenes: pointing game, mass in the item's mask, deletion and insertion AUC,
    /// for the window-aware rollout and relevance (of the true class), their naive versions, the
    /// last block's attention, and random and uniform maps.
    #[command(
        after_help = "Example:\n  swin-rollout evaluate --scenes 200 --csv results.csv\n\nNeeds Debian's dataset-fashion-mnist (tools/setup.sh installs it) or SWIN_ROLLOUT_FASHION_MNIST\nnaming a folder with its *-ubyte.gz files. The table goes to standard output, the progress\nbar and the timing to standard error."
    )]
    Evaluate(EvaluateArgs),
}

const RENDER_EXAMPLES: &str = "\
Examples:
  swin-rollout render                                  # the demo: embedded model and scene
  swin-rollout render photo.jpg -o photo.mp4
  swin-rollout render photo.jpg --template conference -o talk.mp4
  swin-rollout render photo.jpg --explain relevance --class Sneaker   # why “Sneaker”?
  swin-rollout render photo.jpg --template timelapse -o clip.gif
  swin-rollout render photos/ -o videos/ --template timelapse   # one video per image
  swin-rollout render --template mechanism -o mechanism.mp4     # the schematic, no model
  swin-rollout render --template compare                       # embedded Swin beside embedded ViT
  swin-rollout render photo.jpg --template compare --model SWIN --compare VIT
  swin-rollout render photo.jpg --frames-dir frames/           # numbered PNG frames
  swin-rollout render --trace trace.npz --image photo.jpg -o clip.mp4   # a trace, no model
  swin-rollout render photos/ -o videos/ --shard 0/4           # part 0 of 4 of the folder
  swin-rollout render photos/ -o videos/ --shard auto          # in a Slurm job array
  swin-rollout render photos/ -o videos/ --shard auto --shard-count 8   # a Kubernetes Indexed Job

--trace reads an .npz with `geometry` and `attn_00`… (as `export` writes or numpy.savez of a
Python capture); `logits` and `pixel_values` are used when there. Shard I of N (I from 0)
renders the images whose position in the sorted folder is I modulo N; outputs that exist are
skipped, so shards share one output folder and a rerun resumes.";

/// Which model to run.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Model folder (Hugging Face or timm layout), Hugging Face hub id, or embedded:swin /
    /// embedded:vit [default: the embedded Fashion-MNIST Swin].
    #[arg(short, long, value_name = "FOLDER|HUB_ID")]
    pub model: Option<String>,
}

impl ModelArgs {
    pub(super) fn load(&self) -> Result<Model> {
        load_model(self.model.as_deref(), ModelSource::Embedded)
    }
}

/// The second model of a compare template.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The second model of `--template compare`, drawn beside --model's: a folder, hub id,
    /// or embedded:swin / embedded:vit [default: the embedded Fashion-MNIST ViT].
    #[arg(long, value_name = "FOLDER|HUB_ID")]
    pub compare: Option<String>,
}

impl CompareArgs {
    pub(super) fn load(&self) -> Result<Model> {
        load_model(self.compare.as_deref(), ModelSource::EmbeddedVit)
    }
}

fn load_model(arg: Option<&str>, default: ModelSource) -> Result<Model> {
    Model::load(&arg.map_or(default, ModelSource::parse))
}

/// Reads the image argument, or the embedded demo scene when there is none.
pub(super) fn read_input(image: Option<&Path>) -> Result<RgbImage> {
    match image {
        Some(path) => swin_rollout::preprocess::read_rgb(path),
        None => swin_rollout::demo::demo_image(),
    }
}

/// Arguments of `predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Image file (PNG, JPEG, BMP, GIF, TIFF, WebP; any size, colour type or bit depth)
    /// [default: the embedded demo scene].
    pub image: Option<PathBuf>,
    /// Which model runs.
    #[command(flatten)]
    pub model: ModelArgs,
    /// How many labels to print.
    #[arg(short = 'k', long, default_value_t = 5)]
    pub top: usize,
}

/// Arguments of `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Image file [default: the embedded demo scene].
    pub image: Option<PathBuf>,
    /// Which model runs.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output .npz file (its folder must exist).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Which explanation the maps show.
    #[command(flatten)]
    pub explain: ExplainArgs,
    /// How the rollout is computed.
    #[command(flatten)]
    pub rollout: RolloutArgs,
}

/// Which explanation the maps show.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// What the maps show: rollout (where information flows; the same for every class) or
    /// relevance (why the model says a class: attention weighted by its gradient).
    #[arg(long, value_name = "METHOD", default_value = "rollout")]
    pub explain: Explanation,
    /// The class --explain relevance explains: a label (as `predict` prints it) or a logit
    /// index [default: the top prediction].
    #[arg(long = "class", value_name = "LABEL|INDEX")]
    pub class: Option<String>,
}

impl ExplainArgs {
    /// The options these flags describe, validated.
    pub fn options(&self) -> Result<ExplainOptions> {
        let options = ExplainOptions {
            explanation: self.explain,
            class: self.class.clone(),
        };
        options.validate()?;
        Ok(options)
    }
}

/// How attention is turned into a rollout.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// How the heads of a block are fused: mean, max or min.
    #[arg(long, value_name = "FUSION", default_value = "mean")]
    pub head_fusion: HeadFusion,
    /// Weight α of the residual identity: Â = (1−α)·A + α·I, in [0, 1].
    #[arg(long, value_name = "ALPHA", default_value_t = 0.5)]
    pub residual: f32,
    /// Share of each row's lowest attention entries dropped (never the diagonal), in [0, 1).
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0)]
    pub discard: f32,
}

impl RolloutArgs {
    /// The options these flags describe, validated.
    pub fn options(&self) -> Result<RolloutOptions> {
        let options = RolloutOptions {
            fusion: self.head_fusion,
            residual: self.residual,
            discard: self.discard,
        };
        options.validate()?;
        Ok(options)
    }
}

/// A trace to render instead of running a model.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Render this trace (.npz of `export` or of a Python capture) without a model.
    #[arg(long, value_name = "FILE", conflicts_with = "model")]
    pub trace: Option<PathBuf>,
    /// The image the trace was made from (with --trace) [default: the trace's pixel_values].
    #[arg(long, value_name = "FILE", requires = "trace")]
    pub image: Option<PathBuf>,
}

/// Which part of a folder this process renders.
#[derive(Debug, Args)]
pub struct ShardArgs {
    /// Render only part I of N of the folder (I from 0: the images at sorted positions I,
    /// I+N, …), or `auto` to take I and N from a Slurm job array or a Kubernetes Indexed Job.
    #[arg(long, value_name = "I/N|auto")]
    pub shard: Option<swin_rollout::shard::ShardSpec>,
    /// N for --shard auto in a Kubernetes Indexed Job (its `completions`).
    #[arg(long, value_name = "N", requires = "shard")]
    pub shard_count: Option<usize>,
}

impl ShardArgs {
    /// The shard these flags select (the whole folder without --shard).
    pub fn resolve(&self) -> Result<swin_rollout::shard::Shard> {
        use swin_rollout::shard::Shard;
        match self.shard {
            Some(spec) => Shard::resolve(spec, self.shard_count, |k| std::env::var(k).ok()),
            None => Ok(Shard::ALL),
        }
    }
}

/// Video formats of a folder render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VideoFormat {
    /// H.264 MP4.
    Mp4,
    /// Animated GIF.
    Gif,
}

impl VideoFormat {
    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            VideoFormat::Mp4 => "mp4",
            VideoFormat::Gif => "gif",
        }
    }
}

/// Arguments of `render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Image file, or a folder of images (one video each) [default: the embedded demo scene].
    #[arg(conflicts_with = "trace")]
    pub input: Option<PathBuf>,
    /// Which model runs.
    #[command(flatten)]
    pub model: ModelArgs,
    /// A trace instead of a model.
    #[command(flatten)]
    pub trace: TraceArgs,
    /// The second model of a compare template.
    #[command(flatten)]
    pub compare: CompareArgs,
    /// A part of the folder.
    #[command(flatten)]
    pub shard: ShardArgs,
    /// Video format of a folder's outputs and of the default output name.
    #[arg(long, value_enum, default_value = "mp4")]
    pub format: VideoFormat,
    /// Built-in template name (see `swin-rollout templates`) or a .toml file.
    #[arg(short, long, value_name = "NAME|FILE", default_value = "explainer")]
    pub template: String,
    /// Output .mp4 or .gif; for a folder input, the folder the videos go to
    /// [default: <image name>-<template>.mp4 here].
    #[arg(short, long, value_name = "FILE|DIR")]
    pub output: Option<PathBuf>,
    /// Write numbered PNG frames into this existing folder instead of a video.
    #[arg(long, value_name = "DIR", conflicts_with = "output")]
    pub frames_dir: Option<PathBuf>,
    /// Replace outputs that exist.
    #[arg(short, long)]
    pub force: bool,
    /// Print nothing but errors (no progress bar, no summary).
    #[arg(short, long)]
    pub quiet: bool,
    /// H.264 quality: 0 (lossless) to 51; 18 is visually lossless.
    #[arg(long, default_value_t = 18)]
    pub crf: u8,
    /// x264 preset (ultrafast … veryslow): slower makes smaller files.
    #[arg(long, default_value = "veryfast")]
    pub preset: String,
    /// Which explanation the maps show.
    #[command(flatten)]
    pub explain: ExplainArgs,
    /// How the rollout is computed.
    #[command(flatten)]
    pub rollout: RolloutArgs,
}

/// Arguments of `still`.
#[derive(Debug, Args)]
pub struct StillArgs {
    /// Image file [default: the embedded demo scene].
    #[arg(conflicts_with = "trace", value_name = "IMAGE")]
    pub input: Option<PathBuf>,
    /// Which model runs.
    #[command(flatten)]
    pub model: ModelArgs,
    /// A trace instead of a model.
    #[command(flatten)]
    pub trace: TraceArgs,
    /// The second model of a compare template.
    #[command(flatten)]
    pub compare: CompareArgs,
    /// Built-in template name or a .toml file.
    #[arg(short, long, value_name = "NAME|FILE", default_value = "stages")]
    pub template: String,
    /// Time in the template's video, in seconds (ignored by figure templates).
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
    pub at: f64,
    /// Output PNG file.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Replace the output if it exists.
    #[arg(short, long)]
    pub force: bool,
    /// Which explanation the maps show.
    #[command(flatten)]
    pub explain: ExplainArgs,
    /// How the rollout is computed.
    #[command(flatten)]
    pub rollout: RolloutArgs,
}

/// Arguments of `evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Which model runs (a classifier of the ten Fashion-MNIST classes).
    #[command(flatten)]
    pub model: ModelArgs,
    /// How many held-out scenes to generate and evaluate.
    #[arg(long, value_name = "N", default_value_t = swin_rollout::evaluate::DEFAULT_SCENES)]
    pub scenes: usize,
    /// Base seed of the scenes (scene i of seed S is always the same scene).
    #[arg(long, value_name = "S", default_value_t = swin_rollout::evaluate::DEFAULT_SEED)]
    pub seed: u64,
    /// Also write the results as CSV to this file (its folder must exist).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// What deleted patches become: mean (the normalization mean colour) or blur (a
    /// Gaussian-blurred copy of the scene).
    #[arg(long, value_name = "BASELINE", default_value = "mean")]
    pub deletion_baseline: swin_rollout::evaluate::Baseline,
    /// What insertion reveals patches onto: blur or mean.
    #[arg(long, value_name = "BASELINE", default_value = "blur")]
    pub insertion_baseline: swin_rollout::evaluate::Baseline,
    /// How the rollouts under test are computed.
    #[command(flatten)]
    pub rollout: RolloutArgs,
}

/// Arguments of `templates`.
#[derive(Debug, Args)]
pub struct TemplatesArgs {
    /// Print the TOML of this built-in template (to copy and edit).
    #[arg(long, value_name = "NAME")]
    pub show: Option<String>,
}

/// Runs a parsed command line, printing results to standard output.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Predict(args) => predict(&args),
        Command::Export(args) => export(&args),
        Command::Render(args) => commands::render(&args),
        Command::Still(args) => commands::still(&args),
        Command::Templates(args) => commands::templates(&args),
        Command::Evaluate(args) => evaluate(&args),
    }
}

fn predict(args: &PredictArgs) -> Result<()> {
    let image = read_input(args.image.as_deref())?;
    let model = args.model.load()?;
    if !model.has_classifier() {
        return Err(model.no_classifier(
            "predict needs class logits (export, render and still work without them)",
        ));
    }
    let trace = model.trace_rgb(&image)?;
    for p in model.top_k(&trace.logits, args.top) {
        println!("{:>7.3}%  {}", p.probability * 100.0, p.label);
    }
    Ok(())
}

fn export(args: &ExportArgs) -> Result<()> {
    let options = args.rollout.options()?;
    let explain = args.explain.options()?;
    swin_rollout::output::check_writable(&args.output)?;
    let image = read_input(args.image.as_deref())?;
    let model = args.model.load()?;
    let Explained { trace, relevance } = Explained::from_rgb(&model, &image, &explain)?;
    let rollout = Rollout::new(&trace, &options)?;
    export::write_trace(&args.output, &trace, Some(&rollout), relevance.as_ref())?;
    println!(
        "wrote {} ({} blocks)",
        args.output.display(),
        trace.blocks.len()
    );
    Ok(())
}

fn evaluate(args: &EvaluateArgs) -> Result<()> {
    use swin_rollout::evaluate::{EvaluateOptions, DEFAULT_SCENES};
    use swin_rollout::scene::{SceneSource, Split};
    let options = EvaluateOptions {
        scenes: args.scenes,
        seed: args.seed,
        rollout: args.rollout.options()?,
        deletion_baseline: args.deletion_baseline,
        insertion_baseline: args.insertion_baseline,
        ..EvaluateOptions::default()
    };
    options.validate()?;
    if let Some(csv) = &args.csv {
        swin_rollout::output::check_writable(csv)?;
    }
    // The data first: a missing dataset is the likelier problem and the cheaper check.
    let source = SceneSource::load(Split::Test)?;
    let model = args.model.load()?;
    let bar = indicatif::ProgressBar::new(options.scenes as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "evaluating {bar:40} {pos}/{len} scenes, {elapsed} elapsed, ~{eta} left",
    ) {
        bar.set_style(style);
    }
    // Short runs (tests, smoke checks) finish before a bar would tell anyone anything.
    if options.scenes < DEFAULT_SCENES / 10 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let report = swin_rollout::evaluate::evaluate(&model, &source, &options, &|| bar.inc(1))?;
    bar.finish_and_clear();
    if let Some(csv) = &args.csv {
        report.write_csv(csv)?;
    }
    print!("{}", report.markdown());
    eprintln!(
        "{} scenes in {:.1} s: {:.3} s per scene",
        report.scenes,
        report.seconds_per_scene * report.scenes as f64,
        report.seconds_per_scene
    );
    Ok(())
}
