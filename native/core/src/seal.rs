//! Pieces sealed at rest (issue 21): a store opened with a tenant's key keeps every piece as
//! AES-256-GCM ciphertext. The layout does not change: ciphertext has the plaintext's length,
//! so piece `n` stays at `n * piece_length` and O_DIRECT alignment holds; the 16-byte tag of
//! each piece, with the generation its nonce used, goes into the piece's metadata record.
//!
//! Nonces come from the task and the piece (DESIGN.md): `codec::piece_nonce` over
//! `<task id>:<store salt>:<generation>` and the piece number, with the piece number also bound
//! as associated data. The salt is random per store (written in its header), so a task deleted
//! and fetched again after the origin changed never reuses a nonce under the same key; the
//! generation counts how often that piece was found corrupt and dropped in this store, so a
//! piece written again never reuses its earlier nonce either. The header also holds the key's
//! version and a check value (a hash of salt and key, not the key), so a store opened with
//! another key fails at open with DF_AUTH rather than at every piece.
//!
//! Digests stay over the plain bytes: the CRC and BLAKE3 a store records are what the
//! scheduler distributes and children verify, whatever this host keeps on its disk.

use crate::codec::PieceKey;
use crate::error::{CoreError, ErrorCode, Result};
use sha2::Digest;

pub const TAG_LEN: usize = 16;
pub const SALT_LEN: usize = 16;
pub const CHECK_LEN: usize = 16;

/// The key a store seals its pieces with, as the caller (the daemon, from the manager) gives it.
#[derive(Clone)]
pub struct SealKey {
    /// 32 bytes of AES-256 key material.
    pub key: Vec<u8>,
    /// The key's version at its tenant (rotation adds versions; older ones keep opening older tasks).
    pub version: u32,
}

/// Never prints the key.
impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealKey").field("version", &self.version).finish_non_exhaustive()
    }
}

impl Drop for SealKey {
    fn drop(&mut self) {
        wipe(&mut self.key);
    }
}

/// Overwrites key material before its memory is freed (volatile, so it is not optimised away).
fn wipe(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        // SAFETY: `b` is a valid, exclusive reference into the slice.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
}

/// What a sealed store's header says about its sealing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealHeader {
    pub version: u32,
    pub salt: [u8; SALT_LEN],
    pub check: [u8; CHECK_LEN],
}

/// How one piece was sealed: its tag and the generation its nonce used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceSeal {
    pub generation: u32,
    pub tag: [u8; TAG_LEN],
}

/// `SHA-256(label ‖ salt ‖ key)`, cut to 16 bytes: tells whether a key is the store's without
/// holding anything that opens it.
fn key_check(key: &[u8], salt: &[u8; SALT_LEN]) -> [u8; CHECK_LEN] {
    let h = sha2::Sha256::new()
        .chain_update(b"damselfly/store-key-check/v1")
        .chain_update(salt)
        .chain_update(key)
        .finalize();
    let mut out = [0u8; CHECK_LEN];
    out.copy_from_slice(&h[..CHECK_LEN]);
    out
}

/// A store's sealing: the expanded key and the nonce identity of its task.
pub struct Sealer {
    key: PieceKey,
    task_id: String,
    header: SealHeader,
}

impl Sealer {
    /// For a new store: a fresh random salt.
    pub fn create(task_id: &str, key: &SealKey) -> Result<Self> {
        let mut salt = [0u8; SALT_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
            .map_err(|_| CoreError::new(ErrorCode::Io, "no randomness for a store's salt"))?;
        Self::build(task_id, key, SealHeader { version: key.version, salt, check: key_check(&key.key, &salt) })
    }

    /// For a store found on disk: DF_AUTH unless `key` is the one it was sealed with.
    pub fn reopen(task_id: &str, key: &SealKey, header: SealHeader) -> Result<Self> {
        if key.version != header.version {
            return Err(CoreError::new(
                ErrorCode::Auth,
                format!("task {task_id} is sealed under key version {}, not {}", header.version, key.version),
            ));
        }
        if key_check(&key.key, &header.salt) != header.check {
            return Err(CoreError::new(
                ErrorCode::Auth,
                format!("the key given as version {} is not the key task {task_id} was sealed with", key.version),
            ));
        }
        Self::build(task_id, key, header)
    }

    fn build(task_id: &str, key: &SealKey, header: SealHeader) -> Result<Self> {
        Ok(Self { key: PieceKey::new(&key.key)?, task_id: task_id.to_string(), header })
    }

    pub fn header(&self) -> SealHeader {
        self.header
    }

    /// Whether `key` is this store's key (the same version and material).
    pub fn same_key(&self, key: &SealKey) -> bool {
        key.version == self.header.version && key_check(&key.key, &self.header.salt) == self.header.check
    }

    fn nonce_id(&self, generation: u32) -> String {
        let salt: String = self.header.salt.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}:{salt}:{generation}", self.task_id)
    }

