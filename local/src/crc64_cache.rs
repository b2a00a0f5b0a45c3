//! The CRC64NVME checksums the S3 emulation has computed (`checksums.rs`), kept in the
//! shared context so each object is read once.

use std::collections::HashMap;
use std::sync::Mutex;

/// The CRC64NVME of each object read so far, by (bucket, key, ETag): an object's content,
/// and so its checksum, changes only with its ETag.
#[derive(Default)]
pub struct Crc64Cache(Mutex<HashMap<(String, String, String), String>>);

impl Crc64Cache {
    pub fn get(&self, id: &(String, String, String)) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    pub fn put(&self, id: (String, String, String), value: String) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, value);
    }
}
