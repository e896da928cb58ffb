//! The compare template: two models' stories side by side, each drawn by its own renderer in
//! its box, in step (both begin their blocks together and end together), with captions on the
//! whole canvas; and the checks on compare templates.

mod common;

use rayon::prelude::*;
use sha2::{Digest, Sha256};
use swin_rollout::render::{Beat, Comparison, Order, Renderer, Story, Template};
use swin_rollout::{RolloutOptions, Trace};

/// A two-stage Swin-like story: 8×8 tokens, windows of 4, shifted second blocks, a merge.
fn swin_story() -> Story {
    let cfg = common::Config {
        height: 8,
        width: 8,
        window: 4,
        depths: &[2, 2],
        heads: &[1, 2],
        shift: true,
        fixed_windows: false,
    };
    let mut trace = common::random_trace(&cfg, 3);
    trace.image_size = (64, 64);
    trace.logits = vec![1.5, 0.3];
    story(&trace, "test-swin")
}

/// A ViT-like story: three blocks of global attention over CLS and 6×6 patches.
fn vit_story() -> Story {
    story(&common::random_global_trace((6, 6), 1, 3, 2, 9), "test-vit")
}

fn story(trace: &Trace, name: &str) -> Story {
    let image = image::RgbImage::from_fn(48, 48, |x, y| image::Rgb([x as u8 * 5, y as u8 * 5, 90]));
    let labels = ["shirt".to_string(), "boot".to_string()];
    Story::new(trace, image, &RolloutOptions::default())
        .unwrap()
        .with_logits(&trace.logits, &labels)
        .with_model_name(name)
}

