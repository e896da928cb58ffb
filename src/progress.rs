//! The progress bar of a render, the same in the command line and the Python bindings.

pub use indicatif::ProgressBar;
use indicatif::ProgressStyle;

/// A bar over `frames` frames labelled `label`, drawn on stderr when it is a terminal.
pub fn frames_bar(frames: usize, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(frames as u64);
    let style =
        ProgressStyle::with_template("{msg} [{bar:32}] {pos}/{len} frames, {per_sec}, ETA {eta}")
            .map(|s| s.progress_chars("=> "));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.set_message(label.to_string());
    bar
}
