//! `outdial amd-eval` and `outdial amd-features`: a labeled corpus through the live code path.
//!
//! A corpus is a directory of WAV files (8 kHz mono 16-bit PCM or G.711 µ-law/A-law; PCM at
//! other rates and channel counts is resampled and mixed down) with a `labels.csv` whose header
//! names at least `file` and `label` (`human` or `machine`), optionally `beep_ms` (the beep's
//! onset) and `speech_onset_ms` (when speech starts); other columns are ignored. Each file is
//! cut into 20 ms frames and fed to a fresh [`Amd`] exactly as a call's received audio is,
//! until the detection is done or the file ends.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::ml::{Tracker, FEATURE_NAMES, FIRST_STEP_MS, STEP_MS};
use super::{Amd, AmdConfig, AmdResult, Verdict, FRAME_MS, FRAME_SAMPLES};
use crate::media::Codec;

/// How far apart a found beep and the labeled one may be to count as found.
pub const BEEP_TOLERANCE_MS: u64 = 80;
/// `amd-features` stops this long after speech begins.
pub const FEATURE_HORIZON_MS: u64 = 10_000;

/// One row of `labels.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Labeled {
    pub file: String,
    pub label: Verdict,
    pub beep_ms: Option<u64>,
    pub speech_onset_ms: Option<u64>,
}

/// Reads `DIR/labels.csv`. Every problem names the line.
pub fn read_labels(dir: &Path) -> Result<Vec<Labeled>, String> {
    let path = dir.join("labels.csv");
    let file =
        std::fs::File::open(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_labels(file, &path)
}

/// Parses a labels.csv (`path` only names it in errors).
pub fn parse_labels(input: impl std::io::Read, path: &Path) -> Result<Vec<Labeled>, String> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| format!("{}: header: {e}", path.display()))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.trim() == name);
    let (Some(file_col), Some(label_col)) = (col("file"), col("label")) else {
        return Err(format!(
            "{}: the header must name the columns file and label (and optionally beep_ms)",
            path.display()
        ));
    };
    let beep_col = col("beep_ms");
    let onset_col = col("speech_onset_ms");
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| format!("{} line {line}: {e}", path.display()))?;
        let field = |c: usize| record.get(c).map(str::trim).unwrap_or("");
        let file = field(file_col).to_string();
        if file.is_empty() {
            return Err(format!("{} line {line}: empty file name", path.display()));
        }
        if file.contains("..") || Path::new(&file).is_absolute() {
            return Err(format!(
                "{} line {line}: file {file:?} must be a path inside the corpus",
                path.display()
            ));
        }
        let label = match field(label_col).to_ascii_lowercase().as_str() {
            "human" => Verdict::Human,
            "machine" => Verdict::Machine,
            other => {
                return Err(format!(
                    "{} line {line}: label {other:?}: expected human or machine",
                    path.display()
                ))
            }
        };
        let number = |c: Option<usize>, name: &str| -> Result<Option<u64>, String> {
            match c.map(field).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .map(|x| Some(x.round() as u64))
                    .ok_or_else(|| {
                        format!(
                            "{} line {line}: {name} {v:?}: expected milliseconds",
                            path.display()
                        )
                    }),
            }
        };
        rows.push(Labeled {
            file,
            label,
            beep_ms: number(beep_col, "beep_ms")?,
            speech_onset_ms: number(onset_col, "speech_onset_ms")?,
        });
    }
    if rows.is_empty() {
        return Err(format!("{}: no rows", path.display()));
    }
    Ok(rows)
}

/// Loads a corpus file as 8 kHz mono PCM: G.711 WAVs are decoded here, everything else goes
/// through the media layer's WAV loader.
pub fn load_audio(path: &Path) -> Result<Vec<i16>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if let Some(g711) = g711_wav(&bytes) {
        return g711.map_err(|e| format!("{}: {e}", path.display()));
    }
    crate::media::load_wav_8k_mono(path).map_err(|e| e.to_string())
}

