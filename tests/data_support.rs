//! Shared by the data tests: Parquet files written with the `parquet` crate's own writer.

use std::path::Path;
use std::sync::Arc;

/// A Parquet file of UTF-8 columns (`name`, values), `per_group` rows per row group, compressed
/// with `codec`.
pub fn parquet_file(
    path: &Path,
    columns: &[(&str, Vec<String>)],
    per_group: usize,
    codec: parquet::basic::Compression,
) {
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    let fields: String = columns
        .iter()
        .map(|(n, _)| format!("REQUIRED BYTE_ARRAY {n} (UTF8); "))
        .collect();
    let schema = Arc::new(parse_message_type(&format!("message schema {{ {fields}}}")).unwrap());
    let props = Arc::new(WriterProperties::builder().set_compression(codec).build());
    let mut w =
        SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, props).unwrap();
    let rows = columns[0].1.len();
    for start in (0..rows).step_by(per_group.max(1)) {
        let end = (start + per_group).min(rows);
        let mut rg = w.next_row_group().unwrap();
        for (_, values) in columns {
            let mut col = rg.next_column().unwrap().unwrap();
            let v: Vec<ByteArray> = values[start..end]
                .iter()
                .map(|s| ByteArray::from(s.as_str()))
                .collect();
            col.typed::<ByteArrayType>()
                .write_batch(&v, None, None)
                .unwrap();
            col.close().unwrap();
        }
        rg.close().unwrap();
    }
    w.close().unwrap();
}
