//! The single place where a core error becomes a JS error.

use damselfly_core::CoreError;

/// Status carried by JS errors: napi-rs puts it in `err.code`.
pub struct Code(pub &'static str);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.0
    }
}

pub type Result<T> = napi::Result<T, Code>;

pub fn to_js(e: CoreError) -> napi::Error<Code> {
    napi::Error::new(Code(e.code.as_str()), e.message)
}
