//! CSV files of floats.
//!
//! Each row is one sample, a vector of D values, stored as shape [D, 1, 1]. A first row that
//! is not all numbers is a header (column names) and skipped, so exports from spreadsheets and
//! pandas load as they are. Blank lines are ignored; cells may be padded with spaces.

use std::path::Path;

use super::{DataKind, Dataset};
use crate::error::{DiffuseError, Result};

/// Reads every row of `path` as one vector sample.
pub fn load(path: &Path) -> Result<Dataset> {
    let file = std::fs::File::open(path).map_err(|e| DiffuseError::io(path, e))?;
    // Flexible: rows of another width are reported below with their line number.
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(std::io::BufReader::new(file));
    let mut rows = Rows::default();
    for record in reader.records() {
        let record = record.map_err(|e| DiffuseError::bad_file(path, e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        rows.push(&record, line)
            .map_err(|m| DiffuseError::bad_file(path, m))?;
    }
    let Some((width, _)) = rows.width else {
        return Err(DiffuseError::bad_file(
            path,
            if rows.header_seen {
                "holds a header but no rows of numbers"
            } else {
                "holds no rows of numbers"
            },
        ));
    };
    Dataset::new(
        [width, 1, 1],
        rows.values,
        None,
        Vec::new(),
        DataKind::Vectors,
    )
}

/// The numbers read so far and what the first rows established.
#[derive(Default)]
struct Rows {
    values: Vec<f32>,
    /// Width of the first data row and the line it is on.
    width: Option<(usize, u64)>,
    header_seen: bool,
}

impl Rows {
    /// Adds one record; the very first one may be a header and is then only noted.
    fn push(&mut self, record: &::csv::StringRecord, line: u64) -> std::result::Result<(), String> {
        let first = self.width.is_none() && !self.header_seen;
        if first && record.iter().any(|cell| cell.parse::<f32>().is_err()) {
            self.header_seen = true;
            return Ok(());
        }
        let (width, first_line) = *self.width.get_or_insert((record.len(), line));
        if record.len() != width {
            return Err(format!(
                "line {line} has {} values but line {first_line} has {width}; every row needs \
                 the same number of columns",
                record.len()
            ));
        }
        for (column, cell) in record.iter().enumerate() {
            self.values.push(parse_cell(cell, line, column + 1)?);
        }
        Ok(())
    }
}

/// A finite f32, or a message naming the line and (1-based) column.
fn parse_cell(cell: &str, line: u64, column: usize) -> std::result::Result<f32, String> {
    match cell.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(v) => Err(format!(
            "line {line}, column {column}: {v} is not a finite number"
        )),
        Err(_) => Err(format!(
            "line {line}, column {column}: `{cell}` is not a number"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(content: &str) -> Result<Dataset> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data.csv");
        std::fs::write(&path, content).expect("write");
        load(&path)
    }

    #[test]
    fn reads_rows_and_skips_a_header() {
        let data = load_str("x, y, z\n1, 2, 3\n\n-4.5,5e-1,6\n").expect("valid csv");
        assert_eq!(data.sample_shape, [3, 1, 1]);
        assert_eq!(data.kind, DataKind::Vectors);
        assert_eq!(data.labels, None);
        assert_eq!(data.values, [1.0, 2.0, 3.0, -4.5, 0.5, 6.0]);
    }

    #[test]
    fn reads_without_a_header() {
        let data = load_str("1,2\n3,4\n5,6").expect("valid csv");
        assert_eq!(data.len(), 3);
        assert_eq!(data.sample(2), [5.0, 6.0]);
    }

    #[test]
    fn ragged_row_names_its_line() {
        let message = load_str("a,b\n1,2\n3,4\n5\n").unwrap_err().to_string();
        assert!(
            message.contains("line 4 has 1 values but line 2 has 2"),
            "{message}"
        );
    }

    #[test]
    fn bad_value_names_line_and_column() {
        let message = load_str("1,2\n3,oops\n").unwrap_err().to_string();
        assert!(message.contains("line 2, column 2: `oops`"), "{message}");
        let message = load_str("1,2\n3,4\ninf,5\n").unwrap_err().to_string();
        assert!(message.contains("line 3, column 1"), "{message}");
    }

    #[test]
    fn empty_and_header_only_files_are_errors() {
        let message = load_str("").unwrap_err().to_string();
        assert!(message.contains("no rows"), "{message}");
        let message = load_str("a,b\n").unwrap_err().to_string();
        assert!(message.contains("header but no rows"), "{message}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let message = load(Path::new("/no/such/dir/points.csv"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("points.csv"), "{message}");
    }
}
