//! WAV files in and out: prompts loaded as 8 kHz mono PCM, calls recorded as 8 kHz mono 16-bit.
//!
//! [`load_wav_8k_mono`] reads any PCM integer (8/16/24/32-bit) or 32-bit float WAV with any
//! channel count (channels are averaged) and any sample rate, resampling with rubato: the FFT
//! resampler when the rate has a whole 20 ms chunk (`rate % 50 == 0`), the asynchronous sinc
//! resampler otherwise. Files are loaded whole: this is for prompts, not for streaming, and it
//! runs off the media tasks (call it before a call, or in `spawn_blocking`).
//! [`WavRecorder`] writes as audio arrives and rewrites the header at least once per second of
//! audio, so a crash loses at most the last second. Every error names the file and the reason.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, Fft, FixedAsync, FixedSync, Resampler, SincInterpolationParameters};

use super::{MediaError, SAMPLE_RATE};

/// Longest prompt accepted, in seconds: a guard against headers that would make us allocate
/// gigabytes.
const MAX_SECONDS: u64 = 3600;
/// Sample rates accepted on input.
const MIN_RATE: u32 = 1000;
const MAX_RATE: u32 = 768_000;
/// A WAV data chunk holds at most 4 GiB; keep clear of it (about 74 hours at 8 kHz).
const MAX_RECORDED_SAMPLES: u64 = (u32::MAX as u64 - 1024) / 2;

