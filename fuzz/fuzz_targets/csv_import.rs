//! Any bytes as an uploaded contact CSV, fed in arbitrary chunks: must never panic, never
//! hold more than the line cap, and give the same rows and report as one single chunk.
#![no_main]
use libfuzzer_sys::fuzz_target;
use outdial::contacts::{ImportOptions, Importer};

fn options() -> ImportOptions {
    ImportOptions {
        max_line_bytes: 1024,
        batch_size: 7,
        ..ImportOptions::new("US")
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk sizes, the rest is the file.
    let Some((&seed, file)) = data.split_first() else {
        return;
    };
    let run = |chunked: bool| {
        let mut importer = Importer::new(options()).unwrap();
        let mut rows = Vec::new();
        let mut rest = file;
        let mut step = usize::from(seed) + 1;
        while !rest.is_empty() {
            let n = if chunked { step.min(rest.len()) } else { rest.len() };
            importer.feed(&rest[..n]);
            assert!(importer.buffered_bytes() <= 1024);
            rest = &rest[n..];
            step = (step * 7 + 3) % 61 + 1;
            while let Some(batch) = importer.take_batch() {
                rows.extend(batch);
            }
        }
        importer.finish();
        while let Some(batch) = importer.take_batch() {
            rows.extend(batch);
        }
        (rows, importer.into_report())
    };
    let whole = run(false);
    let chunked = run(true);
    assert_eq!(whole, chunked);
    let report = &whole.1;
    assert_eq!(report.rows, report.accepted + report.rejected);
    for row in &whole.0 {
        assert!(row.phone.starts_with('+') && row.phone[1..].bytes().all(|b| b.is_ascii_digit()));
    }
});
