//! Rendering traces of global attention (ViT, DeiT): every video and figure template draws
//! them, captions follow the kind of attention, placeholders count the prefix tokens, and the
//! stage figure's per-block maps are the CLS row of each block's Â over the patches.

mod common;

use sha2::{Digest, Sha256};
use swin_rollout::render::{still, Renderer, Story, Template};
use swin_rollout::rng::SplitMix64 as Rng;
use swin_rollout::{BlockTrace, Geometry, RolloutOptions, Trace};

/// A ViT-like trace over a `side`×`side` patch grid, two heads.
fn global_trace(side: usize, prefix: usize, depth: usize, seed: u64) -> Trace {
    common::random_global_trace((side, side), prefix, depth, 2, seed)
}

/// A small Swin trace (one stage of two blocks, window 3 over 6×6) to contrast with.
fn window_trace() -> Trace {
    let mut trace = global_trace(6, 0, 0, 1);
    let mut rng = Rng(5);
    for (block, shift) in [(0, 0), (1, 1)] {
        let g = Geometry::new(0, block, 6, 6, 3, shift);
        let area = g.window_area();
        let mut attention = Vec::new();
        for _ in 0..g.windows() * area {
            let row: Vec<f32> = (0..area).map(|_| 0.5 + rng.next_f32()).collect();
            let sum: f32 = row.iter().sum();
            attention.extend(row.iter().map(|v| v / sum));
        }
        trace.blocks.push(BlockTrace {
            geometry: g,
            heads: 1,
            attention,
        });
    }
    trace
}

fn story(trace: &Trace) -> Story {
    let image = image::RgbImage::from_fn(48, 48, |x, y| image::Rgb([x as u8 * 5, y as u8 * 5, 90]));
    let labels = ["shirt".to_string(), "boot".to_string()];
    Story::new(trace, image, &RolloutOptions::default())
        .unwrap()
        .with_logits(&trace.logits, &labels)
        .with_model_name("test-vit")
}

fn sha(img: &image::RgbImage) -> String {
    Sha256::digest(img.as_raw())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn every_video_and_figure_template_draws_a_vit_and_a_deit() {
    for prefix in [1, 2] {
        let story = story(&global_trace(6, prefix, 3, 11 + prefix as u64));
        for (name, _) in Template::builtin_list() {
            // The schematic shows no trace; the classes figure needs the model's backward pass;
            // compare draws two stories (tests/render_compare.rs has a ViT beside a Swin).
            if name == "mechanism" || name == "classes" || name == "compare" {
                continue;
            }
            let t = Template::load(name).unwrap();
            let r = Renderer::new(&story, &t).unwrap();
            let n = r.frame_count();
            let picks: Vec<usize> = [0, n / 3, n / 2, n - 1].into();
            let frames: Vec<String> = picks.iter().map(|&i| sha(&r.frame(i).unwrap())).collect();
            // Deterministic, and (for videos) something moves.
            for (&i, h) in picks.iter().zip(&frames) {
                assert_eq!(&sha(&r.frame(i).unwrap()), h, "{name} frame {i}");
            }
            if n > 1 {
                let distinct: std::collections::HashSet<&String> = frames.iter().collect();
                assert!(distinct.len() >= 3, "{name}: frames do not change");
            }
        }
    }
}

/// A tiny template whose one caption is `caption` (a TOML caption body).
fn caption_template(caption: &str) -> Template {
    let text = format!(
        r#"
description = "captions"
[canvas]
width = 320
height = 96
fps = 10
[timing]
intro = 0.2
block = 0.5
merge = 0.2
finale = 0.2
[rollout]
place = [240, 30, 60, 60]
title = "r"
{caption}
"#
    );
    Template::parse(&text, "captions.toml").unwrap()
}

/// The frame at 0.4 s (the first block) of `story` with the caption `caption`.
fn caption_frame(story: &Story, caption: &str) -> String {
    sha(&still(story, &caption_template(caption), 0.4).unwrap())
}

#[test]
fn captions_show_only_for_their_kind_of_attention() {
    let none = "";
    let global = "[[caption]]\ntext = \"XXXX\"\nat = [10, 10]\nattention = \"global\"";
    let window = "[[caption]]\ntext = \"XXXX\"\nat = [10, 10]\nattention = \"window\"";
    let vit = story(&global_trace(6, 1, 2, 3));
    let swin = story(&window_trace());
    assert_ne!(caption_frame(&vit, global), caption_frame(&vit, none));
    assert_eq!(caption_frame(&vit, window), caption_frame(&vit, none));
    assert_ne!(caption_frame(&swin, window), caption_frame(&swin, none));
    assert_eq!(caption_frame(&swin, global), caption_frame(&swin, none));
    let bad = "description = \"x\"\n[canvas]\nwidth = 64\nheight = 64\nfps = 10\n\
               [[caption]]\ntext = \"a\"\nat = [1, 1]\nattention = \"local\"";
    let err = Template::parse(bad, "t.toml").unwrap_err().to_string();
    assert!(err.contains("global") && err.contains("window"), "{err}");
}

#[test]
fn placeholders_count_the_prefix_tokens_of_a_deit() {
    let deit = story(&global_trace(6, 2, 2, 4));
    let same = |var: &str, literal: &str| {
        let a = caption_frame(
            &deit,
            &format!("[[caption]]\ntext = \"{var}\"\nat = [10, 10]"),
        );
        let b = caption_frame(
            &deit,
            &format!("[[caption]]\ntext = \"{literal}\"\nat = [10, 10]"),
        );
        assert_eq!(a, b, "{var} is not “{literal}”");
    };
    // 2 prefix tokens and 36 patches: the matrix is 38 × 38.
    same("{tokens}", "38");
    same("{prefix_tokens}", "2 prefix tokens");
    same("{attention}", "global MSA");
    same("{order}", "token order");
    let swin = story(&window_trace());
    let a = caption_frame(
        &swin,
        "[[caption]]\ntext = \"{tokens} {attention}\"\nat = [1, 1]",
    );
    let b = caption_frame(&swin, "[[caption]]\ntext = \"36 W-MSA\"\nat = [1, 1]");
    assert_eq!(a, b);
}

#[test]
fn a_vit_stage_figure_shows_each_blocks_cls_row_over_the_patches() {
    let trace = global_trace(4, 2, 3, 9);
    let story = story(&trace);
    let maps = story.stage_maps();
    assert_eq!(maps.len(), 3, "one map per block, none paired");
    let alpha = f64::from(RolloutOptions::default().residual);
    for (k, (m, b)) in maps.iter().zip(&trace.blocks).enumerate() {
        assert_eq!(m.blocks, (k, k));
        assert_eq!((m.map.height, m.map.width), (4, 4));
        // Dense: Â = (1−α)·mean over heads of A + α·I; its CLS row over the 16 patches.
        let t = b.geometry.tokens();
        let row: Vec<f64> = (0..t)
            .map(|key| {
                let mean = (0..b.heads)
                    .map(|h| f64::from(b.attention[h * t * t + key]))
                    .sum::<f64>()
                    / b.heads as f64;
                (1.0 - alpha) * mean + if key == 0 { alpha } else { 0.0 }
            })
            .collect();
        let patches = &row[2..];
        let sum: f64 = patches.iter().sum();
        for (got, want) in m.map.values.iter().zip(patches) {
            assert!((f64::from(*got) - want / sum).abs() < 1e-6, "block {k}");
        }
    }
}