/// Decodes a µ-law (format 7) or A-law (format 6) WAV; `None` when the file is something else.
pub fn g711_wav(bytes: &[u8]) -> Option<Result<Vec<i16>, String>> {
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let mut pos = 12;
    let mut format: Option<(u16, u16, u32)> = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        let body = pos + 8;
        let end = body.saturating_add(len).min(bytes.len());
        if id == b"fmt " {
            if end < body + 16 {
                return Some(Err("fmt chunk too short".into()));
            }
            let tag = u16::from_le_bytes([bytes[body], bytes[body + 1]]);
            let channels = u16::from_le_bytes([bytes[body + 2], bytes[body + 3]]);
            let rate = u32::from_le_bytes([
                bytes[body + 4],
                bytes[body + 5],
                bytes[body + 6],
                bytes[body + 7],
            ]);
            if tag != 6 && tag != 7 {
                return None;
            }
            format = Some((tag, channels, rate));
        } else if id == b"data" {
            let (tag, channels, rate) = format?;
            if channels != 1 || rate != 8000 {
                return Some(Err(format!(
                    "G.711 WAV must be 8000 Hz mono (this one: {rate} Hz, {channels} channels)"
                )));
            }
            let codec = if tag == 7 { Codec::Pcmu } else { Codec::Pcma };
            let mut out = Vec::with_capacity(end - body);
            codec.decode(&bytes[body..end], &mut out);
            return Some(Ok(out));
        }
        pos = body.saturating_add(len + (len & 1));
    }
    format.map(|_| Err("no data chunk".to_string()))
}

/// The per-file line of `amd-eval`.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub file: String,
    pub label: &'static str,
    pub verdict: &'static str,
    pub answered_by: &'static str,
    pub decision_ms: Option<u64>,
    pub beep_ms: Option<u64>,
    pub cause: &'static str,
    pub confidence: f32,
    /// What text mode heard by the time it decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
    #[serde(skip)]
    pub labeled_beep_ms: Option<u64>,
    #[serde(skip)]
    pub speech_onset_ms: Option<u64>,
    /// CPU time of this call's detection (written as `cpu_ms`).
    #[serde(rename = "cpu_ms", serialize_with = "us_as_ms")]
    pub cpu_us: u64,
    #[serde(skip)]
    pub audio_ms: u64,
}

fn us_as_ms<S: serde::Serializer>(us: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((*us as f64 / 100.0).round() / 10.0)
}

fn thread_cpu_us() -> u64 {
    crate::bench::sys::cpu_time_us(true).unwrap_or(0)
}

/// Runs one file's audio through a fresh detection: the result, the transcript (text mode)
/// and the CPU time it took (µs).
pub fn run_audio(
    cfg: AmdConfig,
    audio: &[i16],
) -> Result<(AmdResult, Option<String>, u64), String> {
    let start = thread_cpu_us();
    let mut amd = Amd::new(cfg)?;
    let mut events = Vec::new();
    let mut t = 0;
    for frame in audio.chunks_exact(FRAME_SAMPLES) {
        amd.push(frame, t, &mut events);
        t += FRAME_MS;
        if amd.is_done() {
            break;
        }
    }
    amd.finish(t, false, &mut events);
    Ok((
        amd.result(),
        amd.transcript(),
        thread_cpu_us().saturating_sub(start),
    ))
}

/// Runs one labeled file.
pub fn run_file(cfg: AmdConfig, dir: &Path, row: &Labeled) -> Result<FileReport, String> {
    let audio = load_audio(&dir.join(&row.file))?;
    let (r, transcript, cpu_us) = run_audio(cfg, &audio)?;
    Ok(FileReport {
        file: row.file.clone(),
        label: row.label.name(),
        verdict: r.verdict.name(),
        answered_by: r.answered_by.name(),
        decision_ms: r.decision_ms,
        beep_ms: r.beep_ms,
        cause: r.cause.name(),
        confidence: (r.confidence * 1000.0).round() / 1000.0,
        transcript,
        labeled_beep_ms: row.beep_ms,
        speech_onset_ms: row.speech_onset_ms,
        cpu_us,
        audio_ms: (audio.len() / FRAME_SAMPLES) as u64 * FRAME_MS,
    })
}

fn median(mut v: Vec<u64>) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(v[v.len() / 2])
}

fn ratio(n: usize, d: usize) -> Option<f64> {
    (d > 0).then(|| (n as f64 / d as f64 * 10_000.0).round() / 10_000.0)
}

/// The closing `{"summary":…}` line.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub mode: String,
    pub files: usize,
    pub humans: usize,
    pub machines: usize,
    pub accuracy: Option<f64>,
    /// Humans called machines, over humans.
    pub false_machine_rate: Option<f64>,
    /// Machines called humans, over machines.
    pub false_human_rate: Option<f64>,
    pub unknown_rate: Option<f64>,
    pub median_decision_ms_human: Option<u64>,
    pub median_decision_ms_machine: Option<u64>,
    /// The same, counted from the labeled speech onset (when labels.csv has it).
    pub median_decision_after_onset_ms_human: Option<u64>,
    pub median_decision_after_onset_ms_machine: Option<u64>,
    pub labeled_beeps: usize,
    /// Labeled beeps found within ±80 ms of their onset.
    pub beep_recall: Option<f64>,
    pub median_beep_onset_error_ms: Option<u64>,
    /// Beeps reported in files that have none labeled.
    pub false_beeps: usize,
    pub cpu_ms: f64,
    /// Mean CPU per call (file), ms.
    pub cpu_ms_per_call: Option<f64>,
    pub cpu_us_per_audio_second: Option<f64>,
}

