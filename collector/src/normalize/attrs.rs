//! Typed attribute access that tolerates how real SDKs encode values: numbers sent as strings,
//! JSON documents sent as strings, arrays sent as JSON text, indexed keys (`prefix.N.field`).

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attrs(pub BTreeMap<String, Value>);

impl Attrs {
    pub fn new(map: BTreeMap<String, Value>) -> Self {
        Attrs(map)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.0.range(prefix.to_string()..).next().is_some_and(|(k, _)| k.starts_with(prefix))
    }

    /// Entries whose key starts with `prefix`, with the prefix removed.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        self.0.range(prefix.to_string()..).take_while(move |(k, _)| k.starts_with(prefix)).map(move |(k, v)| (&k[prefix.len()..], v))
    }

    /// A non-empty string; numbers and booleans are rendered.
    pub fn string(&self, key: &str) -> Option<String> {
        match self.get(key)? {
            Value::String(s) if !s.is_empty() && s != "None" => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub fn u64(&self, key: &str) -> Option<u64> {
        number(self.get(key)?).and_then(|f| (f >= 0.0).then_some(f as u64))
    }

    pub fn i64(&self, key: &str) -> Option<i64> {
        number(self.get(key)?).map(|f| f as i64)
    }

    pub fn f64(&self, key: &str) -> Option<f64> {
        number(self.get(key)?)
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// A list of strings from an array, a JSON-array string, or a single string.
    pub fn strings(&self, key: &str) -> Option<Vec<String>> {
        let items: Vec<String> = match self.json(key)? {
            Value::Array(items) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            Value::String(s) if !s.is_empty() => vec![s],
            _ => return None,
        };
        (!items.is_empty()).then_some(items)
    }

    /// A structured value: as sent, or parsed when it was sent as a JSON string (within
    /// [`MAX_JSON_NODES`]).
    pub fn json(&self, key: &str) -> Option<Value> {
        match self.get(key)? {
            Value::String(s) => {
                let t = s.trim_start();
                if t.starts_with('[') || t.starts_with('{') {
                    parse_bounded(s).or_else(|| Some(Value::String(s.clone())))
                } else {
                    Some(Value::String(s.clone()))
                }
            }
            other => Some(other.clone()),
        }
    }

    /// Groups indexed keys `prefix.N.rest` into `N → {rest → value}`, ordered by N.
    pub fn indexed(&self, prefix: &str) -> BTreeMap<usize, Attrs> {
        let mut out: BTreeMap<usize, Attrs> = BTreeMap::new();
        let dotted = format!("{prefix}.");
        for (rest, value) in self.with_prefix(&dotted) {
            let Some((index, field)) = rest.split_once('.') else { continue };
            let Ok(index) = index.parse::<usize>() else { continue };
            out.entry(index).or_default().0.insert(field.to_string(), value.clone());
        }
        out
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(v: Value) -> Attrs {
        Attrs(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn numbers_and_lists_in_every_encoding() {
        let a = attrs(json!({"n": "27", "m": 8, "f": 0.2, "l": ["stop"], "ls": "[\"length\"]", "s": "tool_calls", "none": "None"}));
        assert_eq!(a.u64("n"), Some(27));
        assert_eq!(a.u64("m"), Some(8));
        assert_eq!(a.f64("f"), Some(0.2));
        assert_eq!(a.strings("l"), Some(vec!["stop".to_string()]));
        assert_eq!(a.strings("ls"), Some(vec!["length".to_string()]));
        assert_eq!(a.strings("s"), Some(vec!["tool_calls".to_string()]));
        assert_eq!(a.string("none"), None, "Traceloop writes the literal string None");
    }

    #[test]
    fn indexed_keys_group_by_position() {
        let a = attrs(json!({"p.0.role": "system", "p.1.role": "user", "p.10.role": "assistant", "p.1.content": "hi", "px.0.role": "x"}));
        let groups = a.indexed("p");
        assert_eq!(groups.keys().copied().collect::<Vec<_>>(), vec![0, 1, 10]);
        assert_eq!(groups[&1].string("content").as_deref(), Some("hi"));
    }
}

/// Most containers and elements a JSON string attribute may have to be parsed. Parsed JSON
/// costs far more than its text — an array of 3 million `{}` is 9 MB of text and over 1 GB of
/// values — so past this, the attribute stays the string it was sent as (kept raw, not
/// interpreted) and the collector's memory stays bounded by the text.
pub const MAX_JSON_NODES: usize = 200_000;

/// `s` parsed as JSON, unless it is not JSON or has more than [`MAX_JSON_NODES`] nodes.
pub fn parse_bounded(s: &str) -> Option<Value> {
    let nodes = s.bytes().filter(|b| matches!(b, b'{' | b'[' | b',' | b':')).count();
    if nodes > MAX_JSON_NODES {
        tracing::warn!(bytes = s.len(), nodes, limit = MAX_JSON_NODES, "a JSON attribute too large to interpret is kept as text");
        crate::metrics::count(crate::metrics::Event::JsonUninterpreted);
        return None;
    }
    serde_json::from_str(s).ok()
}

#[cfg(test)]
mod bounded_tests {
    #[test]
    fn a_json_attribute_of_millions_of_nodes_stays_text() {
        let huge = format!("[{}]", vec!["{}"; 300_000].join(","));
        assert!(super::parse_bounded(&huge).is_none());
        assert!(super::parse_bounded(r#"[{"role":"user"}]"#).is_some());
    }
}
