//! Renders a few frames of the `mechanism` template — the schematic of Swin's window attention
//! on an 8×8 token grid — as PNG files. Needs no model.
//!
//! ```sh
//! cargo run --release --example render_frames -- out/
//! ```

use std::path::PathBuf;

use swin_rollout::render::{Beat, Renderer, Story, Template};

fn main() -> swin_rollout::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "frames".into()));
    std::fs::create_dir_all(&out).map_err(|e| swin_rollout::Error::io(&out, e))?;

    // The template says how it looks; the schematic story is made from its [mechanism] grid.
    let template = Template::load("mechanism")?;
    let story = Story::mechanism(&template.mechanism)?;
    let renderer = Renderer::new(&story, &template)?;
    println!(
        "{}: {} frames at {} fps ({:.1} s)",
        template.name,
        renderer.frame_count(),
        renderer.fps(),
        renderer.timeline().duration()
    );

    // One frame from the middle of every beat: intro, each block filling, the merge, the end.
    for segment in renderer.timeline().segments() {
        let name = match segment.beat {
            Beat::Intro => "intro".to_string(),
            Beat::Block(k) => format!("block{k}"),
            Beat::Merge { from, to } => format!("merge{from}-{to}"),
            Beat::Finale => "finale".to_string(),
        };
        let index = segment.start + segment.frames / 2;
        let path = out.join(format!("{name}.png"));
        renderer.frame(index)?.save(&path).map_err(|e| {
            swin_rollout::Error::InvalidArgument(format!("{}: {e}", path.display()))
        })?;
        println!("{}", path.display());
    }
    Ok(())
}
