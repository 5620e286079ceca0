//! WAV files in and out: prompts loaded as 8 kHz mono PCM, calls recorded as 8 kHz mono 16-bit.
//!
//! [`load_wav_8k_mono`] reads any PCM integer (8/16/24/32-bit) or 32-bit float WAV with any
//! channel count (channels are averaged) and any sample rate, resampling with rubato: the FFT
//! resampler when the rate has a whole 20 ms chunk (`rate % 50 == 0`), the asynchronous sinc
//! resampler otherwise. Files are loaded whole: this is for prompts, not for streaming, and it
//! runs off the media tasks (call it before a call, or in `spawn_blocking`).
//! [`WavRecorder`] (received audio, mono) and [`CallRecorder`] (received, sent, or both as a stereo
//! file aligned by 20 ms slots, see [`RecordMode`]) write as audio arrives and rewrite the header
//! at least once per second of audio, so a crash loses at most the last second. Every error names
//! the file and the reason; nothing here panics on a file's contents.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, Fft, FixedAsync, FixedSync, Resampler, SincInterpolationParameters};

use super::{MediaError, FRAME_SAMPLES, SAMPLE_RATE};

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
    let mut resampler: Box<dyn Resampler<f32>> = if rate_in.is_multiple_of(50) {
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

/// A 16-bit 8 kHz WAV file written as audio arrives, its header brought up to date on every
/// second of audio: a crash loses at most the last second.
struct CheckpointedWriter {
    writer: hound::WavWriter<BufWriter<File>>,
    path: PathBuf,
    channels: u16,
    /// Sample frames written (one sample per channel each).
    frames: u64,
    /// Sample frames since the header was last rewritten.
    since_flush: u64,
}

impl CheckpointedWriter {
    fn create(path: &Path, channels: u16) -> Result<Self, MediaError> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec).map_err(|e| MediaError::WavWrite {
            path: path.to_path_buf(),
            reason: describe_hound_error(&e),
        })?;
        Ok(CheckpointedWriter {
            writer,
            path: path.to_path_buf(),
            channels,
            frames: 0,
            since_flush: 0,
        })
    }

    fn write_error(&self, e: &hound::Error) -> MediaError {
        MediaError::WavWrite {
            path: self.path.clone(),
            reason: describe_hound_error(e),
        }
    }

    /// Appends interleaved samples (a whole number of frames); the header is rewritten on every
    /// second boundary.
    fn write_interleaved(&mut self, samples: &[i16]) -> Result<(), MediaError> {
        let channels = self.channels.max(1) as usize;
        let total_samples = (self.frames + (samples.len() / channels) as u64) * channels as u64;
        if total_samples > MAX_RECORDED_SAMPLES {
            return Err(MediaError::WavWrite {
                path: self.path.clone(),
                reason: "the 4 GiB WAV size limit is reached".to_string(),
            });
        }
        let mut rest = &samples[..samples.len() - samples.len() % channels];
        while !rest.is_empty() {
            // Up to the next checkpoint, so the header is rewritten on every second boundary.
            let room = (SAMPLE_RATE as u64 - self.since_flush).max(1) as usize * channels;
            let (chunk, tail) = rest.split_at(room.min(rest.len()));
            rest = tail;
            let mut writer = self.writer.get_i16_writer(chunk.len() as u32);
            for &s in chunk {
                writer.write_sample(s);
            }
            if let Err(e) = writer.flush() {
                return Err(self.write_error(&e));
            }
            let frames = (chunk.len() / channels) as u64;
            self.frames += frames;
            self.since_flush += frames;
            if self.since_flush >= SAMPLE_RATE as u64 {
                self.since_flush = 0;
                if let Err(e) = self.writer.flush() {
                    return Err(self.write_error(&e));
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<(), MediaError> {
        let path = self.path;
        self.writer.finalize().map_err(|e| MediaError::WavWrite {
            path,
            reason: describe_hound_error(&e),
        })
    }
}

/// Records 8 kHz mono 16-bit PCM to a WAV file as it arrives.
pub struct WavRecorder {
    out: CheckpointedWriter,
}

impl std::fmt::Debug for WavRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavRecorder")
            .field("path", &self.out.path)
            .field("written", &self.out.frames)
            .finish()
    }
}

impl WavRecorder {
    /// Creates (or truncates) `path` as an 8 kHz mono 16-bit WAV file.
    pub fn create(path: &Path) -> Result<Self, MediaError> {
        Ok(WavRecorder {
            out: CheckpointedWriter::create(path, 1)?,
        })
    }

    /// Appends samples; the header is brought up to date after every second of audio.
    pub fn write(&mut self, samples: &[i16]) -> Result<(), MediaError> {
        self.out.write_interleaved(samples)
    }

    /// Samples written so far (at 8 kHz: divide by 8000 for seconds).
    pub fn samples_written(&self) -> u64 {
        self.out.frames
    }

    pub fn path(&self) -> &Path {
        &self.out.path
    }

    /// Writes the final header and closes the file.
    pub fn finish(self) -> Result<(), MediaError> {
        self.out.finish()
    }
}

/// Which audio of a call a [`CallRecorder`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordMode {
    /// What the far end sent us (mono). The default, and what [`WavRecorder`] records.
    #[default]
    Inbound,
    /// What we sent (mono): prompts, bridged audio, the silence in between.
    Outbound,
    /// Both, in one 2-channel file: received on the left, sent on the right.
    Stereo,
}

