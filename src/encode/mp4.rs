//! MP4 output: libx264 through FFmpeg, yuv420p, BT.709 limited range, `+faststart`.

use std::path::{Path, PathBuf};

use ffmpeg::codec::{self, threading};
use ffmpeg::format::{self, Pixel};
use ffmpeg::util::color;
use ffmpeg::{Dictionary, Packet, Rational};
use ffmpeg_next as ffmpeg;
use image::RgbImage;
use tempfile::TempPath;

use super::yuv::{self, Yuv420Converter};
use super::{check_frame_size, EncodeOptions, FrameRate, FrameSink};
use crate::error::{Error, Result};
use crate::output::{temp_file_beside, unwritable};

/// Streams frames through x264 into a temporary MP4 beside the target.
pub(crate) struct Mp4Sink {
    // Field order matters: fields drop in declaration order, so the muxer closes the temporary
    // file before `tmp` deletes it.
    octx: format::context::Output,
    encoder: codec::encoder::Video,
    converter: Yuv420Converter,
    encoder_time_base: Rational,
    stream_time_base: Rational,
    next_pts: i64,
    width: u32,
    height: u32,
    path: PathBuf,
    tmp: TempPath,
}

impl Mp4Sink {
    pub(crate) fn create(
        path: &Path,
        width: u32,
        height: u32,
        fps: FrameRate,
        options: &EncodeOptions,
    ) -> Result<Self> {
        if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            return Err(Error::InvalidArgument(format!(
                "{}: MP4 frames must have an even width and height (4:2:0 chroma covers 2x2 \
                 pixels), but the size is {width}x{height}; use e.g. {}x{}",
                path.display(),
                width + width % 2,
                height + height % 2
            )));
        }
        yuv::init()?;
        let ff = |what: &str| {
            let path = path.display().to_string();
            let what = what.to_string();
            move |e: ffmpeg::Error| Error::Encode(format!("{path}: {what} ({e})"))
        };
        let codec = ffmpeg::encoder::find_by_name("libx264").ok_or_else(|| {
            Error::Encode(
                "this FFmpeg has no libx264 encoder; install an FFmpeg built with libx264 \
                 (Debian's libavcodec59 is)"
                    .to_string(),
            )
        })?;
        let converter = Yuv420Converter::new(width, height)?;

        let tmp = temp_file_beside(path, ".mp4.part")?.into_temp_path();
        // FFmpeg opens the file itself (the faststart pass reopens it by name), so it gets a
        // URL. The "file:" prefix stops a folder name containing ':' from being read as a
        // protocol, and ffmpeg-next panics on non-UTF-8 paths, so those are refused here.
        let url = match tmp.to_str() {
            Some(p) => format!("file:{p}"),
            None => {
                return Err(Error::Output(format!(
                    "{}: FFmpeg needs a UTF-8 path; choose another output folder",
                    path.display()
                )))
            }
        };
        let mut octx = format::output_as(&url, "mp4").map_err(ff("cannot create the MP4"))?;
        let global_header = octx.format().flags().contains(format::Flags::GLOBAL_HEADER);

