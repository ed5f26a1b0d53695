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
        }
    }
}

#[derive(Debug, Error)]
#[error("{message}")]
pub struct CoreError {
    pub code: ErrorCode,
    pub message: String,
}

impl CoreError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
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