impl RecordMode {
    /// Channels in the file this mode writes.
    pub fn channels(self) -> u16 {
        match self {
            RecordMode::Inbound | RecordMode::Outbound => 1,
            RecordMode::Stereo => 2,
        }
    }

    /// The mode's name as configuration and the API spell it.
    pub fn name(self) -> &'static str {
        match self {
            RecordMode::Inbound => "inbound",
            RecordMode::Outbound => "outbound",
            RecordMode::Stereo => "stereo",
        }
    }

    /// Parses `inbound`, `outbound` or `stereo` (any case).
    pub fn from_name(name: &str) -> Option<RecordMode> {
        [
            RecordMode::Inbound,
            RecordMode::Outbound,
            RecordMode::Stereo,
        ]
        .into_iter()
        .find(|m| m.name().eq_ignore_ascii_case(name.trim()))
    }
}

/// Records a call as 8 kHz 16-bit WAV in one of the [`RecordMode`]s, one frame slot at a time.
///
/// The caller hands over, once per 20 ms tick, what was received and what was sent in that
/// tick ([`CallRecorder::write_slot`]); a side with nothing for the slot is written as silence,
/// so the two sides (and the file's time line) stay aligned with the call. The header is
/// rewritten on every second of audio, as with [`WavRecorder`].
pub struct CallRecorder {
    out: CheckpointedWriter,
    mode: RecordMode,
    /// Interleaving buffer, reused from slot to slot.
    scratch: Vec<i16>,
}

impl std::fmt::Debug for CallRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallRecorder")
            .field("path", &self.out.path)
            .field("mode", &self.mode)
            .field("frames", &self.out.frames)
            .finish()
    }
}

impl CallRecorder {
    /// Creates (or truncates) `path`: mono for [`RecordMode::Inbound`] and
    /// [`RecordMode::Outbound`], 2 channels for [`RecordMode::Stereo`].
    pub fn create(path: &Path, mode: RecordMode) -> Result<Self, MediaError> {
        Ok(CallRecorder {
            out: CheckpointedWriter::create(path, mode.channels())?,
            mode,
            scratch: Vec::with_capacity(2 * FRAME_SAMPLES),
        })
    }

