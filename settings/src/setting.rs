//! How one setting's value is read from text and shown back (`--help` defaults, `Debug`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A type a setting can have.
pub trait Setting: Sized {
    /// The flag may be repeated and the text holds a comma-separated list (labels).
    const REPEATED: bool = false;
    /// Reads the value from text (a flag, a variable, or a TOML value turned into text).
    fn parse_setting(text: &str) -> Result<Self, String>;
    /// The value as a user would write it.
    fn show_setting(&self) -> String;
}

impl Setting for String {
    fn parse_setting(text: &str) -> Result<Self, String> {
        Ok(text.to_string())
    }
    fn show_setting(&self) -> String {
        self.clone()
    }
}

impl Setting for PathBuf {
    fn parse_setting(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err("a path is required here".into());
        }
        Ok(PathBuf::from(text))
    }
    fn show_setting(&self) -> String {
        self.display().to_string()
    }
}

/// An optional path: empty text means none.
impl Setting for Option<PathBuf> {
    fn parse_setting(text: &str) -> Result<Self, String> {
        Ok((!text.trim().is_empty()).then(|| PathBuf::from(text)))
    }
    fn show_setting(&self) -> String {
        self.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }
}

macro_rules! whole_number {
    ($($t:ty),*) => {$(
        impl Setting for $t {
            fn parse_setting(text: &str) -> Result<Self, String> {
                text.trim()
                    .parse()
                    .map_err(|_| format!("`{text}` is not a whole number (0 to {})", <$t>::MAX))
            }
            fn show_setting(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
whole_number!(u16, u32, u64);

/// An optional text: empty means none.
impl Setting for Option<String> {
    fn parse_setting(text: &str) -> Result<Self, String> {
        Ok((!text.trim().is_empty()).then(|| text.trim().to_string()))
    }
    fn show_setting(&self) -> String {
        self.clone().unwrap_or_default()
    }
}

/// A socket address, `127.0.0.1:9090` or `[::1]:9090`.
impl Setting for std::net::SocketAddr {
    fn parse_setting(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("`{text}` is not an address like 127.0.0.1:9090"))
    }
    fn show_setting(&self) -> String {
        self.to_string()
    }
}

/// An optional socket address: empty means none (the feature is off).
impl Setting for Option<std::net::SocketAddr> {
    fn parse_setting(text: &str) -> Result<Self, String> {
        match text.trim() {
            "" => Ok(None),
            t => std::net::SocketAddr::parse_setting(t).map(Some),
        }
    }
    fn show_setting(&self) -> String {
        self.map(|a| a.to_string()).unwrap_or_default()
    }
}

/// `usize` settings are sizes in bytes (name them `..._bytes`): `65536`, `64KiB`, `4MiB`, `1GiB`.
/// Use `u32`/`u64` for counts.
impl Setting for usize {
    fn parse_setting(text: &str) -> Result<Self, String> {
        parse_bytes(text)
    }
    fn show_setting(&self) -> String {
        show_bytes(*self)
    }
}

/// Parses a size: a whole number of bytes, optionally with `KiB`, `MiB` or `GiB`.
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let factor: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}`; write bytes, or use KiB, MiB or GiB (e.g. 4MiB)"
            ));
        }
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("`{text}` is not a size (e.g. 65536, 64KiB, 4MiB)"))
}

/// Shows a size in the largest unit that divides it.
pub fn show_bytes(n: usize) -> String {
    for (unit, factor) in [("GiB", 1usize << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= factor && n.is_multiple_of(factor) {
            return format!("{}{unit}", n / factor);
        }
    }
    n.to_string()
}

impl Setting for bool {
    fn parse_setting(text: &str) -> Result<Self, String> {
        match text.trim() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(format!("`{text}` is not true or false")),
        }
    }
    fn show_setting(&self) -> String {
        self.to_string()
    }
}

/// Durations are written like `500ms`, `15s`, `1h30m`.
impl Setting for Duration {
    fn parse_setting(text: &str) -> Result<Self, String> {
        humantime::parse_duration(text.trim())
            .map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. 500ms, 15s, 2m"))
    }
    fn show_setting(&self) -> String {
        humantime::format_duration(*self).to_string()
    }
}

/// Labels: `key=value` pairs, comma-separated (`os=linux,queue=deploy`); a TOML table works too.
impl Setting for BTreeMap<String, String> {
    const REPEATED: bool = true;
    fn parse_setting(text: &str) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    map.insert(k.trim().to_string(), v.trim().to_string());
                }
                _ => return Err(format!("`{pair}` is not KEY=VALUE")),
            }
        }
        Ok(map)
    }
    fn show_setting(&self) -> String {
        self.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_and_show_with_units() {
        assert_eq!(parse_bytes("4MiB"), Ok(4 << 20));
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert!(parse_bytes("4MB").is_err_and(|e| e.contains("KiB, MiB or GiB")));
        assert_eq!(show_bytes(64 << 10), "64KiB");
        assert_eq!(show_bytes(1000), "1000");
    }

    #[test]
    fn labels_read_pairs() {
        let labels = BTreeMap::<String, String>::parse_setting("os=linux, queue=deploy");
        assert_eq!(
            labels.map(|l| l.show_setting()),
            Ok("os=linux,queue=deploy".to_string())
        );
        assert!(BTreeMap::<String, String>::parse_setting("os").is_err());
    }
}
