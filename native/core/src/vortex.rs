//! Dragonfly's vortex framing (protocol 0.1.5) for piece transfer over TCP: a 6-byte header
//! `id:u8 | tag:u8 | length:u32be` followed by `length` value bytes. A PieceContent frame
//! carries only the piece metadata; the raw piece bytes follow outside the frame. Everything
//! here is pure byte work so the decoders can be fuzzed without sockets.

use crate::error::{CoreError, ErrorCode, Result};

pub const HEADER_LEN: usize = 6;
pub const TASK_ID_LEN: usize = 64;
pub const DOWNLOAD_PIECE_LEN: usize = TASK_ID_LEN + 4;

pub const TAG_DOWNLOAD_PIECE: u8 = 0;
pub const TAG_PIECE_CONTENT: u8 = 1;
pub const TAG_DOWNLOAD_PERSISTENT_PIECE: u8 = 2;
pub const TAG_DOWNLOAD_PERSISTENT_CACHE_PIECE: u8 = 4;
pub const TAG_CLOSE: u8 = 254;
pub const TAG_ERROR: u8 = 255;

/// Largest PieceContent / Error value a client accepts (metadata is ~100 bytes plus ids).
pub const MAX_REPLY_VALUE: u32 = 64 * 1024;

/// Vortex error codes (value byte 0 of an Error frame).
pub const ERR_UNKNOWN: u8 = 0;
pub const ERR_INVALID_ARGUMENT: u8 = 1;
pub const ERR_NOT_FOUND: u8 = 2;
pub const ERR_INTERNAL: u8 = 3;
/// Message prefix of the Internal error a piece server sends when every upload slot is taken.
/// Vortex has no busy code (4–255 are reserved), so a Dragonfly client sees an ordinary
/// Internal error and tries another parent, which is the point; our client recognises the
/// prefix and does not count the refusal as a failed piece.
pub const BUSY_PREFIX: &str = "upload busy";

/// Traffic type written by a serving peer (common.v2.TrafficType REMOTE_PEER).
pub const TRAFFIC_REMOTE_PEER: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u8,
    pub tag: u8,
    pub length: u32,
}

impl Header {
    pub fn decode(b: &[u8; HEADER_LEN]) -> Self {
        Self { id: b[0], tag: b[1], length: u32::from_be_bytes([b[2], b[3], b[4], b[5]]) }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let l = self.length.to_be_bytes();
        [self.id, self.tag, l[0], l[1], l[2], l[3]]
    }
}

/// Packet ids are never checked by either side; a cheap varying byte is enough.
pub fn packet_id() -> u8 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0x9e37_79b9);
    let x = NEXT.fetch_add(0x9e37_79b9, Ordering::Relaxed);
    (x >> 24) as u8
}

/// Task ids on the wire are exactly 64 lowercase hex characters (a SHA-256 in hex). Checking
/// the alphabet here is also what keeps a remote party from naming a path.
pub fn is_wire_task_id(s: &[u8]) -> bool {
    s.len() == TASK_ID_LEN && s.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

fn protocol(msg: impl Into<String>) -> CoreError {
    CoreError::new(ErrorCode::Protocol, msg)
}

/// Encodes a complete DownloadPiece frame (74 bytes).
pub fn encode_download_piece(task_id: &str, number: u32) -> Result<[u8; HEADER_LEN + DOWNLOAD_PIECE_LEN]> {
    if !is_wire_task_id(task_id.as_bytes()) {
        return Err(CoreError::new(
            ErrorCode::InvalidArgument,
            format!("task id {task_id:?} is not 64 lowercase hex characters"),
        ));
    }
    let mut f = [0u8; HEADER_LEN + DOWNLOAD_PIECE_LEN];
    f[..HEADER_LEN].copy_from_slice(
        &Header { id: packet_id(), tag: TAG_DOWNLOAD_PIECE, length: DOWNLOAD_PIECE_LEN as u32 }.encode(),
    );
    f[HEADER_LEN..HEADER_LEN + TASK_ID_LEN].copy_from_slice(task_id.as_bytes());
    f[HEADER_LEN + TASK_ID_LEN..].copy_from_slice(&number.to_be_bytes());
    Ok(f)
}

/// Decodes a DownloadPiece value into (task id, piece number).
pub fn decode_download_piece(value: &[u8]) -> Result<(String, u32)> {
    if value.len() != DOWNLOAD_PIECE_LEN {
        return Err(protocol(format!("DownloadPiece value must be {DOWNLOAD_PIECE_LEN} bytes, got {}", value.len())));
    }
    let (id, num) = value.split_at(TASK_ID_LEN);
    if !is_wire_task_id(id) {
        return Err(protocol("DownloadPiece task id is not 64 lowercase hex characters"));
    }
    let task_id = String::from_utf8(id.to_vec()).map_err(|_| protocol("task id is not UTF-8"))?;
    let number = u32::from_be_bytes([num[0], num[1], num[2], num[3]]);
    Ok((task_id, number))
}

/// Metadata of a PieceContent frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceMeta {
    pub number: u32,
    pub offset: u64,
    pub length: u64,
    pub digest: String,
    pub parent_id: String,
    pub traffic_type: u8,
    /// Whole seconds.
    pub cost_secs: u64,
    /// Unix seconds.
    pub created_at_secs: i64,
}

