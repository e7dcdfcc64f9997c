//! The tables in Apache Parquet (`output.format: Parquet`): `metrics.parquet` and
//! `aggregate.parquet`, with the columns of their CSV twins, zstd-compressed, the string
//! columns (`model`, `metric`) dictionary-encoded.
//!
//! **Row groups as the run goes.** Rows are encoded (compressed, in memory) as they come, by
//! batches, and written as a row group once [`ROW_GROUP_ROWS`] have accumulated (after a whole
//! round: a row group never splits a round), at every checkpoint and at the end, so memory
//! stays flat however many rounds a run has.
//!
//! **A valid file after every row group.** A Parquet reader starts from the footer at the end
//! of the file (the schema and where every row group is). Instead of writing it once, at the
//! end, the writer writes the footer of the row groups so far after each one; the next row
//! group overwrites it (the file is first cut back to where the footer starts). So the file on
//! disk is a complete Parquet file holding every row group written so far, except while a row
//! group is being written (milliseconds per row group): a SIGKILL then leaves a file with no
//! footer, which no reader opens. SIGINT and SIGTERM stop the run between rounds and the file
//! is closed with every round. A checkpoint stores the footer it ends at ([`TableMark`]), so a
//! resumed run can always cut the file back to the checkpoint and make it whole again, wherever
//! the kill landed.
//!
//! **Reproducible.** Same scenario, seed and options, same file, byte for byte: the encoder has
//! no clock or randomness, and `created_by` names the parquet crate's version only.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, LazyLock};

use arrow_array::builder::{ArrayBuilder, Float64Builder, StringBuilder, UInt64Builder};
use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowRowGroupWriterFactory, ArrowWriterOptions, compute_leaves};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::{
    FileMetaData, ParquetMetaData, ParquetMetaDataOptions, ParquetMetaDataReader, ParquetMetaDataWriter, RowGroupMetaData,
};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnPath, SchemaDescriptor};

use super::aggregate::{AggregateRow, Aggregator, Stats};
use super::tidy::MetricsRow;
use crate::metrics::MetricRow;

/// Rows of a row group: once the row group in progress holds this many (at the end of the round
/// that reaches it), it is written. 2^16 rows take 0.1 to 0.3 MB on disk, and about as much in
/// memory while they are encoded; a SIGKILL loses at most the rows since the last row group
/// (SIGINT and SIGTERM lose nothing).
pub const ROW_GROUP_ROWS: usize = 1 << 16;

/// Where a table stood at a checkpoint, to cut it back to when the run is resumed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableMark {
    /// CSV: the file's length. Parquet: the length of the row groups, where the footer starts.
    pub bytes: u64,
    /// Parquet: the footer that ends the file at the checkpoint (a later row group overwrites
    /// it on disk, so the checkpoint keeps a copy). `None` for CSV.
    pub footer: Option<Vec<u8>>,
}

fn parquet_error(e: ParquetError) -> io::Error {
    match e {
        ParquetError::External(e) => io::Error::other(e),
        e => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
    }
}

/// The file under a [`SerializedFileWriter`]: writes go to the file at the writer's position,
/// except two things the writer does not know about.
/// - The footer written after each row group sits past that position; the first write of the
///   next row group cuts the file back to the position (so the file is never a footer followed
///   by half a row group, which a reader would misread, only a file without a footer).
/// - When a run is resumed, the row groups already on disk are registered with a new writer by
///   replaying their bytes through it; the sink skips those bytes (up to `skip_to`): they are
///   on disk already.
struct Sink {
    file: File,
    /// Bytes the writer has written (or skipped): where its next byte goes.
    position: u64,
    /// Bytes at the start of the file that are already there (resume).
    skip_to: u64,
    /// Whether a footer follows `position` on disk.
    footer_after: bool,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.position < self.skip_to {
            let n = buf.len().min((self.skip_to - self.position) as usize);
            self.position += n as u64;
            return Ok(n);
        }
        if self.footer_after {
            self.file.set_len(self.position)?;
            self.footer_after = false;
        }
        let n = self.file.write(buf)?;
        self.position += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Sink {
    /// Writes `footer` after the writer's position, leaving the position where it was.
    fn write_footer(&mut self, footer: &[u8]) -> io::Result<()> {
        debug_assert!(self.position >= self.skip_to, "a footer is written only after the row groups on disk");
        self.file.seek(SeekFrom::Start(self.position))?;
        self.file.set_len(self.position)?;
        self.file.write_all(footer)?;
        self.file.seek(SeekFrom::Start(self.position))?;
        self.footer_after = true;
        Ok(())
    }
}

/// Encoding of every table: zstd (level 3), dictionary pages for the string columns (a handful
/// of model and metric names), delta encoding for the integer columns (round and text indices
/// step by small amounts: on `coevolve.ron` the `text` column shrinks from 12% of the file to
/// almost nothing), plain `f64`s (what zstd compresses best of the encodings tried), statistics
/// per column chunk, and no page index (the tables are read whole).
fn properties(schema: &Schema) -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("3 is a valid zstd level")))
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_offset_index_disabled(true);
    for field in schema.fields() {
        let column = ColumnPath::from(field.name().as_str());
        builder = match field.data_type() {
            DataType::Utf8 => builder.set_column_dictionary_enabled(column, true),
            DataType::UInt64 => builder.set_column_encoding(column, Encoding::DELTA_BINARY_PACKED),
            _ => builder,
        };
    }
    builder.build()
}

