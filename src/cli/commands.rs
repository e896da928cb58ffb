//! `render`, `still` and `templates`: from an image (or a folder of them) to videos and
//! figures, with a progress bar, clean Ctrl-C, and no half-written output.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use super::{read_input, CompareArgs, ModelArgs, RenderArgs, StillArgs, TemplatesArgs, TraceArgs};
use swin_rollout::encode::{EncodeOptions, OutputFormat};
use swin_rollout::error::{Error, Result};
use swin_rollout::explain::ExplainOptions;
use swin_rollout::model::Model;
use swin_rollout::progress::ProgressBar;
use swin_rollout::render::{self, Mode, Stories, Story, Template};
use swin_rollout::rollout::RolloutOptions;
use swin_rollout::trace::Trace;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Makes Ctrl-C stop rendering at the next frame, so the sink is dropped and its temporary file
/// removed, instead of the process dying with a partial file on disk.
fn catch_ctrl_c() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // If a handler cannot be installed, Ctrl-C still kills the process; temporary files
        // are hidden dot-files, never the output itself.
        let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
    });
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Err(Error::Interrupted);
    }
    Ok(())
}

/// One video to make: its input (`None`: the demo scene) and output.
struct Job {
    input: Option<PathBuf>,
    output: PathBuf,
}

/// Where a story's data comes from.
enum Source {
    /// A model run on each input; `None` for the schematic, which needs none.
    Model(Option<Box<Model>>),
    /// Two models run on each input, for a compare template.
    Pair(Box<[Model; 2]>),
    /// A trace made elsewhere, with the image it was made from if given.
    Trace {
        trace: Trace,
        image: Option<image::RgbImage>,
        /// What captions name as the model: the trace's file name.
        name: String,
    },
}

impl Source {
    /// The model (or two) the template needs, or the trace of `--trace`.
    fn new(
        template: &Template,
        model: &ModelArgs,
        compare: &CompareArgs,
        trace: &TraceArgs,
    ) -> Result<Source> {
        if template.mode == Mode::Compare {
            if trace.trace.is_some() {
                return Err(Error::InvalidArgument(format!(
                    "template '{}' runs two models on the image; it takes no --trace: give \
                     --model and --compare (or neither, for the embedded Swin and ViT)",
                    template.name
                )));
            }
            return Ok(Source::Pair(Box::new([model.load()?, compare.load()?])));
        }
        if compare.compare.is_some() {
            return Err(Error::InvalidArgument(format!(
                "--compare names the second model of a compare template, and template '{}' \
                 shows one model; add --template compare",
                template.name
            )));
        }
        let Some(path) = &trace.trace else {
            return load_model_for(template, model).map(|m| Source::Model(m.map(Box::new)));
        };
        let image = trace
            .image
            .as_deref()
            .map(swin_rollout::preprocess::read_rgb)
            .transpose()?;
        let trace = Trace::load_npz(path)?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(Source::Trace { trace, image, name })
    }
}

fn stem(input: Option<&Path>) -> String {
    input
        .and_then(|p| p.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| swin_rollout::demo::DEMO_NAME.to_string())
}

fn template_stem(template: &str) -> String {
    Path::new(template)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| template.to_string())
}

pub(super) fn render(args: &RenderArgs) -> Result<()> {
    let template = Template::load(&args.template)?;
    let options = args.rollout.options()?;
    let explain = args.explain.options()?;
    let shard = args.shard.resolve()?;
    let encoder = EncodeOptions {
        preset: args.preset.clone(),
        crf: args.crf,
        ..EncodeOptions::default()
    };
    catch_ctrl_c();
    let folder = args.input.as_deref().filter(|p| p.is_dir());
    let Some(folder) = folder else {
        if args.shard.shard.is_some() {
            return Err(Error::InvalidArgument(
                "--shard splits a folder of images; give a folder as the input".into(),
            ));
        }
        let named = args.input.as_deref().or(args.trace.trace.as_deref());
        let output = match (&args.frames_dir, &args.output) {
            (Some(dir), _) => dir.clone(),
            (None, Some(out)) => out.clone(),
            (None, None) => PathBuf::from(format!(
                "{}-{}.{}",
                stem(named),
                template_stem(&args.template),
                args.format.extension()
            )),
        };
        let job = Job {
            input: args.input.clone(),
            output,
        };
        refuse_existing(&job.output, args.force || args.frames_dir.is_some())?;
        let source = Source::new(&template, &args.model, &args.compare, &args.trace)?;
        render_one(
            &job,
            &source,
            &template,
            (&options, &explain),
            &encoder,
            args.quiet,
        )?;
        if !args.quiet {
            eprintln!("wrote {}", job.output.display());
        }
        return Ok(());
    };
    render_folder(folder, args, shard, &template, &options, &encoder)
}

/// A model is loaded only for templates that show one (the schematic needs none).
fn load_model_for(template: &Template, model: &ModelArgs) -> Result<Option<Model>> {
    template.needs_model().then(|| model.load()).transpose()
}

fn refuse_existing(output: &Path, force: bool) -> Result<()> {
    if output.exists() && !force {
        return Err(Error::Output(format!(
            "{} exists; pass --force to replace it",
            output.display()
        )));
    }
    Ok(())
}

