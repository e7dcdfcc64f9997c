//! One reader per file format, each through a well-kept crate: numpy `.npy` (npyz), `.npz` (a
//! zip archive of `.npy` files: zip, then npyz), CSV (csv) and Parquet (parquet's Arrow
//! reader). Each finds the vectors and labels the [`Layout`] names, refuses a wrong type or a
//! table too large for memory before reading it, and names the place of every problem.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use npyz::{DType, NpyFile, Order, TypeChar};

use super::{DEFAULT_VECTORS, DataError, Layout, MemoryLimit, Table, check_memory};

/// The formats, by file extension.
const FORMATS: &str = ".npy, .npz, .csv, .parquet (or .pq)";

/// Reads `file` as `layout` says; returns the table and every file read (for the hash).
pub(super) fn read(file: &Path, layout: &Layout, limit: Option<MemoryLimit>) -> Result<(Table, Vec<PathBuf>), DataError> {
    let extension = file.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    match extension.as_str() {
        "npy" => {
            if layout.vectors.is_some() {
                return Err(DataError::new(
                    file,
                    None,
                    "a .npy file holds one array, the vectors: leave `vectors` out and give the labels' .npy file as `labels`",
                ));
            }
            let labels_file = file.parent().unwrap_or(Path::new("")).join(&layout.labels);
            if labels_file.extension().and_then(|e| e.to_str()) != Some("npy") {
                return Err(DataError::new(
                    file,
                    None,
                    format!(
                        "`labels` is {:?}: with a .npy vectors file, `labels` is the path of a second .npy file holding one integer label per row",
                        layout.labels
                    ),
                ));
            }
            let vectors = read_npy_vectors(open(file)?, file, None, limit)?;
            let labels = read_npy_labels(open(&labels_file)?, &labels_file, None, limit)?;
            let table = join(file, vectors, labels)?;
            Ok((table, vec![file.to_path_buf(), labels_file]))
        }
        "npz" => Ok((read_npz(file, layout, limit)?, vec![file.to_path_buf()])),
        "csv" => Ok((read_csv(file, layout, limit)?, vec![file.to_path_buf()])),
        "parquet" | "pq" => Ok((read_parquet(file, layout, limit)?, vec![file.to_path_buf()])),
        _ => Err(DataError::new(file, None, format!("unknown data format `.{extension}`; coevo reads {FORMATS}"))),
    }
}

fn open(file: &Path) -> Result<File, DataError> {
    File::open(file).map_err(|e| DataError::new(file, None, format!("cannot open: {e}")))
}

/// Vectors `n x d` and their type name.
struct Vectors {
    d: usize,
    values: Vec<f64>,
    dtype: String,
}

/// Pairs vectors and labels read separately, checking they have the same number of rows.
fn join(file: &Path, v: Vectors, labels: Vec<i64>) -> Result<Table, DataError> {
    let rows = v.values.len() / v.d.max(1);
    if rows != labels.len() {
        return Err(DataError::new(
            file,
            None,
            format!("{rows} vectors but {} labels: the vectors and the labels need one row each, in the same order", labels.len()),
        ));
    }
    Ok(Table { d: v.d, vectors: v.values, labels, dtype: v.dtype })
}

// ---------------------------------------------------------------- numpy

fn place(array: Option<&str>) -> Option<String> {
    array.map(|a| format!("array `{a}`"))
}

fn npy_header<R: Read>(reader: R, file: &Path, array: Option<&str>) -> Result<NpyFile<R>, DataError> {
    NpyFile::new(reader).map_err(|e| DataError::new(file, place(array), format!("not a readable .npy array: {e}")))
}

fn type_str(npy: &NpyFile<impl Read>) -> Option<npyz::TypeStr> {
    match npy.dtype() {
        DType::Plain(t) => Some(t),
        _ => None,
    }
}

