//! RGB → YUV 4:2:0 conversion with swscale, pinned to BT.709 limited range so that the pixels
//! match the colour tags written into the MP4.

use std::ptr;
use std::sync::OnceLock;

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::util::color;
use ffmpeg::{ffi, frame};
use ffmpeg_next as ffmpeg;
use image::RgbImage;
use std::ffi::c_int;

use crate::error::{Error, Result};

/// Initialises FFmpeg once per process and quiets its logging to errors only: libx264 prints
/// its statistics at the "info" level, which would tear through a progress bar. This is
/// FFmpeg's one process-wide log level; nothing else global is touched.
pub(crate) fn init() -> Result<()> {
    static INIT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| {
        ffmpeg::init().map_err(|e| format!("cannot initialise FFmpeg ({e})"))?;
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
        Ok(())
    })
    .clone()
    .map_err(Error::Encode)
}

/// Converts `RgbImage`s (full-range sRGB-ish 8-bit RGB) to planar YUV 4:2:0 with BT.709
/// coefficients in limited ("MPEG", 16–235) range — what H.264 players assume when the stream is
/// tagged BT.709, so colours survive the round trip.
///
/// swscale's default matrix is BT.601 whatever the output is tagged, so the BT.709 coefficients
/// are set explicitly with `sws_setColorspaceDetails`; `SWS_BITEXACT | SWS_ACCURATE_RND` make the
/// result identical on every CPU, which keeps encoded files reproducible.
pub struct Yuv420Converter {
    sws: scaling::Context,
    frame: frame::Video,
    width: u32,
    height: u32,
}

// SAFETY: the swscale context and the frame are owned exclusively by this value and are only
// used through `&mut self`; FFmpeg allows such contexts to move between threads as long as they
// are not used concurrently. ffmpeg-next leaves the scaling context !Send only because it holds
// a raw pointer.
unsafe impl Send for Yuv420Converter {}

impl Yuv420Converter {
    /// A converter for `width`×`height` frames. Odd sizes work (the last chroma sample covers a
    /// single row or column), though MP4 output itself requires even sizes.
    pub fn new(width: u32, height: u32) -> Result<Self> {
        init()?;
        if width == 0 || height == 0 || width > 16384 || height > 16384 {
            return Err(Error::InvalidArgument(format!(
                "frame size {width}x{height} is out of range (1 to 16384 pixels a side)"
            )));
        }
        let flags =
            scaling::Flags::BILINEAR | scaling::Flags::ACCURATE_RND | scaling::Flags::BITEXACT;
        let mut sws = scaling::Context::get(
            Pixel::RGB24,
            width,
            height,
            Pixel::YUV420P,
            width,
            height,
            flags,
        )
        .map_err(|e| Error::Encode(format!("cannot set up RGB to YUV conversion ({e})")))?;
        // SAFETY: `sws` is a valid context; sws_getCoefficients returns a pointer to a static
        // table; the call copies what it needs.
        let status = unsafe {
            let bt709 = ffi::sws_getCoefficients(ffi::SWS_CS_ITU709);
            // Source range 1 = full (RGB 0–255), destination range 0 = limited (16–235);
            // brightness 0, contrast and saturation 1.0 in 16.16 fixed point.
            ffi::sws_setColorspaceDetails(sws.as_mut_ptr(), bt709, 1, bt709, 0, 0, 1 << 16, 1 << 16)
        };
        if status < 0 {
            return Err(Error::Encode(
                "swscale refused the BT.709 colour settings".to_string(),
            ));
        }
        let mut frame = frame::Video::new(Pixel::YUV420P, width, height);
        // SAFETY: reads the frame's first data pointer, which `new` either set or left null.
        if unsafe { frame.is_empty() } {
            return Err(Error::Encode(format!(
                "cannot allocate a {width}x{height} YUV frame"
            )));
        }
        frame.set_color_space(color::Space::BT709);
        frame.set_color_primaries(color::Primaries::BT709);
        frame.set_color_transfer_characteristic(color::TransferCharacteristic::BT709);
        frame.set_color_range(color::Range::MPEG);
        Ok(Yuv420Converter {
            sws,
            frame,
            width,
            height,
        })
    }

    /// Converts `image` into the converter's frame (overwriting the previous one).
    pub fn convert(&mut self, image: &RgbImage) -> Result<()> {
        if image.dimensions() != (self.width, self.height) {
            return Err(Error::InvalidArgument(format!(
                "frame is {}x{} but the converter was made for {}x{}",
                image.width(),
                image.height(),
                self.width,
                self.height
            )));
        }
        // SAFETY: the frame was allocated for YUV420P at this size. av_frame_make_writable gives
        // it a buffer of its own if the encoder still holds a reference to the previous one, so
        // a frame already handed to x264 is never overwritten. The source pointer covers
        // height rows of width*3 bytes (checked above), and sws_scale reads only those.
        unsafe {
            let f = self.frame.as_mut_ptr();
            if ffi::av_frame_make_writable(f) < 0 {
                return Err(Error::Encode("cannot allocate a YUV frame".to_string()));
            }
            let src: [*const u8; 4] = [
                image.as_raw().as_ptr(),
                ptr::null(),
                ptr::null(),
                ptr::null(),
            ];
            let src_stride: [c_int; 4] = [(self.width * 3) as c_int, 0, 0, 0];
            let rows = ffi::sws_scale(
                self.sws.as_mut_ptr(),
                src.as_ptr(),
                src_stride.as_ptr(),
                0,
                self.height as c_int,
                (*f).data.as_ptr(),
                (*f).linesize.as_ptr(),
            );
            if rows != self.height as c_int {
                return Err(Error::Encode(format!(
                    "RGB to YUV conversion produced {rows} of {} rows",
                    self.height
                )));
            }
        }
        Ok(())
    }

    /// Plane `index` (0 = Y, 1 = U, 2 = V) of the last converted frame and its row stride in
    /// bytes. Y has `height` rows; U and V have `ceil(height / 2)` rows of `ceil(width / 2)`
    /// samples.
    ///
    /// # Panics
    /// If `index` is greater than 2.
    pub fn plane(&self, index: usize) -> (&[u8], usize) {
        (self.frame.data(index), self.frame.stride(index))
    }

    /// The converted frame, for the encoder.
    pub(crate) fn frame_mut(&mut self) -> &mut frame::Video {
        &mut self.frame
    }
}
