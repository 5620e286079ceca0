//! Contacts in and out of files: the streaming CSV import (`import`), the CSV/XLSX export
//! writers (`export`) and phone-number normalisation to E.164 (`phone`).
//!
//! Sans-IO: the importer is fed bytes and hands back rows and errors; the exporter writes to
//! any `std::io::Write`. Neither touches the store, a socket or the clock — the HTTP API
//! streams the request body in and the store inserts what comes out (and counts the contacts
//! the campaign already has). Nothing a file contains may panic here.

pub mod export;
pub mod import;
pub mod phone;

pub use export::{escape_formula, write_export, Cell, ExportError, ExportFormat, Exporter};
pub use import::{
    import_all, FileError, ImportError, ImportOptions, ImportReport, ImportRow, Importer, RowError,
};
pub use phone::{normalize_phone, PhoneNormalizer};
