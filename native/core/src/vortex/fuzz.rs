//! Fuzz targets for the vortex decoders (issue 21): a remote peer controls every byte they
//! see. Each target feeds random bytes and mutations of valid frames; the decoders must never
//! panic, and whatever they accept must re-encode to the same bytes (so nothing is accepted
//! by being misread) with every length inside the input.

use super::*;
use crate::testutil::{any_bytes, fuzz, mutate, mutations, reached};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::cell::Cell;

/// 64 characters mostly from the wire alphabet, sometimes not (upper case, other bytes).
fn task_id_like() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::collection::vec(prop_oneof![b'0'..=b'9', b'a'..=b'f'], TASK_ID_LEN),
        1 => proptest::collection::vec(prop_oneof![b'0'..=b'9', b'a'..=b'g', b'A'..=b'F'], TASK_ID_LEN),
        1 => proptest::collection::vec(any::<u8>(), TASK_ID_LEN),
    ]
}

fn wire_task_id() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof![b'0'..=b'9', b'a'..=b'f'], TASK_ID_LEN)
        .prop_map(|b| String::from_utf8(b).expect("hex is ASCII"))
}

fn piece_meta() -> impl Strategy<Value = PieceMeta> {
    (any::<u32>(), any::<u64>(), any::<u64>(), ".{0,40}", ".{0,40}", any::<u8>(), any::<u64>(), any::<i64>()).prop_map(
        |(number, offset, length, digest, parent_id, traffic_type, cost_secs, created_at_secs)| PieceMeta {
            number,
            offset,
            length,
            digest,
            parent_id,
            traffic_type,
            cost_secs,
            created_at_secs,
        },
    )
}

/// The value of a DownloadPiece frame: its 74 bytes without the 6-byte header.
fn download_piece_value(task_id: &str, number: u32) -> Vec<u8> {
    encode_download_piece(task_id, number).expect("wire task id")[HEADER_LEN..].to_vec()
}

fn check_download_piece(value: &[u8], accepted: &Cell<u64>) -> std::result::Result<(), TestCaseError> {
    match decode_download_piece(value) {
        Ok((task_id, number)) => {
            accepted.set(accepted.get() + 1);
            prop_assert!(is_wire_task_id(task_id.as_bytes()));
            prop_assert_eq!(download_piece_value(&task_id, number), value.to_vec());
        }
        Err(e) => prop_assert_eq!(e.code, ErrorCode::Protocol),
    }
    Ok(())
}

#[test]
fn fuzz_header_and_classify_request() {
    fuzz("vortex header+classify_request", any::<[u8; HEADER_LEN]>(), |bytes| {
        let h = Header::decode(&bytes);
        prop_assert_eq!(h.encode(), bytes);
        match classify_request(&h) {
            RequestKind::DownloadPiece => {
                prop_assert_eq!(h.tag, TAG_DOWNLOAD_PIECE);
                prop_assert_eq!(h.length as usize, DOWNLOAD_PIECE_LEN);
            }
            RequestKind::Close => prop_assert_eq!(h.tag, TAG_CLOSE),
            RequestKind::Reject(code, message) => {
                prop_assert_eq!(code, ERR_INVALID_ARGUMENT);
                prop_assert!(!message.is_empty());
            }
        }
        Ok(())
    });
}

#[test]
fn fuzz_decode_download_piece() {
    let structured = (task_id_like(), any::<[u8; 4]>(), mutations())
        .prop_map(|(id, num, (edits, cut, tail))| mutate([id, num.to_vec()].concat(), &edits, cut, &tail));
    let accepted = Cell::new(0u64);
    fuzz("vortex decode_download_piece", prop_oneof![any_bytes(96), structured], |value| {
        check_download_piece(&value, &accepted)
    });
    reached("vortex decode_download_piece: accepted values", accepted.get());
}

#[test]
fn fuzz_piece_content_round_trips() {
    fuzz("vortex encode+decode_piece_content", piece_meta(), |meta| {
        let frame = encode_piece_content(&meta);
        let h = Header::decode(frame[..HEADER_LEN].try_into().expect("6 bytes"));
        prop_assert_eq!(h.tag, TAG_PIECE_CONTENT);
        prop_assert_eq!(h.length as usize, frame.len() - HEADER_LEN);
        prop_assert_eq!(decode_piece_content(&frame[HEADER_LEN..])?, meta);
        Ok(())
    });
}