        // One tick per frame: frame i has pts i, exact for any rational rate.
        let encoder_time_base = Rational::new(fps.den() as i32, fps.num() as i32);
        let frame_rate = Rational::new(fps.num() as i32, fps.den() as i32);
        let mut enc = codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(ff("cannot set up libx264"))?;
        enc.set_width(width);
        enc.set_height(height);
        enc.set_format(Pixel::YUV420P);
        enc.set_time_base(encoder_time_base);
        enc.set_frame_rate(Some(frame_rate));
        // The tags must describe what Yuv420Converter produces; libx264 writes them into the
        // H.264 VUI and the muxer into the 'colr' box. Untagged HD video is decoded as BT.709
        // by some players and BT.601 by others, shifting colours.
        enc.set_colorspace(color::Space::BT709);
        enc.set_color_primaries(color::Primaries::BT709);
        enc.set_color_transfer_characteristic(color::TransferCharacteristic::BT709);
        enc.set_color_range(color::Range::MPEG);
        // A fixed frame-thread count (not FFmpeg's "auto" = 1.5 × cores) keeps the bytes the
        // same on every machine; x264 is deterministic for a given thread count.
        enc.set_threading(threading::Config {
            kind: threading::Type::Frame,
            count: options.encoder_threads,
            ..Default::default()
        });
        if global_header {
            enc.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let mut x264_options = Dictionary::new();
        x264_options.set("preset", &options.preset);
        x264_options.set("crf", &options.crf.to_string());
        let encoder = enc
            .open_with(x264_options)
            .map_err(ff("cannot open libx264"))?;

        {
            let mut stream = octx
                .add_stream(codec)
                .map_err(ff("cannot add a video stream"))?;
            stream.set_parameters(&encoder);
            stream.set_time_base(encoder_time_base);
            stream.set_avg_frame_rate(frame_rate);
            stream.set_rate(frame_rate);
        }
        let mut muxer_options = Dictionary::new();
        // Moves the index to the front so browsers and PowerPoint can start playing before the
        // whole file has loaded.
        muxer_options.set("movflags", "+faststart");
        let rejected = octx
            .write_header_with(muxer_options)
            .map_err(ff("cannot write the MP4 header"))?
            .iter()
            .next()
            .map(|(key, _)| key.to_string());
        if let Some(key) = rejected {
            return Err(Error::Encode(format!(
                "{}: the MP4 muxer did not accept the option {key}",
                path.display()
            )));
        }
        // The muxer may have chosen its own time base (MP4 timescales are at least 10000).
        let stream_time_base = octx
            .stream(0)
            .map(|s| s.time_base())
            .ok_or_else(|| Error::Encode(format!("{}: the MP4 lost its stream", path.display())))?;

        Ok(Mp4Sink {
            octx,
            encoder,
            converter,
            encoder_time_base,
            stream_time_base,
            next_pts: 0,
            width,
            height,
            path: path.to_path_buf(),
            tmp,
        })
    }

    fn error(&self, what: &str, e: ffmpeg::Error) -> Error {
        Error::Encode(format!("{}: {what} ({e})", self.path.display()))
    }

    /// Moves every packet the encoder has ready into the file.
    fn drain(&mut self) -> Result<()> {
        let mut packet = Packet::empty();
        loop {
            match self.encoder.receive_packet(&mut packet) {
                Ok(()) => {
                    packet.set_stream(0);
                    packet.rescale_ts(self.encoder_time_base, self.stream_time_base);
                    packet
                        .write_interleaved(&mut self.octx)
                        .map_err(|e| self.error("cannot write video data", e))?;
                }
                Err(ffmpeg::Error::Other {
                    errno: ffmpeg::util::error::EAGAIN,
                })
                | Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(e) => return Err(self.error("H.264 encoding failed", e)),
            }
        }
    }
}

impl FrameSink for Mp4Sink {
    fn push(&mut self, frame: &RgbImage) -> Result<()> {
        check_frame_size(frame, self.width, self.height, &self.path)?;
        self.converter.convert(frame)?;
        let yuv = self.converter.frame_mut();
        yuv.set_pts(Some(self.next_pts));
        let sent = self.encoder.send_frame(yuv);
        sent.map_err(|e| self.error("H.264 encoding failed", e))?;
        self.next_pts += 1;
        self.drain()
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        if self.next_pts == 0 {
            return Err(Error::InvalidArgument(format!(
                "{}: no frames to write",
                self.path.display()
            )));
        }
        let flushed = self.encoder.send_eof();
        flushed.map_err(|e| self.error("H.264 encoding failed", e))?;
        self.drain()?;
        // With +faststart this also rewrites the file with the index moved to the front.
        let trailer = self.octx.write_trailer();
        trailer.map_err(|e| self.error("cannot finish the MP4", e))?;
        let Mp4Sink {
            octx, tmp, path, ..
        } = *self;
        // Close the file before renaming it into place.
        drop(octx);
        tmp.persist(&path)
            .map_err(|e| unwritable(&path, &e.error))?;
        Ok(())
    }
}