/// Reads every element of `npy` as `T`, converted by `convert`, naming a truncated file.
fn elements<T: npyz::Deserialize, R: Read>(
    npy: NpyFile<R>,
    file: &Path,
    array: Option<&str>,
    mut convert: impl FnMut(T) -> Result<f64, String>,
) -> Result<Vec<f64>, DataError> {
    let len = npy.len();
    let reader = npy.data::<T>().map_err(|e| DataError::new(file, place(array), format!("cannot read its elements: {e}")))?;
    // Grown as values arrive (capacity capped): a header that promises more than the file
    // holds fails as truncated, never as one huge allocation.
    let mut out = Vec::with_capacity(len.min(1 << 20) as usize);
    for (i, x) in reader.enumerate() {
        let x = x.map_err(|e| {
            DataError::new(
                file,
                place(array),
                format!("truncated or unreadable: the header promises {len} values, reading value {i} failed ({e})"),
            )
        })?;
        out.push(convert(x).map_err(|m| DataError::new(file, place(array), format!("value {i}: {m}")))?);
    }
    Ok(out)
}

fn read_npy_vectors<R: Read>(reader: R, file: &Path, array: Option<&str>, limit: Option<MemoryLimit>) -> Result<Vectors, DataError> {
    let npy = npy_header(reader, file, array)?;
    let shape = npy.shape().to_vec();
    let (rows, d) = match shape.as_slice() {
        [n, d] => (*n, *d),
        [n] => (*n, 1),
        _ => {
            return Err(DataError::new(
                file,
                place(array),
                format!("the vectors must be a 2-d array (rows x dimension), got shape {shape:?}"),
            ));
        }
    };
    let t = type_str(&npy);
    let (kind, size) = t.as_ref().map_or((None, 0), |t| (Some(t.type_char()), t.size_field()));
    let dtype = match (kind, size) {
        (Some(TypeChar::Float), 8) => "float64",
        (Some(TypeChar::Float), 4) => "float32",
        _ => {
            let found = t.map_or_else(|| format!("{:?}", npy.dtype()), |t| t.to_string());
            return Err(DataError::new(
                file,
                place(array),
                format!("wrong dtype {found} for the vectors: coevo reads float32 or float64 vectors (convert with .astype(np.float64))"),
            ));
        }
    };
    check_memory(file, rows, d, limit, "from the .npy header")?;
    let fortran = npy.order() == Order::Fortran;
    let mut values = match dtype {
        "float64" => elements::<f64, _>(npy, file, array, Ok)?,
        _ => elements::<f32, _>(npy, file, array, |x| Ok(f64::from(x)))?,
    };
    if fortran && d > 1 {
        // Column-major on disk: transpose to row-major.
        let (rows, d) = (rows as usize, d as usize);
        let mut row_major = vec![0.0; values.len()];
        for r in 0..rows {
            for c in 0..d {
                row_major[r * d + c] = values[c * rows + r];
            }
        }
        values = row_major;
    }
    Ok(Vectors { d: d as usize, values, dtype: dtype.to_string() })
}

fn read_npy_labels<R: Read>(reader: R, file: &Path, array: Option<&str>, limit: Option<MemoryLimit>) -> Result<Vec<i64>, DataError> {
    let npy = npy_header(reader, file, array)?;
    let shape = npy.shape().to_vec();
    if !matches!(shape.as_slice(), [_] | [_, 1]) {
        return Err(DataError::new(file, place(array), format!("the labels must be a 1-d array, one per row, got shape {shape:?}")));
    }
    check_memory(file, shape[0], 0, limit, "from the labels' .npy header")?;
    let t = type_str(&npy);
    let wrong = |found: String| {
        DataError::new(
            file,
            place(array),
            format!("wrong dtype {found} for the labels: labels must be integers 0 to K - 1 (convert with .astype(np.int64))"),
        )
    };
    let Some(t) = t else { return Err(wrong(format!("{:?}", npy.dtype()))) };
    let ints = |x: i64| Ok(x as f64);
    let values = match (t.type_char(), t.size_field()) {
        (TypeChar::Int, 1) => elements::<i8, _>(npy, file, array, |x| ints(x.into()))?,
        (TypeChar::Int, 2) => elements::<i16, _>(npy, file, array, |x| ints(x.into()))?,
        (TypeChar::Int, 4) => elements::<i32, _>(npy, file, array, |x| ints(x.into()))?,
        (TypeChar::Int, 8) => elements::<i64, _>(npy, file, array, ints)?,
        (TypeChar::Uint, 1) => elements::<u8, _>(npy, file, array, |x| ints(x.into()))?,
        (TypeChar::Uint, 2) => elements::<u16, _>(npy, file, array, |x| ints(x.into()))?,
        (TypeChar::Uint, 4) => elements::<u32, _>(npy, file, array, |x| ints(x.into()))?,
        (TypeChar::Uint, 8) => {
            elements::<u64, _>(npy, file, array, |x| i64::try_from(x).map(|x| x as f64).map_err(|_| format!("label {x} is too large")))?
        }
        _ => return Err(wrong(t.to_string())),
    };
    // Every label read fits exactly in an f64 (|label| < 2^53 checked below), so this is exact.
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            if v.abs() < 9.0e15 {
                Ok(v as i64)
            } else {
                Err(DataError::new(file, place(array), format!("label [{i}] = {v} is not a usable text index")))
            }
        })
        .collect()
}