/// Encodes a complete PieceContent frame (header + metadata); the caller then streams
/// exactly `meta.length` raw bytes.
pub fn encode_piece_content(meta: &PieceMeta) -> Vec<u8> {
    let d = meta.digest.as_bytes();
    let p = meta.parent_id.as_bytes();
    let meta_len = 4 + 8 + 8 + 4 + d.len() + 4 + p.len() + 1 + 8 + 8;
    let value_len = 4 + meta_len;
    let mut f = Vec::with_capacity(HEADER_LEN + value_len);
    f.extend_from_slice(&Header { id: packet_id(), tag: TAG_PIECE_CONTENT, length: value_len as u32 }.encode());
    f.extend_from_slice(&(meta_len as u32).to_be_bytes());
    f.extend_from_slice(&meta.number.to_be_bytes());
    f.extend_from_slice(&meta.offset.to_be_bytes());
    f.extend_from_slice(&meta.length.to_be_bytes());
    f.extend_from_slice(&(d.len() as u32).to_be_bytes());
    f.extend_from_slice(d);
    f.extend_from_slice(&(p.len() as u32).to_be_bytes());
    f.extend_from_slice(p);
    f.push(meta.traffic_type);
    f.extend_from_slice(&meta.cost_secs.to_be_bytes());
    f.extend_from_slice(&meta.created_at_secs.to_be_bytes());
    f
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(protocol("PieceContent metadata is truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn string(&mut self) -> Result<String> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| protocol("PieceContent string is not UTF-8"))
    }
}

/// Decodes a PieceContent value; the value must be exactly `4 + metadata_len` bytes.
pub fn decode_piece_content(value: &[u8]) -> Result<PieceMeta> {
    let mut r = Reader(value);
    let meta_len = r.u32()? as usize;
    if value.len() != 4 + meta_len {
        return Err(protocol(format!(
            "PieceContent value is {} bytes but declares {meta_len} bytes of metadata",
            value.len()
        )));
    }
    let meta = PieceMeta {
        number: r.u32()?,
        offset: r.u64()?,
        length: r.u64()?,
        digest: r.string()?,
        parent_id: r.string()?,
        traffic_type: r.take(1)?[0],
        cost_secs: r.u64()?,
        created_at_secs: r.u64()? as i64,
    };
    if !r.0.is_empty() {
        return Err(protocol("PieceContent metadata has trailing bytes"));
    }
    Ok(meta)
}

/// Encodes a complete Error frame.
pub fn encode_error(code: u8, message: &str) -> Vec<u8> {
    let m = message.as_bytes();
    let m = &m[..m.len().min(4096)];
    let mut f = Vec::with_capacity(HEADER_LEN + 1 + m.len());
    f.extend_from_slice(&Header { id: packet_id(), tag: TAG_ERROR, length: (1 + m.len()) as u32 }.encode());
    f.push(code);
    f.extend_from_slice(m);
    f
}

/// Decodes an Error value into (code, message).
pub fn decode_error(value: &[u8]) -> Result<(u8, String)> {
    let (&code, msg) = value.split_first().ok_or_else(|| protocol("Error value is empty"))?;
    Ok((code, String::from_utf8_lossy(msg).into_owned()))
}

/// What a server makes of one incoming frame header before reading its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKind {
    /// A DownloadPiece whose 68-byte value should be read next.
    DownloadPiece,
    Close,
    /// Refuse with this Error code and message, then close the connection.
    Reject(u8, String),
}

/// Classifies a request header. Only a DownloadPiece of exactly 68 bytes is read further, so an
/// oversized length never makes the server buffer anything.
pub fn classify_request(h: &Header) -> RequestKind {
    match h.tag {
        TAG_DOWNLOAD_PIECE if h.length as usize == DOWNLOAD_PIECE_LEN => RequestKind::DownloadPiece,
        TAG_DOWNLOAD_PIECE => RequestKind::Reject(
            ERR_INVALID_ARGUMENT,
            format!("DownloadPiece value must be {DOWNLOAD_PIECE_LEN} bytes, header says {}", h.length),
        ),
        TAG_CLOSE => RequestKind::Close,
        TAG_DOWNLOAD_PERSISTENT_PIECE | TAG_DOWNLOAD_PERSISTENT_CACHE_PIECE => {
            RequestKind::Reject(ERR_INVALID_ARGUMENT, format!("request tag {} is not served here", h.tag))
        }
        t => RequestKind::Reject(ERR_INVALID_ARGUMENT, format!("unexpected request tag {t}")),
    }
}

