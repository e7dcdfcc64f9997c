//! A table of Arrow record batches that Python reads through the Arrow C stream interface
//! (the `__arrow_c_stream__` PyCapsule protocol, which polars and pyarrow accept): the batches
//! cross into Python without a copy and without a file.

use std::ffi::CStr;

use arrow_array::ffi_stream::FFI_ArrowArrayStream;
use arrow_array::{RecordBatch, RecordBatchIterator};
use arrow_schema::SchemaRef;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

/// The name the protocol gives a stream's capsule.
const STREAM: &CStr = c"arrow_array_stream";

/// Arrow record batches with their schema; `polars.DataFrame(table)` or
/// `pyarrow.table(table)` read them (each read gets the same batches: Arrow buffers are
/// shared, not copied).
#[pyclass(module = "coevo._native", frozen)]
pub struct ArrowTable {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl ArrowTable {
    /// A table of `batches`, all of `schema`.
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        ArrowTable { schema, batches }
    }
}

#[pymethods]
impl ArrowTable {
    /// The Arrow PyCapsule protocol: a capsule holding an `ArrowArrayStream` over the batches.
    /// A requested schema is ignored (the protocol allows it): the table has one schema.
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_stream__<'py>(&self, py: Python<'py>, requested_schema: Option<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let reader = RecordBatchIterator::new(self.batches.clone().into_iter().map(Ok), self.schema.clone());
        // The capsule owns the stream; a consumer moves it out (leaving it released), and the
        // capsule's destructor releases it if nobody did.
        PyCapsule::new_with_value(py, FFI_ArrowArrayStream::new(Box::new(reader)), STREAM)
    }

    /// Rows in the table.
    fn __len__(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}
