//! The renderer: timeline, determinism, the matrix panel against the trace's index images,
//! masked pairs in the schematic, template errors, and golden frames of every built-in
//! template.
//!
//! Golden frames are compared by the SHA-256 of their raw RGB bytes, listed in
//! `tests/golden/hashes.txt`; a downscaled PNG of each lies beside it for people to look at.
//! After an intended change of the pictures, regenerate both with
//! `UPDATE_GOLDEN=1 cargo test --test render golden`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};
use swin_rollout::model::Prediction;
use swin_rollout::render::{
    still, Beat, ClassMap, Comparison, Frames, Mode, Order, Renderer, Story, Template,
};
use swin_rollout::{BlockTrace, Geometry, RolloutOptions, Trace};

// ---------------------------------------------------------------------------------------------
// Synthetic traces

use swin_rollout::rng::SplitMix64 as Rng;

/// The shift-mask region of window place (`window`, `place`), computed as the reference
/// implementation does: on the rolled, padded grid, rows `[0, Hp−M)`, `[Hp−M, Hp−s)`,
/// `[Hp−s, Hp)` (and the same for columns) are regions.
fn reference_region(g: &Geometry, window: usize, place: usize) -> usize {
    if g.shift == 0 {
        return 0;
    }
    let m = g.window;
    let (wr, wc) = (window / g.windows_across(), window % g.windows_across());
    let (y, x) = (wr * m + place / m, wc * m + place % m);
    let part = |v: usize, n: usize| {
        if v < n - m {
            0
        } else if v < n - g.shift {
            1
        } else {
            2
        }
    };
    3 * part(y, g.padded_height) + part(x, g.padded_width)
}

/// A trace of a small Swin: `side`² tokens, window `window`, `depths` blocks per stage, with
/// random attention that, like the model's, is exactly zero between shift regions.
fn random_trace(side: usize, window: usize, depths: &[usize], patch: usize, seed: u64) -> Trace {
    let mut rng = Rng(seed);
    let mut blocks = Vec::new();
    let mut n = side;
    for (stage, &depth) in depths.iter().enumerate() {
        for block in 0..depth {
            let shift = if block % 2 == 1 { window / 2 } else { 0 };
            let g = Geometry::new(stage, block, n, n, window, shift);
            let area = g.window_area();
            let heads = 2;
            let mut attention = Vec::new();
            for w in 0..g.windows() {
                for _ in 0..heads {
                    for q in 0..area {
                        let rq = reference_region(&g, w, q);
                        let row: Vec<f32> = (0..area)
                            .map(|k| {
                                if reference_region(&g, w, k) == rq {
                                    (3.0 * rng.next_f32()).exp()
                                } else {
                                    0.0
                                }
                            })
                            .collect();
                        let sum: f32 = row.iter().sum();
                        attention.extend(row.iter().map(|v| v / sum));
                    }
                }
            }
            blocks.push(BlockTrace {
                geometry: g,
                heads,
                attention,
            });
        }
        n = n.div_ceil(2);
    }
    Trace {
        pixel_values: Vec::new(),
        image_size: (side * patch, side * patch),
        logits: vec![0.1, 2.0, 0.3],
        blocks,
    }
}

fn gradient_image(side: u32) -> image::RgbImage {
    image::RgbImage::from_fn(side, side, |x, y| {
        let (u, v) = (x as f32 / side as f32, y as f32 / side as f32);
        image::Rgb([
            (40.0 + 200.0 * u) as u8,
            (60.0 + 150.0 * v) as u8,
            (180.0 - 120.0 * u * v) as u8,
        ])
    })
}