fn read_npz(file: &Path, layout: &Layout, limit: Option<MemoryLimit>) -> Result<Table, DataError> {
    let mut archive =
        zip::ZipArchive::new(open(file)?).map_err(|e| DataError::new(file, None, format!("not a readable .npz (zip) archive: {e}")))?;
    let names: Vec<String> = archive.file_names().filter_map(|n| n.ok()?.strip_suffix(".npy").map(str::to_string)).collect();
    let vectors_name = layout.vectors.clone().unwrap_or_else(|| DEFAULT_VECTORS.to_string());
    let missing = |name: &str, field: &str| {
        let mut listed = names.clone();
        listed.sort();
        DataError::new(file, None, format!("no array `{name}` (the `{field}` of the dataset); the archive holds {}", listed.join(", ")))
    };
    for (name, field) in [(&layout.labels, "labels"), (&vectors_name, "vectors")] {
        if !names.iter().any(|n| n == name) {
            return Err(missing(name, field));
        }
    }
    // Each array is decoded from the archive as a stream: the header is checked (against the
    // memory limit, for the vectors) before any value is read.
    let unreadable =
        |name: &str, e: zip::result::ZipError| DataError::new(file, place(Some(name)), format!("truncated or unreadable: {e}"));
    let labels = {
        let entry = archive.by_name(&format!("{}.npy", layout.labels)).map_err(|e| unreadable(&layout.labels, e))?;
        read_npy_labels(entry, file, Some(&layout.labels), limit)?
    };
    let vectors = {
        let entry = archive.by_name(&format!("{vectors_name}.npy")).map_err(|e| unreadable(&vectors_name, e))?;
        read_npy_vectors(entry, file, Some(&vectors_name), limit)?
    };
    join(file, vectors, labels)
}

// ---------------------------------------------------------------- CSV

/// The columns of a header that hold the vectors, as [`Layout::vectors`] selects them.
fn vector_columns(headers: &[String], layout: &Layout) -> Result<Vec<usize>, String> {
    let columns: Vec<usize> = match &layout.vectors {
        None => (0..headers.len()).filter(|&i| headers[i] != layout.labels).collect(),
        Some(name) => match headers.iter().position(|h| h == name) {
            Some(i) => vec![i],
            None => (0..headers.len()).filter(|&i| headers[i].starts_with(name.as_str()) && headers[i] != layout.labels).collect(),
        },
    };
    if columns.is_empty() {
        let which = layout
            .vectors
            .as_ref()
            .map_or_else(|| "no column besides the labels'".to_string(), |v| format!("no column named or starting with `{v}`"));
        return Err(format!("{which} holds vectors; the columns are {}", headers.join(", ")));
    }
    Ok(columns)
}

