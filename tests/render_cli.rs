//! `render`, `still` and `templates` as a user runs them: decoded videos have the template's
//! size, rate and frame count; existing outputs are kept; a folder with a broken image renders
//! the rest and fails at the end; nothing half-written is left.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swin-rollout"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("binary runs")
}

/// The built-in timelapse template, shrunk to a small canvas and short beats so tests are fast.
fn small_template(dir: &Path) -> PathBuf {
    let out = run(&["templates", "--show", "timelapse"], dir);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap().replace(
        "width = 1080\nheight = 1080\nfps = 30",
        "width = 1080\nheight = 1080\nfps = 6",
    );
    let path = dir.join("small.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// (codec, pixel format, width, height, fps, frames) of a video, read back with ffmpeg-next.
fn probe(path: &Path) -> (String, String, u32, u32, f64, usize) {
    ffmpeg_next::init().unwrap();
    let mut input = ffmpeg_next::format::input(path).unwrap();
    let stream = input
        .streams()
        .best(ffmpeg_next::media::Type::Video)
        .unwrap();
    let index = stream.index();
    let rate = stream.avg_frame_rate();
    let ctx = ffmpeg_next::codec::context::Context::from_parameters(stream.parameters()).unwrap();
    let mut decoder = ctx.decoder().video().unwrap();
    let (codec, format, w, h) = (
        decoder
            .codec()
            .map(|c| c.name().to_string())
            .unwrap_or_default(),
        format!("{:?}", decoder.format()),
        decoder.width(),
        decoder.height(),
    );
    let mut frames = 0;
    let mut frame = ffmpeg_next::frame::Video::empty();
    for (s, packet) in input.packets() {
        if s.index() == index {
            decoder.send_packet(&packet).unwrap();
            while decoder.receive_frame(&mut frame).is_ok() {
                frames += 1;
            }
        }
    }
    decoder.send_eof().unwrap();
    while decoder.receive_frame(&mut frame).is_ok() {
        frames += 1;
    }
    (codec, format, w, h, f64::from(rate), frames)
}

#[test]
fn render_writes_an_h264_video_with_the_timelines_frames() {
    let dir = tempfile::tempdir().unwrap();
    let template = small_template(dir.path());
    let model = root().join("tests/fixtures/swin_pad");
    let image = root().join("assets/chelsea.png");
    let out = run(
        &[
            "render",
            image.to_str().unwrap(),
            "-m",
            model.to_str().unwrap(),
            "-t",
            template.to_str().unwrap(),
            "-o",
            "v.mp4",
            "-q",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (codec, format, w, h, fps, frames) = probe(&dir.path().join("v.mp4"));
    assert_eq!(
        (codec.as_str(), format.as_str(), w, h),
        ("h264", "YUV420P", 1080, 1080)
    );
    assert!((fps - 6.0).abs() < 1e-9, "fps {fps}");
    // The timeline of this template: intro 1 s, 8 blocks × 0.7 s, finale 2 s at 6 fps.
    let expected = {
        let t = swin_rollout::render::Template::load(template.to_str().unwrap()).unwrap();
        let m = swin_rollout::Model::load(&swin_rollout::ModelSource::Folder(model)).unwrap();
        let trace = m.trace_image(&image).unwrap();
        let story =
            swin_rollout::render::Story::from_model(&m, &trace, &Default::default()).unwrap();
        swin_rollout::render::Renderer::new(&story, &t)
            .unwrap()
            .frame_count()
    };
    assert_eq!(frames, expected);

    // Without --force the video is kept, with it replaced.
    let again = run(
        &[
            "render",
            image.to_str().unwrap(),
            "-m",
            "x",
            "-t",
            template.to_str().unwrap(),
            "-o",
            "v.mp4",
        ],
        dir.path(),
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
}

#[test]
fn folder_render_skips_broken_images_and_fails_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let template = small_template(dir.path());
    let images = dir.path().join("images");
    let videos = dir.path().join("videos");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&videos).unwrap();
    std::fs::copy(root().join("assets/chelsea.png"), images.join("cat.png")).unwrap();
    std::fs::write(images.join("broken.png"), b"not a png").unwrap();
    let model = root().join("tests/fixtures/swin_pad");
    let out = run(
        &[
            "render",
            "images",
            "-o",
            "videos",
            "-m",
            model.to_str().unwrap(),
            "-t",
            template.to_str().unwrap(),
        ],
        dir.path(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("broken.png"), "{err}");
    assert!(err.contains("1 rendered"), "{err}");
    assert!(videos.join("cat.mp4").exists());
    let names: Vec<_> = std::fs::read_dir(&videos)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "only the finished video: {names:?}");

    // A second run skips what exists.
    std::fs::remove_file(images.join("broken.png")).unwrap();
    let out = run(
        &[
            "render",
            "images",
            "-o",
            "videos",
            "-m",
            model.to_str().unwrap(),
            "-t",
            template.to_str().unwrap(),
        ],
        dir.path(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("0 rendered, 1 already there"), "{err}");
}

#[test]
fn mechanism_needs_no_model_and_stills_are_png() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &[
            "still",
            "--template",
            "mechanism",
            "--at",
            "3",
            "-o",
            "m.png",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = image::open(dir.path().join("m.png")).unwrap();
    assert_eq!((img.width(), img.height()), (1920, 1080));
}

#[test]
fn bad_templates_and_outputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "description = \"x\"\n[canvas]\nwidth = 640\nhieght = 360\nfps = 30\n",
    )
    .unwrap();
    for (args, needle) in [
        (vec!["render", "-t", "nope"], "unknown template 'nope'"),
        (vec!["render", "-t", bad.to_str().unwrap()], "bad.toml:4"),
        (
            vec!["render", "-t", "mechanism", "-o", "missing/x.mp4"],
            "does not exist",
        ),
        (vec!["render", "-t", "mechanism", "-o", "x.avi"], ".avi"),
        (vec!["templates", "--show", "nope"], "available"),
    ] {
        let out = run(&args, dir.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(!dir.path().join("missing").exists());
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("bad.toml")],
        "nothing half-written"
    );
}

/// The PNG written by `still` with `args`, decoded.
fn still_png(dir: &Path, name: &str, args: &[&str]) -> image::RgbImage {
    let out = run(&[&["still"], args, &["-o", name, "--force"]].concat(), dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    image::open(dir.join(name)).unwrap().to_rgb8()
}

#[test]
fn relevance_renders_class_specific_maps_and_the_classes_figure() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The explainer at a late block: the rollout, then two classes' relevance.
    let at = ["--template", "explainer", "--at", "45"];
    let rollout = still_png(d, "rollout.png", &at);
    let sandal = still_png(
        d,
        "sandal.png",
        &[&at[..], &["--explain", "relevance"]].concat(),
    );
    let sneaker = still_png(
        d,
        "sneaker.png",
        &[&at[..], &["--explain", "relevance", "--class", "Sneaker"]].concat(),
    );
    assert_ne!(rollout, sandal, "relevance is not the rollout");
    assert_ne!(sandal, sneaker, "two classes give different maps");
    // The default class is the top prediction: naming it changes nothing.
    let named = still_png(
        d,
        "named.png",
        &[&at[..], &["--explain", "relevance", "--class", "Sandal"]].concat(),
    );
    assert_eq!(sandal, named);
    let classes = still_png(d, "classes.png", &["--template", "classes"]);
    assert_eq!(classes.dimensions(), (1920, 1080));
}

#[test]
fn a_vit_explains_its_classes_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = root().join("tests/fixtures/vit_small");
    let model = model.to_str().unwrap();
    let at = ["--model", model, "--template", "explainer", "--at", "9"];
    let rollout = still_png(d, "rollout.png", &at);
    let top = still_png(
        d,
        "top.png",
        &[&at[..], &["--explain", "relevance"]].concat(),
    );
    let other = still_png(
        d,
        "other.png",
        &[&at[..], &["--explain", "relevance", "--class", "class_4"]].concat(),
    );
    assert_ne!(rollout, top, "relevance is not the rollout");
    assert_ne!(top, other, "two classes give different maps");
    let classes = still_png(
        d,
        "classes.png",
        &["--model", model, "--template", "classes"],
    );
    assert_eq!(classes.dimensions(), (1920, 1080));
}

#[test]
fn compare_puts_the_embedded_swin_beside_the_embedded_vit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let at = ["--template", "compare", "--at", "20"];
    let default = still_png(d, "default.png", &at);
    assert_eq!(default.dimensions(), (1920, 1080));
    // The defaults are the two embedded models, named or not; swapping them swaps the sides.
    let named = still_png(
        d,
        "named.png",
        &[
            &at[..],
            &["--model", "embedded:swin", "--compare", "embedded:vit"],
        ]
        .concat(),
    );
    assert_eq!(default, named);
    let swapped = still_png(
        d,
        "swapped.png",
        &[
            &at[..],
            &["--model", "embedded:vit", "--compare", "embedded:swin"],
        ]
        .concat(),
    );
    let half =
        |img: &image::RgbImage, x: u32| image::imageops::crop_imm(img, x, 130, 960, 950).to_image();
    assert_ne!(half(&default, 0), half(&swapped, 0));
    let relevance = still_png(
        d,
        "relevance.png",
        &[&at[..], &["--explain", "relevance"]].concat(),
    );
    assert_ne!(default, relevance, "relevance is not the rollout");

    // A second model without the compare template, or a trace with it, is refused in one line.
    for (args, expected) in [
        (
            vec!["still", "--compare", "embedded:vit", "-o", "x.png"],
            "--compare names the second model of a compare template",
        ),
        (
            vec![
                "still",
                "--template",
                "compare",
                "--trace",
                "t.npz",
                "-o",
                "x.png",
            ],
            "runs two models on the image; it takes no --trace",
        ),
        (
            vec![
                "still",
                "--template",
                "compare",
                "--compare",
                "no/such/dir",
                "-o",
                "x.png",
            ],
            "no/such/dir",
        ),
    ] {
        let out = run(&args, d);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(expected),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!d.join("x.png").exists(), "nothing half-written");
    }
}