    /// Writes one slot: the audio received and the audio sent during the same tick.
    ///
    /// The slot lasts as long as the longer of the two (a 20 ms frame is 160 samples; a side with
    /// 30 ms packets gives 240); a missing or shorter side is padded with silence. A slot with
    /// neither side is 20 ms of silence. Mono modes ignore the other side's samples but still
    /// count its length, so their time line matches the stereo one.
    pub fn write_slot(
        &mut self,
        received: Option<&[i16]>,
        sent: Option<&[i16]>,
    ) -> Result<(), MediaError> {
        let rx = received.unwrap_or(&[]);
        let tx = sent.unwrap_or(&[]);
        let slot = match rx.len().max(tx.len()) {
            0 => FRAME_SAMPLES,
            n => n,
        };
        let padded = |side: &[i16], i: usize| side.get(i).copied().unwrap_or(0);
        self.scratch.clear();
        match self.mode {
            RecordMode::Inbound => self.scratch.extend((0..slot).map(|i| padded(rx, i))),
            RecordMode::Outbound => self.scratch.extend((0..slot).map(|i| padded(tx, i))),
            RecordMode::Stereo => {
                for i in 0..slot {
                    self.scratch.push(padded(rx, i));
                    self.scratch.push(padded(tx, i));
                }
            }
        }
        self.out.write_interleaved(&self.scratch)
    }

    pub fn mode(&self) -> RecordMode {
        self.mode
    }

    pub fn path(&self) -> &Path {
        &self.out.path
    }

    /// Sample frames written so far (one per channel each; divide by 8000 for seconds).
    pub fn frames_written(&self) -> u64 {
        self.out.frames
    }

