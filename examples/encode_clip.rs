//! Writes a two-second synthetic clip through the public encoder API, as a user of the library
//! would: a heat-map-like blob drifting over a gradient, rendered in parallel and encoded in
//! order with a progress bar.
//!
//! ```sh
//! cargo run --release --example encode_clip              # writes encode_clip.mp4
//! cargo run --release --example encode_clip -- clip.gif  # or a GIF, or an existing folder
//! ```

use std::path::PathBuf;

use image::{Rgb, RgbImage};
use swin_rollout::encode::{self, EncodeOptions, FrameRate, OutputFormat};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;

fn frame(i: usize, count: usize) -> RgbImage {
    let t = i as f32 / count as f32;
    let (cx, cy) = (WIDTH as f32 * (0.15 + 0.7 * t), HEIGHT as f32 * 0.5);
    RgbImage::from_fn(WIDTH, HEIGHT, |x, y| {
        let (xf, yf) = (x as f32, y as f32);
        let heat = (-((xf - cx).powi(2) + (yf - cy).powi(2)) / 6000.0).exp();
        let base = 60.0 + 120.0 * yf / HEIGHT as f32;
        let mix = |hot: f32| ((1.0 - heat) * base + heat * hot) as u8;
        Rgb([mix(255.0), mix(200.0 * heat), mix(40.0)])
    })
}

fn main() -> swin_rollout::Result<()> {
    let path = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("encode_clip.mp4"), PathBuf::from);
    let format = OutputFormat::from_path(&path)?;
    let fps = FrameRate::new(30, 1)?;
    let count = 2 * 30;

    let sink = encode::open(&path, format, WIDTH, HEIGHT, fps, &EncodeOptions::default())?;
    // Progress is a callback: here a dot per ten frames pushed.
    let pushed = std::sync::atomic::AtomicUsize::new(0);
    let tick = || {
        if pushed.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 10 == 9 {
            eprint!(".");
        }
    };
    encode::render_to(sink, count, |i| Ok(frame(i, count)), Some(&tick))?;
    eprintln!();
    println!(
        "wrote {} ({count} frames, {WIDTH}x{HEIGHT} at {fps} fps)",
        path.display()
    );
    Ok(())
}