/// A Parquet file written row group by row group, whole (with a footer) after each.
struct ParquetFile {
    writer: SerializedFileWriter<Sink>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// The footer on disk after the last row group.
    footer: Vec<u8>,
    /// The metadata of the row groups on disk (what the footer lists).
    row_groups: Vec<RowGroupMetaData>,
}

impl ParquetFile {
    /// A writer over `file` (at its start), whose first `skip_to` bytes are on disk already.
    fn writer(file: File, skip_to: u64, schema: &SchemaRef) -> io::Result<ParquetFile> {
        let sink = Sink { file, position: 0, skip_to, footer_after: false };
        let options = ArrowWriterOptions::new().with_properties(properties(schema));
        let (writer, factory) = ArrowWriter::try_new_with_options(sink, schema.clone(), options)
            .and_then(|w| w.into_serialized_writer())
            .map_err(parquet_error)?;
        Ok(ParquetFile { writer, factory, schema: schema.clone(), footer: Vec::new(), row_groups: Vec::new() })
    }

    /// Creates (truncates) `path`: a valid file with no rows.
    fn create(path: &Path, schema: &SchemaRef) -> io::Result<ParquetFile> {
        let mut f = ParquetFile::writer(super::files::create(path)?, 0, schema)?;
        f.end_row_group()?;
        Ok(f)
    }

    /// Cuts `path` back to `mark` (a checkpoint's), makes it whole with the mark's footer, and
    /// opens it to append row groups after the ones it then holds.
    fn resume(path: &Path, mark: &TableMark, schema: &SchemaRef) -> io::Result<ParquetFile> {
        let bad = |message: String| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {message}", path.display()));
        let Some(footer) = &mark.footer else {
            return Err(bad("the checkpoint holds no Parquet footer for this table (it was taken by a run writing CSV)".into()));
        };
        let mut file = super::files::open_rw(path)?;
        let have = file.metadata()?.len();
        if have < mark.bytes {
            return Err(bad(format!(
                "{have} bytes, but the checkpoint was taken after {} bytes of row groups: the table was truncated or replaced",
                mark.bytes
            )));
        }
        file.set_len(mark.bytes)?;
        file.seek(SeekFrom::Start(mark.bytes))?;
        file.write_all(footer)?;
        // The file is now whole again, as it was at the checkpoint. A handle of its own to read
        // it (a cloned one would share, and move, the writer's cursor).
        let source = File::open(path)?;
        // Every field of the footer as written (page encoding statistics in full, not the
        // reader's default summary), so the footers written next describe these row groups as
        // the first writer did.
        let options = ParquetMetaDataOptions::new().with_encoding_stats_as_mask(false);
        let metadata = ParquetMetaDataReader::new()
            .with_metadata_options(Some(options))
            .parse_and_finish(&source)
            .map_err(|e| bad(format!("not the file the checkpoint was taken from: {e}")))?;
        let mut f = ParquetFile::writer(file, mark.bytes, schema)?;
        // Register the row groups on disk with the writer, in order: it lays out their bytes
        // exactly where they are (the sink skips them), so its offsets and the footers it
        // writes next describe the file as it is.
        for row_group in metadata.row_groups() {
            let mut out = f.writer.next_row_group().map_err(parquet_error)?;
            for column in row_group.columns() {
                let close = ColumnCloseResult {
                    bytes_written: column.compressed_size() as u64,
                    rows_written: row_group.num_rows() as u64,
                    metadata: column.clone(),
                    bloom_filter: None,
                    column_index: None,
                    offset_index: None,
                };
                out.append_column(&source, close).map_err(parquet_error)?;
            }
            out.close().map_err(parquet_error)?;
        }
        f.writer.flush()?;
        if f.writer.bytes_written() as u64 != mark.bytes {
            return Err(bad(format!(
                "its row groups end at byte {} but the checkpoint says {}: not the file the checkpoint was taken from",
                f.writer.bytes_written(),
                mark.bytes
            )));
        }
        let sink = f.writer.inner_mut();
        sink.file.seek(SeekFrom::Start(mark.bytes))?;
        sink.footer_after = true;
        f.footer = footer.clone();
        f.row_groups = f.writer.flushed_row_groups().to_vec();
        Ok(f)
    }

