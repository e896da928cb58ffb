//! NumPy `.npz` files: a zip archive of `.npy` arrays. [`write`] stores them uncompressed, as
//! `numpy.load` reads them; [`Reader`] reads what `numpy.savez` and `numpy.savez_compressed`
//! write (stored or deflated members; `.npy` format 1.0, 2.0 and 3.0; little-endian, C order).

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

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

// ---------------------------------------------------------------------------------------------
// Reading

/// The elements of an array read from an `.npz`, one Rust type per kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Floating point: `<f4` as stored, `<f8` rounded to the nearest f32.
    Float(Vec<f32>),
    /// Integers: `<i8` as stored, `<i4` widened.
    Int(Vec<i64>),
}

/// One array read from an `.npz`.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Key in the archive (the member's name without `.npy`).
    pub name: String,
    /// The dtype as stored (`<f4`, `<f8`, `<i4` or `<i8`), for messages.
    pub dtype: String,
    /// Dimensions (empty for a scalar).
    pub shape: Vec<usize>,
    /// Elements, row-major.
    pub values: Values,
}

/// An open `.npz` file whose arrays are read one at a time, so that a caller reads only the
/// arrays it needs.
pub struct Reader {
    path: PathBuf,
    zip: zip::ZipArchive<std::io::BufReader<std::fs::File>>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("path", &self.path).finish()
    }
}

impl Reader {
    /// Opens `path`.
    ///
    /// # Errors
    /// [`Error::Input`] if it does not exist, [`Error::Io`] if it cannot be read,
    /// [`Error::InvalidArgument`] if it is not a zip archive.
    pub fn open(path: &Path) -> Result<Reader> {
        let file = std::fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::Input(format!("{} does not exist; check the path", path.display()))
            }
            _ => Error::io(path, e),
        })?;
        let zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| {
            Error::InvalidArgument(format!(
                "{}: not an .npz file ({e}); write it with numpy.savez or numpy.savez_compressed",
                path.display()
            ))
        })?;
        Ok(Reader {
            path: path.to_path_buf(),
            zip,
        })
    }

    /// The names of the arrays in the archive (members ending in `.npy`, without it), in
    /// archive order.
    pub fn names(&self) -> Vec<String> {
        self.zip
            .file_names()
            .filter_map(|n| n.strip_suffix(".npy"))
            .map(str::to_string)
            .collect()
    }

    /// The array `name`, or `None` if the archive holds none of that name.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a member that is compressed other than by deflate,
    /// damaged, or not a little-endian, C-order `.npy` of float32, float64, int32 or int64.
    pub fn read(&mut self, name: &str) -> Result<Option<NpyArray>> {
        let Some(index) = self.zip.index_for_name(&format!("{name}.npy")) else {
            return Ok(None);
        };
        let bad = |what: String| {
            Error::InvalidArgument(format!("{}: array `{name}` {what}", self.path.display()))
        };
        let file = self
            .zip
            .by_index_raw(index)
            .map_err(|e| bad(format!("cannot be read ({e})")))?;
        let crc = file.crc32();
        // Raw members, decompressed here with flate2: the zip crate is built without codecs.
        // `DEFLATE` names method 8 whether or not the zip crate was built with deflate.
        let method = file.compression();
        let stream: Box<dyn Read + '_> = if method == zip::CompressionMethod::STORE {
            Box::new(file)
        } else if method == zip::CompressionMethod::DEFLATE {
            Box::new(flate2::read::DeflateDecoder::new(file))
        } else {
            return Err(bad(format!(
                "uses zip compression {method:?}; only stored and deflated members \
                 (numpy.savez, numpy.savez_compressed) are read"
            )));
        };
        let mut stream = flate2::CrcReader::new(stream);
        let array = read_npy(&mut stream, name).map_err(bad)?;
        let mut extra = [0u8; 1];
        match stream.read(&mut extra) {
            Ok(0) => {}
            Ok(_) => return Err(bad("holds more bytes than its shape needs".into())),
            Err(e) => return Err(bad(format!("is damaged ({e})"))),
        }
        if stream.crc().sum() != crc {
            return Err(bad("is damaged (its checksum does not match)".into()));
        }
        Ok(Some(array))
    }

    /// The path the reader was opened on.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Every array of the `.npz` at `path`, in archive order.
///
/// # Errors
/// As [`Reader::open`] and [`Reader::read`].
pub fn read(path: &Path) -> Result<Vec<NpyArray>> {
    let mut reader = Reader::open(path)?;
    let mut out = Vec::new();
    for name in reader.names() {
        out.extend(reader.read(&name)?);
    }
    Ok(out)
}