fn sha(img: &image::RgbImage) -> String {
    Sha256::digest(img.as_raw())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The frame of the first block beat of `r`, and of its finale.
fn first_block_and_finale(r: &Renderer) -> (usize, usize) {
    let t = r.timeline();
    let start = |beat| t.find(beat).map(|s| s.start).unwrap();
    (start(Beat::Block(0)), start(Beat::Finale))
}

#[test]
fn each_side_is_its_own_story_in_its_box_and_both_go_in_step() {
    let (swin, vit) = (swin_story(), vit_story());
    let t = Template::load("compare").unwrap();
    let c = Comparison::new(&swin, &vit, &t).unwrap();
    let (left, right) = (c.side(0).unwrap(), c.side(1).unwrap());
    assert_eq!(c.size(), (1920, 1080));
    let boxes = c.boxes();
    assert_eq!(left.size(), (boxes[0].w as u32, boxes[0].h as u32));
    assert_eq!(right.size(), (boxes[1].w as u32, boxes[1].h as u32));

    // 4 Swin blocks and a merge against 3 ViT blocks: the ViT's blocks last longer, so both
    // begin their blocks on the same frame and reach their finales within a frame.
    let (l_first, l_finale) = first_block_and_finale(left);
    let (r_first, r_finale) = first_block_and_finale(right);
    assert_eq!(l_first, r_first);
    assert!(l_finale.abs_diff(r_finale) <= 1, "{l_finale} {r_finale}");
    let vit_block = right.timeline().find(Beat::Block(0)).unwrap().frames;
    let swin_block = left.timeline().find(Beat::Block(0)).unwrap().frames;
    assert!(vit_block > swin_block, "{vit_block} {swin_block}");
    assert_eq!(c.frame_count(), left.frame_count().max(right.frame_count()));

    // Every frame is the two sides' frames of that index in their boxes, exactly.
    let n = c.frame_count();
    for i in [0, l_first + 3, n / 2, l_finale, n - 1] {
        let frame = c.frame(i).unwrap();
        for (side, place) in [left, right].into_iter().zip(boxes) {
            let own = side.frame(i.min(side.frame_count() - 1)).unwrap();
            let cut = image::imageops::crop_imm(
                &frame,
                place.x as u32,
                place.y as u32,
                place.w as u32,
                place.h as u32,
            )
            .to_image();
            assert!(
                cut == own,
                "frame {i}: the box at {place:?} is not its side's frame"
            );
        }
        // The canvas title is drawn above the boxes.
        let above = image::imageops::crop_imm(&frame, 0, 0, 1920, boxes[0].y as u32).to_image();
        let background = above.get_pixel(0, 0);
        assert!(
            above.pixels().any(|p| p != background),
            "frame {i}: no title"
        );
    }
    assert!(c.frame(n).is_err());
    assert_eq!(
        sha(&c.frame_at(1e9).unwrap()),
        sha(&c.frame(n - 1).unwrap())
    );
}

#[test]
fn frames_are_identical_in_any_order_on_any_thread() {
    let (swin, vit) = (swin_story(), vit_story());
    let t = Template::load("compare").unwrap();
    let c = Comparison::new(&swin, &vit, &t).unwrap();
    let picks: Vec<usize> = (0..c.frame_count()).step_by(37).collect();
    let serial: Vec<String> = picks.iter().map(|&i| sha(&c.frame(i).unwrap())).collect();
    let parallel: Vec<String> = picks
        .par_iter()
        .rev()
        .map(|&i| sha(&c.frame(i).unwrap()))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert_eq!(serial, parallel);
    let distinct: std::collections::HashSet<&String> = serial.iter().collect();
    assert!(distinct.len() > picks.len() / 2, "frames do not change");
}

#[test]
fn the_swin_matrix_is_block_sparse_and_the_vit_matrix_full() {
    let (swin, vit) = (swin_story(), vit_story());
    let t = Template::load("compare").unwrap();
    let c = Comparison::new(&swin, &vit, &t).unwrap();
    let empty = |side: usize, block: usize| {
        let levels = c
            .side(side)
            .unwrap()
            .matrix_levels(block, Order::Token)
            .unwrap();
        levels.levels.iter().filter(|&&l| l == 0).count() as f64 / levels.levels.len() as f64
    };
    for block in 0..2 {
        // 4 windows of 16 tokens among 64: three quarters of the matrix stays empty.
        assert!(
            empty(0, block) > 0.7,
            "swin block {block}: {}",
            empty(0, block)
        );
    }
    for block in 0..3 {
        assert_eq!(empty(1, block), 0.0, "vit block {block}");
    }
}

#[test]
fn compare_templates_are_checked() {
    let (swin, vit) = (swin_story(), vit_story());
    let compare = Template::load("compare").unwrap();
    let err = Renderer::new(&swin, &compare).unwrap_err().to_string();
    assert!(err.contains("two models side by side"), "{err}");
    let explainer = Template::load("explainer").unwrap();
    let err = Comparison::new(&swin, &vit, &explainer)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a compare template"), "{err}");

    let source = Template::builtin_source("compare").unwrap();
    let parse = |text: &str| Template::parse(text, "mine.toml").unwrap_err().to_string();
    let without_right = source.replace("right = [960, 130, 960, 950]\n", "");
    let err = parse(&without_right);
    assert!(err.contains("needs [compare] right"), "{err}");
    let too_wide = source.replace(
        "right = [960, 130, 960, 950]",
        "right = [961, 130, 960, 950]",
    );
    let err = parse(&too_wide);
    assert!(
        err.contains("right = [961, 130, 960, 950] does not fit the 1920×1080 canvas"),
        "{err}"
    );
    // Panels are placed in a box: a place that fits the canvas but not the box is refused.
    let big = source.replace("place = [40, 90, 550, 630]", "place = [40, 90, 1000, 630]");
    let err = parse(&big);
    assert!(
        err.contains("does not fit the 960×950 box of [compare]"),
        "{err}"
    );
    let story_mode = source.replace("mode = \"compare\"", "mode = \"story\"");
    let err = parse(&story_mode);
    assert!(err.contains("needs mode = \"compare\""), "{err}");
    let canvas_caption = Template::builtin_source("explainer").unwrap().replace(
        "bold = true\nattention = \"window\"",
        "bold = true\ncanvas = true\nattention = \"window\"",
    );
    let err = parse(&canvas_caption);
    assert!(
        err.contains("mine.toml:") && err.contains("canvas = true"),
        "{err}"
    );
}
