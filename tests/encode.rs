//! The video encoder: MP4 properties and colours checked by decoding with FFmpeg, reproducible
//! bytes, GIF and PNG outputs, and the promise that a failed or abandoned output leaves no file.

use std::fs;
use std::path::{Path, PathBuf};

use ffmpeg::format::Pixel;
use ffmpeg::util::color;
use ffmpeg_next as ffmpeg;
use image::{Rgb, RgbImage};
use swin_rollout::encode::{self, EncodeOptions, FrameRate, OutputFormat};
use swin_rollout::Error;

const W: u32 = 64;
const H: u32 = 48;

/// Twelve 16×16 blocks of solid colour (aligned to H.264 macroblocks and to 2×2 chroma, so each
/// block's centre is flat after encoding), plus a small square moving across the top row so the
/// encoder sees motion.
const COLOURS: [[u8; 3]; 12] = [
    [220, 30, 30],
    [30, 200, 40],
    [40, 50, 210],
    [230, 220, 40],
    [40, 210, 220],
    [210, 40, 200],
    [128, 128, 128],
    [235, 235, 235],
    [20, 20, 20],
    [250, 140, 20],
    [90, 40, 150],
    [120, 200, 110],
];

fn blocks(i: usize) -> RgbImage {
    let mut img = RgbImage::from_fn(W, H, |x, y| Rgb(COLOURS[(y / 16 * 4 + x / 16) as usize]));
    let x0 = (i as u32 * 3) % (W - 4);
    for y in 0..4 {
        for x in x0..x0 + 4 {
            img.put_pixel(x, y, Rgb([255, 255, 255]));
        }
    }
    img
}

fn fps(num: u32, den: u32) -> FrameRate {
    FrameRate::new(num, den).unwrap()
}

