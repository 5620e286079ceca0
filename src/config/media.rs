//! The media directory on disk: where the WAV files campaigns play are looked up, and where
//! API uploads are stored.
//!
//! Layout: files an operator puts straight into the directory are shared by every account;
//! each account's uploads live in its own subfolder named by the account id
//! (`media/7/welcome.wav`). A name is looked up in the account's folder first, then in the
//! shared top level. A campaign names a file (`welcome.wav`), never a server path: absolute
//! paths, `..`, sub-folders, links leading out of the directory, and files that are not
//! readable WAV are refused with one line naming the file.
//!
//! What it must NOT do: accept a path that resolves outside the media directory, touch
//! another account's folder, or run on an async task — every function here does blocking
//! file I/O (call it from `spawn_blocking`, or before a call starts).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::flow::steps::media_name_problem;

/// The largest WAV accepted as an upload (about 20 minutes of 8 kHz 16-bit mono).
pub const MAX_UPLOAD_BYTES: usize = 20 * 1024 * 1024;

/// Why a media file name cannot be used; one line naming the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaFileError {
    /// Not a plain `.wav` file name (absolute, `..`, a path, …).
    #[error("{0}")]
    BadName(String),
    #[error("{name:?} is not in the media directory")]
    NotFound { name: String },
    #[error("{name:?} leads out of the media directory")]
    OutsideDirectory { name: String },
    #[error("{name:?} is not a regular file")]
    NotAFile { name: String },
    #[error("{name:?} cannot be read: {reason}")]
    Unreadable { name: String, reason: String },
    #[error("{name:?} is not a usable WAV file: {reason}")]
    NotWav { name: String, reason: String },
    #[error("{name:?} is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        name: String,
        size: usize,
        limit: usize,
    },
    /// The directory itself could not be used (created, listed, written).
    #[error("media directory {dir}: {reason}")]
    Directory { dir: String, reason: String },
}

/// One file as the media list shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MediaFile {
    pub name: String,
    pub size: u64,
    /// In the shared top level (read-only through the API) rather than the account's folder.
    pub shared: bool,
}

/// The folder holding `account`'s uploads.
pub fn account_dir(media_dir: &Path, account: i64) -> PathBuf {
    media_dir.join(account.to_string())
}

fn dir_error(dir: &Path, reason: impl std::fmt::Display) -> MediaFileError {
    MediaFileError::Directory {
        dir: dir.display().to_string(),
        reason: reason.to_string(),
    }
}

fn check_name(name: &str) -> Result<(), MediaFileError> {
    match media_name_problem(name) {
        Some(problem) => Err(MediaFileError::BadName(problem)),
        None => Ok(()),
    }
}

/// The file `name` stands for, for `account` (`None`: a campaign nobody owns, which sees
/// only the shared files): the account's own file first, then the shared one. The path
/// returned is canonical and inside `media_dir`; the file is a readable regular file.
/// Whether it is a valid WAV is [`check_wav`]'s job (loading it says so too).
pub fn resolve_media(
    media_dir: &Path,
    account: Option<i64>,
    name: &str,
) -> Result<PathBuf, MediaFileError> {
    check_name(name)?;
    let not_found = || MediaFileError::NotFound {
        name: name.to_string(),
    };
    let root = match std::fs::canonicalize(media_dir) {
        Ok(root) => root,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
        Err(e) => return Err(dir_error(media_dir, e)),
    };
    let mut candidates = Vec::new();
    if let Some(account) = account {
        candidates.push(account_dir(media_dir, account).join(name));
    }
    candidates.push(media_dir.join(name));
    for candidate in candidates {
        match std::fs::symlink_metadata(&candidate) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(MediaFileError::Unreadable {
                    name: name.to_string(),
                    reason: e.to_string(),
                })
            }
            Ok(_) => {}
        }
        let real = match std::fs::canonicalize(&candidate) {
            Ok(real) => real,
            // A dangling link.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
            Err(e) => {
                return Err(MediaFileError::Unreadable {
                    name: name.to_string(),
                    reason: e.to_string(),
                })
            }
        };
        if !real.starts_with(&root) {
            return Err(MediaFileError::OutsideDirectory {
                name: name.to_string(),
            });
        }
        let meta = std::fs::metadata(&real).map_err(|e| MediaFileError::Unreadable {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
        if !meta.is_file() {
            return Err(MediaFileError::NotAFile {
                name: name.to_string(),
            });
        }
        if let Err(e) = std::fs::File::open(&real) {
            return Err(MediaFileError::Unreadable {
                name: name.to_string(),
                reason: e.to_string(),
            });
        }
        return Ok(real);
    }
    Err(not_found())
}

