//! Writing optimizer state as named MessagePack (the format of burn's `NamedMpkFileRecorder`,
//! which reads it back) while keeping the I/O error of a failed write: burn's recorder turns a
//! full disk into "invalid value write: ... MessagePack value", this one into "No space left on
//! device". The file goes through [`tmd_model::output::Guarded`], so tests can inject a full disk.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use burn::record::{FullPrecisionSettings, Recorder, RecorderError};
use burn::tensor::backend::Backend;
use serde::{de::DeserializeOwned, Serialize};

/// A [`Recorder`] writing named MessagePack to a file and keeping the first I/O error.
#[derive(Debug, Clone, Default)]
pub struct MpkFileWriter {
    io_error: Arc<Mutex<Option<std::io::Error>>>,
}

impl MpkFileWriter {
    /// The I/O error of the last failed write, if any.
    pub fn take_io_error(&self) -> Option<std::io::Error> {
        self.io_error.lock().ok().and_then(|mut e| e.take())
    }

    fn keep(&self, e: std::io::Error) -> RecorderError {
        let msg = e.to_string();
        if let Ok(mut slot) = self.io_error.lock() {
            *slot = Some(e);
        }
        RecorderError::Unknown(msg)
    }
}

impl<B: Backend> Recorder<B> for MpkFileWriter {
    type Settings = FullPrecisionSettings;
    type RecordArgs = PathBuf;
    type RecordOutput = ();
    type LoadArgs = PathBuf;

    fn save_item<I: Serialize>(&self, item: I, path: PathBuf) -> Result<(), RecorderError> {
        let file = std::fs::File::create(&path).map_err(|e| self.keep(e))?;
        let mut w = tmd_model::output::Guarded::new(BufWriter::new(file));
        let encoded = rmp_serde::encode::write_named(&mut w, &item);
        let flushed = w.flush();
        // The writer's own record of the first error wins over the encoder's description of it.
        w.check().map_err(|e| self.keep(e))?;
        flushed.map_err(|e| self.keep(e))?;
        encoded.map_err(|e| RecorderError::Unknown(e.to_string()))?;
        let file = w
            .into_inner()
            .into_inner()
            .map_err(|e| self.keep(e.into_error()))?;
        file.sync_all().map_err(|e| self.keep(e))
    }

    fn load_item<I: DeserializeOwned>(&self, path: &mut PathBuf) -> Result<I, RecorderError> {
        let file = std::fs::File::open(&*path).map_err(|e| self.keep(e))?;
        rmp_serde::decode::from_read(std::io::BufReader::new(file))
            .map_err(|e| RecorderError::DeserializeError(e.to_string()))
    }
}