    /// The column writers of the next row group (one per field: the schema is flat).
    fn start_row_group(&self) -> io::Result<Vec<ArrowColumnWriter>> {
        self.factory.create_column_writers(self.writer.flushed_row_groups().len()).map_err(parquet_error)
    }

    /// Encodes `columns` (in schema order) into the row group being written: into its pages,
    /// compressed, in memory until the row group is written.
    fn encode(&self, writers: &mut [ArrowColumnWriter], columns: &[ArrayRef]) -> io::Result<()> {
        for ((writer, field), array) in writers.iter_mut().zip(self.schema.fields()).zip(columns) {
            for leaf in compute_leaves(field, array).map_err(parquet_error)? {
                writer.write(&leaf).map_err(parquet_error)?;
            }
        }
        Ok(())
    }

    /// Writes the row group encoded by `writers`, then the footer. A write that fails part way
    /// (a full disk, a file size limit) leaves the file whole as it was after the last row
    /// group it completed, footer included (best effort: a disk that refuses that too has
    /// refused the write first), and returns the write's error.
    fn write_row_group(&mut self, writers: Vec<ArrowColumnWriter>) -> io::Result<()> {
        let (rows_end, groups) = (self.writer.bytes_written() as u64, self.row_groups.len());
        let written = (|| {
            let mut row_group = self.writer.next_row_group().map_err(parquet_error)?;
            for writer in writers {
                writer.close().and_then(|chunk| chunk.append_to_row_group(&mut row_group)).map_err(parquet_error)?;
            }
            row_group.close().map_err(parquet_error)?;
            self.end_row_group()
        })();
        if written.is_err() {
            // The footer in memory is the new one once the row group's bytes were all written
            // (then only the footer's write failed), else still the one ending at `rows_end`.
            let end = if self.row_groups.len() > groups { self.writer.bytes_written() as u64 } else { rows_end };
            let sink = self.writer.inner_mut();
            sink.position = end;
            let _ = sink.write_footer(&self.footer);
        }
        written
    }

    /// Pushes what the writer buffered to the file and writes the footer of every row group
    /// so far after it.
    fn end_row_group(&mut self) -> io::Result<()> {
        self.writer.flush()?;
        self.row_groups.extend(self.writer.flushed_row_groups()[self.row_groups.len()..].iter().cloned());
        let props = self.writer.properties();
        let rows = self.row_groups.iter().map(|g| g.num_rows()).sum();
        let schema = Arc::new(SchemaDescriptor::new(self.writer.schema_descr().root_schema_ptr()));
        let file = FileMetaData::new(
            props.writer_version().as_num(),
            rows,
            Some(props.created_by().to_string()),
            props.key_value_metadata().cloned(),
            schema,
            None,
        );
        // The metadata of the row groups is lent to the footer and taken back, and the footer
        // written into the same buffer each time: nothing of size growing with the row groups
        // is allocated anew per row group (which would make memory creep up over a long run).
        let metadata = ParquetMetaData::new(file, std::mem::take(&mut self.row_groups));
        self.footer.clear();
        let written =
            ParquetMetaDataWriter::new(&mut self.footer, &metadata).with_write_path_in_schema(props.write_path_in_schema()).finish();
        self.row_groups = metadata.into_builder().take_row_groups();
        written.map_err(parquet_error)?;
        self.writer.inner_mut().write_footer(&self.footer)
    }

    fn mark(&self) -> TableMark {
        TableMark { bytes: self.writer.bytes_written() as u64, footer: Some(self.footer.clone()) }
    }
}

/// The columns of one table, buffered until they are written as a row group.
trait Columns: Default {
    /// The table's schema (the same for every file, so readers can check it).
    fn schema() -> &'static SchemaRef;
    /// Rows buffered.
    fn len(&self) -> usize;
    /// The buffered columns, in schema order, emptying the buffers.
    fn finish(&mut self) -> Vec<ArrayRef>;
}

