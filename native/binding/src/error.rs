//! The single place where a core error becomes a JS error.

use damselfly_core::{BackendAnswer, CoreError};

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

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `{"statusCode":404,"headers":{"name":"value",…}}` for an origin's answer.
pub fn answer_json(a: &BackendAnswer) -> String {
    let mut out = format!("{{\"statusCode\":{},\"headers\":{{", a.status);
    for (i, (k, v)) in a.headers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(&mut out, k);
        out.push(':');
        json_string(&mut out, v);
    }
    out.push_str("}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_json_escapes_quotes_backslashes_and_controls() {
        let a = BackendAnswer {
            status: 404,
            headers: vec![("x-a".into(), "q\"b\\c\u{1}d".into()), ("x-b".into(), "é".into())],
        };
        assert_eq!(answer_json(&a), r#"{"statusCode":404,"headers":{"x-a":"q\"b\\c\u0001d","x-b":"é"}}"#);
        let empty = BackendAnswer { status: 500, headers: vec![] };
        assert_eq!(answer_json(&empty), r#"{"statusCode":500,"headers":{}}"#);
    }
}