fn stories_for(
    input: Option<&Path>,
    source: &Source,
    template: &Template,
    options: &RolloutOptions,
    explain: &ExplainOptions,
) -> Result<Stories> {
    let run = |models: &[&Model]| {
        Stories::for_template(models, &read_input(input)?, template, options, explain)
    };
    Ok(match source {
        Source::Model(Some(model)) => run(&[model])?,
        Source::Model(None) => Stories::One(Box::new(Story::mechanism(&template.mechanism)?)),
        Source::Pair(models) => run(&[&models[0], &models[1]])?,
        Source::Trace { trace, image, name } => Stories::One(Box::new(
            Story::for_trace_template(trace, image.as_ref(), None, template, options, explain)?
                .with_model_name(name.clone()),
        )),
    })
}

fn progress_bar(frames: usize, quiet: bool, label: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    swin_rollout::progress::frames_bar(frames, label)
}

fn render_one(
    job: &Job,
    source: &Source,
    template: &Template,
    (options, explain): (&RolloutOptions, &ExplainOptions),
    encoder: &EncodeOptions,
    quiet: bool,
) -> Result<()> {
    // A bad output name is reported before the model runs.
    OutputFormat::from_path(&job.output)?;
    let stories = stories_for(job.input.as_deref(), source, template, options, explain)?;
    let frames = stories.frames(template)?;
    let bar = progress_bar(frames.frame_count(), quiet, &stem(job.input.as_deref()));
    let result = render::write_video(
        &*frames,
        &job.output,
        encoder,
        &check_interrupted,
        Some(&|| bar.inc(1)),
    );
    bar.finish_and_clear();
    result
}

fn render_folder(
    folder: &Path,
    args: &RenderArgs,
    shard: swin_rollout::shard::Shard,
    template: &Template,
    options: &RolloutOptions,
    encoder: &EncodeOptions,
) -> Result<()> {
    let explain = args.explain.options()?;
    if args.frames_dir.is_some() {
        return Err(Error::InvalidArgument(
            "--frames-dir takes one image; for a folder of images give -o with a folder for the videos".into(),
        ));
    }
    let out_dir = args.output.clone().unwrap_or_else(|| PathBuf::from("."));
    if !out_dir.is_dir() {
        return Err(Error::Output(format!(
            "{}: the output folder does not exist; create it first",
            out_dir.display()
        )));
    }
    let inputs = swin_rollout::preprocess::image_files(folder)?;
    // Outputs are planned over the whole folder, so that every shard refuses the same clashes.
    let outputs = swin_rollout::output::outputs_in(&out_dir, &inputs, args.format.extension())?;
    let total = inputs.len();
    let jobs = shard.select(inputs.into_iter().zip(outputs).collect());
    let source = Source::new(template, &args.model, &args.compare, &args.trace)?;
    let (mut made, mut skipped, mut failed) = (0, 0, 0);
    for (input, output) in &jobs {
        check_interrupted()?;
        let job = Job {
            output: output.clone(),
            input: Some(input.clone()),
        };
        // Outputs appear only whole (renamed from a hidden temporary file), so one that
        // exists is finished: a rerun resumes, and shards can share the folder.
        if job.output.exists() && !args.force {
            skipped += 1;
            continue;
        }
        match render_one(
            &job,
            &source,
            template,
            (options, &explain),
            encoder,
            args.quiet,
        ) {
            Ok(()) => made += 1,
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            Err(e) => {
                failed += 1;
                eprintln!("skipped {}: {e}", input.display());
            }
        }
    }
    if !args.quiet {
        let part = if shard.count() > 1 {
            format!("shard {shard}: {} of {total} images; ", jobs.len())
        } else {
            String::new()
        };
        eprintln!(
            "{part}{made} rendered, {skipped} already there (--force replaces them), {failed} failed, into {}",
            out_dir.display()
        );
    }
    if failed > 0 {
        return Err(Error::InvalidArgument(format!(
            "{failed} of {} images could not be rendered (see above)",
            jobs.len()
        )));
    }
    Ok(())
}

pub(super) fn still(args: &StillArgs) -> Result<()> {
    let template = Template::load(&args.template)?;
    let options = args.rollout.options()?;
    let explain = args.explain.options()?;
    refuse_existing(&args.output, args.force)?;
    swin_rollout::output::check_writable(&args.output)?;
    let source = Source::new(&template, &args.model, &args.compare, &args.trace)?;
    let stories = stories_for(
        args.input.as_deref(),
        &source,
        &template,
        &options,
        &explain,
    )?;
    let frame = stories.frames(&template)?.frame_at(args.at)?;
    render::write_png(&frame, &args.output)?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

pub(super) fn templates(args: &TemplatesArgs) -> Result<()> {
    match &args.show {
        Some(name) => {
            let source = Template::builtin_source(name).ok_or_else(|| {
                let names: Vec<_> = Template::builtin_list()
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect();
                Error::InvalidArgument(format!(
                    "no built-in template '{name}'; available: {}",
                    names.join(", ")
                ))
            })?;
            print!("{source}");
        }
        None => {
            for (name, description) in Template::builtin_list() {
                println!("{name:<12} {description}");
            }
            println!("\nUse one with --template NAME; start your own with `swin-rollout templates --show NAME > my.toml` and --template my.toml.");
        }
    }
    Ok(())
}