/// A table written round by round. Rows are buffered, encoded into the row group in progress
/// by batches of [`BATCH_ROWS`] (so what stays in memory is mostly compressed pages), and the
/// row group is written once it holds [`ROW_GROUP_ROWS`] rows.
struct Table<C: Columns> {
    file: ParquetFile,
    /// Rows not encoded yet.
    columns: C,
    /// The row group in progress: its column writers and the rows encoded into them.
    group: Option<(Vec<ArrowColumnWriter>, usize)>,
}

/// Rows buffered before they are encoded into the row group in progress (at the end of the
/// round that reaches it).
const BATCH_ROWS: usize = 1 << 13;

impl<C: Columns> Table<C> {
    fn create(path: &Path) -> io::Result<Self> {
        Ok(Table { file: ParquetFile::create(path, C::schema())?, columns: C::default(), group: None })
    }

    fn resume(path: &Path, mark: &TableMark) -> io::Result<Self> {
        Ok(Table { file: ParquetFile::resume(path, mark, C::schema())?, columns: C::default(), group: None })
    }

    /// Encodes the buffered rows into the row group in progress (starting one if needed).
    fn encode(&mut self) -> io::Result<()> {
        let rows = self.columns.len();
        if rows == 0 {
            return Ok(());
        }
        let (writers, encoded) = match &mut self.group {
            Some(group) => group,
            None => self.group.insert((self.file.start_row_group()?, 0)),
        };
        self.file.encode(writers, &self.columns.finish())?;
        *encoded += rows;
        Ok(())
    }

    /// Writes every row so far: the buffered rows are encoded and the row group in progress is
    /// written, if there is one.
    fn flush(&mut self) -> io::Result<()> {
        self.encode()?;
        match self.group.take() {
            Some((writers, _)) => self.file.write_row_group(writers),
            None => Ok(()),
        }
    }

    /// Called once a round's rows are buffered: the row group is written once it holds
    /// [`ROW_GROUP_ROWS`] rows, encoded or not (so where row groups end does not depend on
    /// [`BATCH_ROWS`]), else the buffered rows are encoded once they are [`BATCH_ROWS`].
    fn end_round(&mut self) -> io::Result<()> {
        let encoded = self.group.as_ref().map_or(0, |(_, rows)| *rows);
        if encoded + self.columns.len() >= ROW_GROUP_ROWS {
            self.flush()
        } else if self.columns.len() >= BATCH_ROWS {
            self.encode()
        } else {
            Ok(())
        }
    }

    fn mark(&mut self) -> io::Result<TableMark> {
        self.flush()?;
        Ok(self.file.mark())
    }
}

fn schema(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

/// Columns of `metrics.parquet`.
#[derive(Default)]
struct MetricsColumns {
    replicate: UInt64Builder,
    round: UInt64Builder,
    model: StringBuilder,
    text: UInt64Builder,
    metric: StringBuilder,
    value: Float64Builder,
}

static METRICS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        Field::new("replicate", DataType::UInt64, false),
        Field::new("round", DataType::UInt64, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("text", DataType::UInt64, true),
        Field::new("metric", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
    ])
});

impl MetricsColumns {
    /// Appends one round's rows of every replicate, in replicate order.
    fn append<'a>(&mut self, replicates: impl IntoIterator<Item = (u64, &'a [MetricRow])>) {
        for (replicate, rows) in replicates {
            for row in rows {
                self.replicate.append_value(replicate);
                self.round.append_value(row.round);
                self.model.append_value(&row.model);
                self.text.append_option(row.text.map(u64::from));
                self.metric.append_value(&row.metric);
                self.value.append_value(row.value);
            }
        }
    }
}

/// The metrics table kept in memory as Arrow record batches, with the columns and types of
/// `metrics.parquet` (and so of `metrics.csv`): what a run that writes no folder, or a caller
/// that wants the table without reading a file back (the Python package), gets.
#[derive(Default)]
pub struct MetricsBatches {
    columns: MetricsColumns,
    batches: Vec<RecordBatch>,
}