/// Parses a whole request byte stream the way the server does (used by the fuzz tests and
/// by anything that wants to validate buffered bytes): Ok(requests) when every frame is a
/// well-formed DownloadPiece or Close, else the first rejection.
pub fn parse_requests(mut buf: &[u8]) -> std::result::Result<Vec<(String, u32)>, (u8, String)> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        if buf.len() < HEADER_LEN {
            return Err((ERR_INVALID_ARGUMENT, "truncated frame header".into()));
        }
        let mut hb = [0u8; HEADER_LEN];
        hb.copy_from_slice(&buf[..HEADER_LEN]);
        let h = Header::decode(&hb);
        buf = &buf[HEADER_LEN..];
        match classify_request(&h) {
            RequestKind::Close => return Ok(out),
            RequestKind::Reject(c, m) => return Err((c, m)),
            RequestKind::DownloadPiece => {
                if buf.len() < DOWNLOAD_PIECE_LEN {
                    return Err((ERR_INVALID_ARGUMENT, "truncated DownloadPiece value".into()));
                }
                let v =
                    decode_download_piece(&buf[..DOWNLOAD_PIECE_LEN]).map_err(|e| (ERR_INVALID_ARGUMENT, e.message))?;
                out.push(v);
                buf = &buf[DOWNLOAD_PIECE_LEN..];
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TID: &str = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";

    #[test]
    fn download_piece_matches_worked_example() {
        let f = encode_download_piece(TID, 7).unwrap();
        assert_eq!(f.len(), 74);
        assert_eq!(&f[1..6], &[0, 0, 0, 0, 0x44]);
        assert_eq!(&f[6..70], TID.as_bytes());
        assert_eq!(&f[70..], &[0, 0, 0, 7]);
        assert_eq!(decode_download_piece(&f[6..]).unwrap(), (TID.to_string(), 7));
        assert!(encode_download_piece("ABCDEF", 1).is_err());
        assert!(encode_download_piece(&TID.to_uppercase(), 1).is_err());
        assert!(decode_download_piece(&f[6..73]).is_err());
    }

    #[test]
    fn piece_content_matches_worked_example() {
        let meta = PieceMeta {
            number: 0,
            offset: 0,
            length: 5,
            digest: "crc32:907060870".into(),
            parent_id: String::new(),
            traffic_type: TRAFFIC_REMOTE_PEER,
            cost_secs: 0,
            created_at_secs: 1_700_000_000,
        };
        let f = encode_piece_content(&meta);
        let expected: Vec<u8> = [
            &[0x00u8, 0x01, 0, 0, 0, 0x40][..],
            &[0, 0, 0, 0x3c],
            &[0, 0, 0, 0],
            &[0; 8],
            &[0, 0, 0, 0, 0, 0, 0, 5],
            &[0, 0, 0, 0x0f],
            b"crc32:907060870",
            &[0, 0, 0, 0],
            &[1],
            &[0; 8],
            &[0, 0, 0, 0, 0x65, 0x53, 0xf1, 0x00],
        ]
        .concat();
        assert_eq!(&f[1..], &expected[1..]);
        assert_eq!(decode_piece_content(&f[6..]).unwrap(), meta);
        assert!(decode_piece_content(&f[6..f.len() - 1]).is_err());
        let mut longer = f[6..].to_vec();
        longer.push(0);
        assert!(decode_piece_content(&longer).is_err());
    }

    #[test]
    fn error_frame_matches_worked_example() {
        let f = encode_error(ERR_NOT_FOUND, "piece x not found");
        assert_eq!(&f[1..7], &[0xff, 0, 0, 0, 0x12, 0x02]);
        assert_eq!(decode_error(&f[6..]).unwrap(), (ERR_NOT_FOUND, "piece x not found".to_string()));
        assert!(decode_error(&[]).is_err());
    }

    #[test]
    fn classify_rejects_oversized_and_unknown() {
        let h = |tag, length| Header { id: 0, tag, length };
        assert_eq!(classify_request(&h(0, 68)), RequestKind::DownloadPiece);
        assert!(matches!(classify_request(&h(0, 69)), RequestKind::Reject(ERR_INVALID_ARGUMENT, _)));
        assert!(matches!(classify_request(&h(0, u32::MAX)), RequestKind::Reject(..)));
        assert!(matches!(classify_request(&h(1, 68)), RequestKind::Reject(..)));
        assert!(matches!(classify_request(&h(2, 68)), RequestKind::Reject(..)));
        assert_eq!(classify_request(&h(254, 0)), RequestKind::Close);
    }
}

#[cfg(test)]
mod fuzz;