    /// Encrypts piece `number` in place; returns how to open it.
    pub fn seal(&self, number: u32, generation: u32, buf: &mut [u8]) -> Result<PieceSeal> {
        let tag = self.key.seal_in_place(&self.nonce_id(generation), number, buf)?;
        Ok(PieceSeal { generation, tag })
    }

    /// Decrypts piece `number` in place; DF_AUTH (and `buf` left as garbage) if its tag fails.
    pub fn open(&self, number: u32, seal: &PieceSeal, buf: &mut [u8]) -> Result<()> {
        self.key.open_in_place(&self.nonce_id(seal.generation), number, buf, &seal.tag)
    }
}

/// A sealed store's piece that has no tag in its record cannot be opened.
pub fn untagged(number: u32, task_id: &str) -> CoreError {
    CoreError::new(ErrorCode::Auth, format!("piece {number} of sealed task {task_id} has no tag in its record"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8, version: u32) -> SealKey {
        SealKey { key: vec![b; 32], version }
    }

    #[test]
    fn seal_then_open_restores_the_piece_and_any_flipped_bit_fails_with_auth() {
        let s = Sealer::create("task", &key(1, 1)).unwrap();
        let plain = crate::testutil::pattern(100_000, 3);
        let mut buf = plain.clone();
        let seal = s.seal(7, 0, &mut buf).unwrap();
        assert_ne!(buf, plain, "ciphertext at rest");
        let mut opened = buf.clone();
        s.open(7, &seal, &mut opened).unwrap();
        assert_eq!(opened, plain);
        let mut flipped = buf.clone();
        flipped[50_000] ^= 1;
        assert_eq!(s.open(7, &seal, &mut flipped).unwrap_err().code, ErrorCode::Auth);
        // Another piece number, another generation: the same bytes do not open.
        assert_eq!(s.open(8, &seal, &mut buf.clone()).unwrap_err().code, ErrorCode::Auth);
        let wrong_gen = PieceSeal { generation: 1, ..seal };
        assert_eq!(s.open(7, &wrong_gen, &mut buf.clone()).unwrap_err().code, ErrorCode::Auth);
    }

    #[test]
    fn stores_of_one_task_differ_by_salt_and_generations_differ_by_nonce() {
        let k = key(1, 1);
        let (a, b) = (Sealer::create("task", &k).unwrap(), Sealer::create("task", &k).unwrap());
        let plain = vec![9u8; 4096];
        let (mut x, mut y, mut z) = (plain.clone(), plain.clone(), plain.clone());
        a.seal(0, 0, &mut x).unwrap();
        b.seal(0, 0, &mut y).unwrap();
        a.seal(0, 1, &mut z).unwrap();
        assert_ne!(x, y);
        assert_ne!(x, z);
    }

    #[test]
    fn reopen_takes_only_the_key_and_version_the_store_was_sealed_with() {
        let s = Sealer::create("task", &key(1, 2)).unwrap();
        let h = s.header();
        assert!(Sealer::reopen("task", &key(1, 2), h).is_ok());
        assert_eq!(Sealer::reopen("task", &key(1, 3), h).err().map(|e| e.code), Some(ErrorCode::Auth));
        assert_eq!(Sealer::reopen("task", &key(2, 2), h).err().map(|e| e.code), Some(ErrorCode::Auth));
        assert!(s.same_key(&key(1, 2)) && !s.same_key(&key(2, 2)));
        assert!(!format!("{:?}", key(0xab, 2)).contains("171"), "Debug never shows the key");
    }
}
