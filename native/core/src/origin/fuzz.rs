//! Fuzz targets for the origin client's response parsing (issue 21): an origin, or anyone on
//! the path to it, controls every byte of the answer. Random bytes and mutations of plausible
//! response heads go through the same pure steps a connection uses (`parse_head`, `framing`,
//! `accept_answer`, `parse_content_range`, `parse_chunk_size`); they must never panic, fail
//! only with the codes the daemon branches on, and report lengths the input really carries.

use super::*;
use crate::testutil::{any_bytes, fuzz, mutate, mutations, reached};
use proptest::prelude::*;
use std::cell::Cell;

/// Placeholders in a generated head for the request's own range and length, so answers that
/// match the request (the accepting branches) are reached, not only refusals.
const RANGE: &str = "@range";
const LENGTH: &str = "@length";

/// A header line's value: numbers, ranges, codings and junk, with stray spaces.
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(RANGE.to_string()),
        3 => Just(LENGTH.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => (0u64..1 << 40, 0u64..1 << 40, prop::option::of(0u64..1 << 41))
            .prop_map(|(a, b, t)| format!("bytes {a}-{b}/{}", t.map_or("*".into(), |t| t.to_string()))),
        1 => Just("chunked".to_string()),
        1 => Just("gzip, chunked".to_string()),
        1 => Just("close".to_string()),
        1 => Just("keep-alive".to_string()),
        1 => "[ -~]{0,24}",
    ]
}

fn header_name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "Content-Length",
        "content-length",
        "Transfer-Encoding",
        "Content-Range",
        "Connection",
        "ETag",
        "Last-Modified",
        "X-Other",
    ])
}

/// A response head that httparse mostly accepts, then mutated.
fn response_head() -> impl Strategy<Value = Vec<u8>> {
    let status =
        prop_oneof![3 => Just(206u16), 2 => Just(200), 1 => Just(412), 1 => Just(100), 1 => Just(404), 1 => 0u16..1000];
    (
        prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTP/1.1"]),
        status,
        proptest::collection::vec((header_name(), header_value()), 0..5),
        mutations(),
    )
        .prop_map(|(version, status, headers, (edits, cut, tail))| {
            let mut head = format!("{version} {status} Reason\r\n");
            for (n, v) in headers {
                head.push_str(&format!("{n}: {v}\r\n"));
            }
            head.push_str("\r\n");
            mutate(head.into_bytes(), &edits, cut, &tail)
        })
}

/// The request side of `accept_answer`: a non-empty range inside the content (what
/// `build_request` and the binding guarantee), and a pin.
fn request_range() -> impl Strategy<Value = (u64, u64, u64, Pin)> {
    let pin = (
        prop::option::of(Just("\"v1\"".to_string())),
        prop::option::of(Just("Mon, 07 Dec 2026 05:00:00 GMT".to_string())),
    )
        .prop_map(|(etag, last_modified)| Pin { etag, last_modified });
    // Half the time the piece is the whole content (where a 200 is acceptable).
    (1u64..1 << 40, 0u64..1 << 40, 0u64..1 << 40, any::<bool>(), pin).prop_map(|(length, offset, extra, whole, pin)| {
        if whole {
            (0, length, length, pin)
        } else {
            (offset, length, offset + length + extra, pin)
        }
    })
}

