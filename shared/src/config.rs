//! Reading a TOML configuration so that one run reports every bad key,
//! each with its path and, where the file has it, its line.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// How a program writes its log lines (`log_format` in either config; the
/// `--log-format` flag overrides it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// A key that could not be read: where it is and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Table names then the key, e.g. `["email", "transport"]`.
    pub path: Vec<String>,
    pub message: String,
}

impl Problem {
    /// `line 12: email.transport: unknown variant …` (the line when `text`
    /// has the key).
    pub fn describe(&self, text: Option<&str>) -> String {
        let path = if self.path.is_empty() { "config".to_string() } else { self.path.join(".") };
        match text.and_then(|t| line_of(t, &self.path)) {
            Some(line) => format!("line {line}: {path}: {}", self.message),
            None => format!("{path}: {}", self.message),
        }
    }
}

/// `value` read as a `T`, and every key that could not be read (wrong type,
/// unknown value, unknown key): a bad key is reported and put back to its
/// default (or removed), and reading goes on, so one run reports them all.
pub fn read_reporting_all<T>(mut value: toml::Value) -> (T, Vec<Problem>)
where
    T: DeserializeOwned + Serialize + Default,
{
    let defaults = toml::Value::try_from(T::default()).expect("defaults serialise");
    let mut problems = Vec::new();
    for _ in 0..64 {
        match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(config) => return (config, problems),
            Err(e) => {
                let mut path: Vec<String> = e.path().iter().map(|s| s.to_string()).collect();
                // toml appends "in `path`" on a line of its own: the path leads already.
                let message = e.inner().to_string().lines().next().unwrap_or_default().to_string();
                // Name an unknown key itself, not only its table.
                if let Some(key) = message.strip_prefix("unknown field `").and_then(|m| m.split('`').next()) {
                    if path.last().map(String::as_str) != Some(key) {
                        path.push(key.to_string());
                    }
                }
                let fixed = reset_to_default(&mut value, &defaults, &path);
                problems.push(Problem { path, message });
                if !fixed {
                    break;
                }
            }
        }
    }
    (T::default(), problems)
}

/// Put the key at `path` back to its default (or remove it if it has
/// none); whether anything changed.
fn reset_to_default(value: &mut toml::Value, defaults: &toml::Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else { return false };
    let mut cur = value;
    let mut def = Some(defaults);
    for p in parents {
        let Some(next) = cur.get_mut(p.as_str()) else { return false };
        cur = next;
        def = def.and_then(|d| d.get(p.as_str()));
    }
    let Some(table) = cur.as_table_mut() else { return false };
    match def.and_then(|d| d.get(last.as_str())) {
        Some(d) => table.insert(last.clone(), d.clone()).is_some_and(|old| old != *d),
        None => table.remove(last.as_str()).is_some(),
    }
}

/// The 1-based line of `path` in TOML `text`: the line setting the key in
/// its table (`[a.b]` then `c = …`, or `c.d = …` dotted), or the table's
/// header for a table. Array elements (`listen[0]`) point at their key.
pub fn line_of(text: &str, path: &[String]) -> Option<usize> {
    let path: Vec<&str> = path.iter().map(|p| p.split('[').next().unwrap_or(p)).filter(|p| !p.is_empty()).collect();
    let (key, table) = path.split_last()?;
    let mut current: Vec<String> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            let name = line.trim_matches(|c| c == '[' || c == ']').trim();
            current = name.split('.').map(|s| s.trim().trim_matches('"').to_string()).collect();
            if current == path {
                return Some(i + 1);
            }
            continue;
        }
        let Some((lhs, _)) = line.split_once('=') else { continue };
        let lhs: Vec<String> = lhs.split('.').map(|s| s.trim().trim_matches('"').to_string()).collect();
        let mut full = current.clone();
        full.extend(lhs);
        if full.len() == table.len() + 1 && full[..table.len()] == *table && full[table.len()] == *key {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Demo {
        port: u16,
        inner: Inner,
    }

    #[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Inner {
        name: String,
    }

    #[test]
    fn every_bad_key_is_reported_with_its_line() {
        let text = "port = \"eighty\"\ncolour = 1\n\n[inner]\nname = 5\nsize = 2\n";
        let (_, problems) = read_reporting_all::<Demo>(toml::from_str(text).unwrap());
        let lines: Vec<String> = problems.iter().map(|p| p.describe(Some(text))).collect();
        for want in ["line 1: port:", "line 2: colour:", "line 5: inner.name:", "line 6: inner.size:"] {
            assert!(lines.iter().any(|l| l.starts_with(want)), "{want} missing from {lines:?}");
        }
    }

    #[test]
    fn lines_of_dotted_keys_tables_and_array_elements() {
        let text = "listen = [\"x\"]\nsync.token = \"t\"\n[stores.public]\nscheme = \"s3\"\n";
        assert_eq!(line_of(text, &["listen[0]".into()]), Some(1));
        assert_eq!(line_of(text, &["sync".into(), "token".into()]), Some(2));
        assert_eq!(line_of(text, &["stores".into(), "public".into()]), Some(3));
        assert_eq!(line_of(text, &["stores".into(), "public".into(), "scheme".into()]), Some(4));
        assert_eq!(line_of(text, &["nowhere".into()]), None);
    }
}
