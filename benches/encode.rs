//! Video encoding cost at 1920×1080, without rendering: RGB → YUV conversion per frame, and
//! frames per second through the whole MP4 path (conversion + x264 + muxing + faststart) at the
//! default settings (preset veryfast, CRF 18, 8 encoder threads).
//!
//! Protocol: 24 distinct synthetic frames — a smooth "photo" under a moving heat-map blob, so
//! the encoder sees texture and motion rather than flat colour — are rendered before timing.
//! One MP4 iteration opens a sink, pushes the 24 frames and finishes the file (so x264's
//! lookahead flush is included); criterion reports it as frames/s. Other presets:
//! `SWIN_BENCH_PRESETS=ultrafast,veryfast,medium cargo bench --bench encode`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use image::{Rgb, RgbImage};
use std::time::Duration;
use swin_rollout::encode::{self, EncodeOptions, FrameRate, OutputFormat, Yuv420Converter};

const W: u32 = 1920;
const H: u32 = 1080;
const FRAMES: usize = 24;

/// A stand-in for an explainer frame: a smooth background with a blob of heat-map colour
/// sweeping across it.
fn synthetic_frame(i: usize) -> RgbImage {
    let (cx, cy) = (300.0 + 50.0 * i as f32, 540.0 + 12.0 * i as f32);
    RgbImage::from_fn(W, H, |x, y| {
        let (xf, yf) = (x as f32, y as f32);
        let base = [
            90.0 + 60.0 * (xf / 97.0).sin() * (yf / 131.0).cos(),
            110.0 + 50.0 * (yf / 53.0).sin(),
            100.0 + 40.0 * ((xf + yf) / 71.0).cos(),
        ];
        let d2 = ((xf - cx).powi(2) + (yf - cy).powi(2)) / (260.0f32).powi(2);
        let heat = (-d2).exp();
        // A jet-like ramp: blue → green → red as heat rises.
        let ramp = [
            (1.5 - (4.0 * heat - 3.0).abs()).clamp(0.0, 1.0),
            (1.5 - (4.0 * heat - 2.0).abs()).clamp(0.0, 1.0),
            (1.5 - (4.0 * heat - 1.0).abs()).clamp(0.0, 1.0),
        ];
        let a = 0.6 * heat.sqrt();
        let px = |k: usize| ((1.0 - a) * base[k] + a * 255.0 * ramp[k]).clamp(0.0, 255.0) as u8;
        Rgb([px(0), px(1), px(2)])
    })
}

fn encode_1080p(c: &mut Criterion) {
    let frames: Vec<RgbImage> = (0..FRAMES).map(synthetic_frame).collect();
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("bench.mp4");
    let fps = FrameRate::new(30, 1).expect("rate");

    let mut group = c.benchmark_group("encode_1080p");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));

    group.throughput(Throughput::Elements(1));
    let mut converter = Yuv420Converter::new(W, H).expect("converter");
    let mut i = 0;
    group.bench_function("rgb_to_yuv420_bt709", |b| {
        b.iter(|| {
            i = (i + 1) % FRAMES;
            converter.convert(&frames[i]).expect("convert")
        })
    });

    let presets = std::env::var("SWIN_BENCH_PRESETS").unwrap_or_else(|_| "veryfast".into());
    group.throughput(Throughput::Elements(FRAMES as u64));
    group.measurement_time(Duration::from_secs(12));
    for preset in presets.split(',') {
        let options = EncodeOptions {
            preset: preset.trim().to_string(),
            ..EncodeOptions::default()
        };
        group.bench_function(format!("mp4_{}_crf{}", options.preset, options.crf), |b| {
            b.iter(|| {
                let mut sink =
                    encode::open(&path, OutputFormat::Mp4, W, H, fps, &options).expect("open");
                for frame in &frames {
                    sink.push(frame).expect("push");
                }
                sink.finish().expect("finish");
            })
        });
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        eprintln!(
            "preset {}: {FRAMES} frames -> {:.1} KiB ({:.0} kbit/s at 30 fps)",
            options.preset,
            size as f64 / 1024.0,
            size as f64 * 8.0 / 1000.0 / (FRAMES as f64 / 30.0)
        );
    }
    group.finish();
}

criterion_group!(benches, encode_1080p);
criterion_main!(benches);
