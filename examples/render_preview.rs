//! Renders the key frames of every built-in template as PNGs, for a model and an image: the
//! intro, a regular and a shifted block mid-fill, the window-order view, a merge, the finale.
//!
//! ```sh
//! cargo run --release --example render_preview -- tests/fixtures/swin224 assets/chelsea.png out/
//! cargo run --release --example render_preview -- tiny-random assets/chelsea.png out/
//! ```
//!
//! `tiny-random` is the swin-tiny architecture with random weights: the real geometry (56×56
//! tokens, 12 blocks), noise for attention.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use swin_rollout::model::{Checkpoint, Config, Swin};
use swin_rollout::preprocess::{read_rgb, Preprocessor};
use swin_rollout::render::{Beat, Renderer, Story, Template};
use swin_rollout::{Model, ModelSource, RolloutOptions, Trace};

fn main() -> swin_rollout::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, image, out] = args.as_slice() else {
        eprintln!("usage: render_preview MODEL_DIR|tiny-random IMAGE OUT_DIR");
        std::process::exit(2);
    };
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out).map_err(|e| swin_rollout::Error::io(&out, e))?;
    let options = RolloutOptions::default();
    let story = if model == "tiny-random" {
        let config = Config::swin_tiny(10);
        let swin = Swin::load(&Checkpoint::random(&config, 7)?, config)?;
        let pre = Preprocessor::imagenet((224, 224));
        let rgb = read_rgb(Path::new(image))?;
        let pixels = pre.apply(&rgb);
        let t = Tensor::from_vec(pixels.clone(), (3, 224, 224), &Device::Cpu)?;
        let (logits, blocks) = swin.trace(&t)?;
        let trace = Trace {
            pixel_values: pixels.clone(),
            image_size: (224, 224),
            logits,
            blocks,
        };
        let img = swin_rollout::render::input_image(&pixels, (224, 224), &pre)?;
        Story::new(&trace, img, &options)?
            .with_logits(&trace.logits, &swin.config().labels)
            .with_model_name("swin-tiny (random weights)")
    } else {
        let m = Model::load(&ModelSource::Folder(model.into()))?;
        let trace = m.trace_image(Path::new(image))?;
        Story::from_model(&m, &trace, &options)?
    };

    for (name, _) in Template::builtin_list() {
        let template = Template::load(name)?;
        let mechanism;
        let story = if template.needs_model() {
            &story
        } else {
            mechanism = Story::mechanism(&template.mechanism)?;
            &mechanism
        };
        let r = Renderer::new(story, &template)?;
        let t = r.timeline();
        let mut picks: Vec<(String, usize)> = Vec::new();
        for s in t.segments() {
            let at = |f: f64| s.start + ((s.frames as f64 * f) as usize).min(s.frames - 1);
            match s.beat {
                Beat::Intro => picks.push(("intro".into(), at(0.8))),
                Beat::Block(k) if k >= 2 && story.geometries()[k].shift == 0 => {
                    picks.push((format!("block{k}_fill"), at(0.3)));
                }
                Beat::Block(k) => {
                    picks.push((format!("block{k}_fill"), at(0.3)));
                    picks.push((format!("block{k}_full"), at(0.62)));
                    picks.push((format!("block{k}_reorder"), at(0.75)));
                    picks.push((format!("block{k}_end"), at(0.99)));
                }
                Beat::Merge { from, .. } if from < 4 => {
                    picks.push((format!("merge{from}_a"), at(0.3)));
                    picks.push((format!("merge{from}_b"), at(0.8)));
                }
                Beat::Finale => picks.push(("finale".into(), at(0.99))),
                _ => {}
            }
        }
        for (label, i) in picks {
            let start = std::time::Instant::now();
            let frame = r.frame(i)?;
            let ms = start.elapsed().as_secs_f64() * 1e3;
            let path = out.join(format!("{name}_{label}.png"));
            frame
                .save(&path)
                .map_err(|e| swin_rollout::Error::InvalidArgument(e.to_string()))?;
            println!("{} (frame {i}, {ms:.1} ms)", path.display());
        }
        println!("{name}: {} frames", r.frame_count());
        if std::env::var_os("PREVIEW_TIME").is_some() {
            // Every frame once, in order, on this thread: the render-only cost of the video.
            let start = std::time::Instant::now();
            let mut worst = 0f64;
            for i in 0..r.frame_count() {
                let t = std::time::Instant::now();
                r.frame(i)?;
                worst = worst.max(t.elapsed().as_secs_f64());
            }
            let total = start.elapsed().as_secs_f64();
            println!(
                "{name}: {:.2} ms/frame on one thread ({:.0} frames/s), worst {:.1} ms",
                1e3 * total / r.frame_count() as f64,
                r.frame_count() as f64 / total,
                1e3 * worst
            );
        }
    }
    Ok(())
}
