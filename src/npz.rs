//! NumPy `.npz` output: a zip archive (stored, uncompressed) of `.npy` arrays that
//! `numpy.load` reads.

use std::io::{Seek, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::output::write_atomically;

/// The elements of one array.
#[derive(Debug, Clone, Copy)]
pub enum Data<'a> {
    /// Little-endian float32 (`<f4`).
    F32(&'a [f32]),
    /// Little-endian int64 (`<i8`).
    I64(&'a [i64]),
}

impl Data<'_> {
    fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }

    fn descr(&self) -> &'static str {
        match self {
            Data::F32(_) => "<f4",
            Data::I64(_) => "<i8",
        }
    }
}

/// One named array: its shape and row-major data.
#[derive(Debug, Clone)]
pub struct Array<'a> {
    /// Key in the archive (stored as `name.npy`).
    pub name: String,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Elements, row-major.
    pub data: Data<'a>,
}

impl<'a> Array<'a> {
    /// A float32 array.
    pub fn f32(name: impl Into<String>, shape: &[usize], data: &'a [f32]) -> Self {
        Array {
            name: name.into(),
            shape: shape.to_vec(),
            data: Data::F32(data),
        }
    }

    /// An int64 array.
    pub fn i64(name: impl Into<String>, shape: &[usize], data: &'a [i64]) -> Self {
        Array {
            name: name.into(),
            shape: shape.to_vec(),
            data: Data::I64(data),
        }
    }
}

/// The `.npy` (format 1.0) header for an array, padded so the data starts 64-byte aligned.
fn npy_header(array: &Array) -> Vec<u8> {
    let shape = match array.shape.as_slice() {
        [n] => format!("({n},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        array.data.descr()
    );
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

fn write_archive<W: Write + Seek>(out: W, arrays: &[Array]) -> zip::result::ZipResult<()> {
    let mut zip = zip::ZipWriter::new(out);
    for array in arrays {
        let bytes = array.data.len() * 8 + 256;
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(bytes >= u32::MAX as usize);
        zip.start_file(format!("{}.npy", array.name), options)?;
        zip.write_all(&npy_header(array))?;
        match array.data {
            Data::F32(v) => v.iter().try_for_each(|x| zip.write_all(&x.to_le_bytes()))?,
            Data::I64(v) => v.iter().try_for_each(|x| zip.write_all(&x.to_le_bytes()))?,
        }
    }
    zip.finish()?;
    Ok(())
}

/// Writes `arrays` to `path` as an `.npz`, atomically.
pub fn write(path: &Path, arrays: &[Array]) -> Result<()> {
    for a in arrays {
        if a.shape.iter().product::<usize>() != a.data.len() {
            return Err(Error::InvalidArgument(format!(
                "array `{}` has {} elements but shape {:?}",
                a.name,
                a.data.len(),
                a.shape
            )));
        }
    }
    write_atomically(path, |out| {
        // The zip writer seeks back to patch sizes, which a BufWriter over a file supports.
        write_archive(out, arrays).map_err(|e| Error::io(path, std::io::Error::other(e)))
    })
}
