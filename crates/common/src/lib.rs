//! What every sample app shares: reading settings from the environment and writing one
//! machine-readable log line per event.

use std::fmt::Write as _;

/// Reads `key` from the environment, falling back to `default` when it is unset or empty.
pub fn setting(key: &str, default: &str) -> String {
    match std::env::var(key) {
        Ok(value) if !value.is_empty() => value,
        _ => default.to_string(),
    }
}

/// Formats a logfmt line such as `app=worker event=done words=3`, quoting values with spaces so
/// that log collectors can split the line back into fields. With the `ascii-logs` feature, values
/// have their non-ASCII characters escaped (`\u{e9}`), and values with control characters are
/// written in base64, for collectors that read ASCII only.
pub fn log_line(app: &str, event: &str, fields: &[(&str, String)]) -> String {
    let mut line = format!("app={app} event={event}");
    for (key, value) in fields {
        #[cfg(feature = "ascii-logs")]
        let value = &ascii(value);
        if value.contains(' ') || value.is_empty() {
            let _ = write!(line, " {key}={value:?}");
        } else {
            let _ = write!(line, " {key}={value}");
        }
    }
    line
}

#[cfg(feature = "ascii-logs")]
fn ascii(value: &str) -> String {
    use base64::Engine as _;
    if value.chars().any(char::is_control) {
        return format!("base64:{}", base64::engine::general_purpose::STANDARD.encode(value));
    }
    value.chars().map(|c| if c.is_ascii() { c.to_string() } else { c.escape_unicode().to_string() }).collect()
}

/// The platform the binary was compiled for, as an OCI platform string.
pub fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("{}/{arch}", std::env::consts::OS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_line_quotes_values_with_spaces() {
        let line = log_line("api", "start", &[("addr", "0.0.0.0:80".into()), ("msg", "a b".into())]);
        assert_eq!(line, r#"app=api event=start addr=0.0.0.0:80 msg="a b""#);
    }

    #[test]
    fn non_ascii_values_are_escaped_with_ascii_logs() {
        let line = log_line("api", "greet", &[("name", "Zoë".into())]);
        let expected = if cfg!(feature = "ascii-logs") { r"app=api event=greet name=Zo\u{eb}" } else { "app=api event=greet name=Zoë" };
        assert_eq!(line, expected);
        let line = log_line("api", "greet", &[("name", "a\tb".into())]);
        let expected = if cfg!(feature = "ascii-logs") { "app=api event=greet name=base64:YQli" } else { "app=api event=greet name=a\tb" };
        assert_eq!(line, expected);
    }

    #[test]
    fn setting_falls_back_on_unset() {
        assert_eq!(setting("COMMON_TEST_SURELY_UNSET", "x"), "x");
    }
}
