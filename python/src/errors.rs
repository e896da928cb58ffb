//! The library's errors as Python exceptions, worded for Python: its messages name
//! command-line flags, which a Python user never typed.

use pyo3::exceptions::{
    PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyValueError,
};
use pyo3::PyErr;
use swin_rollout::Error;

/// Command-line wording and what the same thing is called in the Python API, longest first so
/// that `--explain relevance` is replaced before a shorter flag could match inside it.
const PYTHON_NAMES: [(&str, &str); 10] = [
    ("--explain relevance", "explain=\"relevance\""),
    ("instead of --trace", "instead of a trace"),
    ("leave out --trace", "render an image with a model"),
    ("(--image)", "(image=)"),
    ("--head-fusion", "head_fusion"),
    ("--residual", "residual"),
    ("--discard", "discard"),
    ("--explain", "explain"),
    ("--class", "target"),
    ("--trace", "a trace"),
];

/// `message` with the CLI's flags replaced by the Python API's parameter names.
pub fn pythonize(message: &str) -> String {
    PYTHON_NAMES
        .iter()
        .fold(message.to_string(), |m, (cli, py)| m.replace(cli, py))
}

/// The Python exception for a library error: `FileNotFoundError` for a missing file, `OSError`
/// for other file-system failures and unwritable outputs, `KeyboardInterrupt` for Ctrl-C,
/// `RuntimeError` for encoder and tensor failures, and `ValueError` for everything the caller
/// passed (arguments, images, checkpoints, traces).
pub fn to_py(error: Error) -> PyErr {
    let message = pythonize(&error.to_string());
    match &error {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(message)
        }
        Error::Io { .. } | Error::Output(_) => PyOSError::new_err(message),
        Error::Interrupted => PyKeyboardInterrupt::new_err(message),
        Error::Encode(_) | Error::Candle(_) => PyRuntimeError::new_err(message),
        _ => PyValueError::new_err(message),
    }
}