/// A story over 12×12 tokens: stages 12×12 (window 4, shifted), 6×6 (padded to 8×8, shifted)
/// and 3×3 (window clamped to 3).
fn small_story() -> Story {
    let trace = random_trace(12, 4, &[2, 2, 1], 8, 7);
    let labels: Vec<String> = ["cat", "dog", "fox"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    Story::new(&trace, gradient_image(96), &RolloutOptions::default())
        .unwrap()
        .with_logits(&trace.logits, &labels)
        .with_model_name("test-swin")
}

/// A small template with every panel, for fast tests.
const SMALL: &str = r#"
description = "test"
[canvas]
width = 640
height = 360
fps = 10
[timing]
intro = 0.5
block = 1.0
merge = 0.3
finale = 0.6
fill = 0.5
reorder = 0.2
crossfade = 0.3
fade = 0.2
[fonts]
title = 20
caption = 14
label = 12
tick = 10
[image]
place = [10, 40, 190, 230]
title = "{height}×{width}"
shifted_note = "wrapped"
[matrix]
place = [210, 40, 230, 230]
title = "{tokens} {order}"
note = "q × k"
bar = "attn"
order = "both"
[rollout]
place = [450, 40, 180, 180]
title = "rollout {layer}"
bar = "×"
[naive]
place = [450, 230, 180, 120]
title = "naive"
[figure]
place = [10, 40, 620, 280]
input_title = "in"
stage_title = "s{stage}"
pair_title = "{first}-{last}"
single_title = "{first}"
final_title = "all"
bar = "× uniform"
[track]
place = [10, 300, 620, 50]
stage_label = "stage {stage}"
block_label = "{attention}"
[[caption]]
text = "{model}: {label} {probability}"
at = [10, 8]
size = 20
bold = true
[[caption]]
text = "stage {stage} block {block} window {filling}/{windows}"
at = [320, 10]
during = ["block"]
"#;

fn small_template() -> Template {
    Template::parse(SMALL, "small.toml").unwrap()
}

fn sha(img: &image::RgbImage) -> String {
    let digest = Sha256::digest(img.as_raw());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Timeline and determinism

#[test]
fn frame_count_follows_the_template_timing() {
    let story = small_story();
    let t = small_template();
    let r = Renderer::new(&story, &t).unwrap();
    // 5 blocks, 2 merges: intro 5 + 5 × 10 + 2 × 3 + finale 6 frames at 10 fps.
    assert_eq!(r.frame_count(), 5 + 5 * 10 + 2 * 3 + 6);
    let beats: Vec<Beat> = r.timeline().segments().iter().map(|s| s.beat).collect();
    assert_eq!(beats[0], Beat::Intro);
    assert_eq!(beats[3], Beat::Merge { from: 1, to: 2 });
    assert_eq!(*beats.last().unwrap(), Beat::Finale);
    assert!(r.frame(r.frame_count()).is_err());
}

#[test]
fn frames_are_deterministic_across_runs_and_threads() {
    let story = small_story();
    let t = small_template();
    let render_all = |threads: usize| -> Vec<String> {
        // A fresh renderer per pool, so lazy caches are filled by that pool's threads.
        let r = Renderer::new(&story, &t).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            (0..r.frame_count())
                .into_par_iter()
                .map(|i| sha(&r.frame(i).unwrap()))
                .collect()
        })
    };
    let one = render_all(1);
    let two = render_all(2);
    assert_eq!(one, two);
    // And sequentially, frame by frame in reverse, on this thread.
    let r = Renderer::new(&story, &t).unwrap();
    for i in (0..r.frame_count()).rev().step_by(3) {
        assert_eq!(sha(&r.frame(i).unwrap()), one[i], "frame {i}");
    }
    // Frames differ over time (something moves).
    let distinct: std::collections::HashSet<&String> = one.iter().collect();
    assert!(distinct.len() > one.len() / 2);
}

#[test]
fn still_is_the_frame_at_that_time() {
    let story = small_story();
    let t = small_template();
    let r = Renderer::new(&story, &t).unwrap();
    let at = still(&story, &t, 2.05).unwrap();
    assert_eq!(at, r.frame(20).unwrap());
    let past_the_end = still(&story, &t, 1e6).unwrap();
    assert_eq!(past_the_end, r.frame(r.frame_count() - 1).unwrap());
    let stages = Template::load("stages").unwrap();
    let figure = still(&story, &stages, 0.0).unwrap();
    assert_eq!(figure.dimensions(), (1920, 1080));
    assert_eq!(Renderer::new(&story, &stages).unwrap().frame_count(), 1);
}

// ---------------------------------------------------------------------------------------------
// The matrix panel against the index images

