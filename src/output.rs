//! Output files that appear whole or not at all: written to a temporary file beside the
//! target and renamed into place on success, so an error never leaves a half-written file.
//! Every output path of the crate is checked here (files, videos, frames).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Checks that `path` can be written: its folder exists (it is never created) and the path is
/// not a folder.
pub fn check_writable(path: &Path) -> Result<()> {
    let parent = parent_of(path);
    if !parent.is_dir() {
        return Err(Error::Output(format!(
            "{}: the folder {} does not exist; create it first or choose another output path",
            path.display(),
            parent.display()
        )));
    }
    if path.is_dir() {
        return Err(Error::Output(format!(
            "{} is a folder; give a file name",
            path.display()
        )));
    }
    Ok(())
}

/// The folder `path` is in (`.` for a bare file name).
pub(crate) fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes `path` atomically: `write` fills a buffered temporary file in the same folder, which
/// replaces `path` only if everything succeeded.
pub fn write_atomically<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<&mut std::fs::File>) -> Result<()>,
{
    let mut tmp = temp_file_beside(path, ".part")?;
    {
        let mut out = BufWriter::new(tmp.as_file_mut());
        write(&mut out)?;
        out.flush().map_err(|e| unwritable(path, &e))?;
    }
    tmp.persist(path).map_err(|e| unwritable(path, &e.error))?;
    Ok(())
}

/// A named temporary file in `path`'s folder (so the final rename stays on one file system),
/// deleted when dropped unless persisted. The folder must exist; it is never created.
pub(crate) fn temp_file_beside(path: &Path, suffix: &str) -> Result<tempfile::NamedTempFile> {
    check_writable(path)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".swin-rollout-").suffix(suffix);
    // tempfile creates 0600 files, which the rename would carry over to the output; ask for
    // 0666 so the result gets the usual umask-limited mode of a newly created file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder
        .tempfile_in(parent_of(path))
        .map_err(|e| unwritable(path, &e))
}

/// The error for a file the operating system will not let us write.
pub(crate) fn unwritable(path: &Path, e: &std::io::Error) -> Error {
    Error::Output(format!(
        "cannot write {} ({}); choose a writable location",
        path.display(),
        crate::error::reason(e)
    ))
}

/// The output in `folder` for each of `inputs`: its file stem with `extension`, one output per
/// input, so a folder render (or its shards) never writes one file twice.
///
/// # Errors
/// [`Error::InvalidArgument`] when two inputs share a stem (`cat.jpg`, `cat.png`), naming them.
pub fn outputs_in(folder: &Path, inputs: &[PathBuf], extension: &str) -> Result<Vec<PathBuf>> {
    let mut seen: std::collections::HashMap<PathBuf, &Path> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(inputs.len());
    for input in inputs {
        let stem = input.file_stem().unwrap_or(input.as_os_str());
        let mut name = stem.to_os_string();
        name.push(".");
        name.push(extension);
        let output = folder.join(name);
        if let Some(first) = seen.insert(output.clone(), input) {
            return Err(Error::InvalidArgument(format!(
                "{} and {} would both be rendered to {}; rename one",
                first.display(),
                input.display(),
                output.display()
            )));
        }
        out.push(output);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_take_the_stem_and_refuse_collisions() {
        let inputs = [PathBuf::from("in/a.png"), PathBuf::from("in/b.JPG")];
        assert_eq!(
            outputs_in(Path::new("out"), &inputs, "gif").unwrap(),
            [PathBuf::from("out/a.gif"), PathBuf::from("out/b.gif")]
        );
        let clash = [PathBuf::from("in/a.png"), PathBuf::from("in/a.jpg")];
        let e = outputs_in(Path::new("out"), &clash, "mp4")
            .unwrap_err()
            .to_string();
        assert!(e.contains("in/a.png and in/a.jpg"), "{e}");
    }
}
