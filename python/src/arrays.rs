//! Arrays across the boundary. The limited (abi3) API has no buffer protocol before 3.11, so
//! arrays travel as `(shape, bytes)` of little-endian, C-ordered elements, which the Python side
//! makes with `numpy.ascontiguousarray(a, dtype).tobytes()` and reads back with
//! `numpy.frombuffer` (from a `bytearray`, so the array it gets is writable).

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};
use swin_rollout::npz::{Array, Data};
use swin_rollout::trace::NdArray;

/// An array as Python hands it over: its shape and its elements' bytes.
pub type ArrayIn<'py> = (Vec<usize>, Bound<'py, PyBytes>);

/// An array as Python gets it back: name, numpy dtype string, shape and elements.
pub type ArrayOut = (String, &'static str, Vec<usize>, Py<PyByteArray>);

/// Elements of a fixed-size little-endian type, read from bytes.
pub trait Element: Sized + Send {
    /// Bytes per element.
    const SIZE: usize;
    /// One element from exactly `SIZE` bytes.
    fn from_le(bytes: &[u8]) -> Self;
}

impl Element for f32 {
    const SIZE: usize = 4;
    fn from_le(bytes: &[u8]) -> Self {
        f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }
}

impl Element for i64 {
    const SIZE: usize = 8;
    fn from_le(bytes: &[u8]) -> Self {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[..8]);
        i64::from_le_bytes(b)
    }
}

/// The array `(shape, bytes)` as an [`NdArray`], or a `ValueError` naming `name` when the
/// bytes do not hold as many elements as the shape says.
pub fn nd_array<T: Element>(name: &str, (shape, bytes): &ArrayIn) -> PyResult<NdArray<T>> {
    let bytes = bytes.as_bytes();
    let expected = shape.iter().product::<usize>() * T::SIZE;
    if bytes.len() != expected {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "{name}: {} bytes do not fill shape {shape:?} of {}-byte elements",
            bytes.len(),
            T::SIZE
        )));
    }
    let values = bytes.chunks_exact(T::SIZE).map(T::from_le).collect();
    Ok(NdArray::new(shape.clone(), values))
}

/// `values` as little-endian bytes.
fn le_bytes<T: Copy, const N: usize>(values: &[T], to_le: fn(T) -> [u8; N]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * N);
    for &v in values {
        out.extend_from_slice(&to_le(v));
    }
    out
}

/// A float32 array for Python.
pub fn f32_out(py: Python<'_>, name: &str, shape: &[usize], values: &[f32]) -> ArrayOut {
    let bytes = le_bytes(values, f32::to_le_bytes);
    let data = PyByteArray::new(py, &bytes).unbind();
    (name.to_string(), "<f4", shape.to_vec(), data)
}

/// An export-format array for Python, under its own name.
pub fn export_out(py: Python<'_>, array: &Array) -> ArrayOut {
    let (dtype, bytes) = match array.data {
        Data::F32(v) => ("<f4", le_bytes(v, f32::to_le_bytes)),
        Data::I64(v) => ("<i8", le_bytes(v, i64::to_le_bytes)),
    };
    let data = PyByteArray::new(py, &bytes).unbind();
    (array.name.clone(), dtype, array.shape.clone(), data)
}