    /// Audio written so far, in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.out.frames * 1000 / SAMPLE_RATE as u64
    }

    /// Writes the final header and closes the file.
    pub fn finish(self) -> Result<(), MediaError> {
        self.out.finish()
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

    /// A frame whose samples say which slot and side they came from.
    fn tagged(slot: usize, side: i16, len: usize) -> Vec<i16> {
        (0..len)
            .map(|i| side * 10_000 + (slot % 100) as i16 * 10 + (i % 10) as i16)
            .collect()
    }

    fn read_all(path: &Path) -> (hound::WavSpec, Vec<i16>) {
        let mut reader = hound::WavReader::open(path).expect("open recording");
        let spec = reader.spec();
        let samples = reader
            .samples::<i16>()
            .collect::<Result<Vec<_>, _>>()
            .expect("samples");
        (spec, samples)
    }

    /// 20 slots; received audio is missing in slots 3 and 4, sent audio in slot 7; slot 10 has a
    /// 30 ms received packet; slot 12 has nothing at all.
    fn record_pattern(rec: &mut CallRecorder) -> (Vec<i16>, Vec<i16>) {
        let (mut left, mut right) = (Vec::new(), Vec::new());
        for slot in 0..20 {
            let rx_len = if slot == 10 { 240 } else { 160 };
            let rx = (![3, 4, 12].contains(&slot)).then(|| tagged(slot, 1, rx_len));
            let tx = (![7, 12].contains(&slot)).then(|| tagged(slot, 2, 160));
            rec.write_slot(rx.as_deref(), tx.as_deref())
                .expect("write slot");
            let len = rx
                .as_ref()
                .map_or(0, Vec::len)
                .max(tx.as_ref().map_or(0, Vec::len));
            let len = if len == 0 { 160 } else { len };
            for i in 0..len {
                left.push(rx.as_ref().and_then(|v| v.get(i).copied()).unwrap_or(0));
                right.push(tx.as_ref().and_then(|v| v.get(i).copied()).unwrap_or(0));
            }
        }
        (left, right)
    }

    #[test]
    fn call_recorder_inbound_outbound_and_stereo() {
        let dir = tempfile::tempdir().expect("tempdir");
        for mode in [
            RecordMode::Inbound,
            RecordMode::Outbound,
            RecordMode::Stereo,
        ] {
            let path = dir.path().join(format!("{}.wav", mode.name()));
            let mut rec = CallRecorder::create(&path, mode).expect("create");
            assert_eq!(rec.mode(), mode);
            let (left, right) = record_pattern(&mut rec);
            assert_eq!(rec.frames_written(), left.len() as u64);
            assert_eq!(rec.duration_ms(), 20 * 19 + 30);
            rec.finish().expect("finish");
            let (spec, samples) = read_all(&path);
            assert_eq!(spec.sample_rate, 8000);
            assert_eq!(spec.bits_per_sample, 16);
            assert_eq!(spec.channels, mode.channels());
            match mode {
                RecordMode::Inbound => assert_eq!(samples, left),
                RecordMode::Outbound => assert_eq!(samples, right),
                RecordMode::Stereo => {
                    let l: Vec<i16> = samples.iter().step_by(2).copied().collect();
                    let r: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
                    assert_eq!(l, left, "left channel = received");
                    assert_eq!(r, right, "right channel = sent");
                    // Slot 3 had no received audio: silence on the left, audio on the right.
                    let at = 3 * 160;
                    assert!(l[at..at + 160].iter().all(|&s| s == 0));
                    assert_eq!(&r[at..at + 160], &tagged(3, 2, 160)[..]);
                }
            }
        }
    }

    #[test]
    fn record_mode_names() {
        for mode in [
            RecordMode::Inbound,
            RecordMode::Outbound,
            RecordMode::Stereo,
        ] {
            assert_eq!(RecordMode::from_name(mode.name()), Some(mode));
        }
        assert_eq!(RecordMode::from_name(" Stereo "), Some(RecordMode::Stereo));
        assert_eq!(RecordMode::from_name("both"), None);
        assert_eq!(RecordMode::default(), RecordMode::Inbound);
    }

    #[test]
    fn stereo_recording_survives_a_crash_minus_the_last_second() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("crash.wav");
        let mut rec = CallRecorder::create(&path, RecordMode::Stereo).expect("create");
        // 3.5 s = 175 slots.
        for slot in 0..175 {
            let rx = tagged(slot, 1, 160);
            let tx = tagged(slot, 2, 160);
            rec.write_slot(Some(&rx), Some(&tx)).expect("write");
        }
        // Read while the recorder is still open, then "crash": no finish, no drop (hound's drop
        // would fix the header, which a killed process never does).
        let (spec, live) = read_all(&path);
        std::mem::forget(rec);
        assert_eq!(spec.channels, 2);
        let frames = live.len() / 2;
        assert!(
            frames >= 3 * 8000,
            "only {frames} frames readable after 3.5 s"
        );
        for (slot, pair) in live.chunks(320).enumerate() {
            let l: Vec<i16> = pair.iter().step_by(2).copied().collect();
            let r: Vec<i16> = pair.iter().skip(1).step_by(2).copied().collect();
            assert_eq!(l, tagged(slot, 1, 160), "slot {slot} left");
            assert_eq!(r, tagged(slot, 2, 160), "slot {slot} right");
        }
        // The mono loader still reads the crashed file (channels averaged).
        let mono = load_wav_8k_mono(&path).expect("load crashed recording");
        assert!(mono.len() >= 3 * 8000);
    }

    #[test]
    fn mono_call_recording_survives_a_crash_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("crash-mono.wav");
        let mut rec = CallRecorder::create(&path, RecordMode::Outbound).expect("create");
        for slot in 0..175 {
            rec.write_slot(None, Some(&tagged(slot, 2, 160)))
                .expect("write");
        }
        std::mem::forget(rec);
        let (_, samples) = read_all(&path);
        assert!(samples.len() >= 3 * 8000, "{} samples", samples.len());
    }

    #[test]
    fn call_recorder_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err =
            CallRecorder::create(&dir.path().join("no/such/dir/call.wav"), RecordMode::Stereo)
                .expect_err("no dir")
                .to_string();
        assert!(
            err.starts_with("cannot write WAV file ") && err.contains("call.wav"),
            "{err}"
        );
    }
}