pub fn summarize(mode: &str, reports: &[FileReport]) -> Summary {
    let humans: Vec<&FileReport> = reports.iter().filter(|r| r.label == "human").collect();
    let machines: Vec<&FileReport> = reports.iter().filter(|r| r.label == "machine").collect();
    let correct = reports.iter().filter(|r| r.verdict == r.label).count();
    let decision = |set: &[&FileReport], from_onset: bool| {
        median(
            set.iter()
                .filter(|r| r.verdict == r.label)
                .filter_map(|r| {
                    let d = r.decision_ms?;
                    if from_onset {
                        Some(d.saturating_sub(r.speech_onset_ms?))
                    } else {
                        Some(d)
                    }
                })
                .collect(),
        )
    };
    let labeled: Vec<&FileReport> = reports
        .iter()
        .filter(|r| r.labeled_beep_ms.is_some())
        .collect();
    let errors: Vec<u64> = labeled
        .iter()
        .filter_map(|r| Some(r.beep_ms?.abs_diff(r.labeled_beep_ms?)))
        .collect();
    let found = errors.iter().filter(|&&e| e <= BEEP_TOLERANCE_MS).count();
    let cpu_us: u64 = reports.iter().map(|r| r.cpu_us).sum();
    let audio_ms: u64 = reports.iter().map(|r| r.audio_ms).sum();
    Summary {
        mode: mode.to_string(),
        files: reports.len(),
        humans: humans.len(),
        machines: machines.len(),
        accuracy: ratio(correct, reports.len()),
        false_machine_rate: ratio(
            humans.iter().filter(|r| r.verdict == "machine").count(),
            humans.len(),
        ),
        false_human_rate: ratio(
            machines.iter().filter(|r| r.verdict == "human").count(),
            machines.len(),
        ),
        unknown_rate: ratio(
            reports.iter().filter(|r| r.verdict == "unknown").count(),
            reports.len(),
        ),
        median_decision_ms_human: decision(&humans, false),
        median_decision_ms_machine: decision(&machines, false),
        median_decision_after_onset_ms_human: decision(&humans, true),
        median_decision_after_onset_ms_machine: decision(&machines, true),
        labeled_beeps: labeled.len(),
        beep_recall: ratio(found, labeled.len()),
        median_beep_onset_error_ms: median(errors),
        false_beeps: reports
            .iter()
            .filter(|r| r.labeled_beep_ms.is_none() && r.beep_ms.is_some())
            .count(),
        cpu_ms: (cpu_us as f64 / 100.0).round() / 10.0,
        cpu_ms_per_call: (!reports.is_empty())
            .then(|| (cpu_us as f64 / reports.len() as f64 / 100.0).round() / 10.0),
        cpu_us_per_audio_second: (audio_ms > 0)
            .then(|| (cpu_us as f64 / (audio_ms as f64 / 1000.0) * 10.0).round() / 10.0),
    }
}

/// Writes the ML tracker's feature vectors for every file of a corpus, one CSV row per model
/// step (the cadence of the live detector), for training. Returns the number of rows.
pub fn dump_features(dir: &Path, out: &mut dyn std::io::Write) -> Result<usize, String> {
    let rows = read_labels(dir)?;
    let mut w = csv::Writer::from_writer(out);
    let mut header = vec!["file", "label", "t_ms", "since_onset_ms", "beep_heard_ms"];
    header.extend(FEATURE_NAMES);
    w.write_record(&header).map_err(|e| e.to_string())?;
    let mut n = 0;
    for row in &rows {
        let audio = load_audio(&dir.join(&row.file))?;
        // When the live path's beep detector reports the first beep: a verdict of its own
        // (machine) that training must weigh against the classifier's.
        let mut tones = crate::media::tones::ToneDetectors::new();
        let beep_heard = audio
            .chunks_exact(FRAME_SAMPLES)
            .enumerate()
            .find_map(|(i, f)| {
                let at = i as u64 * FRAME_MS;
                tones
                    .process(f, at)
                    .iter()
                    .any(|e| matches!(e, crate::media::tones::ToneEvent::Beep { .. }))
                    .then_some(at + FRAME_MS)
            })
            .map_or(String::new(), |t| t.to_string());
        let mut tracker = Tracker::new();
        let mut t = 0;
        let mut next: Option<u64> = None;
        for frame in audio.chunks_exact(FRAME_SAMPLES) {
            tracker.push(frame, t);
            t += FRAME_MS;
            let Some(onset) = tracker.onset_ms() else {
                continue;
            };
            let due = *next.get_or_insert(onset + FIRST_STEP_MS);
            if t < due {
                continue;
            }
            next = Some(due + STEP_MS);
            if t - onset > FEATURE_HORIZON_MS {
                break;
            }
            let mut record = vec![
                row.file.clone(),
                row.label.name().to_string(),
                t.to_string(),
                (t - onset).to_string(),
                beep_heard.clone(),
            ];
            record.extend(tracker.features().iter().map(|v| format!("{v:.5}")));
            w.write_record(&record).map_err(|e| e.to_string())?;
            n += 1;
        }
    }
    w.flush().map_err(|e| e.to_string())?;
    Ok(n)
}

