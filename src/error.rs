//! One error type for the library: each variant names the thing that went wrong and, where
//! there is one, the fix, so the CLI can print it as a single line.

use std::path::PathBuf;

/// Everything that can go wrong in swin-rollout.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {}", path.display(), reason(source))]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// An input image could not be decoded.
    #[error("{}: not a readable image ({message}); pass a PNG, JPEG, BMP, GIF, TIFF or WebP file", path.display())]
    Image {
        /// The image file.
        path: PathBuf,
        /// What the decoder said.
        message: String,
    },
    /// A model folder, config or checkpoint is missing, malformed or inconsistent.
    #[error("model: {0}")]
    Model(String),
    /// The user interrupted the work (Ctrl-C) before it finished; no output was written.
    #[error("interrupted; no output was written")]
    Interrupted,
    /// An output cannot be written where asked: its folder is missing, the path is a folder,
    /// the file exists, or the operating system refused.
    #[error("{0}")]
    Output(String),
    /// An input file (an image, a dataset file) is missing.
    #[error("{0}")]
    Input(String),
    /// A setting or argument is out of range or unknown.
    #[error("{0}")]
    InvalidArgument(String),
    /// Writing a video, GIF or frame sequence failed inside the encoder (FFmpeg, x264 or the
    /// GIF writer); the message names the output file.
    #[error("encoding failed: {0}")]
    Encode(String),
    /// A tensor operation failed inside candle.
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Result with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// An I/O error's text without the trailing "(os error N)".
pub fn reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}