fn read_csv(file: &Path, layout: &Layout, limit: Option<MemoryLimit>) -> Result<Table, DataError> {
    let bytes = std::fs::metadata(file).map_err(|e| DataError::new(file, None, format!("cannot open: {e}")))?.len();
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(open(file)?);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| DataError::new(file, Some("line 1".into()), format!("unreadable header row: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let label_column = headers.iter().position(|h| *h == layout.labels).ok_or_else(|| {
        DataError::new(
            file,
            Some("line 1".into()),
            format!("no column `{}` for the labels; the columns are {}", layout.labels, headers.join(", ")),
        )
    })?;
    let columns = vector_columns(&headers, layout).map_err(|m| DataError::new(file, Some("line 1".into()), m))?;
    let d = columns.len();
    // The row count is not known before reading: bound it by the file size (every number takes
    // at least two characters, a digit and a separator).
    check_memory(file, bytes / (2 * (d as u64 + 1)), d as u64, limit, "estimated from the file size")?;
    let (mut vectors, mut labels) = (Vec::new(), Vec::new());
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or_else(String::new, |p| format!("line {}", p.line()));
                return Err(DataError::new(file, (!line.is_empty()).then_some(line), format!("unreadable row: {e}")));
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        let at = |column: usize| Some(format!("line {line}, column {} (`{}`)", column + 1, headers[column]));
        let label = record[label_column].trim();
        let label: i64 = label.parse().map_err(|_| {
            DataError::new(file, at(label_column), format!("label {label:?} is not an integer; labels must be the integers 0 to K - 1"))
        })?;
        labels.push(label);
        for &c in &columns {
            let text = record[c].trim();
            let value: f64 = text.parse().map_err(|_| DataError::new(file, at(c), format!("{text:?} is not a number")))?;
            if !value.is_finite() {
                return Err(DataError::new(file, at(c), format!("{text} is not finite; every coordinate must be a finite number")));
            }
            vectors.push(value);
        }
    }
    Ok(Table { d, vectors, labels, dtype: "text".into() })
}

// ---------------------------------------------------------------- Parquet

