//! Runs two models on one image and renders the `compare` template: a Swin's block-sparse
//! window attention beside a ViT's full attention matrix, block by block, with both rollouts.
//! By default the two embedded models on the embedded demo scene, offline.
//!
//! ```sh
//! cargo run --release --example compare_models -- compare.mp4
//! cargo run --release --example compare_models -- compare.mp4 photo.jpg SWIN_DIR VIT_DIR
//! ```

use std::path::PathBuf;

use swin_rollout::encode::EncodeOptions;
use swin_rollout::explain::ExplainOptions;
use swin_rollout::model::{Model, ModelSource};
use swin_rollout::render::{self, Comparison, Story, Template};
use swin_rollout::RolloutOptions;

fn main() -> swin_rollout::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let output = PathBuf::from(args.first().map_or("compare.mp4", String::as_str));
    let image = match args.get(1) {
        Some(path) => swin_rollout::preprocess::read_rgb(std::path::Path::new(path))?,
        None => swin_rollout::demo::demo_image()?,
    };
    let model = |arg: Option<&String>, default: ModelSource| {
        Model::load(&arg.map_or(default, |a| ModelSource::parse(a)))
    };
    let swin = model(args.get(2), ModelSource::Embedded)?;
    let vit = model(args.get(3), ModelSource::EmbeddedVit)?;

    // Each model's story of the same image: its trace, rollout after every block, prediction.
    let template = Template::load("compare")?;
    let (options, explain) = (RolloutOptions::default(), ExplainOptions::default());
    let left = Story::for_template(&swin, &image, &template, &options, &explain)?;
    let right = Story::for_template(&vit, &image, &template, &options, &explain)?;
    for (story, model) in [(&left, &swin), (&right, &vit)] {
        let p = story
            .prediction()
            .map_or("no classifier".into(), |p| p.label.clone());
        println!(
            "{}: {} blocks, predicts {p}",
            model.name,
            story.geometries().len()
        );
    }

    // Side by side and in step; frames render in parallel and stream to the encoder.
    let comparison = Comparison::new(&left, &right, &template)?;
    println!(
        "{} frames at {} fps",
        comparison.frame_count(),
        comparison.fps()
    );
    render::write_video(
        &comparison,
        &output,
        &EncodeOptions::default(),
        &|| Ok(()),
        None,
    )?;
    println!("wrote {}", output.display());
    Ok(())
}
