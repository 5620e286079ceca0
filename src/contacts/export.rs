//! Contact and attempt exports: column names plus rows of cells, written as CSV with `,`,
//! CSV with `;` (European: decimal comma) or XLSX, to any `std::io::Write`.
//!
//! Spreadsheet formula injection (OWASP "CSV injection"): a text cell that starts with
//! `=`, `+`, `-`, `@`, tab or CR (or their full-width forms) is written with a leading `'`
//! in CSV, so a spreadsheet shows it as text instead of running it. XLSX cells are always
//! typed (string, number, date): a string is never a formula there, so XLSX writes text as
//! is. Phones: a [`Cell::Phone`] holding strict E.164 (`+` and 1–15 digits, what the store
//! keeps) is written without the `'`: digits after a `+` can only ever be that number, no
//! function, reference or DDE call, and the `'` would spoil the column (and its re-import).
//! A `Cell::Phone` that is not strict E.164 is escaped like any text. Numbers are written as
//! numbers (they are ours, not user text).
//!
//! CSV files start with a UTF-8 BOM (Excel needs it to read UTF-8) and end lines with CRLF
//! (RFC 4180). XLSX: a bold, frozen header row with an autofilter, column widths from the
//! content (8–60 characters), times as date cells (UTC). rust_xlsxwriter keeps the sheet in
//! memory until `finish` (its constant-memory mode needs a newer `tempfile` than the one
//! pinned here): prefer CSV for very large exports.
//!
//! Must not: panic on any cell, write a formula, touch the store.

use std::borrow::Cow;
use std::io::Write;

use rust_xlsxwriter::{Format, Workbook, Worksheet};

use crate::campaign::model::Millis;

/// XLSX limits.
const XLSX_MAX_ROWS: u64 = 1_048_576;
const XLSX_MAX_COLUMNS: usize = 16_384;
const XLSX_MAX_STRING_CHARS: usize = 32_767;
const XLSX_MIN_WIDTH: usize = 8;
const XLSX_MAX_WIDTH: usize = 60;
/// 1970-01-01 as an Excel serial date.
const EXCEL_UNIX_EPOCH: f64 = 25_569.0;

/// What a user picks (guide 2: XLSX, CSV comma-separated, CSV semicolon-separated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportFormat {
    CsvComma,
    CsvSemicolon,
    Xlsx,
}

impl ExportFormat {
    pub const ALL: [ExportFormat; 3] = [
        ExportFormat::Xlsx,
        ExportFormat::CsvComma,
        ExportFormat::CsvSemicolon,
    ];

    /// `csv`, `csv_comma`, `csv,` → comma; `csv_semicolon`, `csv;` → semicolon; `xlsx`
    /// (case and surrounding spaces do not matter).
    pub fn parse(text: &str) -> Option<ExportFormat> {
        match text.trim().to_ascii_lowercase().as_str() {
            "csv" | "csv_comma" | "csv," => Some(ExportFormat::CsvComma),
            "csv_semicolon" | "csv;" => Some(ExportFormat::CsvSemicolon),
            "xlsx" => Some(ExportFormat::Xlsx),
            _ => None,
        }
    }

    /// The canonical name (what `parse` reads back).
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::CsvComma => "csv_comma",
            ExportFormat::CsvSemicolon => "csv_semicolon",
            ExportFormat::Xlsx => "xlsx",
        }
    }

    /// File extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::CsvComma | ExportFormat::CsvSemicolon => "csv",
            ExportFormat::Xlsx => "xlsx",
        }
    }

    /// HTTP Content-Type.
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::CsvComma | ExportFormat::CsvSemicolon => "text/csv; charset=utf-8",
            ExportFormat::Xlsx => {
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            }
        }
    }

    /// How the guide shows it in the export history: `.xlsx`, `.csv (,)`, `.csv (;)`.
    pub fn label(self) -> &'static str {
        match self {
            ExportFormat::CsvComma => ".csv (,)",
            ExportFormat::CsvSemicolon => ".csv (;)",
            ExportFormat::Xlsx => ".xlsx",
        }
    }
}