/// The corpus files that exist, for a clear error before a long run.
pub fn check_files(dir: &Path, rows: &[Labeled]) -> Result<(), String> {
    let missing: Vec<PathBuf> = rows
        .iter()
        .map(|r| dir.join(&r.file))
        .filter(|p| !p.is_file())
        .take(3)
        .collect();
    if let Some(first) = missing.first() {
        return Err(format!(
            "corpus file {} listed in labels.csv does not exist",
            first.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_need_file_and_label_and_name_the_bad_line() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join("labels.csv"),
            "file,label,beep_ms,extra\na.wav,human,,x\nb.wav,machine,1234.4,y\n",
        )
        .expect("write");
        let rows = read_labels(dir.path()).expect("rows");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].beep_ms, Some(1234));
        assert_eq!(rows[0].label, Verdict::Human);

        std::fs::write(dir.path().join("labels.csv"), "file,label\na.wav,robot\n").expect("write");
        let e = read_labels(dir.path()).unwrap_err();
        assert!(e.contains("line 2") && e.contains("robot"), "{e}");
        std::fs::write(dir.path().join("labels.csv"), "name,kind\na.wav,human\n").expect("write");
        assert!(read_labels(dir.path())
            .unwrap_err()
            .contains("file and label"));
        std::fs::write(
            dir.path().join("labels.csv"),
            "file,label\n../x.wav,human\n",
        )
        .expect("write");
        assert!(read_labels(dir.path())
            .unwrap_err()
            .contains("inside the corpus"));
    }

    #[test]
    fn ulaw_wavs_are_decoded() {
        let mut wav = Vec::new();
        let data: Vec<u8> = (0..1600)
            .map(|i| Codec::Pcmu.encode_sample(((i % 40) as i16 - 20) * 500))
            .collect();
        wav.extend_from_slice(b"RIFF");
        wav.extend_from_slice(&(4 + 8 + 18 + 8 + data.len() as u32).to_le_bytes());
        wav.extend_from_slice(b"WAVEfmt ");
        wav.extend_from_slice(&18u32.to_le_bytes());
        wav.extend_from_slice(&7u16.to_le_bytes());
        wav.extend_from_slice(&1u16.to_le_bytes());
        wav.extend_from_slice(&8000u32.to_le_bytes());
        wav.extend_from_slice(&8000u32.to_le_bytes());
        wav.extend_from_slice(&1u16.to_le_bytes());
        wav.extend_from_slice(&8u16.to_le_bytes());
        wav.extend_from_slice(&0u16.to_le_bytes());
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
        wav.extend_from_slice(&data);
        let pcm = g711_wav(&wav).expect("g711").expect("decodes");
        assert_eq!(pcm.len(), 1600);
        assert_eq!(pcm[0], Codec::Pcmu.decode_sample(data[0]));
        // Truncated or lying headers never panic.
        for cut in 0..wav.len() {
            let _ = g711_wav(&wav[..cut]);
        }
    }

    #[test]
    fn summary_counts_accuracy_false_machines_and_beeps() {
        let rep = |label: &'static str,
                   verdict: &'static str,
                   beep: Option<u64>,
                   labeled: Option<u64>| FileReport {
            file: "f".into(),
            label,
            verdict,
            answered_by: "x",
            decision_ms: Some(1000),
            beep_ms: beep,
            cause: "MODEL",
            confidence: 0.9,
            transcript: None,
            labeled_beep_ms: labeled,
            speech_onset_ms: Some(400),
            cpu_us: 100,
            audio_ms: 5000,
        };
        let s = summarize(
            "ml",
            &[
                rep("human", "human", None, None),
                rep("human", "machine", None, None),
                rep("machine", "machine", Some(3050), Some(3000)),
                rep("machine", "machine", Some(3200), Some(3000)),
            ],
        );
        assert_eq!(s.accuracy, Some(0.75));
        assert_eq!(s.false_machine_rate, Some(0.5));
        assert_eq!(s.beep_recall, Some(0.5));
        assert_eq!(s.median_decision_after_onset_ms_human, Some(600));
    }
}
