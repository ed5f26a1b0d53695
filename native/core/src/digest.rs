//! Piece digests. Dragonfly peers check a piece with CRC-32/IEEE rendered as `crc32:<decimal>`
//! (no padding), so that string is the wire digest every piece carries. CRC-32C, SHA-256 and
//! BLAKE3 are extra digests for content that others will trust. Every hasher is incremental so
//! a piece arriving in socket-sized chunks is hashed as it lands, never re-read.

use crate::error::{CoreError, ErrorCode, Result};
use sha2::Digest as _;

/// Above this size BLAKE3 hashes subtrees on the rayon pool; below it the thread hop costs more
/// than it saves.
const BLAKE3_PARALLEL_MIN: usize = 128 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// CRC-32/IEEE, Dragonfly's piece digest.
    Crc32,
    Crc32c,
    Sha256,
    Blake3,
}

impl Algorithm {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "crc32" => Ok(Self::Crc32),
            "crc32c" => Ok(Self::Crc32c),
            "sha256" => Ok(Self::Sha256),
            "blake3" => Ok(Self::Blake3),
            other => Err(CoreError::new(ErrorCode::InvalidArgument, format!("unknown digest algorithm {other:?}"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Crc32 => "crc32",
            Self::Crc32c => "crc32c",
            Self::Sha256 => "sha256",
            Self::Blake3 => "blake3",
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Self::Crc32 => 1,
            Self::Crc32c => 2,
            Self::Sha256 => 3,
            Self::Blake3 => 4,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Crc32),
            2 => Some(Self::Crc32c),
            3 => Some(Self::Sha256),
            4 => Some(Self::Blake3),
            _ => None,
        }
    }
}

/// Incremental hasher over one of the algorithms.
#[derive(Clone)]
pub enum Hasher {
    Crc32(crc32fast::Hasher),
    Crc32c(u32),
    Sha256(Box<sha2::Sha256>),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    pub fn new(alg: Algorithm) -> Self {
        match alg {
            Algorithm::Crc32 => Self::Crc32(crc32fast::Hasher::new()),
            Algorithm::Crc32c => Self::Crc32c(0),
            Algorithm::Sha256 => Self::Sha256(Box::default()),
            Algorithm::Blake3 => Self::Blake3(Box::default()),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Crc32(_) => Algorithm::Crc32,
            Self::Crc32c(_) => Algorithm::Crc32c,
            Self::Sha256(_) => Algorithm::Sha256,
            Self::Blake3(_) => Algorithm::Blake3,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Crc32(h) => h.update(data),
            Self::Crc32c(c) => *c = crc32c::crc32c_append(*c, data),
            Self::Sha256(h) => h.update(data),
            Self::Blake3(h) => {
                if data.len() >= BLAKE3_PARALLEL_MIN {
                    h.update_rayon(data);
                } else {
                    h.update(data);
                }
            }
        }
    }

    /// The digest in the `alg:value` text form used on the wire and in metadata.
    pub fn finish(self) -> String {
        match self {
            Self::Crc32(h) => crc32_string(h.finalize()),
            Self::Crc32c(c) => format!("crc32c:{c:08x}"),
            Self::Sha256(h) => format!("sha256:{}", hex(&h.finalize())),
            Self::Blake3(h) => format!("blake3:{}", h.finalize().to_hex()),
        }
    }
}

/// Dragonfly's text form of a CRC-32/IEEE piece digest: decimal, no padding.
pub fn crc32_string(value: u32) -> String {
    format!("crc32:{value}")
}

pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Hashes `data` in one call and returns the text digest.
pub fn digest(alg: Algorithm, data: &[u8]) -> String {
    let mut h = Hasher::new(alg);
    h.update(data);
    h.finish()
}

/// Raw SHA-256 bytes (for nonce derivation and tests).
pub fn sha256_bytes(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

/// Checks `data` against a text digest (`crc32:…`, `crc32c:…`, `sha256:…`, `blake3:…`).
/// The comparison is on the canonical text form, exactly as Dragonfly compares strings, except
/// that hex case is ignored.
pub fn verify(expected: &str, data: &[u8]) -> Result<()> {
    check(expected, digest(Algorithm::parse(algorithm_of(expected)?)?, data)).map(drop)
}

/// `got` (a digest just computed) when it is `expected`, compared as `verify` does;
/// DF_DIGEST_MISMATCH otherwise, DF_INVALID_ARGUMENT if `expected` names no algorithm.
pub fn check(expected: &str, got: String) -> Result<String> {
    algorithm_of(expected)?;
    if got.eq_ignore_ascii_case(expected) {
        Ok(got)
    } else {
        Err(CoreError::new(ErrorCode::DigestMismatch, format!("digest mismatch: expected {expected}, got {got}")))
    }
}

fn algorithm_of(expected: &str) -> Result<&str> {
    expected
        .split_once(':')
        .map(|(alg, _)| alg)
        .ok_or_else(|| CoreError::new(ErrorCode::InvalidArgument, format!("digest {expected:?} has no algorithm")))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_dragonfly_text_form() {
        // Value worked out in the wire-protocol notes: crc32("hello") = 907060870.
        assert_eq!(digest(Algorithm::Crc32, b"hello"), "crc32:907060870");
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn known_vectors() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(
            digest(Algorithm::Sha256, b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            digest(Algorithm::Blake3, b""),
            "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn incremental_equals_one_shot() {
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for alg in [Algorithm::Crc32, Algorithm::Crc32c, Algorithm::Sha256, Algorithm::Blake3] {
            let mut h = Hasher::new(alg);
            for chunk in data.chunks(65_537) {
                h.update(chunk);
            }
            // One big update takes BLAKE3's parallel path; chunks take the serial one.
            assert_eq!(h.finish(), digest(alg, &data), "{}", alg.name());
        }
    }

    #[test]
    fn verify_rejects_corruption() {
        let mut data = vec![7u8; 4096];
        for alg in [Algorithm::Crc32, Algorithm::Crc32c, Algorithm::Sha256, Algorithm::Blake3] {
            let d = digest(alg, &data);
            assert!(verify(&d, &data).is_ok());
            data[100] ^= 1;
            let err = verify(&d, &data).unwrap_err();
            assert_eq!(err.code, ErrorCode::DigestMismatch);
            data[100] ^= 1;
        }
        assert_eq!(verify("md5:00", &data).unwrap_err().code, ErrorCode::InvalidArgument);
    }

    #[test]
    fn check_returns_the_canonical_digest_or_names_the_problem() {
        let got = digest(Algorithm::Sha256, b"piece");
        assert_eq!(check(&got.to_ascii_uppercase().replacen("SHA256", "sha256", 1), got.clone()).unwrap(), got);
        let other = digest(Algorithm::Sha256, b"other");
        assert_eq!(check(&other, got.clone()).unwrap_err().code, ErrorCode::DigestMismatch);
        assert_eq!(check("sha256", got).unwrap_err().code, ErrorCode::InvalidArgument);
    }
}
