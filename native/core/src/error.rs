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

    pub fn io(context: &str, err: std::io::Error) -> Self {
        let code = match err.kind() {
            std::io::ErrorKind::NotFound => ErrorCode::NotFound,
            std::io::ErrorKind::InvalidInput => ErrorCode::InvalidArgument,
            std::io::ErrorKind::Unsupported => ErrorCode::Unsupported,
            std::io::ErrorKind::TimedOut => ErrorCode::Timeout,
            _ => ErrorCode::Io,
        };
        Self::new(code, format!("{context}: {err}"))
    }
}

pub type Result<T> = std::result::Result<T, CoreError>;