/// A template whose matrix square is exactly `side` pixels.
fn matrix_template(side: i32) -> Template {
    let text = format!(
        r#"
description = "matrix"
[canvas]
width = 1200
height = 1200
fps = 10
[fonts]
title = 20
caption = 14
label = 12
tick = 10
[matrix]
place = [0, 0, {w}, {h}]
"#,
        // The square is the place minus the marker margin (14), the colour bar and the title.
        w = side + 14 + 12 + 14 + 8 + 34,
        h = side + 21,
    );
    Template::parse(&text, "matrix.toml").unwrap()
}

/// Slots of each token: raster order, or grouped by window as the index image lists them.
fn slots(g: &Geometry, order: Order) -> Vec<usize> {
    match order {
        Order::Window => {
            let mut s = vec![0; g.tokens()];
            let mut next = 0;
            for t in g.index_image() {
                if t != Geometry::PADDING {
                    s[t as usize] = next;
                    next += 1;
                }
            }
            s
        }
        _ => (0..g.tokens()).collect(),
    }
}

#[test]
fn matrix_levels_sit_exactly_where_the_index_image_puts_attention() {
    let trace = random_trace(12, 4, &[2, 2, 1], 8, 11);
    let story = Story::new(&trace, gradient_image(96), &RolloutOptions::default()).unwrap();
    for (k, block) in trace.blocks.iter().enumerate() {
        let g = block.geometry;
        let n = g.tokens();
        let t = matrix_template(n as i32);
        let r = Renderer::new(&story, &t).unwrap();
        assert_eq!(r.matrix_square().unwrap().w as usize, n, "block {k}");
        // Expected non-zeros: pairs of real tokens of one window with attention.
        let area = g.window_area();
        let mut expected = vec![false; n * n];
        let fused = story.attention(k).unwrap();
        for (w, idx) in g.index_image().chunks(area).enumerate() {
            for (q, &tq) in idx.iter().enumerate() {
                for (p, &tk) in idx.iter().enumerate() {
                    if tq == Geometry::PADDING || tk == Geometry::PADDING {
                        continue;
                    }
                    let nonzero =
                        (0..block.heads).any(|h| block.window_head(w, h)[q * area + p] > 0.0);
                    expected[tq as usize * n + tk as usize] = nonzero;
                    // The panel shows the fused attention; it is non-zero exactly there.
                    let (keys, vals) = fused.row(tq as usize).unwrap();
                    let i = keys.iter().position(|&x| x == tk).unwrap();
                    assert_eq!(vals[i] > 0.0, nonzero);
                }
            }
        }
        for order in [Order::Token, Order::Window] {
            let levels = r.matrix_levels(k, order).unwrap();
            assert_eq!(levels.size, n);
            let s = slots(&g, order);
            for i in 0..n {
                for j in 0..n {
                    let got = levels.levels[s[i] * n + s[j]] > 0;
                    assert_eq!(
                        got,
                        expected[i * n + j],
                        "block {k} {order:?}: tokens ({i}, {j})"
                    );
                }
            }
            if order == Order::Window {
                // Block diagonal: nothing outside the windows' diagonal blocks.
                let mut window_of_slot = Vec::new();
                for (w, idx) in g.index_image().chunks(area).enumerate() {
                    let real = idx.iter().filter(|&&t| t != Geometry::PADDING).count();
                    window_of_slot.extend(std::iter::repeat_n(w, real));
                }
                for a in 0..n {
                    for b in 0..n {
                        if window_of_slot[a] != window_of_slot[b] {
                            assert_eq!(levels.levels[a * n + b], 0);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn pooled_matrix_keeps_isolated_peaks_with_max() {
    let trace = random_trace(12, 4, &[2], 8, 3);
    let story = Story::new(&trace, gradient_image(96), &RolloutOptions::default()).unwrap();
    let g = trace.blocks[0].geometry;
    let n = g.tokens(); // 144
    let size = 48; // three tokens per pixel
    let (pooled_t, full_t) = (matrix_template(size as i32), matrix_template(n as i32));
    let r = Renderer::new(&story, &pooled_t).unwrap();
    let full = Renderer::new(&story, &full_t).unwrap();
    for order in [Order::Token, Order::Window] {
        let pooled = r.matrix_levels(0, order).unwrap();
        let exact = full.matrix_levels(0, order).unwrap();
        assert_eq!(pooled.size, size);
        for y in 0..size {
            for x in 0..size {
                let max = (0..3)
                    .flat_map(|a| (0..3).map(move |b| (3 * y + a, 3 * x + b)))
                    .map(|(i, j)| exact.levels[i * n + j])
                    .max()
                    .unwrap();
                assert_eq!(pooled.levels[y * size + x], max, "{order:?} ({y}, {x})");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Mechanism mode

#[test]
fn masked_wraparound_pairs_render_as_zero_in_the_schematic() {
    let template = Template::load("mechanism").unwrap();
    let story = Story::mechanism(&template.mechanism).unwrap();
    let r = Renderer::new(&story, &template).unwrap();
    let shifted = r
        .timeline()
        .segments()
        .iter()
        .find(|s| matches!(s.beat, Beat::Block(k) if story.geometries()[k].shift > 0))
        .copied()
        .unwrap();
    let Beat::Block(k) = shifted.beat else {
        unreachable!()
    };
    let g = story.geometries()[k];
    let area = g.window_area();
    let mut masked = Vec::new();
    let mut open = Vec::new();
    for (w, idx) in g.index_image().chunks(area).enumerate() {
        for q in 0..area {
            for p in 0..area {
                let pair = (idx[q], idx[p]);
                if reference_region(&g, w, q) != reference_region(&g, w, p) {
                    masked.push(pair);
                } else {
                    open.push(pair);
                }
            }
        }
    }
    assert!(
        !masked.is_empty(),
        "a shifted 8×8 grid with window 4 has masked pairs"
    );
    // The last frame of the block: fully filled, in token order after the move.
    let last = r.frame(shifted.start + shifted.frames - 1).unwrap();
    let zero = image::Rgb(template.matrix.as_ref().unwrap().colormap.lut().get(0).0);
    for order in [Order::Token, Order::Window] {
        let levels = r.matrix_levels(k, order).unwrap();
        for &(q, key) in &masked {
            let cell = r.matrix_cell(k, q, key, order).unwrap();
            let (x, y) = (
                cell.x - r.matrix_square().unwrap().x,
                cell.y - r.matrix_square().unwrap().y,
            );
            assert_eq!(levels.levels[y as usize * levels.size + x as usize], 0);
            if order == Order::Token {
                // Away from the red dot in the cell's middle: the colour of zero.
                let px = last.get_pixel((cell.x + cell.w / 4) as u32, (cell.y + cell.h / 4) as u32);
                assert_eq!(*px, zero, "masked pair ({q}, {key}) is not drawn as zero");
            }
        }
        for &(q, key) in &open {
            let cell = r.matrix_cell(k, q, key, order).unwrap();
            let (x, y) = (
                cell.x - r.matrix_square().unwrap().x,
                cell.y - r.matrix_square().unwrap().y,
            );
            assert!(levels.levels[y as usize * levels.size + x as usize] > 0);
        }
    }
}

#[test]
fn mechanism_template_refuses_a_model_story() {
    let story = small_story();
    let template = Template::load("mechanism").unwrap();
    let err = Renderer::new(&story, &template).unwrap_err().to_string();
    assert!(err.contains("Story::mechanism"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Template errors

fn parse_err(text: &str) -> String {
    Template::parse(text, "templates/x.toml")
        .unwrap_err()
        .to_string()
}

const MINIMAL: &str = "description = \"d\"\n[canvas]\nwidth = 320\nheight = 180\nfps = 10\n[image]\nplace = [0, 0, 100, 100]\n";

#[test]
fn unknown_key_names_file_line_key_and_the_expected_ones() {
    let text = format!("{MINIMAL}[matrix]\nplace = [100, 0, 100, 100]\ncolour_map = \"magma\"\n");
    let err = parse_err(&text);
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(err.starts_with("templates/x.toml:10:"), "{err}");
    assert!(
        err.contains("unknown key 'colour_map' in [matrix]"),
        "{err}"
    );
    assert!(err.contains("colormap"), "lists the expected keys: {err}");
}

#[test]
fn bad_values_are_named() {
    let err = parse_err(&MINIMAL.replace("fps = 10", "fps = \"fast\""));
    assert!(err.starts_with("templates/x.toml:5:"), "{err}");
    assert!(err.contains("'fps'") && err.contains("[canvas]"), "{err}");
    let err = parse_err(&format!(
        "{MINIMAL}[matrix]\nplace = [0, 0, 10, 10]\norder = \"diagonal\"\n"
    ));
    assert!(
        err.contains("templates/x.toml:10:") && err.contains("'order'"),
        "{err}"
    );
    assert!(err.contains("token") && err.contains("window"), "{err}");
    let err = parse_err(&format!("{MINIMAL}[timing]\nfill = 1.5\n"));
    assert!(
        err.contains("templates/x.toml:9:") && err.contains("fill"),
        "{err}"
    );
    let err = parse_err(&MINIMAL.replace("[0, 0, 100, 100]", "[300, 0, 100, 100]"));
    assert!(err.contains("does not fit") && err.contains(":7:"), "{err}");
    let err = parse_err(&format!("{MINIMAL}[colours]\naccent = \"#fff\"\n"));
    assert!(
        err.contains(":8: unknown key 'colours' at the top level"),
        "{err}"
    );
    let err = parse_err(&format!("{MINIMAL}[colors]\naccent = \"yellowish\"\n"));
    assert!(err.contains(":9:") && err.contains("#rrggbb"), "{err}");
}

#[test]
fn odd_canvas_sizes_are_refused() {
    let err = parse_err(&MINIMAL.replace("width = 320", "width = 321"));
    assert!(err.starts_with("templates/x.toml:3:"), "{err}");
    assert!(err.contains("odd") && err.contains("even"), "{err}");
    let err = parse_err(&MINIMAL.replace("height = 180", "height = 181"));
    assert!(err.contains(":4:") && err.contains("odd"), "{err}");
}

#[test]
fn unknown_placeholder_is_named() {
    let text =
        format!("{MINIMAL}[[caption]]\ntext = \"stage {{stage}} of {{stagez}}\"\nat = [0, 0]\n");
    let err = parse_err(&text);
    assert!(err.starts_with("templates/x.toml:9:"), "{err}");
    assert!(err.contains("unknown placeholder '{stagez}'"), "{err}");
    assert!(err.contains("{stage}"), "lists the known ones: {err}");
}

#[test]
fn unknown_builtin_lists_the_available_ones() {
    let err = Template::load("explainerr").unwrap_err().to_string();
    for name in [
        "explainer",
        "conference",
        "timelapse",
        "mechanism",
        "stages",
        "classes",
        "compare",
    ] {
        assert!(err.contains(name), "{err}");
    }
}

#[test]
fn builtins_have_descriptions_and_user_files_load() {
    let list = Template::builtin_list();
    assert_eq!(list.len(), 7);
    for (name, description) in &list {
        assert!(
            !description.is_empty() && !description.contains('\n'),
            "{name}"
        );
        let t = Template::load(name).unwrap();
        assert_eq!(t.width % 2, 0);
        assert_eq!(t.height % 2, 0);
    }
    let conference = Template::load("conference").unwrap();
    let story = small_story();
    let r = Renderer::new(&story, &conference).unwrap();
    assert!(r.timeline().duration() <= 20.0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mine.toml");
    std::fs::write(&path, Template::builtin_source("timelapse").unwrap()).unwrap();
    let mine = Template::load(path.to_str().unwrap()).unwrap();
    assert_eq!(mine.width, 1080);
    std::fs::write(&path, "description = \"d\"\n[canvas]\nwidth = 10\n").unwrap();
    let err = Template::load(path.to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("mine.toml:2: missing key"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Golden frames

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn read_hashes(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (name, hash) = l.split_once(' ')?;
            Some((name.to_string(), hash.trim().to_string()))
        })
        .collect()
}

/// A few frames of every built-in template, at the template's full size.
fn golden_frames() -> Vec<(String, image::RgbImage)> {
    let story = small_story();
    let mut out = Vec::new();
    for (name, _) in Template::builtin_list() {
        let template = Template::load(name).unwrap();
        let schematic;
        let classes;
        let story = if template.mode == Mode::Classes {
            // Three classes' maps: distinct maps of the story stand in for their relevance.
            let maps = story.pooled_maps();
            let picks = [maps.len() - 1, maps.len() / 2, 0];
            let class_maps = picks
                .iter()
                .enumerate()
                .map(|(rank, &k)| ClassMap {
                    prediction: Prediction {
                        index: rank,
                        label: format!("class {rank}"),
                        probability: 0.6 / (rank + 1) as f32,
                    },
                    map: maps[k].clone(),
                })
                .collect();
            classes = story.clone().with_class_maps(class_maps);
            &classes
        } else if template.needs_model() {
            &story
        } else {
            schematic = Story::mechanism(&template.mechanism).unwrap();
            &schematic
        };
        // Compare puts the story beside a shallower one (one stage of two blocks), whose
        // blocks are stretched to keep step.
        let shallow_trace = random_trace(12, 4, &[2], 8, 3);
        let shallow = Story::new(
            &shallow_trace,
            gradient_image(96),
            &RolloutOptions::default(),
        )
        .unwrap()
        .with_logits(
            &shallow_trace.logits,
            &["cat".into(), "dog".into(), "fox".into()],
        )
        .with_model_name("test-swin-shallow");
        let comparison;
        let single;
        let (frames, r): (&dyn Frames, &Renderer) = if template.mode == Mode::Compare {
            comparison = Comparison::new(story, &shallow, &template).unwrap();
            (&comparison, comparison.side(0).unwrap())
        } else {
            single = Renderer::new(story, &template).unwrap();
            (&single, &single)
        };
        let mut picks = Vec::new();
        for s in r.timeline().segments() {
            let at = |f: f64| s.start + ((s.frames as f64 * f) as usize).min(s.frames - 1);
            match s.beat {
                Beat::Intro => picks.push(("intro".to_string(), at(0.9))),
                Beat::Block(1) => picks.push(("shifted".to_string(), at(0.35))),
                Beat::Block(0) => picks.push(("regular".to_string(), at(0.95))),
                Beat::Merge { from: 1, .. } => picks.push(("merge".to_string(), at(0.4))),
                Beat::Finale => picks.push(("finale".to_string(), at(1.0))),
                _ => {}
            }
        }
        for (label, i) in picks {
            out.push((format!("{name}_{label}"), frames.frame(i).unwrap()));
        }
    }
    out
}

#[test]
fn golden_frames_of_every_builtin_template() {
    let dir = golden_dir();
    let hashes_path = dir.join("hashes.txt");
    let frames = golden_frames();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        let mut lines = String::new();
        for (name, img) in &frames {
            lines.push_str(&format!("{name} {}\n", sha(img)));
            let (w, h) = img.dimensions();
            let small =
                image::imageops::resize(img, w / 4, h / 4, image::imageops::FilterType::Triangle);
            small.save(dir.join(format!("{name}.png"))).unwrap();
        }
        std::fs::write(&hashes_path, lines).unwrap();
        return;
    }
    let expected = read_hashes(&hashes_path);
    assert!(
        !expected.is_empty(),
        "no golden hashes in {}; run UPDATE_GOLDEN=1 cargo test --test render golden",
        hashes_path.display()
    );
    let mut failures = Vec::new();
    for (name, img) in &frames {
        let got = sha(img);
        if expected.get(name) != Some(&got) {
            let actual = std::env::temp_dir().join(format!("golden-actual-{name}.png"));
            img.save(&actual).unwrap();
            failures.push(format!("{name} (now {})", actual.display()));
        }
    }
    assert_eq!(frames.len(), expected.len(), "golden frame names changed");
    assert!(
        failures.is_empty(),
        "golden frames differ: {}; look at them and, if the change is intended, run \
         UPDATE_GOLDEN=1 cargo test --test render golden",
        failures.join(", ")
    );
}

#[test]
fn renderer_is_sync_and_schematic_specs_are_checked() {
    fn sync<T: Sync>() {}
    sync::<Renderer>();
    let bad = swin_rollout::render::template::MechanismSpec {
        grid: 6,
        window: 4,
        sigma: 1.0,
    };
    assert!(Story::mechanism(&bad).is_err());
}