fn write(path: &Path, format: OutputFormat, frames: usize, rate: FrameRate) {
    let sink = encode::open(path, format, W, H, rate, &EncodeOptions::default()).unwrap();
    encode::render_to(sink, frames, |i| Ok(blocks(i)), None).unwrap();
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

struct Decoded {
    codec: ffmpeg::codec::Id,
    format: Pixel,
    width: u32,
    height: u32,
    avg_frame_rate: ffmpeg::Rational,
    time_base: ffmpeg::Rational,
    space: color::Space,
    range: color::Range,
    primaries: color::Primaries,
    transfer: color::TransferCharacteristic,
    frames: Vec<ffmpeg::frame::Video>,
}

fn decode(path: &Path) -> Decoded {
    ffmpeg::init().unwrap();
    let mut input = ffmpeg::format::input(path).unwrap();
    let stream = input.streams().best(ffmpeg::media::Type::Video).unwrap();
    let index = stream.index();
    let avg_frame_rate = stream.avg_frame_rate();
    let time_base = stream.time_base();
    let context = ffmpeg::codec::context::Context::from_parameters(stream.parameters()).unwrap();
    let codec = context.id();
    let mut decoder = context.decoder().video().unwrap();
    let mut frames = Vec::new();
    let mut receive = |decoder: &mut ffmpeg::decoder::Video| loop {
        let mut frame = ffmpeg::frame::Video::empty();
        if decoder.receive_frame(&mut frame).is_err() {
            break;
        }
        frames.push(frame);
    };
    for (s, packet) in input.packets() {
        if s.index() == index {
            decoder.send_packet(&packet).unwrap();
            receive(&mut decoder);
        }
    }
    decoder.send_eof().unwrap();
    receive(&mut decoder);
    Decoded {
        codec,
        format: decoder.format(),
        width: decoder.width(),
        height: decoder.height(),
        avg_frame_rate,
        time_base,
        space: decoder.color_space(),
        range: decoder.color_range(),
        primaries: decoder.color_primaries(),
        transfer: decoder.color_transfer_characteristic(),
        frames,
    }
}

/// RGB of pixel (x, y) of a decoded yuv420p frame, with limited-range YCbCr → R'G'B' using the
/// BT.709 (`bt709 = true`) or BT.601 coefficients; written out here rather than taken from
/// swscale so the check is independent of the encoder's own conversion.
fn rgb_at(frame: &ffmpeg::frame::Video, x: usize, y: usize, bt709: bool) -> [f64; 3] {
    let sample = |plane: usize, x: usize, y: usize| {
        f64::from(frame.data(plane)[y * frame.stride(plane) + x])
    };
    let luma = (sample(0, x, y) - 16.0) / 219.0;
    let cb = (sample(1, x / 2, y / 2) - 128.0) / 224.0;
    let cr = (sample(2, x / 2, y / 2) - 128.0) / 224.0;
    let (kr, kb) = if bt709 {
        (0.2126, 0.0722)
    } else {
        (0.299, 0.114)
    };
    let kg = 1.0 - kr - kb;
    let r = luma + 2.0 * (1.0 - kr) * cr;
    let b = luma + 2.0 * (1.0 - kb) * cb;
    let g = luma - 2.0 * kb * (1.0 - kb) / kg * cb - 2.0 * kr * (1.0 - kr) / kg * cr;
    [r * 255.0, g * 255.0, b * 255.0]
}

fn max_colour_error(frame: &ffmpeg::frame::Video, bt709: bool) -> f64 {
    let mut worst: f64 = 0.0;
    // Centres of the 16×16 blocks; the top row's centres (y = 8) are below the moving square.
    for (k, colour) in COLOURS.iter().enumerate() {
        let (x, y) = ((k % 4) * 16 + 8, (k / 4) * 16 + 8);
        let got = rgb_at(frame, x, y, bt709);
        for c in 0..3 {
            worst = worst.max((got[c] - f64::from(colour[c])).abs());
        }
    }
    worst
}

#[test]
fn mp4_is_h264_yuv420p_bt709_with_exact_frames_and_rate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    write(&path, OutputFormat::Mp4, 20, fps(30, 1));

    let d = decode(&path);
    assert_eq!(d.codec, ffmpeg::codec::Id::H264);
    assert_eq!(d.format, Pixel::YUV420P);
    assert_eq!((d.width, d.height), (W, H));
    assert_eq!(d.avg_frame_rate, ffmpeg::Rational::new(30, 1));
    assert_eq!(d.frames.len(), 20);
    assert_eq!(d.space, color::Space::BT709);
    assert_eq!(d.range, color::Range::MPEG);
    assert_eq!(d.primaries, color::Primaries::BT709);
    assert_eq!(d.transfer, color::TransferCharacteristic::BT709);

    // Colours survive within a few levels when decoded as tagged (BT.709)...
    for frame in [&d.frames[0], &d.frames[10], &d.frames[19]] {
        let err = max_colour_error(frame, true);
        assert!(err <= 4.0, "BT.709 round trip is off by {err:.1} levels");
    }
    // ...and the check can tell: reading the same pixels as BT.601 is far off.
    assert!(max_colour_error(&d.frames[10], false) > 15.0);
    // Only the temporary file's rename produced the output: nothing else is left.
    assert_eq!(listing(dir.path()), vec!["clip.mp4"]);
}

#[test]
fn mp4_timestamps_are_exact_for_a_fractional_rate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ntsc.mp4");
    let rate = fps(30000, 1001);
    write(&path, OutputFormat::Mp4, 12, rate);
    let d = decode(&path);
    assert_eq!(d.avg_frame_rate, ffmpeg::Rational::new(30000, 1001));
    assert_eq!(d.frames.len(), 12);
    let tb = d.time_base;
    for (i, frame) in d.frames.iter().enumerate() {
        // pts × time base == i × 1001 / 30000 seconds, exactly.
        let pts = i128::from(frame.timestamp().unwrap());
        let lhs = pts * i128::from(tb.numerator()) * 30000;
        let rhs = i as i128 * 1001 * i128::from(tb.denominator());
        assert_eq!(lhs, rhs, "frame {i} has pts {pts} in {tb}");
    }
}