impl MetricsBatches {
    /// Appends one round's rows of every replicate, in replicate order (a batch is closed
    /// every [`BATCH_ROWS`] rows or so, after a whole round).
    pub fn write_round<'a>(&mut self, replicates: impl IntoIterator<Item = (u64, &'a [MetricRow])>) {
        self.columns.append(replicates);
        if self.columns.len() >= BATCH_ROWS {
            self.close_batch();
        }
    }

    fn close_batch(&mut self) {
        if self.columns.len() > 0 {
            let batch = RecordBatch::try_new(METRICS_SCHEMA.clone(), self.columns.finish()).expect("the columns follow the schema");
            self.batches.push(batch);
        }
    }

    /// Every row appended, in order.
    pub fn finish(mut self) -> Vec<RecordBatch> {
        self.close_batch();
        self.batches
    }

    /// The schema of the batches (that of `metrics.parquet`).
    pub fn schema() -> SchemaRef {
        METRICS_SCHEMA.clone()
    }
}

impl Columns for MetricsColumns {
    fn schema() -> &'static SchemaRef {
        &METRICS_SCHEMA
    }
    fn len(&self) -> usize {
        self.value.len()
    }
    fn finish(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.replicate.finish()),
            Arc::new(self.round.finish()),
            Arc::new(self.model.finish()),
            Arc::new(self.text.finish()),
            Arc::new(self.metric.finish()),
            Arc::new(self.value.finish()),
        ]
    }
}

/// Appends rounds of metric rows to `metrics.parquet`.
pub struct MetricsParquet(Table<MetricsColumns>);

impl MetricsParquet {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        Table::create(path).map(MetricsParquet)
    }

    /// Cuts `path` back to a checkpoint's `mark` and opens it to append.
    pub fn resume(path: &Path, mark: &TableMark) -> io::Result<Self> {
        Table::resume(path, mark).map(MetricsParquet)
    }

    /// Buffers one round's rows of every replicate (writing a row group when enough are).
    pub fn write_round<'a>(&mut self, replicates: impl IntoIterator<Item = (u64, &'a [MetricRow])>) -> io::Result<()> {
        self.0.columns.append(replicates);
        self.0.end_round()
    }

    /// Writes the buffered rows as a row group and returns where the file then ends.
    pub fn mark(&mut self) -> io::Result<TableMark> {
        self.0.mark()
    }

    /// Writes the buffered rows: the file is then complete.
    pub fn close(mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Columns of `aggregate.parquet`.
#[derive(Default)]
struct AggregateColumns {
    round: UInt64Builder,
    model: StringBuilder,
    text: UInt64Builder,
    metric: StringBuilder,
    n: UInt64Builder,
    mean: Float64Builder,
    se: Float64Builder,
    q05: Float64Builder,
    q50: Float64Builder,
    q95: Float64Builder,
}

static AGGREGATE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let f64_field = |name| Field::new(name, DataType::Float64, false);
    schema(vec![
        Field::new("round", DataType::UInt64, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("text", DataType::UInt64, true),
        Field::new("metric", DataType::Utf8, false),
        Field::new("n", DataType::UInt64, false),
        f64_field("mean"),
        f64_field("se"),
        f64_field("q05"),
        f64_field("q50"),
        f64_field("q95"),
    ])
});

impl Columns for AggregateColumns {
    fn schema() -> &'static SchemaRef {
        &AGGREGATE_SCHEMA
    }
    fn len(&self) -> usize {
        self.n.len()
    }
    fn finish(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.round.finish()),
            Arc::new(self.model.finish()),
            Arc::new(self.text.finish()),
            Arc::new(self.metric.finish()),
            Arc::new(self.n.finish()),
            Arc::new(self.mean.finish()),
            Arc::new(self.se.finish()),
            Arc::new(self.q05.finish()),
            Arc::new(self.q50.finish()),
            Arc::new(self.q95.finish()),
        ]
    }
}

/// Appends one block of rows per round to `aggregate.parquet`.
pub struct AggregateParquet {
    table: Table<AggregateColumns>,
    aggregator: Aggregator,
}

