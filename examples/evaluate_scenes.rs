//! Generates a few held-out cluttered Fashion-MNIST scenes — the benchmark's test images — and
//! saves them as PNGs with the item's bounding box drawn; with a model, also prints what it
//! predicts for each.
//!
//! `cargo run --release --example evaluate_scenes -- OUT_DIR [COUNT] [MODEL_FOLDER]`
//!
//! Needs Debian's dataset-fashion-mnist (`tools/setup.sh` installs it) or
//! `SWIN_ROLLOUT_FASHION_MNIST` naming a folder with its `*-ubyte.gz` files.

use std::path::PathBuf;

use image::{Rgb, RgbImage};
use swin_rollout::evaluate::DEFAULT_SEED;
use swin_rollout::scene::{SceneSource, Split, CLASS_NAMES};
use swin_rollout::{Error, Model, ModelSource};

/// Draws a `thickness`-pixel rectangle just inside the exclusive box (x0, y0, x1, y1).
fn draw_box(img: &mut RgbImage, (x0, y0, x1, y1): (usize, usize, usize, usize), colour: Rgb<u8>) {
    let thickness = 2;
    for y in y0..y1 {
        for x in x0..x1 {
            let edge = x < x0 + thickness
                || x + thickness >= x1
                || y < y0 + thickness
                || y + thickness >= y1;
            if edge {
                img.put_pixel(x as u32, y as u32, colour);
            }
        }
    }
}

fn main() -> swin_rollout::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first().map(PathBuf::from) else {
        return Err(Error::InvalidArgument(
            "usage: evaluate_scenes OUT_DIR [COUNT] [MODEL_FOLDER]".into(),
        ));
    };
    let count: u64 = match args.get(1) {
        Some(n) => n
            .parse()
            .map_err(|_| Error::InvalidArgument(format!("COUNT must be a number, got '{n}'")))?,
        None => 4,
    };
    let model = args
        .get(2)
        .map(|m| Model::load(&ModelSource::parse(m)))
        .transpose()?;
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;

    // The benchmark's own scenes: held-out (t10k) items, scene i of the default seed.
    let source = SceneSource::load(Split::Test)?;
    for index in 0..count {
        let scene = source.scene(DEFAULT_SEED, index);
        let mut picture = scene.image.clone();
        draw_box(&mut picture, scene.bbox, Rgb([255, 32, 32]));
        let path = out.join(format!("scene_{index}.png"));
        picture.save(&path).map_err(|e| Error::Image {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let mut line = format!(
            "{}: {} (label {}), box {:?}, mask {:.1}% of the canvas",
            path.display(),
            CLASS_NAMES[scene.label],
            scene.label,
            scene.bbox,
            100.0 * scene.mask_fraction()
        );
        if let Some(model) = &model {
            let trace = model.trace_pixels(model.preprocessor.apply(&scene.image))?;
            if let Some(top) = model.top_k(&trace.logits, 1).first() {
                line += &format!("; model: {} ({:.1}%)", top.label, 100.0 * top.probability);
            }
        }
        println!("{line}");
    }
    Ok(())
}