#[test]
fn mp4_has_its_index_before_the_data() {
    // +faststart: the 'moov' box comes before 'mdat', so playback can start while loading.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fast.mp4");
    write(&path, OutputFormat::Mp4, 10, fps(25, 1));
    let bytes = fs::read(&path).unwrap();
    let mut boxes = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        boxes.push(String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned());
        assert!(size >= 8, "malformed box at {at}");
        at += size;
    }
    let moov = boxes.iter().position(|b| b == "moov").unwrap();
    let mdat = boxes.iter().position(|b| b == "mdat").unwrap();
    assert!(moov < mdat, "boxes: {boxes:?}");
}

fn encode_in_pool(path: &Path, threads: usize) -> Vec<u8> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| write(path, OutputFormat::from_path(path).unwrap(), 30, fps(30, 1)));
    fs::read(path).unwrap()
}

#[test]
fn mp4_bytes_do_not_depend_on_the_run_or_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let a = encode_in_pool(&dir.path().join("a.mp4"), 1);
    let b = encode_in_pool(&dir.path().join("b.mp4"), 1);
    let c = encode_in_pool(&dir.path().join("c.mp4"), 3);
    assert!(a == b, "two identical encodes differ");
    assert!(a == c, "1 and 3 rayon threads give different files");
}

#[test]
fn gif_bytes_do_not_depend_on_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let a = encode_in_pool(&dir.path().join("a.gif"), 1);
    let b = encode_in_pool(&dir.path().join("b.gif"), 3);
    assert!(a == b, "1 and 3 rayon threads give different GIFs");
}

#[test]
fn gif_decodes_to_every_frame_at_the_right_size_and_loops() {
    use image::AnimationDecoder;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.gif");
    write(&path, OutputFormat::Gif, 15, fps(25, 1));
    assert_eq!(listing(dir.path()), vec!["clip.gif"]);

    let bytes = fs::read(&path).unwrap();
    // The NETSCAPE2.0 extension with loop count 0 = forever.
    let ext = bytes.windows(11).position(|w| w == b"NETSCAPE2.0").unwrap();
    assert_eq!(&bytes[ext + 11..ext + 15], &[3, 1, 0, 0]);

    let decoder = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(bytes)).unwrap();
    let frames = decoder.into_frames().collect_frames().unwrap();
    assert_eq!(frames.len(), 15);
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(frame.buffer().dimensions(), (W, H));
        assert_eq!(frame.delay().numer_denom_ms(), (40, 1), "frame {i}");
        // Fewer than 256 colours: the palette holds them exactly, so every pixel survives,
        // including in frames stored as changed rectangles only.
        let rgb = image::DynamicImage::ImageRgba8(frame.buffer().clone()).to_rgb8();
        assert!(rgb == blocks(i), "frame {i} differs from its input");
    }
}

#[test]
fn gif_with_many_colours_stays_close_and_keeps_timing() {
    use image::AnimationDecoder;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ramp.gif");
    // A heat-map-like colour ramp (a curve through RGB, as a colormap is) that moves: far
    // more than 256 colours over the clip, but ones a palette can follow closely.
    let gradient = |i: usize| {
        RgbImage::from_fn(W, H, |x, y| {
            let t = ((x * 3 + y * 2) as usize + i * 5) as f64 / 300.0 % 1.0;
            Rgb([
                (255.0 * t) as u8,
                (255.0 * (1.0 - (2.0 * t - 1.0).abs())) as u8,
                (255.0 * (1.0 - t) * (1.0 - t)) as u8,
            ])
        })
    };
    // 30 fps: delays of 3 or 4 hundredths that add up to exactly 100 per second.
    let sink = encode::open(
        &path,
        OutputFormat::Gif,
        W,
        H,
        fps(30, 1),
        &EncodeOptions::default(),
    )
    .unwrap();
    encode::render_to(sink, 30, |i| Ok(gradient(i)), None).unwrap();
    let decoder = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(
        fs::File::open(&path).unwrap(),
    ))
    .unwrap();
    let frames = decoder.into_frames().collect_frames().unwrap();
    assert_eq!(frames.len(), 30);
    let total_ms: u32 = frames
        .iter()
        .map(|f| {
            let (n, d) = f.delay().numer_denom_ms();
            n / d
        })
        .sum();
    assert_eq!(total_ms, 1000);
    let last = image::DynamicImage::ImageRgba8(frames[29].buffer().clone()).to_rgb8();
    let mean_error: f64 = last
        .as_raw()
        .iter()
        .zip(gradient(29).as_raw())
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
        .sum::<f64>()
        / last.as_raw().len() as f64;
    assert!(mean_error < 3.0, "mean palette error {mean_error:.2}");
}