impl std::fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ExportFormat {
    type Err = ExportError;
    fn from_str(text: &str) -> Result<Self, ExportError> {
        ExportFormat::parse(text).ok_or_else(|| ExportError::UnknownFormat(text.to_string()))
    }
}

/// One cell of an export row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Empty,
    /// Text from anywhere (names, comments, tags): formula-escaped in CSV.
    Text(String),
    /// A phone number; strict E.164 is written as is (see the module notes).
    Phone(String),
    Int(i64),
    Float(f64),
    /// UTC, written `YYYY-MM-DD HH:MM:SS` in CSV and as a date cell in XLSX.
    Time(Millis),
}

impl From<&str> for Cell {
    fn from(text: &str) -> Cell {
        Cell::Text(text.to_string())
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell::Text(text)
    }
}

impl From<i64> for Cell {
    fn from(value: i64) -> Cell {
        Cell::Int(value)
    }
}

impl From<f64> for Cell {
    fn from(value: f64) -> Cell {
        Cell::Float(value)
    }
}

impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(value: Option<T>) -> Cell {
        value.map_or(Cell::Empty, Into::into)
    }
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("unknown export format {0:?} (expected xlsx, csv_comma or csv_semicolon)")]
    UnknownFormat(String),
    #[error("an export row has {got} cells but there are {expected} columns")]
    RowWidth { expected: usize, got: usize },
    #[error("an XLSX sheet holds at most {XLSX_MAX_ROWS} rows (header included): export as CSV")]
    TooManyRows,
    #[error("an XLSX sheet holds at most {XLSX_MAX_COLUMNS} columns")]
    TooManyColumns,
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing the CSV export: {0}")]
    Csv(#[from] csv::Error),
    #[error("writing the XLSX export: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
}

/// Text that a spreadsheet would run as a formula gets a leading `'` (OWASP).
pub fn escape_formula(text: &str) -> Cow<'_, str> {
    match text.chars().next() {
        Some(
            '=' | '+' | '-' | '@' | '\t' | '\r' | '\u{ff1d}' | '\u{ff0b}' | '\u{ff0d}' | '\u{ff20}',
        ) => Cow::Owned(format!("'{text}")),
        _ => Cow::Borrowed(text),
    }
}