impl AggregateParquet {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(AggregateParquet { table: Table::create(path)?, aggregator: Aggregator::default() })
    }

    /// Cuts `path` back to a checkpoint's `mark` and opens it to append.
    pub fn resume(path: &Path, mark: &TableMark) -> io::Result<Self> {
        Ok(AggregateParquet { table: Table::resume(path, mark)?, aggregator: Aggregator::default() })
    }

    /// Summarises one round's rows of every replicate (in replicate order) and buffers them.
    pub fn write_round<'a>(&mut self, replicates: impl IntoIterator<Item = &'a [MetricRow]>) -> io::Result<()> {
        let c = &mut self.table.columns;
        for AggregateRow { round, model, text, metric, stats: s } in self.aggregator.round(replicates) {
            c.round.append_value(round);
            c.model.append_value(model);
            c.text.append_option(text.map(u64::from));
            c.metric.append_value(metric);
            c.n.append_value(s.n as u64);
            c.mean.append_value(s.mean);
            c.se.append_value(s.se);
            c.q05.append_value(s.q05);
            c.q50.append_value(s.q50);
            c.q95.append_value(s.q95);
        }
        self.table.end_round()
    }

    /// Writes the buffered rows as a row group and returns where the file then ends.
    pub fn mark(&mut self) -> io::Result<TableMark> {
        self.table.mark()
    }

    /// Writes the buffered rows: the file is then complete.
    pub fn close(mut self) -> io::Result<()> {
        self.table.flush()
    }
}

// ---------------------------------------------------------------- reading

/// Reads a table written by this module, batch by batch, checking its schema.
fn read_batches(path: &Path, schema: &SchemaRef, mut each: impl FnMut(&RecordBatch) -> io::Result<()>) -> io::Result<()> {
    let bad = |message: String| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {message}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?).map_err(|e| {
        bad(format!(
            "not a readable Parquet file ({e}); a run killed while writing a row group leaves no footer: resume it from its checkpoint"
        ))
    })?;
    let found = reader.schema();
    let same = found.fields().len() == schema.fields().len()
        && found.fields().iter().zip(schema.fields()).all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
    if !same {
        let columns = |s: &Schema| s.fields().iter().map(|f| format!("{} {}", f.name(), f.data_type())).collect::<Vec<_>>().join(", ");
        return Err(bad(format!("expected the columns {}, found {}", columns(schema), columns(found))));
    }
    for batch in reader.with_batch_size(ROW_GROUP_ROWS).build().map_err(|e| bad(e.to_string()))? {
        each(&batch.map_err(|e| bad(e.to_string()))?)?;
    }
    Ok(())
}

/// Column `i` of `batch` as an array of type `A` (the schema was checked by [`read_batches`]).
fn column<A: Array + 'static>(batch: &RecordBatch, i: usize) -> &A {
    batch.column(i).as_any().downcast_ref::<A>().expect("the schema was checked")
}

fn text(texts: &UInt64Array, i: usize, path: &Path) -> io::Result<Option<u32>> {
    if texts.is_null(i) {
        return Ok(None);
    }
    u32::try_from(texts.value(i))
        .map(Some)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{}: text index {} out of range", path.display(), texts.value(i))))
}

/// Reads `metrics.parquet`, calling `each` for every row in file order.
pub fn read_metrics(path: &Path, mut each: impl FnMut(MetricsRow)) -> io::Result<()> {
    read_batches(path, &METRICS_SCHEMA, |b| {
        let (replicate, round, model) = (column::<UInt64Array>(b, 0), column::<UInt64Array>(b, 1), column::<StringArray>(b, 2));
        let (texts, metric, value) = (column::<UInt64Array>(b, 3), column::<StringArray>(b, 4), column::<Float64Array>(b, 5));
        for i in 0..b.num_rows() {
            each(MetricsRow {
                replicate: replicate.value(i),
                round: round.value(i),
                model: model.value(i).to_string(),
                text: text(texts, i, path)?,
                metric: metric.value(i).to_string(),
                value: value.value(i),
            });
        }
        Ok(())
    })
}

/// Reads `aggregate.parquet`, calling `each` for every row in file order.
pub fn read_aggregate(path: &Path, mut each: impl FnMut(AggregateRow<'_>)) -> io::Result<()> {
    read_batches(path, &AGGREGATE_SCHEMA, |b| {
        let (round, model, texts, metric) =
            (column::<UInt64Array>(b, 0), column::<StringArray>(b, 1), column::<UInt64Array>(b, 2), column::<StringArray>(b, 3));
        let n = column::<UInt64Array>(b, 4);
        let [mean, se, q05, q50, q95] = [5, 6, 7, 8, 9].map(|i| column::<Float64Array>(b, i));
        for i in 0..b.num_rows() {
            let stats = Stats {
                n: n.value(i) as usize,
                mean: mean.value(i),
                se: se.value(i),
                q05: q05.value(i),
                q50: q50.value(i),
                q95: q95.value(i),
            };
            each(AggregateRow {
                round: round.value(i),
                model: model.value(i),
                text: text(texts, i, path)?,
                metric: metric.value(i),
                stats,
            });
        }
        Ok(())
    })
}