#[test]
fn fuzz_response_head() {
    let input = (prop_oneof![1 => any_bytes(256), 3 => response_head()], request_range()).prop_map(
        |(head, (offset, length, content_length, pin))| {
            let range = format!("bytes {offset}-{}/{content_length}", offset + length - 1);
            let head = String::from_utf8_lossy(&head).replace(RANGE, &range).replace(LENGTH, &length.to_string());
            (head.into_bytes(), (offset, length, content_length, pin))
        },
    );
    let (heads, accepted) = (Cell::new(0u64), Cell::new(0u64));
    fuzz("origin parse_head+framing+accept_answer", input, |(buf, (offset, length, content_length, pin))| {
        let (n, head) = match parse_head(&buf) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(()),
            Err(e) => {
                prop_assert_eq!(e.code, ErrorCode::Protocol);
                return Ok(());
            }
        };
        // The head ends inside the input, and those bytes alone parse to the same head.
        heads.set(heads.get() + 1);
        prop_assert!(n > 0 && n <= buf.len());
        prop_assert!(head.headers.len() <= MAX_RESPONSE_HEADERS);
        let again = parse_head(&buf[..n])?.expect("the same bytes are a complete head");
        prop_assert_eq!(again.0, n);
        prop_assert_eq!(&again.1.headers, &head.headers);
        match framing(&head) {
            Ok(Framing::Length(len)) => {
                prop_assert!(head.values("content-length").all(|v| v.trim().parse::<u64>() == Ok(len)));
                prop_assert!(head.values("transfer-encoding").all(|v| v.split(',').all(|t| t.trim().is_empty())));
            }
            Ok(Framing::Chunked) => prop_assert!(head.has_token("transfer-encoding", "chunked")),
            Ok(Framing::Close) => prop_assert!(head.first("content-length").is_none()),
            Err(e) => prop_assert!(matches!(e.code, ErrorCode::Protocol | ErrorCode::Unsupported), "{e:?}"),
        }
        match accept_answer(&head, &pin, offset, length, content_length) {
            Ok(framing) => {
                accepted.set(accepted.get() + 1);
                prop_assert!(head.status == 206 || (head.status == 200 && offset == 0 && length == content_length));
                if let Framing::Length(len) = framing {
                    prop_assert_eq!(len, length);
                }
                if head.status == 206 {
                    let (a, b, _) = parse_content_range(head.first("content-range").unwrap_or_default())
                        .expect("an accepted 206 has a Content-Range");
                    prop_assert_eq!((a, b), (offset, offset + length - 1));
                }
            }
            Err(e) => prop_assert!(
                matches!(
                    e.code,
                    ErrorCode::Protocol | ErrorCode::Unsupported | ErrorCode::Backend | ErrorCode::OriginChanged
                ),
                "{e:?}"
            ),
        }
        Ok(())
    });
    reached("origin parse_head: complete heads", heads.get());
    reached("origin accept_answer: accepted answers", accepted.get());
}

#[test]
fn fuzz_parse_content_range() {
    let structured = (any::<u64>(), any::<u64>(), prop::option::of(any::<u64>()), mutations()).prop_map(
        |(a, b, t, (edits, cut, tail))| {
            let text = format!("bytes {a}-{b}/{}", t.map_or("*".into(), |t| t.to_string()));
            String::from_utf8_lossy(&mutate(text.into_bytes(), &edits, cut, &tail)).into_owned()
        },
    );
    fuzz("origin parse_content_range", prop_oneof![".{0,48}", structured], |text| {
        if let Some((a, b, total)) = parse_content_range(&text) {
            // Every number was written out in the header (no defaults, no wrapped overflow).
            for n in [Some(a), Some(b), total].into_iter().flatten() {
                prop_assert!(text.contains(&n.to_string()), "{n} is not in {text:?}");
            }
            let canonical = format!("bytes {a}-{b}/{}", total.map_or("*".into(), |t| t.to_string()));
            prop_assert_eq!(parse_content_range(&canonical), Some((a, b, total)));
        }
        Ok(())
    });
}

#[test]
fn fuzz_parse_chunk_size() {
    let structured = (any::<u64>(), "(;[ -~]{0,12})?", mutations())
        .prop_map(|(n, ext, (edits, cut, tail))| mutate(format!("{n:x}{ext}").into_bytes(), &edits, cut, &tail));
    fuzz("origin parse_chunk_size", prop_oneof![any_bytes(32), structured], |line| match parse_chunk_size(&line) {
        Ok(size) => {
            // At most 15 hex digits: a size the u64 arithmetic of the body reader cannot overflow.
            prop_assert!(size < 1 << 60);
            prop_assert_eq!(parse_chunk_size(format!("{size:x}").as_bytes())?, size);
            Ok(())
        }
        Err(e) => {
            prop_assert_eq!(e.code, ErrorCode::Protocol);
            Ok(())
        }
    });
}
