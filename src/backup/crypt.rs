//! Streaming encryption of backup objects: AES-256-GCM over 1 MiB chunks with a
//! random data key per backup (sealed under the server's secret key in the manifest).
//!
//! ```text
//! "BQB1" || chunk* ;  chunk = u32 BE ciphertext length || ciphertext+tag
//! nonce(chunk i) = u64 BE i || 0 0 0 || last (1 on the final chunk, else 0)
//! associated data = the backup id
//! ```
//!
//! The counter in the nonce stops reordering, the `last` flag stops truncation, the
//! backup id stops swapping objects between backups; a data key is never reused.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use uuid::Uuid;

pub const MAGIC: &[u8; 4] = b"BQB1";
pub const CHUNK: usize = 1 << 20;
const TAG: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error("the backup object is not an encrypted berqenas backup (bad header)")]
    Header,
    #[error("the backup object was altered or does not belong to this backup (chunk {0} fails authentication)")]
    Tampered(u64),
    #[error("the backup object is truncated")]
    Truncated,
    #[error("the backup object has data after its final chunk")]
    Trailing,
}

fn nonce(counter: u64, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// Encrypts a stream pushed to it in pieces of any size.
pub struct Sealer {
    cipher: Aes256Gcm,
    aad: [u8; 16],
    counter: u64,
    pending: Vec<u8>,
    started: bool,
}

impl Sealer {
    pub fn new(data_key: &[u8; 32], backup_id: Uuid) -> Self {
        Self {
            cipher: Aes256Gcm::new(data_key.into()),
            aad: *backup_id.as_bytes(),
            counter: 0,
            pending: Vec::with_capacity(CHUNK),
            started: false,
        }
    }

    fn header(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            out.extend_from_slice(MAGIC);
            self.started = true;
        }
    }

    fn seal_chunk(&mut self, plain: &[u8], last: bool, out: &mut Vec<u8>) {
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce(self.counter, last)),
                Payload {
                    msg: plain,
                    aad: &self.aad,
                },
            )
            .expect("AES-GCM encryption of an in-memory chunk cannot fail");
        out.extend_from_slice(&(sealed.len() as u32).to_be_bytes());
        out.extend_from_slice(&sealed);
        self.counter += 1;
    }

    /// Appends to `out` the ciphertext of every full chunk `data` completes.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        self.header(out);
        while !data.is_empty() {
            let take = (CHUNK - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            // A full chunk waits for more input: only `finish` knows which is last.
            if self.pending.len() == CHUNK && !data.is_empty() {
                let chunk = std::mem::take(&mut self.pending);
                self.seal_chunk(&chunk, false, out);
                self.pending = chunk;
                self.pending.clear();
            }
        }
    }

    /// Seals what is left as the final chunk (possibly empty).
    pub fn finish(mut self, out: &mut Vec<u8>) {
        self.header(out);
        let chunk = std::mem::take(&mut self.pending);
        self.seal_chunk(&chunk, true, out);
    }
}

/// Decrypts a stream pushed to it in pieces of any size.
pub struct Opener {
    cipher: Aes256Gcm,
    aad: [u8; 16],
    counter: u64,
    buf: Vec<u8>,
    header_seen: bool,
    done: bool,
}

impl Opener {
    pub fn new(data_key: &[u8; 32], backup_id: Uuid) -> Self {
        Self {
            cipher: Aes256Gcm::new(data_key.into()),
            aad: *backup_id.as_bytes(),
            counter: 0,
            buf: Vec::new(),
            header_seen: false,
            done: false,
        }
    }