fn wav_error(path: &Path, reason: impl Into<String>) -> MediaError {
    MediaError::Wav {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// True for hound's way of saying the data ended before the header said it would.
fn is_truncation(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::UnexpectedEof
        || (e.kind() == std::io::ErrorKind::Other
            && e.to_string() == "Failed to read enough bytes.")
}

fn describe_hound_error(e: &hound::Error) -> String {
    match e {
        hound::Error::IoError(io) if is_truncation(io) => "the file ends early".to_string(),
        hound::Error::IoError(io) => match io.kind() {
            std::io::ErrorKind::NotFound => "file not found".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => io.to_string(),
        },
        hound::Error::FormatError(reason) => format!("not a valid WAV file ({reason})"),
        hound::Error::Unsupported => {
            "unsupported WAV encoding (PCM 8/16/24/32-bit or 32-bit float only)".to_string()
        }
        other => other.to_string(),
    }
}

/// Loads a WAV file as 8 kHz mono 16-bit PCM, whatever its format, channels and rate.
pub fn load_wav_8k_mono(path: &Path) -> Result<Vec<i16>, MediaError> {
    let mut reader =
        hound::WavReader::open(path).map_err(|e| wav_error(path, describe_hound_error(&e)))?;
    let spec = reader.spec();
    let channels = spec.channels as usize;
    if channels == 0 {
        return Err(wav_error(path, "header declares 0 channels"));
    }
    if !(MIN_RATE..=MAX_RATE).contains(&spec.sample_rate) {
        return Err(wav_error(
            path,
            format!(
                "sample rate {} Hz is outside {MIN_RATE}-{MAX_RATE} Hz",
                spec.sample_rate
            ),
        ));
    }
    let frames_declared = reader.duration() as u64;
    if frames_declared > MAX_SECONDS * spec.sample_rate as u64 {
        return Err(wav_error(
            path,
            format!(
                "{} s of audio is longer than the {MAX_SECONDS} s limit for a prompt",
                frames_declared / spec.sample_rate as u64
            ),
        ));
    }

    let mono = match spec.sample_format {
        hound::SampleFormat::Int => {
            if !(1..=32).contains(&spec.bits_per_sample) {
                return Err(wav_error(
                    path,
                    format!("unsupported {}-bit integer samples", spec.bits_per_sample),
                ));
            }
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f64;
            let samples = reader.samples::<i32>().map(|r| r.map(|s| s as f64 * scale));
            mix_down(samples, channels, frames_declared, path)?
        }
        hound::SampleFormat::Float => {
            let samples = reader
                .samples::<f32>()
                .map(|r| r.map(|s| if s.is_finite() { s as f64 } else { 0.0 }));
            mix_down(samples, channels, frames_declared, path)?
        }
    };
    if mono.is_empty() {
        return Err(wav_error(path, "contains no audio"));
    }
    let resampled = resample_to_8k(mono, spec.sample_rate).map_err(|r| wav_error(path, r))?;
    Ok(resampled
        .iter()
        .map(|&x| (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect())
}

/// Averages interleaved channels into one, stopping quietly at a truncated end of data.
fn mix_down(
    samples: impl Iterator<Item = hound::Result<f64>>,
    channels: usize,
    frames_declared: u64,
    path: &Path,
) -> Result<Vec<f32>, MediaError> {
    let mut mono = Vec::with_capacity(frames_declared.min(1 << 24) as usize);
    let mut acc = 0.0f64;
    let mut in_frame = 0usize;
    for sample in samples {
        let value = match sample {
            Ok(v) => v,
            // A recording cut short by a crash: keep what is there.
            Err(hound::Error::IoError(e)) if is_truncation(&e) => break,
            Err(e) => return Err(wav_error(path, describe_hound_error(&e))),
        };
        acc += value;
        in_frame += 1;
        if in_frame == channels {
            mono.push((acc / channels as f64) as f32);
            acc = 0.0;
            in_frame = 0;
        }
    }
    Ok(mono)
}

/// Resamples a whole mono clip to 8 kHz, trimming the resampler's delay.
fn resample_to_8k(mono: Vec<f32>, rate_in: u32) -> Result<Vec<f32>, String> {
    if rate_in == SAMPLE_RATE {
        return Ok(mono);
    }
    let frames = mono.len();
    let input = InterleavedSlice::new(&mono[..], 1, frames)
        .map_err(|e| format!("cannot wrap audio for resampling: {e}"))?;
    let construction =
        |e: rubato::ResamplerConstructionError| format!("cannot resample from {rate_in} Hz: {e}");
    let mut resampler: Box<dyn Resampler<f32>> = if rate_in % 50 == 0 {
        // Exactly 20 ms in and 20 ms out per chunk.
        let chunk = (rate_in / 50) as usize;
        Box::new(
            Fft::<f32>::new(
                rate_in as usize,
                SAMPLE_RATE as usize,
                chunk,
                1,
                FixedSync::Both,
            )
            .map_err(construction)?,
        )
    } else {
        // No whole 20 ms chunk at this rate (11025 Hz, 7350 Hz): the sinc resampler takes any ratio.
        let ratio = SAMPLE_RATE as f64 / rate_in as f64;
        Box::new(
            Async::<f32>::new_sinc(
                ratio,
                1.0,
                &SincInterpolationParameters::default(),
                1024,
                1,
                FixedAsync::Input,
            )
            .map_err(construction)?,
        )
    };
    let output = resampler
        .process_all(&input, frames, None)
        .map_err(|e| format!("resampling from {rate_in} Hz failed: {e}"))?;
    Ok(output.take_data())
}

/// Records 8 kHz mono 16-bit PCM to a WAV file as it arrives.
pub struct WavRecorder {
    writer: hound::WavWriter<BufWriter<File>>,
    path: PathBuf,
    written: u64,
    since_flush: u64,
}

impl std::fmt::Debug for WavRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavRecorder")
            .field("path", &self.path)
            .field("written", &self.written)
            .finish()
    }
}

impl WavRecorder {
    /// Creates (or truncates) `path` as an 8 kHz mono 16-bit WAV file.
    pub fn create(path: &Path) -> Result<Self, MediaError> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec).map_err(|e| MediaError::WavWrite {
            path: path.to_path_buf(),
            reason: describe_hound_error(&e),
        })?;
        Ok(WavRecorder {
            writer,
            path: path.to_path_buf(),
            written: 0,
            since_flush: 0,
        })
    }

    fn write_error(&self, e: &hound::Error) -> MediaError {
        MediaError::WavWrite {
            path: self.path.clone(),
            reason: describe_hound_error(e),
        }
    }

    /// Appends samples; the header is brought up to date after every second of audio.
    pub fn write(&mut self, samples: &[i16]) -> Result<(), MediaError> {
        if self.written + samples.len() as u64 > MAX_RECORDED_SAMPLES {
            return Err(MediaError::WavWrite {
                path: self.path.clone(),
                reason: "the 4 GiB WAV size limit is reached".to_string(),
            });
        }
        let mut rest = samples;
        while !rest.is_empty() {
            // Up to the next checkpoint, so the header is rewritten on every second boundary.
            let room = (SAMPLE_RATE as u64 - self.since_flush).max(1) as usize;
            let (chunk, tail) = rest.split_at(room.min(rest.len()));
            rest = tail;
            let mut writer = self.writer.get_i16_writer(chunk.len() as u32);
            for &s in chunk {
                writer.write_sample(s);
            }
            if let Err(e) = writer.flush() {
                return Err(self.write_error(&e));
            }
            self.written += chunk.len() as u64;
            self.since_flush += chunk.len() as u64;
            if self.since_flush >= SAMPLE_RATE as u64 {
                self.since_flush = 0;
                if let Err(e) = self.writer.flush() {
                    return Err(self.write_error(&e));
                }
            }
        }
        Ok(())
    }

    /// Samples written so far (at 8 kHz: divide by 8000 for seconds).
    pub fn samples_written(&self) -> u64 {
        self.written
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the final header and closes the file.
    pub fn finish(self) -> Result<(), MediaError> {
        let path = self.path;
        self.writer.finalize().map_err(|e| MediaError::WavWrite {
            path,
            reason: describe_hound_error(&e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn write_wav(path: &Path, spec: hound::WavSpec, frames: usize, f: impl Fn(usize, u16) -> f64) {
        let mut w = hound::WavWriter::create(path, spec).expect("create test wav");
        for i in 0..frames {
            for ch in 0..spec.channels {
                let x = f(i, ch);
                match (spec.sample_format, spec.bits_per_sample) {
                    (hound::SampleFormat::Float, _) => w.write_sample(x as f32),
                    (_, 8) => w.write_sample((x * 127.0).round() as i8),
                    (_, 16) => w.write_sample((x * 32767.0).round() as i16),
                    (_, bits) => {
                        w.write_sample((x * ((1i64 << (bits - 1)) - 1) as f64).round() as i32)
                    }
                }
                .expect("write sample");
            }
        }
        w.finalize().expect("finalize");
    }

    /// Power of `freq` in `x` (Goertzel), normalised by length.
    fn goertzel(x: &[i16], freq: f64) -> f64 {
        let w = 2.0 * PI * freq / SAMPLE_RATE as f64;
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for &v in x {
            let s = v as f64 + coeff * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (x.len() as f64).powi(2)
    }

    fn zero_crossing_freq(x: &[i16]) -> f64 {
        let crossings = x.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        crossings as f64 / 2.0 / (x.len() as f64 / SAMPLE_RATE as f64)
    }

    fn check_tone(path: &Path, spec: hound::WavSpec, seconds: f64, freq: f64) {
        let frames = (spec.sample_rate as f64 * seconds) as usize;
        let rate = spec.sample_rate as f64;
        write_wav(path, spec, frames, |i, ch| {
            // Same tone on every channel, different levels, so averaging keeps it.
            (0.5 - 0.2 * ch as f64) * (2.0 * PI * freq * i as f64 / rate).sin()
        });
        let pcm = load_wav_8k_mono(path).expect("load");
        let expected = seconds * SAMPLE_RATE as f64;
        assert!(
            (pcm.len() as f64 - expected).abs() <= expected * 0.01 + 2.0,
            "{spec:?}: {} samples, expected about {expected}",
            pcm.len()
        );
        // Skip the edges, where the resampler's filter rings.
        let mid = &pcm[400..pcm.len() - 400];
        let zc = zero_crossing_freq(mid);
        assert!(
            (zc - freq).abs() < freq * 0.02,
            "{spec:?}: zero crossings say {zc} Hz"
        );
        let on = goertzel(mid, freq);
        for off in [freq / 2.0, freq * 1.5, freq * 2.0, 3000.0] {
            assert!(
                on > 100.0 * goertzel(mid, off),
                "{spec:?}: {off} Hz rivals {freq} Hz"
            );
        }
        // Average of the channel levels, in 16-bit units.
        let peak = mid.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0) as f64;
        let level: f64 = (0..spec.channels)
            .map(|c| 0.5 - 0.2 * c as f64)
            .sum::<f64>()
            / spec.channels as f64;
        assert!(
            (peak / 32768.0 - level).abs() < 0.03,
            "{spec:?}: peak {peak}"
        );
    }

    fn spec(channels: u16, rate: u32, bits: u16, float: bool) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: if float {
                hound::SampleFormat::Float
            } else {
                hound::SampleFormat::Int
            },
        }
    }

    #[test]
    fn resamples_44k1_stereo_to_8k_mono() {
        let dir = tempfile::tempdir().expect("tempdir");
        check_tone(
            &dir.path().join("a.wav"),
            spec(2, 44_100, 16, false),
            1.5,
            1000.0,
        );
    }

    #[test]
    fn reads_other_formats_and_rates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path();
        // 11025 Hz has no whole 20 ms chunk: the sinc resampler path.
        check_tone(&p.join("b.wav"), spec(1, 11_025, 32, true), 1.0, 440.0);
        check_tone(&p.join("c.wav"), spec(1, 16_000, 24, false), 1.0, 700.0);
        check_tone(&p.join("d.wav"), spec(3, 48_000, 32, false), 1.0, 1200.0);
        check_tone(&p.join("e.wav"), spec(1, 22_050, 8, false), 1.0, 500.0);
        check_tone(&p.join("f.wav"), spec(2, 8_000, 16, false), 1.0, 300.0);
        // Upsampling from a low rate.
        check_tone(&p.join("g.wav"), spec(1, 4_000, 16, false), 1.0, 250.0);
    }

    #[test]
    fn eight_khz_mono_16_bit_passes_through_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("8k.wav");
        let original: Vec<i16> = (0..8000)
            .map(|i| ((i * 7919) % 65536 - 32768) as i16)
            .collect();
        let mut w = hound::WavWriter::create(&path, spec(1, 8000, 16, false)).expect("create");
        for &s in &original {
            w.write_sample(s).expect("write");
        }
        w.finalize().expect("finalize");
        assert_eq!(load_wav_8k_mono(&path).expect("load"), original);
    }

    #[test]
    fn errors_name_the_file_and_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.wav");
        let err = load_wav_8k_mono(&missing).expect_err("missing").to_string();
        assert_eq!(
            err,
            format!("cannot read WAV file {}: file not found", missing.display())
        );
        assert!(!err.contains('\n'));

        let text = dir.path().join("notes.wav");
        std::fs::write(&text, "this is not audio, just some text long enough").expect("write");
        let err = load_wav_8k_mono(&text).expect_err("not a wav").to_string();
        assert!(
            err.starts_with(&format!(
                "cannot read WAV file {}: not a valid WAV file",
                text.display()
            )),
            "{err}"
        );

        let empty = dir.path().join("empty.wav");
        hound::WavWriter::create(&empty, spec(1, 8000, 16, false))
            .expect("create")
            .finalize()
            .expect("finalize");
        let err = load_wav_8k_mono(&empty).expect_err("empty").to_string();
        assert_eq!(
            err,
            format!(
                "cannot read WAV file {}: contains no audio",
                empty.display()
            )
        );

        let truncated = dir.path().join("short.wav");
        std::fs::write(&truncated, b"RIFF").expect("write");
        let err = load_wav_8k_mono(&truncated)
            .expect_err("truncated")
            .to_string();
        assert!(err.contains("short.wav"), "{err}");

        let err = WavRecorder::create(&dir.path().join("no/such/dir/rec.wav"))
            .expect_err("no dir")
            .to_string();
        assert!(
            err.starts_with("cannot write WAV file ") && err.contains("rec.wav"),
            "{err}"
        );
    }

    #[test]
    fn truncated_recording_is_read_up_to_the_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cut.wav");
        let mut w = hound::WavWriter::create(&path, spec(1, 8000, 16, false)).expect("create");
        for i in 0..1000 {
            w.write_sample(i as i16).expect("write");
        }
        w.finalize().expect("finalize");
        let bytes = std::fs::read(&path).expect("read back");
        std::fs::write(&path, &bytes[..bytes.len() - 500]).expect("truncate");
        let pcm = load_wav_8k_mono(&path).expect("partial file still loads");
        assert_eq!(pcm.len(), 750);
        assert_eq!(pcm[749], 749);
    }

    #[test]
    fn recorder_round_trip_and_checkpoints() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rec.wav");
        let mut rec = WavRecorder::create(&path).expect("create");
        let frame: Vec<i16> = (0..160).map(|i| (i * 100 - 8000) as i16).collect();
        for _ in 0..60 {
            rec.write(&frame).expect("write");
        }
        assert_eq!(rec.samples_written(), 9600);
        // The header was rewritten after the first second: a reader sees at least 8000 samples
        // even though the file is still open.
        let live = hound::WavReader::open(&path).expect("readable while recording");
        assert!(live.duration() >= 8000, "header says {}", live.duration());
        rec.finish().expect("finish");
        let back = load_wav_8k_mono(&path).expect("load");
        assert_eq!(back.len(), 9600);
        assert_eq!(&back[..160], &frame[..]);
        assert_eq!(&back[9440..], &frame[..]);
    }
}
