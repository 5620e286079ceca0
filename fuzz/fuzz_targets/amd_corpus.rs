//! Any bytes as an `amd-eval` corpus file: as a G.711 WAV (must never panic, never yield more
//! samples than bytes) and as a labels.csv (must never panic; accepted rows name a file inside
//! the corpus and a human/machine label).
#![no_main]
use libfuzzer_sys::fuzz_target;
use outdial::amd::eval::{g711_wav, parse_labels};
use outdial::amd::Verdict;

fuzz_target!(|data: &[u8]| {
    if let Some(Ok(samples)) = g711_wav(data) {
        assert!(samples.len() <= data.len());
    }
    if let Ok(rows) = parse_labels(data, std::path::Path::new("labels.csv")) {
        for row in rows {
            assert!(!row.file.is_empty() && !row.file.contains(".."));
            assert!(matches!(row.label, Verdict::Human | Verdict::Machine));
        }
    }
});