#[test]
fn png_frames_are_numbered_in_an_existing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    fs::create_dir(&frames).unwrap();
    assert_eq!(
        OutputFormat::from_path(&frames).unwrap(),
        OutputFormat::PngFrames
    );
    write(&frames, OutputFormat::PngFrames, 12, fps(30, 1));
    let expected: Vec<String> = (0..12).map(encode::frame_file_name).collect();
    assert_eq!(listing(&frames), expected);
    assert_eq!(expected[11], "frame_00011.png");
    let third = image::open(frames.join("frame_00003.png"))
        .unwrap()
        .to_rgb8();
    assert!(third == blocks(3));
}

#[cfg(unix)]
#[test]
fn outputs_get_the_permissions_of_an_ordinary_new_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference");
    fs::write(&reference, b"").unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let frames = dir.path().join("frames");
    fs::create_dir(&frames).unwrap();
    for (path, format) in [
        (dir.path().join("a.mp4"), OutputFormat::Mp4),
        (dir.path().join("a.gif"), OutputFormat::Gif),
        (frames.clone(), OutputFormat::PngFrames),
    ] {
        write(&path, format, 3, fps(30, 1));
        let file = if path.is_dir() {
            path.join("frame_00000.png")
        } else {
            path
        };
        // Not tempfile's private 0600: the umask decides, as for any new file.
        assert_eq!(mode(&file), mode(&reference), "{}", file.display());
    }
}

#[test]
fn format_follows_the_extension() {
    assert_eq!(
        OutputFormat::from_path(Path::new("a/b.mp4")).unwrap(),
        OutputFormat::Mp4
    );
    assert_eq!(
        OutputFormat::from_path(Path::new("B.GIF")).unwrap(),
        OutputFormat::Gif
    );
    let err = OutputFormat::from_path(Path::new("x.avi"))
        .unwrap_err()
        .to_string();
    assert!(err.contains(".avi") && err.contains(".mp4"), "{err}");
    let err = OutputFormat::from_path(Path::new("no/such/folder"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("create it first"), "{err}");
}

#[test]
fn frame_rates_parse_and_reduce() {
    assert_eq!("30".parse::<FrameRate>().unwrap(), fps(30, 1));
    assert_eq!("60/2".parse::<FrameRate>().unwrap(), fps(30, 1));
    let ntsc: FrameRate = "30000/1001".parse().unwrap();
    assert_eq!((ntsc.num(), ntsc.den()), (30000, 1001));
    assert_eq!(ntsc.to_string(), "30000/1001");
    assert!("0".parse::<FrameRate>().is_err());
    assert!("29.97".parse::<FrameRate>().is_err());
}

fn open_err(path: &Path, format: OutputFormat, w: u32, h: u32) -> String {
    match encode::open(path, format, w, h, fps(30, 1), &EncodeOptions::default()) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn odd_mp4_size_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let err = open_err(&dir.path().join("odd.mp4"), OutputFormat::Mp4, 63, 48);
    assert!(err.contains("63x48") && err.contains("even"), "{err}");
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn bad_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.mp4");
    let options = EncodeOptions {
        preset: "ludicrous".into(),
        ..EncodeOptions::default()
    };
    let err = encode::open(&path, OutputFormat::Mp4, W, H, fps(30, 1), &options)
        .err()
        .unwrap();
    assert!(err.to_string().contains("veryfast"), "{err}");
    let too_fast = encode::open(
        &dir.path().join("fast.gif"),
        OutputFormat::Gif,
        W,
        H,
        fps(60, 1),
        &EncodeOptions::default(),
    );
    assert!(too_fast.err().unwrap().to_string().contains("50"));
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn missing_folders_are_reported_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    for (path, format) in [
        (missing.join("a.mp4"), OutputFormat::Mp4),
        (missing.join("a.gif"), OutputFormat::Gif),
        (missing.clone(), OutputFormat::PngFrames),
    ] {
        let err = open_err(&path, format, W, H);
        assert!(
            err.contains("missing") && err.contains("does not exist")
                || err.contains("create it first"),
            "{err}"
        );
        assert!(!missing.exists(), "{format:?} created the folder");
    }
}

#[test]
fn unwritable_outputs_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    // A folder where a file should go.
    let err = open_err(dir.path(), OutputFormat::Mp4, W, H);
    assert!(err.contains("is a folder"), "{err}");
    // /proc refuses new files even to root, unlike a read-only permission bit.
    if Path::new("/proc/self").exists() {
        for name in ["swin-rollout-test.mp4", "swin-rollout-test.gif"] {
            let path = PathBuf::from("/proc").join(name);
            let err = open_err(&path, OutputFormat::from_path(&path).unwrap(), W, H);
            assert!(err.contains("cannot write"), "{err}");
        }
    }
}

