//! One error type for the whole core. Each variant maps to a stable string code that the
//! binding hands to JavaScript, so TS code branches on codes, never on message text.

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Io,
    InvalidArgument,
    NotFound,
    Unsupported,
    DigestMismatch,
    PieceNotFinished,
    Aborted,
    Timeout,
    Protocol,
    Auth,
    Codec,
    /// The origin answered with a status other than the piece (details in `CoreError::backend`).
    Backend,
    /// A parent refused a piece because all its upload slots are taken; ask another parent.
    Busy,
    /// The filesystem holding our files is full (ENOSPC) or our quota is spent (EDQUOT): the
    /// daemon makes room by evicting cached tasks and tries once more.
    NoSpace,
    /// The storage device failed an I/O on our files (EIO): the bytes of that write are lost,
    /// so the piece is fetched again; the daemon gives up on a task after a few of these.
    DeviceIo,
    /// The origin no longer serves the version of the content the task is pinned to: it
    /// answered 412 to the pin's precondition, or its answer carries another ETag,
    /// Last-Modified or length (the answer is in `CoreError::backend`). Retrying cannot help;
    /// mixing the two versions' bytes would be worse.
    OriginChanged,
    /// A parent went silent: no reply within the first-byte deadline, or no byte of the piece
    /// within the idle-read deadline once it started sending (a stopped or hung process whose
    /// kernel still holds the connection open). Another holder should get the piece.
    Stalled,
}

impl ErrorCode {
    /// The stable code string seen by JavaScript (`err.code`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Io => "DF_IO",
            ErrorCode::InvalidArgument => "DF_INVALID_ARGUMENT",
            ErrorCode::NotFound => "DF_NOT_FOUND",
            ErrorCode::Unsupported => "DF_UNSUPPORTED",
            ErrorCode::DigestMismatch => "DF_DIGEST_MISMATCH",
            ErrorCode::PieceNotFinished => "DF_PIECE_NOT_FINISHED",
            ErrorCode::Aborted => "DF_ABORTED",
            ErrorCode::Timeout => "DF_TIMEOUT",
            ErrorCode::Protocol => "DF_PROTOCOL",
            ErrorCode::Auth => "DF_AUTH",
            ErrorCode::Codec => "DF_CODEC",
            ErrorCode::Backend => "DF_BACKEND",
            ErrorCode::Busy => "DF_BUSY",
            ErrorCode::Stalled => "DF_STALLED",
            ErrorCode::OriginChanged => "DF_ORIGIN_CHANGED",
            ErrorCode::NoSpace => "DF_NO_SPACE",
            ErrorCode::DeviceIo => "DF_DEVICE_IO",
        }
    }

    /// The code for an OS error: ENOSPC/EDQUOT and EIO get codes of their own, because the
    /// daemon answers them differently from other I/O failures (make room; fetch again).
    pub fn of_io(err: &std::io::Error) -> Self {
        match err.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => return ErrorCode::NoSpace,
            Some(libc::EIO) => return ErrorCode::DeviceIo,
            _ => {}
        }
        match err.kind() {
            std::io::ErrorKind::NotFound => ErrorCode::NotFound,
            std::io::ErrorKind::InvalidInput => ErrorCode::InvalidArgument,
            std::io::ErrorKind::Unsupported => ErrorCode::Unsupported,
            std::io::ErrorKind::TimedOut => ErrorCode::Timeout,
            _ => ErrorCode::Io,
        }
    }
}

#[derive(Debug, Error)]
#[error("{message}")]
pub struct CoreError {
    pub code: ErrorCode,
    pub message: String,
    /// What an origin answered instead of the requested bytes (set with `ErrorCode::Backend`),
    /// so the daemon can pass the status and headers on to the scheduler and the user.
    pub backend: Option<Box<BackendAnswer>>,
}

/// Status line and headers of an origin response that was not the requested content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendAnswer {
    pub status: u16,
    /// Header names lower-cased, repeated headers joined with ", " (as the JS side sees them).
    pub headers: Vec<(String, String)>,
}

impl CoreError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), backend: None }
    }

    pub fn backend(message: impl Into<String>, answer: BackendAnswer) -> Self {
        Self { code: ErrorCode::Backend, message: message.into(), backend: Some(Box::new(answer)) }
    }

    /// The origin's content is not the pinned version; `answer` is what it sent instead.
    pub fn origin_changed(message: impl Into<String>, answer: BackendAnswer) -> Self {
        Self { code: ErrorCode::OriginChanged, message: message.into(), backend: Some(Box::new(answer)) }
    }

    pub fn io(context: &str, err: std::io::Error) -> Self {
        Self::new(ErrorCode::of_io(&err), format!("{context}: {err}"))
    }
}

pub type Result<T> = std::result::Result<T, CoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disks_and_failing_devices_have_codes_of_their_own() {
        let io = |errno| CoreError::io("write piece 3", std::io::Error::from_raw_os_error(errno));
        assert_eq!(io(libc::ENOSPC).code, ErrorCode::NoSpace);
        assert_eq!(io(libc::EDQUOT).code, ErrorCode::NoSpace);
        assert_eq!(io(libc::EIO).code, ErrorCode::DeviceIo);
        assert_eq!(io(libc::ECONNRESET).code, ErrorCode::Io);
        assert_eq!(io(libc::ENOENT).code, ErrorCode::NotFound);
        assert_eq!(ErrorCode::NoSpace.as_str(), "DF_NO_SPACE");
        assert_eq!(ErrorCode::DeviceIo.as_str(), "DF_DEVICE_IO");
        assert!(io(libc::ENOSPC).message.starts_with("write piece 3: "));
    }
}