/// Loads `path` with the project's WAV loader; `name` is what the error names.
pub fn check_wav(path: &Path, name: &str) -> Result<(), MediaFileError> {
    crate::media::wav::load_wav_8k_mono(path)
        .map(|_| ())
        .map_err(|e| MediaFileError::NotWav {
            name: name.to_string(),
            reason: match e {
                crate::media::MediaError::Wav { reason, .. } => reason,
                other => other.to_string(),
            },
        })
}

/// [`resolve_media`], then [`check_wav`]: what the API runs for every WAV a campaign names.
pub fn resolve_wav(
    media_dir: &Path,
    account: Option<i64>,
    name: &str,
) -> Result<PathBuf, MediaFileError> {
    let path = resolve_media(media_dir, account, name)?;
    check_wav(&path, name)?;
    Ok(path)
}

/// Stores an upload as `account`'s `name` (replacing its own file of that name): written to
/// a temporary file in the account's folder, checked with the WAV loader, then renamed into
/// place, so a bad upload never replaces a good file.
pub fn save_upload(
    media_dir: &Path,
    account: i64,
    name: &str,
    bytes: &[u8],
) -> Result<MediaFile, MediaFileError> {
    check_name(name)?;
    if bytes.len() > MAX_UPLOAD_BYTES {
        return Err(MediaFileError::TooLarge {
            name: name.to_string(),
            size: bytes.len(),
            limit: MAX_UPLOAD_BYTES,
        });
    }
    let dir = account_dir(media_dir, account);
    std::fs::create_dir_all(&dir).map_err(|e| dir_error(&dir, e))?;
    let root = std::fs::canonicalize(media_dir).map_err(|e| dir_error(media_dir, e))?;
    let real_dir = std::fs::canonicalize(&dir).map_err(|e| dir_error(&dir, e))?;
    if !real_dir.starts_with(&root) || real_dir == root {
        return Err(dir_error(
            &dir,
            "the account folder leads out of the directory",
        ));
    }
    let tmp = real_dir.join(format!(".upload-{:016x}.tmp", rand::random::<u64>()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .map_err(|e| dir_error(&dir, e))
        .and_then(|()| check_wav(&tmp, name))
        .and_then(|()| std::fs::rename(&tmp, real_dir.join(name)).map_err(|e| dir_error(&dir, e)));
    if let Err(e) = written {
        // Best effort: the temporary file is hidden and never listed if this fails too.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(MediaFile {
        name: name.to_string(),
        size: bytes.len() as u64,
        shared: false,
    })
}

/// The WAV files `account` can use: its own, then the shared ones it does not override,
/// each sorted by name. A missing directory lists nothing.
pub fn list_media(media_dir: &Path, account: i64) -> Result<Vec<MediaFile>, MediaFileError> {
    let mut own = wav_files(&account_dir(media_dir, account), false)?;
    let shared = wav_files(media_dir, true)?;
    for file in shared {
        if !own.iter().any(|f| f.name == file.name) {
            own.push(file);
        }
    }
    Ok(own)
}

fn wav_files(dir: &Path, shared: bool) -> Result<Vec<MediaFile>, MediaFileError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(dir_error(dir, e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| dir_error(dir, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if media_name_problem(&name).is_some() {
            continue;
        }
        // Only plain files (links are followed only when they stay inside, by resolve).
        match entry.metadata() {
            Ok(meta) if meta.is_file() => files.push(MediaFile {
                name,
                size: meta.len(),
                shared,
            }),
            _ => {}
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Removes `account`'s own file `name` (shared files are not removable through the API).
pub fn delete_media(media_dir: &Path, account: i64, name: &str) -> Result<(), MediaFileError> {
    check_name(name)?;
    let path = account_dir(media_dir, account).join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_dir() => Err(MediaFileError::NotAFile {
            name: name.to_string(),
        }),
        Ok(_) => std::fs::remove_file(&path).map_err(|e| MediaFileError::Unreadable {
            name: name.to_string(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(MediaFileError::NotFound {
            name: name.to_string(),
        }),
        Err(e) => Err(MediaFileError::Unreadable {
            name: name.to_string(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short valid 8 kHz mono WAV.
    fn wav_bytes() -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        for i in 0..800 {
            w.write_sample(((i % 40) as i16 - 20) * 500).unwrap();
        }
        w.finalize().unwrap();
        out.into_inner()
    }

    #[test]
    fn an_account_sees_its_own_file_before_the_shared_one() {
        let dir = tempfile::tempdir().unwrap();
        let media = dir.path();
        std::fs::write(media.join("hello.wav"), wav_bytes()).unwrap();
        let shared = resolve_media(media, Some(7), "hello.wav").unwrap();
        assert_eq!(shared, media.canonicalize().unwrap().join("hello.wav"));
        save_upload(media, 7, "hello.wav", &wav_bytes()).unwrap();
        let own = resolve_media(media, Some(7), "hello.wav").unwrap();
        assert!(own.ends_with("7/hello.wav"), "{own:?}");
        // Another account still gets the shared one, never account 7's.
        assert_eq!(resolve_media(media, Some(8), "hello.wav").unwrap(), shared);
        assert_eq!(resolve_media(media, None, "hello.wav").unwrap(), shared);
        let list = list_media(media, 7).unwrap();
        assert_eq!(list.len(), 1);
        assert!(!list[0].shared);
        assert!(list_media(media, 8).unwrap()[0].shared);
    }

    #[test]
    fn server_paths_and_escapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let media = dir.path().join("media");
        std::fs::create_dir(&media).unwrap();
        std::fs::write(dir.path().join("secret.wav"), wav_bytes()).unwrap();
        let abs = dir.path().join("secret.wav").display().to_string();
        assert!(matches!(
            resolve_media(&media, Some(1), &abs),
            Err(MediaFileError::BadName(_))
        ));
        assert!(matches!(
            resolve_media(&media, Some(1), "../secret.wav"),
            Err(MediaFileError::BadName(_))
        ));
        std::os::unix::fs::symlink(dir.path().join("secret.wav"), media.join("link.wav")).unwrap();
        let err = resolve_media(&media, Some(1), "link.wav").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"link.wav\" leads out of the media directory"
        );
        assert!(matches!(
            resolve_media(&media, Some(1), "missing.wav"),
            Err(MediaFileError::NotFound { .. })
        ));
        // A link that stays inside is fine.
        std::fs::write(media.join("real.wav"), wav_bytes()).unwrap();
        std::os::unix::fs::symlink(media.join("real.wav"), media.join("alias.wav")).unwrap();
        assert!(resolve_media(&media, Some(1), "alias.wav").is_ok());
    }

    #[test]
    fn a_file_that_is_not_wav_is_refused_and_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let err = save_upload(dir.path(), 3, "menu.wav", b"RIFF nonsense").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("\"menu.wav\" is not a usable WAV file"),
            "{err}"
        );
        assert!(list_media(dir.path(), 3).unwrap().is_empty());
        // No temporary file is left behind either.
        assert_eq!(
            std::fs::read_dir(account_dir(dir.path(), 3))
                .unwrap()
                .count(),
            0
        );
        std::fs::write(dir.path().join("text.wav"), "hello").unwrap();
        let err = resolve_wav(dir.path(), Some(3), "text.wav").unwrap_err();
        assert!(matches!(err, MediaFileError::NotWav { .. }), "{err}");
    }

    #[test]
    fn only_the_accounts_own_files_can_be_deleted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("shared.wav"), wav_bytes()).unwrap();
        assert!(matches!(
            delete_media(dir.path(), 1, "shared.wav"),
            Err(MediaFileError::NotFound { .. })
        ));
        save_upload(dir.path(), 1, "mine.wav", &wav_bytes()).unwrap();
        delete_media(dir.path(), 1, "mine.wav").unwrap();
        assert!(dir.path().join("shared.wav").exists());
        assert!(matches!(
            resolve_media(dir.path(), Some(1), "mine.wav"),
            Err(MediaFileError::NotFound { .. })
        ));
    }
}