/// Reads one `.npy` stream: header, then exactly the bytes its shape needs.
fn read_npy(stream: &mut impl Read, name: &str) -> std::result::Result<NpyArray, String> {
    let damaged = |e: std::io::Error| format!("is damaged or truncated ({e})");
    let mut magic = [0u8; 8];
    stream.read_exact(&mut magic).map_err(damaged)?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err("is not a .npy array (no NUMPY magic)".into());
    }
    let header_len = match magic[6] {
        1 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).map_err(damaged)?;
            usize::from(u16::from_le_bytes(b))
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            stream.read_exact(&mut b).map_err(damaged)?;
            u32::from_le_bytes(b) as usize
        }
        v => {
            return Err(format!(
                ".npy format version {v} is not supported (1, 2 or 3)"
            ))
        }
    };
    let mut header = vec![0u8; header_len];
    stream.read_exact(&mut header).map_err(damaged)?;
    let header = String::from_utf8(header).map_err(|_| "has a header that is not text")?;
    let (dtype, fortran, shape) = parse_header(&header)?;
    if fortran {
        return Err("is in Fortran order; save a C-order array (numpy.ascontiguousarray)".into());
    }
    let size = match dtype.as_str() {
        "<f4" | "<i4" => 4,
        "<f8" | "<i8" => 8,
        d => {
            return Err(format!(
                "has dtype '{d}'; save it as little-endian float32, float64, int32 or int64"
            ))
        }
    };
    let bytes = shape
        .iter()
        .try_fold(size, |acc: usize, &d| acc.checked_mul(d))
        .ok_or("has a shape too large to hold")?;
    let mut data = Vec::new();
    stream
        .take(bytes as u64)
        .read_to_end(&mut data)
        .map_err(damaged)?;
    if data.len() != bytes {
        return Err(format!(
            "holds {} data bytes but its shape {shape:?} needs {bytes}",
            data.len()
        ));
    }
    let values = match dtype.as_str() {
        "<f4" => Values::Float(
            data.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        "<f8" => Values::Float(
            data.chunks_exact(8)
                .map(|c| f64::from_le_bytes(eight(c)) as f32)
                .collect(),
        ),
        "<i4" => Values::Int(
            data.chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        ),
        _ => Values::Int(
            data.chunks_exact(8)
                .map(|c| i64::from_le_bytes(eight(c)))
                .collect(),
        ),
    };
    Ok(NpyArray {
        name: name.to_string(),
        dtype,
        shape,
        values,
    })
}

fn eight(c: &[u8]) -> [u8; 8] {
    let mut b = [0u8; 8];
    b.copy_from_slice(c);
    b
}

/// Parses the header dictionary `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`
/// into (descr, fortran order, shape).
fn parse_header(header: &str) -> std::result::Result<(String, bool, Vec<usize>), String> {
    let malformed = || format!("has a malformed .npy header: {}", header.trim());
    let value_of = |key: &str| -> Option<&str> {
        let at = header
            .find(&format!("'{key}'"))
            .or_else(|| header.find(&format!("\"{key}\"")))?;
        let rest = &header[at + key.len() + 2..];
        Some(rest.trim_start().strip_prefix(':')?.trim_start())
    };
    let descr = value_of("descr").ok_or_else(malformed)?;
    let quote = descr.chars().next().filter(|c| *c == '\'' || *c == '"');
    let descr = match quote {
        Some(q) => descr[1..]
            .split(q)
            .next()
            .ok_or_else(malformed)?
            .to_string(),
        // A list: a structured dtype.
        None => return Err("has a structured dtype; save a plain numeric array".into()),
    };
    let fortran = match value_of("fortran_order") {
        Some(v) if v.starts_with("True") => true,
        Some(v) if v.starts_with("False") => false,
        _ => return Err(malformed()),
    };
    let shape = value_of("shape")
        .and_then(|v| v.strip_prefix('('))
        .and_then(|v| v.split(')').next())
        .ok_or_else(malformed)?;
    let shape = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| malformed())?;
    Ok((descr, fortran, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_in_numpys_spellings() {
        assert_eq!(
            parse_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"),
            Ok(("<f4".into(), false, vec![2, 3]))
        );
        assert_eq!(
            parse_header("{'descr': '<i8', 'fortran_order': True, 'shape': (5,), }"),
            Ok(("<i8".into(), true, vec![5]))
        );
        assert_eq!(
            parse_header("{'descr': '<i8', 'fortran_order': False, 'shape': (), }"),
            Ok(("<i8".into(), false, vec![]))
        );
        assert!(
            parse_header("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}")
                .unwrap_err()
                .contains("structured")
        );
        assert!(parse_header("{'shape': (1,)}").is_err());
    }

    #[test]
    fn written_arrays_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npz");
        let f = [1.5f32, -2.0, 3.25, 0.0, 1e-30, 7.0];
        let i = [3i64, -4];
        write(
            &path,
            &[
                Array::f32("f", &[2, 3], &f),
                Array::i64("i", &[2], &i),
                Array::i64("s", &[], &i[..1]),
            ],
        )
        .unwrap();
        let arrays = read(&path).unwrap();
        assert_eq!(arrays.len(), 3);
        assert_eq!(arrays[0].shape, vec![2, 3]);
        assert_eq!(arrays[0].values, Values::Float(f.to_vec()));
        assert_eq!(arrays[1].values, Values::Int(i.to_vec()));
        assert_eq!(
            (arrays[2].shape.len(), arrays[2].dtype.as_str()),
            (0, "<i8")
        );
        let mut r = Reader::open(&path).unwrap();
        assert_eq!(r.names(), ["f", "i", "s"]);
        assert!(r.read("missing").unwrap().is_none());
    }
}
