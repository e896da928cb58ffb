//! `render --trace` / `still --trace` and `render DIR --shard` as a user (or a cluster) runs
//! them: a trace renders the same frames as its model, bad traces are one line with nothing
//! written, shards side by side render every image exactly once, and a killed shard leaves no
//! visible output and resumes on a rerun.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::bad_traces::{bad_traces, fixture};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn binary() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_swin-rollout"));
    // The scheduler variables of a CI runner must not leak into the shard tests.
    for v in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_MAX",
        "SLURM_ARRAY_TASK_STEP",
        "JOB_COMPLETION_INDEX",
    ] {
        c.env_remove(v);
    }
    c
}

fn run(args: &[&str], cwd: &Path) -> Output {
    binary()
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("binary runs")
}

fn ok(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err
}

fn model() -> String {
    root().join("tests/fixtures/swin_pad").display().to_string()
}

fn chelsea() -> String {
    root().join("assets/chelsea.png").display().to_string()
}

/// A tiny template: one rollout panel on 96×96, a frame or two a beat, so renders take
/// milliseconds; `fps` and `block` make it slower where a test needs a render in flight.
fn tiny_template(dir: &Path, fps: u32, block: f64) -> PathBuf {
    let text = format!(
        "description = \"tiny\"\n[canvas]\nwidth = 96\nheight = 96\nfps = {fps}\n\
         [timing]\nintro = 0.25\nblock = {block}\nmerge = 0.0\nfinale = 0.25\nfill = 0.5\n\
         crossfade = 0.0\nfade = 0.0\n[rollout]\nplace = [8, 8, 80, 80]\ntitle = \"{{layer}}\"\n"
    );
    let path = dir.join(format!("tiny-{fps}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The built-in timelapse template without its caption about the model and its prediction,
/// which a trace without labels leaves out, so that a trace and its model draw the same.
fn timelapse_without_prediction(dir: &Path) -> PathBuf {
    let out = run(&["templates", "--show", "timelapse"], dir);
    let text = String::from_utf8(out.stdout).unwrap();
    let text = text.replace(
        "{model} · “{label}” {probability}",
        "the window-aware rollout",
    );
    assert!(!text.contains("{label}"));
    let path = dir.join("timelapse-plain.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Files in `dir` that are outputs (not hidden), sorted.
fn visible(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

fn hidden(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[test]
fn a_trace_renders_the_same_frames_as_its_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = run(
        &["export", &chelsea(), "-m", &model(), "-o", "trace.npz"],
        d,
    );
    ok(&out);
    let template = timelapse_without_prediction(d);
    let t = template.to_str().unwrap();
    for at in ["0.5", "3.1", "7"] {
        ok(&run(
            &[
                "still",
                &chelsea(),
                "-m",
                &model(),
                "-t",
                t,
                "--at",
                at,
                "-o",
                "model.png",
                "-f",
            ],
            d,
        ));
        let from_model = std::fs::read(d.join("model.png")).unwrap();
        for image in [&["--image", &chelsea()][..], &[]] {
            let args = [
                &["still", "--trace", "trace.npz", "-t", t, "--at", at][..],
                image,
                &["-o", "trace.png", "-f"],
            ]
            .concat();
            ok(&run(&args, d));
            let from_trace = std::fs::read(d.join("trace.png")).unwrap();
            assert!(
                from_trace == from_model,
                "at {at} s with {image:?}: the trace draws otherwise"
            );
        }
    }
    // A whole video, frame by frame.
    let tiny = tiny_template(d, 4, 0.5);
    let tiny = tiny.to_str().unwrap();
    for (name, source) in [
        ("by_model", vec![chelsea(), "-m".into(), model()]),
        ("by_trace", vec!["--trace".into(), "trace.npz".into()]),
    ] {
        std::fs::create_dir(d.join(name)).unwrap();
        let mut args: Vec<&str> = vec!["render", "-t", tiny, "--frames-dir", name, "-q"];
        args.extend(source.iter().map(String::as_str));
        ok(&run(&args, d));
    }
    let frames = visible(&d.join("by_model"));
    assert!(frames.len() > 8, "{frames:?}");
    assert_eq!(frames, visible(&d.join("by_trace")));
    for f in &frames {
        let a = std::fs::read(d.join("by_model").join(f)).unwrap();
        let b = std::fs::read(d.join("by_trace").join(f)).unwrap();
        assert!(a == b, "{f} differs");
    }
}

#[test]
fn a_trace_without_logits_or_pixels_renders_over_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let plain = fixture("plain.npz").display().to_string();
    let err = ok(&run(
        &[
            "still",
            "--trace",
            &plain,
            "--image",
            &chelsea(),
            "-t",
            "timelapse",
            "--at",
            "2",
            "-o",
            "t.png",
        ],
        d,
    ));
    assert!(err.contains("wrote t.png"), "{err}");
    let img = image::open(d.join("t.png")).unwrap();
    assert_eq!((img.width(), img.height()), (1080, 1080));
    // Kept for people to look at: captions without a model or a prediction.
    let _ = std::fs::copy(
        d.join("t.png"),
        std::env::temp_dir().join("swin-rollout-trace-timelapse.png"),
    );
    let out = run(
        &[
            "render",
            "--trace",
            &plain,
            "-t",
            "timelapse",
            "-o",
            "x.gif",
        ],
        d,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--image"), "{err}");
    assert!(!d.join("x.gif").exists());
}

#[test]
fn bad_traces_and_flags_are_one_line_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let traces = d.join("traces");
    std::fs::create_dir(&traces).unwrap();
    let plain = fixture("plain.npz").display().to_string();
    let mut cases: Vec<(Vec<String>, String)> = bad_traces(&traces)
        .into_iter()
        .map(|(path, needle)| {
            let p = path.display().to_string();
            (
                vec![
                    "still".into(),
                    "--trace".into(),
                    p,
                    "--image".into(),
                    chelsea(),
                ],
                needle.to_string(),
            )
        })
        .collect();
    let s = |v: &[&str]| -> Vec<String> { v.iter().map(|x| x.to_string()).collect() };
    for (args, needle) in [
        (
            s(&[
                "still",
                "--trace",
                &plain,
                "--image",
                &chelsea(),
                "--explain",
                "relevance",
            ]),
            "--explain relevance needs the model's backward pass",
        ),
        (
            s(&[
                "still",
                "--trace",
                &plain,
                "--image",
                &chelsea(),
                "-t",
                "classes",
            ]),
            "template 'classes'",
        ),
        (
            s(&["render", "--trace", &plain, "-t", "mechanism"]),
            "leave out --trace",
        ),
        (
            s(&["render", "--trace", &plain, "-m", &model()]),
            "cannot be used with",
        ),
        (s(&["render", "--image", &chelsea()]), "--trace"),
        (
            s(&["render", "traces", "--shard", "3/3"]),
            "must be below N",
        ),
        (
            s(&["render", "traces", "--shard", "auto"]),
            "neither SLURM_ARRAY_TASK_ID",
        ),
        (
            s(&["render", "traces", "--shard", "0/2", "--shard-count", "2"]),
            "--shard-count goes with --shard auto",
        ),
        (
            s(&["render", &chelsea(), "--shard", "0/2"]),
            "--shard splits a folder",
        ),
    ] {
        cases.push((args, needle.to_string()));
    }
    for (args, needle) in &cases {
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.extend(["-o", "out.mp4"]);
        if args[0] == "still" {
            *args.last_mut().unwrap() = "out.png";
        }
        let out = run(&args, d);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(needle.as_str()), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        let errors = err.lines().filter(|l| l.starts_with("error:")).count();
        assert_eq!(errors, 1, "one error line: {err}");
        assert_eq!(visible(d), ["traces"], "{args:?} wrote something");
        assert!(hidden(d).is_empty(), "{args:?} left a temporary file");
    }
}

/// A folder of `n` small images (three different pictures, resized copies).
fn image_folder(dir: &Path, n: usize) -> PathBuf {
    let images = dir.join("images");
    std::fs::create_dir(&images).unwrap();
    let sources = ["chelsea.png", "coffee.png", "astronaut.png"];
    for i in 0..n {
        let img = image::open(root().join("assets").join(sources[i % 3])).unwrap();
        let img = img.resize_exact(40 + i as u32, 32, image::imageops::FilterType::Triangle);
        img.save(images.join(format!("img{i:02}.png"))).unwrap();
    }
    images
}

/// A shard test's folder: `images/` with `n` images, an empty `out/`, and a tiny template of
/// `fps` frames a second and `block` seconds a block.
struct ShardFolder {
    dir: tempfile::TempDir,
    template: PathBuf,
}

impl ShardFolder {
    fn new(n: usize, fps: u32, block: f64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        image_folder(dir.path(), n);
        std::fs::create_dir(dir.path().join("out")).unwrap();
        let template = tiny_template(dir.path(), fps, block);
        ShardFolder { dir, template }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `render images -o out` with the test model and template, then `extra`.
    fn args(&self, extra: &[&str]) -> Vec<String> {
        let template = self.template.to_str().unwrap();
        let base = [
            "render",
            "images",
            "-o",
            "out",
            "-m",
            &model(),
            "-t",
            template,
        ];
        base.iter().chain(extra).map(|a| a.to_string()).collect()
    }
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn spawn(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Child {
    let mut c = binary();
    c.args(args)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().expect("binary starts")
}

/// How many images a shard's summary line says it rendered and found there.
fn counts(stderr: &str) -> (usize, usize) {
    let line = stderr
        .lines()
        .find(|l| l.contains(" rendered, "))
        .expect(stderr);
    let number = |after: &str| -> usize {
        let i = line.find(after).unwrap();
        line[..i]
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (number(" rendered"), number(" already there"))
}

#[test]
fn shards_side_by_side_render_every_image_once() {
    let folder = ShardFolder::new(10, 4, 0.25);
    let d = folder.path();
    let with = |extra: &[&str]| folder.args(&[&["--format", "gif"], extra].concat());
    // Four shards at once: two given outright, one as a Slurm array task (1-based array), one
    // as a Kubernetes Indexed Job.
    let children = vec![
        spawn(&strs(&with(&["--shard", "0/4"])), d, &[]),
        spawn(&strs(&with(&["--shard", "1/4"])), d, &[]),
        spawn(
            &strs(&with(&["--shard", "auto"])),
            d,
            &[
                ("SLURM_ARRAY_TASK_ID", "3"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                ("SLURM_ARRAY_TASK_MAX", "4"),
            ],
        ),
        spawn(
            &strs(&with(&["--shard", "auto", "--shard-count", "4"])),
            d,
            &[("JOB_COMPLETION_INDEX", "3")],
        ),
    ];
    let mut rendered = 0;
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let err = ok(&out);
        assert!(err.contains(&format!("shard {i}/4: ")), "{err}");
        let (made, there) = counts(&err);
        assert_eq!(there, 0, "{err}");
        // 10 images in 4 parts: positions i, i+4, i+8.
        assert_eq!(made, if i < 2 { 3 } else { 2 }, "{err}");
        rendered += made;
    }
    assert_eq!(rendered, 10, "every image rendered exactly once");
    let expected: Vec<String> = (0..10).map(|i| format!("img{i:02}.gif")).collect();
    assert_eq!(visible(&d.join("out")), expected);
    assert!(hidden(&d.join("out")).is_empty());
    for name in &expected {
        let gif = image::open(d.join("out").join(name)).unwrap();
        assert_eq!((gif.width(), gif.height()), (96, 96));
    }
    // A rerun renders nothing and says so.
    let err = ok(&run(&strs(&with(&["--shard", "2/4"])), d));
    assert_eq!(counts(&err), (0, 2), "{err}");
}

#[test]
fn a_killed_shard_leaves_no_output_and_its_rerun_completes() {
    // Slow enough (8 blocks × 10 s at 30 fps, MP4 written as it renders) to be caught mid-file.
    let folder = ShardFolder::new(4, 30, 10.0);
    let d = folder.path();
    let out_dir = d.join("out");
    let owned = folder.args(&["--shard", "1/2", "-q"]);
    let args = strs(&owned);
    let mut child = spawn(&args, d, &[]);
    let start = Instant::now();
    while hidden(&out_dir).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the shard never started a file"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the shard ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL: no handler runs, the temporary file stays behind
    child.wait().unwrap();
    let leftovers = hidden(&out_dir);
    // Killed within milliseconds of starting a 2400-frame file: its temporary file stays.
    assert!(!leftovers.is_empty(), "killed after the file was finished");
    assert!(
        leftovers.iter().all(|n| n.starts_with(".swin-rollout-")),
        "{leftovers:?}"
    );
    // Whatever is visible is finished: at most the first image of the shard (img01), never
    // the one in flight.
    let seen = visible(&out_dir);
    assert!(seen.is_empty() || seen == ["img01.mp4"], "{seen:?}");
    let before = seen.len();

    let mut rerun = args.to_vec();
    rerun.pop(); // not quiet: the summary says what was skipped
    let err = ok(&run(&rerun, d));
    assert_eq!(counts(&err), (2 - before, before), "{err}");
    assert_eq!(visible(&out_dir), ["img01.mp4", "img03.mp4"]);
    // The killed file's temporary stays hidden and is never taken for an output.
    for n in hidden(&out_dir) {
        assert!(leftovers.contains(&n), "a new temporary file was left: {n}");
    }
}