#[test]
fn render_errors_leave_no_file_and_name_the_first_failing_frame() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["fail.mp4", "fail.gif"] {
        let path = dir.path().join(name);
        let sink = encode::open(
            &path,
            OutputFormat::from_path(&path).unwrap(),
            W,
            H,
            fps(30, 1),
            &EncodeOptions::default(),
        )
        .unwrap();
        let err = encode::render_to(
            sink,
            40,
            |i| {
                if i >= 17 {
                    Err(Error::InvalidArgument(format!("frame {i} failed")))
                } else {
                    Ok(blocks(i))
                }
            },
            None,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "frame 17 failed");
        assert!(
            listing(dir.path()).is_empty(),
            "{name}: {:?}",
            listing(dir.path())
        );
    }
}

#[test]
fn sink_errors_stop_rendering_and_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrong.mp4");
    let sink = encode::open(
        &path,
        OutputFormat::Mp4,
        W,
        H,
        fps(30, 1),
        &EncodeOptions::default(),
    )
    .unwrap();
    let err = encode::render_to(sink, 10, |_| Ok(RgbImage::new(32, 32)), None).unwrap_err();
    assert!(err.to_string().contains("32x32"), "{err}");
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn dropping_an_unfinished_sink_removes_its_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["drop.mp4", "drop.gif"] {
        let path = dir.path().join(name);
        let mut sink = encode::open(
            &path,
            OutputFormat::from_path(&path).unwrap(),
            W,
            H,
            fps(30, 1),
            &EncodeOptions::default(),
        )
        .unwrap();
        for i in 0..5 {
            sink.push(&blocks(i)).unwrap();
        }
        drop(sink);
        assert!(
            listing(dir.path()).is_empty(),
            "{name}: {:?}",
            listing(dir.path())
        );
    }
}

#[test]
fn zero_frames_is_an_error_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["empty.mp4", "empty.gif"] {
        let path = dir.path().join(name);
        let sink = encode::open(
            &path,
            OutputFormat::from_path(&path).unwrap(),
            W,
            H,
            fps(30, 1),
            &EncodeOptions::default(),
        )
        .unwrap();
        let err = encode::render_to(sink, 0, |i| Ok(blocks(i)), None).unwrap_err();
        assert!(err.to_string().contains("no frames"), "{err}");
    }
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn progress_counts_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    fs::create_dir(&frames).unwrap();
    let pushed = std::sync::atomic::AtomicU64::new(0);
    let sink = encode::open(
        &frames,
        OutputFormat::PngFrames,
        W,
        H,
        fps(30, 1),
        &EncodeOptions::default(),
    )
    .unwrap();
    let tick = || {
        pushed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    encode::render_to(sink, 7, |i| Ok(blocks(i)), Some(&tick)).unwrap();
    assert_eq!(pushed.into_inner(), 7);
}