#[test]
fn fuzz_decode_piece_content() {
    let mutated = (piece_meta(), mutations()).prop_map(|(meta, (edits, cut, tail))| {
        mutate(encode_piece_content(&meta)[HEADER_LEN..].to_vec(), &edits, cut, &tail)
    });
    let accepted = Cell::new(0u64);
    fuzz("vortex decode_piece_content", prop_oneof![any_bytes(200), mutated], |value| {
        match decode_piece_content(&value) {
            Ok(meta) => {
                accepted.set(accepted.get() + 1);
                // Accepted bytes are exactly the encoding of what was decoded: no field was
                // read past the value or from another field's bytes.
                prop_assert!(meta.digest.len() + meta.parent_id.len() <= value.len());
                prop_assert_eq!(encode_piece_content(&meta)[HEADER_LEN..].to_vec(), value);
            }
            Err(e) => prop_assert_eq!(e.code, ErrorCode::Protocol),
        }
        Ok(())
    });
    reached("vortex decode_piece_content: accepted values", accepted.get());
}

#[test]
fn fuzz_decode_error() {
    let message = (any::<u8>(), ".{0,64}").prop_map(|(code, m): (u8, String)| [vec![code], m.into_bytes()].concat());
    fuzz("vortex decode_error", prop_oneof![any_bytes(128), message], |value| {
        match decode_error(&value) {
            Ok((code, message)) => {
                prop_assert_eq!(code, value[0]);
                // The message is the rest of the value, invalid UTF-8 replaced, never dropped.
                prop_assert_eq!(message.as_str(), String::from_utf8_lossy(&value[1..]));
                if std::str::from_utf8(&value[1..]).is_ok() {
                    prop_assert_eq!(encode_error(code, &message)[HEADER_LEN..].to_vec(), value);
                }
            }
            Err(e) => {
                prop_assert!(value.is_empty());
                prop_assert_eq!(e.code, ErrorCode::Protocol);
            }
        }
        Ok(())
    });
}

/// One frame of a request stream: mostly well-formed ones, sometimes a stray header or bytes.
fn request_frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => (wire_task_id(), any::<u32>()).prop_map(|(id, n)| encode_download_piece(&id, n).expect("wire id").to_vec()),
        1 => any::<u8>().prop_map(|id| Header { id, tag: TAG_CLOSE, length: 0 }.encode().to_vec()),
        1 => (any::<u8>(), any::<u8>(), 0u32..80).prop_map(|(id, tag, length)| Header { id, tag, length }.encode().to_vec()),
        1 => (task_id_like(), any::<u32>()).prop_map(|(id, n)| {
            let mut f = Header { id: 0, tag: TAG_DOWNLOAD_PIECE, length: DOWNLOAD_PIECE_LEN as u32 }.encode().to_vec();
            f.extend_from_slice(&id);
            f.extend_from_slice(&n.to_be_bytes());
            f
        }),
        1 => any_bytes(16),
    ]
}

#[test]
fn fuzz_parse_requests() {
    let stream = (proptest::collection::vec(request_frame(), 0..5), mutations())
        .prop_map(|(frames, (edits, cut, tail))| mutate(frames.concat(), &edits, cut, &tail));
    let accepted = Cell::new(0u64);
    fuzz("vortex parse_requests", prop_oneof![any_bytes(256), stream], |buf| {
        match parse_requests(&buf) {
            Ok(requests) => {
                accepted.set(accepted.get() + requests.len() as u64);
                // Each request is a whole DownloadPiece frame of the input, in order; the
                // packet id (byte 0 of a header) is the only byte not re-encoded.
                let mut at = 0usize;
                for (task_id, number) in &requests {
                    let frame = encode_download_piece(task_id, *number).expect("accepted ids are wire ids");
                    prop_assert!(at + frame.len() <= buf.len());
                    prop_assert_eq!(&buf[at + 1..at + frame.len()], &frame[1..]);
                    at += frame.len();
                }
                // What follows the last request is nothing or a Close frame.
                if at < buf.len() {
                    prop_assert!(buf.len() - at >= HEADER_LEN);
                    prop_assert_eq!(buf[at + 1], TAG_CLOSE);
                }
            }
            Err((code, message)) => {
                prop_assert_eq!(code, ERR_INVALID_ARGUMENT);
                prop_assert!(!message.is_empty());
            }
        }
        Ok(())
    });
    reached("vortex parse_requests: accepted requests", accepted.get());
}

/// Every truncation of a valid request is rejected, never accepted as a shorter request.
#[test]
fn truncated_requests_are_rejected() {
    let tid = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";
    let valid = encode_download_piece(tid, 3).unwrap();
    for cut in 1..valid.len() {
        assert!(parse_requests(&valid[..cut]).is_err(), "cut at {cut}");
    }
    assert_eq!(parse_requests(&valid).unwrap(), vec![(tid.to_string(), 3)]);
}
