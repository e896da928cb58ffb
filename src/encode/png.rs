//! A folder of numbered PNG frames, for editing software that imports image sequences.

use std::path::{Path, PathBuf};

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder, RgbImage};

use super::{check_frame_size, FrameSink};
use crate::error::{Error, Result};
use crate::output::write_atomically;

/// Writes `frame_00000.png`, `frame_00001.png`, … into an existing folder. Each file is written
/// atomically, so a frame is either complete or absent; frames already written stay if the
/// sequence stops early. Files of the same names are replaced; other files are left alone.
/// Past 99999 frames the numbers simply grow a digit.
pub(crate) struct PngSink {
    dir: PathBuf,
    width: u32,
    height: u32,
    next: usize,
}

impl PngSink {
    pub(crate) fn create(dir: &Path, width: u32, height: u32) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::Output(format!(
                "{}: no such folder for PNG frames; create it first",
                dir.display()
            )));
        }
        Ok(PngSink {
            dir: dir.to_path_buf(),
            width,
            height,
            next: 0,
        })
    }
}

/// The file name of frame `index` in a PNG frame folder.
pub fn frame_file_name(index: usize) -> String {
    format!("frame_{index:05}.png")
}

impl FrameSink for PngSink {
    fn push(&mut self, frame: &RgbImage) -> Result<()> {
        check_frame_size(frame, self.width, self.height, &self.dir)?;
        let path = self.dir.join(frame_file_name(self.next));
        write_atomically(&path, |out| {
            PngEncoder::new(out)
                .write_image(
                    frame.as_raw(),
                    frame.width(),
                    frame.height(),
                    ExtendedColorType::Rgb8,
                )
                .map_err(|e| Error::Encode(format!("{}: cannot write PNG ({e})", path.display())))
        })?;
        self.next += 1;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        if self.next == 0 {
            return Err(Error::InvalidArgument(format!(
                "{}: no frames to write",
                self.dir.display()
            )));
        }
        Ok(())
    }
}
