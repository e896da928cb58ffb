//! Class-specific relevance of one image: the top classes, then the window-aware relevance
//! of a chosen class after the last block (its class part: the map less the baseline that the
//! identities and merges alone give), as ASCII shading and, when asked, a PNG heat map.
//!
//! ```sh
//! cargo run --release --example relevance_map -- embedded assets/scenes/scene_0.png
//! cargo run --release --example relevance_map -- embedded assets/scenes/scene_0.png Sandal map.png
//! cargo run --release --example relevance_map -- tiny-random assets/chelsea.png 3
//! cargo run --release --example relevance_map -- microsoft/swin-tiny-patch4-window7-224 assets/chelsea.png
//! ```
//!
//! MODEL is `embedded` (the built-in model), a folder, a hub id, or `tiny-random` (the swin-tiny
//! architecture with random weights and 1000 classes). CLASS is a label or an index; without it
//! the top prediction is explained.

use std::path::Path;

use swin_rollout::model::{Checkpoint, Config, Network};
use swin_rollout::preprocess::Preprocessor;
use swin_rollout::{Error, Map, Model, ModelSource, Relevance};

/// Darkest last.
const SHADES: &[u8] = b" .:-=+*#%@";

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> swin_rollout::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model, image, class, png) = match args.as_slice() {
        [m, i] => (m, i, None, None),
        [m, i, c] => (m, i, Some(c), None),
        [m, i, c, p] => (m, i, Some(c), Some(p)),
        _ => {
            eprintln!("usage: relevance_map MODEL|embedded|tiny-random IMAGE [CLASS] [OUT.png]");
            std::process::exit(2);
        }
    };
    let model = load(model)?;
    let pixels = model.preprocessor.load(Path::new(image))?;
    let labels = model.labels();
    let target = class.map(|c| model.class_index(c)).transpose()?;

    // One forward and backward pass: the trace (logits, attention) and ∂y_c/∂A of every block.
    let (trace, gradients) = model.trace_pixels_with_gradients(pixels, target)?;
    println!("top classes of {image} ({}):", model.name);
    for p in model.top_k(&trace.logits, 5) {
        println!(
            "  {:>5.1} %  {} ({})",
            100.0 * p.probability,
            p.label,
            p.index
        );
    }
    let relevance = Relevance::new(&trace, &gradients)?;
    let maps = relevance.maps();
    let last = maps
        .last()
        .ok_or_else(|| Error::Model("the model has no blocks".into()))?;
    let part = &last.class_part;
    let share = part.values.iter().map(|&v| f64::from(v)).sum::<f64>()
        / last.map.values.iter().map(|&v| f64::from(v)).sum::<f64>();
    println!(
        "relevance of {:?} ({}) after the last block, class part ({:.1} % of the map; {}×{} tokens):",
        labels[relevance.target()],
        relevance.target(),
        100.0 * share,
        part.height,
        part.width
    );
    print_map(part);
    if let Some(png) = png {
        write_png(part, Path::new(png))?;
        println!("wrote {png}");
    }
    Ok(())
}

/// `embedded`, `tiny-random`, or a folder / hub id as `--model` reads it.
fn load(arg: &str) -> swin_rollout::Result<Model> {
    match arg {
        "embedded" => Model::load(&ModelSource::Embedded),
        "tiny-random" => {
            let config = Config::swin_tiny(1000);
            Ok(Model {
                network: Network::load(&Checkpoint::random(&config, 7)?, config)?,
                preprocessor: Preprocessor::imagenet((224, 224)),
                name: "swin-tiny, random weights".into(),
            })
        }
        other => Model::load(&ModelSource::parse(other)),
    }
}

/// One character per token (doubled across, for squarer cells), shaded relative to the max;
/// every other row, so a 56×56 map fits a terminal.
fn print_map(map: &Map) {
    let max = map.values.iter().copied().fold(f32::MIN_POSITIVE, f32::max);
    let step = if map.height > 32 { 2 } else { 1 };
    for row in map.values.chunks(map.width).step_by(step) {
        let line: String = row
            .iter()
            .flat_map(|&v| {
                let i = ((v / max).max(0.0) * (SHADES.len() - 1) as f32).round() as usize;
                let c = SHADES[i.min(SHADES.len() - 1)] as char;
                [c, c]
            })
            .collect();
        println!("  |{line}|");
    }
}

/// The map as a magma heat map, 8 pixels a token, scaled to its maximum.
fn write_png(map: &Map, path: &Path) -> swin_rollout::Result<()> {
    const CELL: u32 = 8;
    let max = map.values.iter().copied().fold(f32::MIN_POSITIVE, f32::max);
    let (w, h) = (map.width as u32 * CELL, map.height as u32 * CELL);
    let image = image::RgbImage::from_fn(w, h, |x, y| {
        let v = map.values[(y / CELL) as usize * map.width + (x / CELL) as usize];
        let c = colorous::MAGMA.eval_continuous(f64::from((v / max).clamp(0.0, 1.0)));
        image::Rgb([c.r, c.g, c.b])
    });
    image
        .save(path)
        .map_err(|e| Error::InvalidArgument(format!("cannot write {}: {e}", path.display())))
}