    /// Appends to `out` the plaintext of every complete chunk received so far.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), CryptError> {
        self.buf.extend_from_slice(data);
        if !self.header_seen {
            if self.buf.len() < MAGIC.len() {
                return Ok(());
            }
            if &self.buf[..4] != MAGIC {
                return Err(CryptError::Header);
            }
            self.buf.drain(..4);
            self.header_seen = true;
        }
        let mut at = 0;
        loop {
            let rest = &self.buf[at..];
            if rest.is_empty() {
                break;
            }
            if self.done {
                return Err(CryptError::Trailing);
            }
            if rest.len() < 4 {
                break;
            }
            let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            if !(TAG..=CHUNK + TAG).contains(&len) {
                return Err(CryptError::Tampered(self.counter));
            }
            if rest.len() < 4 + len {
                break;
            }
            let sealed = &rest[4..4 + len];
            // A chunk shorter than a full one can only be the last.
            let last_guess = len < CHUNK + TAG;
            let plain = self
                .open_chunk(sealed, last_guess)
                .or_else(|_| self.open_chunk(sealed, !last_guess))?;
            out.extend_from_slice(&plain.0);
            self.done = plain.1;
            self.counter += 1;
            at += 4 + len;
        }
        self.buf.drain(..at);
        Ok(())
    }

    fn open_chunk(&self, sealed: &[u8], last: bool) -> Result<(Vec<u8>, bool), CryptError> {
        self.cipher
            .decrypt(
                Nonce::from_slice(&nonce(self.counter, last)),
                Payload {
                    msg: sealed,
                    aad: &self.aad,
                },
            )
            .map(|p| (p, last))
            .map_err(|_| CryptError::Tampered(self.counter))
    }

    /// Succeeds only when the final chunk arrived and nothing followed it.
    pub fn finish(self) -> Result<(), CryptError> {
        if !self.header_seen || !self.done {
            return Err(CryptError::Truncated);
        }
        if !self.buf.is_empty() {
            return Err(CryptError::Trailing);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(data: &[u8], key: &[u8; 32], id: Uuid, piece: usize) -> Vec<u8> {
        let mut s = Sealer::new(key, id);
        let mut out = Vec::new();
        for p in data.chunks(piece.max(1)) {
            s.push(p, &mut out);
        }
        s.finish(&mut out);
        out
    }

    fn open(sealed: &[u8], key: &[u8; 32], id: Uuid, piece: usize) -> Result<Vec<u8>, CryptError> {
        let mut o = Opener::new(key, id);
        let mut out = Vec::new();
        for p in sealed.chunks(piece.max(1)) {
            o.push(p, &mut out)?;
        }
        o.finish()?;
        Ok(out)
    }

    #[test]
    fn round_trips_at_every_size_and_piece() {
        let (key, id) = ([3u8; 32], Uuid::now_v7());
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 7] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            for piece in [1000, 65536, CHUNK + 3] {
                let sealed = seal(&data, &key, id, piece);
                assert_eq!(
                    open(&sealed, &key, id, 777_777).unwrap(),
                    data,
                    "{len}/{piece}"
                );
            }
        }
    }

    #[test]
    fn detects_tampering_truncation_reordering_and_swaps() {
        let (key, id) = ([3u8; 32], Uuid::now_v7());
        let data: Vec<u8> = (0..(2 * CHUNK + 10)).map(|i| (i % 7) as u8).collect();
        let sealed = seal(&data, &key, id, CHUNK);
        let mut flipped = sealed.clone();
        flipped[100] ^= 1;
        assert!(matches!(
            open(&flipped, &key, id, 4096),
            Err(CryptError::Tampered(0))
        ));
        // Cut after the first two chunks: each is whole and authentic, the end is not.
        let two = 4 + 2 * (4 + CHUNK + TAG);
        assert!(matches!(
            open(&sealed[..two], &key, id, 4096),
            Err(CryptError::Truncated)
        ));
        let mut extra = sealed.clone();
        extra.extend_from_slice(&sealed[4..4 + 4 + CHUNK + TAG]);
        assert!(open(&extra, &key, id, 4096).is_err());
        assert!(
            open(&sealed, &key, Uuid::now_v7(), 4096).is_err(),
            "another backup's id"
        );
        assert!(open(&sealed, &[4u8; 32], id, 4096).is_err(), "another key");
        assert!(matches!(
            open(b"PGDMP...", &key, id, 4096),
            Err(CryptError::Header)
        ));
    }
}