/// `+` and 1–15 digits, nothing else.
fn is_e164(text: &str) -> bool {
    text.strip_prefix('+').is_some_and(|digits| {
        (1..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

fn time_text(millis: Millis) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// Writes one export: header at `new`, rows with `write_row`, the end with `finish`.
///
/// ```
/// use outdial::contacts::{Cell, ExportFormat, Exporter};
/// let mut out = Exporter::new(ExportFormat::CsvSemicolon, &["phone", "name"], Vec::new()).unwrap();
/// out.write_row(&[Cell::Phone("+12025550101".into()), "=HYPERLINK(\"x\")".into()]).unwrap();
/// let bytes = out.finish().unwrap();
/// assert!(String::from_utf8(bytes).unwrap().ends_with("+12025550101;\"'=HYPERLINK(\"\"x\"\")\"\r\n"));
/// ```
pub struct Exporter<W: Write + Send> {
    format: ExportFormat,
    columns: usize,
    rows: u64,
    inner: Inner<W>,
}

enum Inner<W: Write + Send> {
    Csv(Box<csv::Writer<W>>),
    Xlsx(Box<Xlsx<W>>),
}

struct Xlsx<W> {
    out: W,
    sheet: Worksheet,
    /// Widest content per column, in characters.
    widths: Vec<usize>,
    time: Format,
}

impl<W: Write + Send> std::fmt::Debug for Exporter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("format", &self.format)
            .field("columns", &self.columns)
            .field("rows", &self.rows)
            .finish()
    }
}

impl<W: Write + Send> Exporter<W> {
    /// Starts an export to `out` and writes the header row.
    pub fn new<S: AsRef<str>>(
        format: ExportFormat,
        columns: &[S],
        mut out: W,
    ) -> Result<Exporter<W>, ExportError> {
        let inner = match format {
            ExportFormat::CsvComma | ExportFormat::CsvSemicolon => {
                out.write_all("\u{feff}".as_bytes())?;
                let mut writer = csv::WriterBuilder::new()
                    .delimiter(if format == ExportFormat::CsvSemicolon {
                        b';'
                    } else {
                        b','
                    })
                    .terminator(csv::Terminator::CRLF)
                    .from_writer(out);
                writer.write_record(
                    columns
                        .iter()
                        .map(|c| escape_formula(c.as_ref()).into_owned()),
                )?;
                Inner::Csv(Box::new(writer))
            }
            ExportFormat::Xlsx => {
                if columns.len() > XLSX_MAX_COLUMNS {
                    return Err(ExportError::TooManyColumns);
                }
                let mut sheet = Worksheet::new();
                sheet.set_name("Export")?;
                let bold = Format::new().set_bold();
                for (col, name) in columns.iter().enumerate() {
                    sheet.write_string_with_format(
                        0,
                        col as u16,
                        xlsx_text(name.as_ref()),
                        &bold,
                    )?;
                }
                if !columns.is_empty() {
                    sheet.set_freeze_panes(1, 0)?;
                }
                Inner::Xlsx(Box::new(Xlsx {
                    out,
                    sheet,
                    widths: columns.iter().map(|c| c.as_ref().chars().count()).collect(),
                    time: Format::new().set_num_format("yyyy-mm-dd hh:mm:ss"),
                }))
            }
        };
        Ok(Exporter {
            format,
            columns: columns.len(),
            rows: 0,
            inner,
        })
    }

    pub fn format(&self) -> ExportFormat {
        self.format
    }

    /// Data rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes one row; it must have one cell per column.
    pub fn write_row(&mut self, row: &[Cell]) -> Result<(), ExportError> {
        if row.len() != self.columns {
            return Err(ExportError::RowWidth {
                expected: self.columns,
                got: row.len(),
            });
        }
        let semicolon = self.format == ExportFormat::CsvSemicolon;
        match &mut self.inner {
            Inner::Csv(writer) => {
                for cell in row {
                    let text: Cow<'_, str> = match cell {
                        Cell::Empty => Cow::Borrowed(""),
                        Cell::Text(text) => escape_formula(text),
                        Cell::Phone(phone) if is_e164(phone) => Cow::Borrowed(phone.as_str()),
                        Cell::Phone(text) => escape_formula(text),
                        Cell::Int(n) => Cow::Owned(n.to_string()),
                        Cell::Float(x) if x.is_finite() => {
                            let text = x.to_string();
                            Cow::Owned(if semicolon {
                                text.replace('.', ",")
                            } else {
                                text
                            })
                        }
                        Cell::Float(_) => Cow::Borrowed(""),
                        Cell::Time(t) => time_text(*t).map_or(Cow::Borrowed(""), Cow::Owned),
                    };
                    writer.write_field(text.as_bytes())?;
                }
                writer.write_record(None::<&[u8]>)?;
            }
            Inner::Xlsx(xlsx) => {
                let r = self.rows + 1;
                if r >= XLSX_MAX_ROWS {
                    return Err(ExportError::TooManyRows);
                }
                let r = r as u32;
                for (c, cell) in row.iter().enumerate() {
                    let col = c as u16;
                    let sheet = &mut xlsx.sheet;
                    let chars = match cell {
                        Cell::Empty => 0,
                        Cell::Text(text) | Cell::Phone(text) => {
                            let text = xlsx_text(text);
                            sheet.write_string(r, col, text)?;
                            text.chars().count()
                        }
                        Cell::Int(n) if n.unsigned_abs() <= 1 << 53 => {
                            sheet.write_number(r, col, *n as f64)?;
                            n.to_string().len()
                        }
                        Cell::Int(n) => {
                            let text = n.to_string();
                            sheet.write_string(r, col, &text)?;
                            text.len()
                        }
                        Cell::Float(x) if x.is_finite() => {
                            sheet.write_number(r, col, *x)?;
                            x.to_string().len().min(15)
                        }
                        Cell::Float(_) => 0,
                        Cell::Time(t) => {
                            // Excel's dates start in 1900.
                            let serial = EXCEL_UNIX_EPOCH + *t as f64 / 86_400_000.0;
                            if (1.0..2_958_466.0).contains(&serial) {
                                sheet.write_number_with_format(r, col, serial, &xlsx.time)?;
                                19
                            } else {
                                0
                            }
                        }
                    };
                    if let Some(width) = xlsx.widths.get_mut(c) {
                        *width = (*width).max(chars);
                    }
                }
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Ends the file and hands `out` back (flushed).
    pub fn finish(self) -> Result<W, ExportError> {
        match self.inner {
            Inner::Csv(writer) => {
                let mut out = (*writer)
                    .into_inner()
                    .map_err(|e| ExportError::Io(std::io::Error::other(e.error().to_string())))?;
                out.flush()?;
                Ok(out)
            }
            Inner::Xlsx(xlsx) => {
                let Xlsx {
                    mut out,
                    mut sheet,
                    widths,
                    ..
                } = *xlsx;
                for (col, width) in widths.iter().enumerate() {
                    let width = (width + 2).clamp(XLSX_MIN_WIDTH, XLSX_MAX_WIDTH);
                    sheet.set_column_width(col as u16, width as f64)?;
                }
                if !widths.is_empty() {
                    sheet.autofilter(0, 0, self.rows as u32, (widths.len() - 1) as u16)?;
                }
                let mut workbook = Workbook::new();
                workbook.push_worksheet(sheet);
                workbook.save_to_writer(&mut out)?;
                out.flush()?;
                Ok(out)
            }
        }
    }
}

/// XLSX strings hold at most 32,767 characters.
fn xlsx_text(text: &str) -> &str {
    match text.char_indices().nth(XLSX_MAX_STRING_CHARS) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Writes a whole export: header, every row, end.
pub fn write_export<W, S, R>(
    format: ExportFormat,
    columns: &[S],
    rows: impl IntoIterator<Item = R>,
    out: W,
) -> Result<W, ExportError>
where
    W: Write + Send,
    S: AsRef<str>,
    R: AsRef<[Cell]>,
{
    let mut exporter = Exporter::new(format, columns, out)?;
    for row in rows {
        exporter.write_row(row.as_ref())?;
    }
    exporter.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const COLUMNS: [&str; 6] = [
        "phone",
        "name",
        "comments",
        "attempts",
        "score",
        "last_attempt_at",
    ];

    fn rows() -> Vec<Vec<Cell>> {
        vec![
            vec![
                Cell::Phone("+12025550101".into()),
                "John Doe".into(),
                "=HYPERLINK(\"http://evil.example\",\"click\")".into(),
                Cell::Int(3),
                Cell::Float(0.75),
                Cell::Time(1_700_000_000_000),
            ],
            vec![
                Cell::Phone("=1+2".into()),
                "@SUM(A1:A9)".into(),
                "multi\nline, with \"quotes\"; and semicolons".into(),
                Cell::Int(-4),
                Cell::Float(f64::NAN),
                Cell::Empty,
            ],
            vec![
                Cell::Phone("+44 20".into()),
                "-2+3".into(),
                "\tTab".into(),
                Cell::from(None::<i64>),
                Cell::from(Some(1.5)),
                Cell::Time(0),
            ],
        ]
    }

    fn csv_records(bytes: &[u8], delimiter: u8) -> Vec<Vec<String>> {
        let text = std::str::from_utf8(bytes).unwrap();
        let text = text.strip_prefix('\u{feff}').expect("a BOM");
        csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .from_reader(text.as_bytes())
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect()
    }

    #[test]
    fn formats_parse_and_describe_themselves() {
        for (text, format) in [
            ("csv", ExportFormat::CsvComma),
            ("CSV_comma", ExportFormat::CsvComma),
            ("csv,", ExportFormat::CsvComma),
            ("csv_semicolon", ExportFormat::CsvSemicolon),
            (" csv; ", ExportFormat::CsvSemicolon),
            ("xlsx", ExportFormat::Xlsx),
        ] {
            assert_eq!(ExportFormat::parse(text), Some(format), "{text}");
        }
        assert_eq!(ExportFormat::parse("xls"), None);
        assert!("pdf"
            .parse::<ExportFormat>()
            .unwrap_err()
            .to_string()
            .contains("\"pdf\""));
        for format in ExportFormat::ALL {
            assert_eq!(ExportFormat::parse(format.as_str()), Some(format));
        }
        assert_eq!(ExportFormat::Xlsx.extension(), "xlsx");
        assert_eq!(ExportFormat::CsvSemicolon.extension(), "csv");
        assert_eq!(
            ExportFormat::CsvComma.content_type(),
            "text/csv; charset=utf-8"
        );
        assert!(ExportFormat::Xlsx.content_type().contains("spreadsheetml"));
        assert_eq!(ExportFormat::CsvSemicolon.label(), ".csv (;)");
    }

    #[test]
    fn csv_round_trips_with_both_delimiters_and_neutralises_formulas() {
        for (format, delimiter) in [
            (ExportFormat::CsvComma, b','),
            (ExportFormat::CsvSemicolon, b';'),
        ] {
            let bytes = write_export(format, &COLUMNS, rows(), Vec::new()).unwrap();
            assert!(bytes.starts_with("\u{feff}phone".as_bytes()));
            assert!(std::str::from_utf8(&bytes).unwrap().contains("\r\n"));
            let records = csv_records(&bytes, delimiter);
            assert_eq!(records[0], COLUMNS);
            let decimal = if delimiter == b';' { "0,75" } else { "0.75" };
            assert_eq!(
                records[1],
                [
                    "+12025550101",
                    "John Doe",
                    "'=HYPERLINK(\"http://evil.example\",\"click\")",
                    "3",
                    decimal,
                    "2023-11-14 22:13:20",
                ]
            );
            assert_eq!(
                records[2],
                [
                    "'=1+2",
                    "'@SUM(A1:A9)",
                    "multi\nline, with \"quotes\"; and semicolons",
                    "-4",
                    "",
                    ""
                ]
            );
            let half = if delimiter == b';' { "1,5" } else { "1.5" };
            assert_eq!(
                records[3],
                [
                    "'+44 20",
                    "'-2+3",
                    "'\tTab",
                    "",
                    half,
                    "1970-01-01 00:00:00"
                ]
            );
            // No cell a spreadsheet would run, except the validated E.164 phone.
            for record in &records[1..] {
                for (i, cell) in record.iter().enumerate() {
                    let formula = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
                    let allowed =
                        (i == 0 && is_e164(cell)) || (i == 3 && cell.parse::<i64>().is_ok());
                    assert!(!formula || allowed, "{cell:?}");
                }
            }
        }
    }

    #[test]
    fn escaping_follows_owasp() {
        for bad in ["=1", "+1", "-1", "@x", "\tx", "\rx", "＝1"] {
            assert!(escape_formula(bad).starts_with('\''), "{bad:?}");
        }
        for fine in ["John", "", " =1", "'=1", "1+1"] {
            assert_eq!(escape_formula(fine), fine);
        }
        assert!(is_e164("+12025550101"));
        assert!(!is_e164("+1202555010123456"));
        assert!(!is_e164("+1 202"));
        assert!(!is_e164("+"));
        assert!(!is_e164("+0123"));
    }

    #[test]
    fn rows_must_fit_the_columns() {
        let mut out = Exporter::new(ExportFormat::CsvComma, &["a", "b"], Vec::new()).unwrap();
        let err = out.write_row(&[Cell::Int(1)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "an export row has 1 cells but there are 2 columns"
        );
        let mut out = Exporter::new(ExportFormat::Xlsx, &["a", "b"], Vec::new()).unwrap();
        assert!(out
            .write_row(&[Cell::Int(1), Cell::Int(2), Cell::Int(3)])
            .is_err());
        assert_eq!(out.rows(), 0);
    }

    fn unzip(bytes: &[u8], name: &str) -> String {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut file = archive.by_name(name).unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn xlsx_is_a_zip_with_typed_cells_and_no_formulas() {
        let bytes = write_export(ExportFormat::Xlsx, &COLUMNS, rows(), Vec::new()).unwrap();
        assert!(bytes.starts_with(b"PK"));
        let sheet = unzip(&bytes, "xl/worksheets/sheet1.xml");
        let strings = unzip(&bytes, "xl/sharedStrings.xml");
        assert!(!sheet.contains("<f>"), "no formula cells: {sheet}");
        // The injection is kept as plain text (a string cell), never a formula.
        assert!(
            strings.contains(r#"<t>=HYPERLINK("http://evil.example","click")</t>"#),
            "{strings}"
        );
        assert!(strings.contains("<t>+12025550101</t>"), "{strings}");
        assert!(strings.contains("<t>John Doe</t>"));
        assert!(strings.contains("<t>=1+2</t>"));
        // Numbers are numbers: attempts 3 in D2, score 0.75 in E2.
        assert!(sheet.contains(r#"<c r="D2"><v>3</v></c>"#), "{sheet}");
        assert!(sheet.contains(r#"<c r="E2"><v>0.75</v></c>"#), "{sheet}");
        // Strings are shared-string cells, the time a styled number.
        assert!(sheet.contains(r#"<c r="A2" t="s">"#), "{sheet}");
        assert!(sheet.contains(r#"<c r="F2" s="2"><v>45244.92"#), "{sheet}");
        // Frozen bold header, widths from the content, an autofilter.
        assert!(sheet.contains(r#"<pane ySplit="1""#), "{sheet}");
        assert!(sheet.contains("<autoFilter ref=\"A1:F4\"/>"), "{sheet}");
        assert!(sheet.contains("<cols>"), "{sheet}");
        let styles = unzip(&bytes, "xl/styles.xml");
        assert!(styles.contains("<b/>"), "{styles}");
    }

    #[test]
    fn xlsx_writes_to_a_file_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.xlsx");
        let file = std::fs::File::create(&path).unwrap();
        write_export(
            ExportFormat::Xlsx,
            &["phone"],
            [[Cell::Phone("+12025550101".into())]],
            file,
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(unzip(&bytes, "xl/sharedStrings.xml").contains("+12025550101"));
    }

    #[test]
    fn csv_export_reimports() {
        let contacts = [
            vec![
                Cell::Phone("+12025550101".into()),
                "=cmd|' /C calc'!A0".into(),
                "x".into(),
            ],
            vec![
                Cell::Phone("+442079460958".into()),
                "Ann, Jr.".into(),
                "multi\nline".into(),
            ],
        ];
        let bytes = write_export(
            ExportFormat::CsvSemicolon,
            &["phone", "name", "comments"],
            contacts,
            Vec::new(),
        )
        .unwrap();
        let (rows, report) =
            crate::contacts::import_all(&bytes, crate::contacts::ImportOptions::new("US")).unwrap();
        assert!(report.errors.is_empty(), "{report:?}");
        assert_eq!(rows[0].phone, "+12025550101");
        assert_eq!(rows[0].name, "'=cmd|' /C calc'!A0");
        assert_eq!(rows[1].comments, "multi\nline");
    }
}