fn read_parquet(file: &Path, layout: &Layout, limit: Option<MemoryLimit>) -> Result<Table, DataError> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Float64Type};
    use arrow_schema::DataType;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let unreadable = |e: &dyn std::fmt::Display| DataError::new(file, None, format!("not a readable Parquet file: {e}"));
    let builder = ParquetRecordBatchReaderBuilder::try_new(open(file)?).map_err(|e| unreadable(&e))?;
    let schema = builder.schema().clone();
    let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
    let headers: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let column = |name: &str| Some(format!("column `{name}`"));
    let label_column = headers.iter().position(|h| *h == layout.labels).ok_or_else(|| {
        DataError::new(file, None, format!("no column `{}` for the labels; the columns are {}", layout.labels, headers.join(", ")))
    })?;
    let label_type = schema.field(label_column).data_type().clone();
    if !label_type.is_integer() {
        return Err(DataError::new(
            file,
            column(&layout.labels),
            format!("wrong dtype {label_type} for the labels: labels must be integers 0 to K - 1"),
        ));
    }
    let columns = vector_columns(&headers, layout).map_err(|m| DataError::new(file, None, m))?;
    // One list column of floats, or one float column per coordinate.
    let float = |t: &DataType| matches!(t, DataType::Float32 | DataType::Float64);
    let list_item = |t: &DataType| match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) if float(f.data_type()) => Some(f.data_type().clone()),
        _ => None,
    };
    let first_type = schema.field(columns[0]).data_type().clone();
    let list = columns.len() == 1 && list_item(&first_type).is_some();
    let mut dtype = None;
    for &c in &columns {
        let t = schema.field(c).data_type();
        let item = if list { list_item(t) } else { float(t).then(|| t.clone()) };
        match item {
            Some(item) => {
                let name = if item == DataType::Float64 { "float64" } else { "float32" };
                if dtype.is_some_and(|d| d != name) {
                    dtype = Some("float32 and float64");
                } else {
                    dtype = Some(name);
                }
            }
            None => {
                return Err(DataError::new(
                    file,
                    column(&headers[c]),
                    format!("wrong dtype {t} for a vector column: coevo reads float32 or float64 columns, or one list column of them"),
                ));
            }
        }
    }
    let fixed = match &first_type {
        DataType::FixedSizeList(_, n) if list => Some(*n as u64),
        _ => None,
    };
    // A variable-length list column's dimension is known only once read: bound the memory by
    // the file size then (8 bytes per stored value at most... a compressed file can hold more,
    // so its first row decides once read).
    let d_estimate = if list { fixed.unwrap_or(1) } else { columns.len() as u64 };
    check_memory(file, rows, d_estimate, limit, "from the Parquet metadata")?;
    let reader = builder.build().map_err(|e| unreadable(&e))?;
    let (mut vectors, mut labels) = (Vec::with_capacity((rows * d_estimate) as usize), Vec::with_capacity(rows as usize));
    let mut d = if list { None } else { Some(columns.len()) };
    let mut row0 = 0usize;
    let floats = |a: &dyn Array, out: &mut Vec<f64>| -> Result<(), ()> {
        if let Some(x) = a.as_primitive_opt::<Float64Type>() {
            out.extend(x.values().iter().copied());
        } else if let Some(x) = a.as_primitive_opt::<Float32Type>() {
            out.extend(x.values().iter().map(|&v| f64::from(v)));
        } else {
            return Err(());
        }
        Ok(())
    };
    for batch in reader {
        let batch = batch.map_err(|e| DataError::new(file, None, format!("truncated or unreadable: {e}")))?;
        let n = batch.num_rows();
        let label_col = batch.column(label_column);
        if let Some(i) = (0..n).find(|&i| label_col.is_null(i)) {
            return Err(DataError::new(
                file,
                Some(format!("row {} (0-based), column `{}`", row0 + i, layout.labels)),
                "missing label (null)",
            ));
        }
        let values =
            arrow_cast_int(label_col.as_ref()).ok_or_else(|| DataError::new(file, column(&layout.labels), "labels must be integers"))?;
        labels.extend(values);
        if list {
            let col = batch.column(columns[0]);
            let name = &headers[columns[0]];
            if col.null_count() > 0 {
                let i = (0..n).find(|&i| col.is_null(i)).unwrap_or(0);
                return Err(DataError::new(file, Some(format!("row {} (0-based), column `{name}`", row0 + i)), "missing vector (null)"));
            }
            for i in 0..n {
                let item = match col.data_type() {
                    DataType::List(_) => col.as_list::<i32>().value(i),
                    DataType::LargeList(_) => col.as_list::<i64>().value(i),
                    _ => col.as_fixed_size_list().value(i),
                };
                if item.null_count() > 0 {
                    return Err(DataError::new(
                        file,
                        Some(format!("row {} (0-based), column `{name}`", row0 + i)),
                        "missing coordinate (null)",
                    ));
                }
                let before = vectors.len();
                floats(item.as_ref(), &mut vectors).map_err(|()| DataError::new(file, column(name), "list items must be floats"))?;
                let len = vectors.len() - before;
                match d {
                    None => {
                        d = Some(len);
                        if fixed.is_none() {
                            check_memory(file, rows, len as u64, limit, "from the Parquet metadata and the first vector")?;
                        }
                    }
                    Some(d) if d != len => {
                        return Err(DataError::new(
                            file,
                            Some(format!("row {} (0-based), column `{name}`", row0 + i)),
                            format!("the vector has {len} coordinates, the first row has {d}: every vector needs the same dimension"),
                        ));
                    }
                    Some(_) => {}
                }
            }
        } else {
            let d = columns.len();
            let start = vectors.len();
            vectors.resize(start + n * d, 0.0);
            let mut scratch = Vec::with_capacity(n);
            for (j, &c) in columns.iter().enumerate() {
                let col = batch.column(c);
                if col.null_count() > 0 {
                    let i = (0..n).find(|&i| col.is_null(i)).unwrap_or(0);
                    return Err(DataError::new(
                        file,
                        Some(format!("row {} (0-based), column `{}`", row0 + i, headers[c])),
                        "missing value (null)",
                    ));
                }
                scratch.clear();
                floats(col.as_ref(), &mut scratch).map_err(|()| DataError::new(file, column(&headers[c]), "values must be floats"))?;
                for (i, v) in scratch.iter().enumerate() {
                    vectors[start + i * d + j] = *v;
                }
            }
        }
        row0 += n;
    }
    let d = d.unwrap_or(d_estimate as usize);
    Ok(Table { d, vectors, labels, dtype: dtype.unwrap_or("float64").to_string() })
}

/// An integer Arrow array as `i64`s (values beyond `i64` saturate, and are then refused as
/// labels with no rows).
fn arrow_cast_int(a: &dyn arrow_array::Array) -> Option<Vec<i64>> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    macro_rules! try_type {
        ($($t:ty),*) => {$(
            if let Some(x) = a.as_primitive_opt::<$t>() {
                return Some(x.values().iter().map(|&v| i64::try_from(v).unwrap_or(i64::MAX)).collect());
            }
        )*};
    }
    try_type!(Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type);
    None
}
