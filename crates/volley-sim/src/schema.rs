//! Generates a JSON instance that validates against a JSON Schema (the subset that structured
//! outputs use: `type`, `properties`, `required`, `enum`, `const`, `items`, `prefixItems`,
//! `anyOf`/`oneOf`/`allOf`, local `$ref`s into `$defs`/`definitions`, length, size and range
//! bounds, common string `format`s).
//!
//! Objects get every declared property (plus any required one that is not declared); enums give
//! their first value; arrays one item (or `minItems`); strings a deterministic word derived from
//! the seed and the property path.

use serde_json::{Map, Number, Value};

use crate::answer::WORDS;
use crate::hash::{StableHasher, mix2};

/// Below this depth optional properties and optional array items are left out, so recursive
/// schemas terminate.
const OPTIONAL_DEPTH: u32 = 8;
/// Hard stop for pathological (required-recursive) schemas.
const MAX_DEPTH: u32 = 32;

/// An instance of `schema`; `seed` varies the free-form strings.
pub fn instance(schema: &Value, seed: u64) -> Value {
    Gen { root: schema, seed }.value(schema, seed, 0, 0)
}

struct Gen<'a> {
    root: &'a Value,
    seed: u64,
}

impl Gen<'_> {
    /// `path` is a hash of the location in the instance, `variant` picks among equally valid
    /// values (used for array items, so `uniqueItems` holds).
    fn value(&self, schema: &Value, path: u64, variant: usize, depth: u32) -> Value {
        if depth > MAX_DEPTH {
            return Value::Null;
        }
        let s = match schema {
            Value::Object(s) => s,
            Value::Bool(false) => return Value::Null,
            _ => return Value::String(self.word(path, variant)),
        };
        if let Some(target) = s.get("$ref").and_then(Value::as_str) {
            return match self.resolve(target) {
                Some(resolved) => self.value(resolved, path, variant, depth + 1),
                None => Value::Null,
            };
        }
        if let Some(c) = s.get("const") {
            return c.clone();
        }
        if let Some(options) = s.get("enum").and_then(Value::as_array)
            && !options.is_empty()
        {
            return options[variant % options.len()].clone();
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(alts) = s.get(key).and_then(Value::as_array)
                && !alts.is_empty()
            {
                let pick = alts.iter().find(|a| !is_null_only(a)).unwrap_or(&alts[0]);
                return self.value(pick, path, variant, depth + 1);
            }
        }
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            let merged = self.merge_all_of(s, all);
            return self.value(&merged, path, variant, depth + 1);
        }
        match self.type_of(s) {
            "object" => self.object(s, path, variant, depth),
            "array" => self.array(s, path, depth),
            "integer" => integer(s, variant),
            "number" => number(s, variant),
            "boolean" => Value::Bool(true),
            "null" => Value::Null,
            _ => Value::String(self.string(s, path, variant)),
        }
    }

    fn resolve(&self, target: &str) -> Option<&Value> {
        let pointer = target.strip_prefix('#')?;
        if pointer.is_empty() {
            return Some(self.root);
        }
        self.root.pointer(pointer)
    }

    /// `allOf` merged into one schema: properties and required lists united, other keys from
    /// the last subschema that has them (after resolving `$ref`s one level).
    fn merge_all_of(&self, outer: &Map<String, Value>, all: &[Value]) -> Value {
        let mut merged = outer.clone();
        merged.remove("allOf");
        let mut props = merged
            .remove("properties")
            .and_then(|p| p.as_object().cloned())
            .unwrap_or_default();
        let mut required: Vec<Value> = merged
            .remove("required")
            .and_then(|r| r.as_array().cloned())
            .unwrap_or_default();
        for sub in all {
            let sub = match sub.get("$ref").and_then(Value::as_str) {
                Some(t) => self.resolve(t).unwrap_or(sub),
                None => sub,
            };
            let Some(sub) = sub.as_object() else { continue };
            for (k, v) in sub {
                match k.as_str() {
                    "properties" => {
                        if let Some(p) = v.as_object() {
                            props.extend(p.iter().map(|(k, v)| (k.clone(), v.clone())));
                        }
                    }
                    "required" => {
                        if let Some(r) = v.as_array() {
                            required.extend(r.iter().cloned());
                        }
                    }
                    _ => {
                        merged.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        if !props.is_empty() {
            merged.insert("properties".into(), Value::Object(props));
        }
        if !required.is_empty() {
            merged.insert("required".into(), Value::Array(required));
        }
        Value::Object(merged)
    }

    fn type_of<'s>(&self, s: &'s Map<String, Value>) -> &'s str {
        match s.get("type") {
            Some(Value::String(t)) => t,
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .or_else(|| ts.iter().find_map(Value::as_str))
                .unwrap_or("string"),
            _ => {
                if s.contains_key("properties")
                    || s.contains_key("required")
                    || s.contains_key("additionalProperties")
                {
                    "object"
                } else if s.contains_key("items") || s.contains_key("prefixItems") {
                    "array"
                } else if s.contains_key("minimum") || s.contains_key("maximum") {
                    "number"
                } else {
                    "string"
                }
            }
        }
    }

    fn object(&self, s: &Map<String, Value>, path: u64, variant: usize, depth: u32) -> Value {
        let required: Vec<&str> = s
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut out = Map::new();
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            for (name, sub) in props {
                if depth >= OPTIONAL_DEPTH && !required.contains(&name.as_str()) {
                    continue;
                }
                let p = child(path, name);
                out.insert(name.clone(), self.value(sub, p, variant, depth + 1));
            }
        }
        for name in required {
            if !out.contains_key(name) {
                let p = child(path, name);
                let sub = s
                    .get("additionalProperties")
                    .filter(|a| a.is_object())
                    .unwrap_or(&Value::Bool(true));
                out.insert(name.to_owned(), self.value(sub, p, variant, depth + 1));
            }
        }
        Value::Object(out)
    }

    fn array(&self, s: &Map<String, Value>, path: u64, depth: u32) -> Value {
        let min = s.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = s
            .get("maxItems")
            .and_then(Value::as_u64)
            .map_or(usize::MAX, |m| m as usize);
        let prefix = s.get("prefixItems").and_then(Value::as_array);
        let prefix_len = prefix.map_or(0, Vec::len);
        let wanted = if depth >= OPTIONAL_DEPTH { 0 } else { 1 };
        let n = min.max(wanted).max(prefix_len.min(max)).min(max);
        let items = s.get("items");
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let p = mix2(path, i as u64);
            let sub = match prefix.and_then(|pre| pre.get(i)) {
                Some(sub) => sub,
                None => match items {
                    Some(Value::Bool(false)) | None if prefix_len > 0 => break,
                    Some(sub) => sub,
                    None => &Value::Bool(true),
                },
            };
            out.push(self.value(sub, p, i, depth + 1));
        }
        Value::Array(out)
    }

    fn word(&self, path: u64, variant: usize) -> String {
        let h = mix2(self.seed, path);
        let w = WORDS[(h % WORDS.len() as u64) as usize];
        if variant == 0 {
            w.to_owned()
        } else {
            format!("{w} {variant}")
        }
    }

    fn string(&self, s: &Map<String, Value>, path: u64, variant: usize) -> String {
        let v = variant as u64;
        let mut out = match s.get("format").and_then(Value::as_str) {
            Some("date-time") => format!("2024-01-{:02}T00:00:00Z", 1 + v % 28),
            Some("date") => format!("2024-01-{:02}", 1 + v % 28),
            Some("time") => format!("00:00:{:02}", v % 60),
            Some("duration") => format!("PT{}S", v + 1),
            Some("email") => format!("user{v}@example.com"),
            Some("hostname") => format!("host{v}.example.com"),
            Some("ipv4") => format!("192.0.2.{}", 1 + v % 250),
            Some("ipv6") => format!("2001:db8::{}", 1 + v % 250),
            Some("uri" | "url" | "iri") => format!("https://example.com/{v}"),
            Some("uuid") => format!("00000000-0000-4000-8000-{:012x}", v),
            _ => self.word(path, variant),
        };
        let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
        while out.chars().count() < min {
            out.push('x');
        }
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
            let max = max as usize;
            if out.chars().count() > max {
                out = out.chars().take(max).collect();
            }
        }
        out
    }
}

fn child(path: u64, name: &str) -> u64 {
    let mut h = StableHasher::new(path);
    h.str(name);
    h.finish()
}

fn is_null_only(s: &Value) -> bool {
    s.get("type").and_then(Value::as_str) == Some("null")
}

fn integer(s: &Map<String, Value>, variant: usize) -> Value {
    let num = |k: &str| s.get(k).and_then(Value::as_f64);
    let lo = match (num("minimum"), num("exclusiveMinimum")) {
        (Some(a), Some(b)) => Some(a.ceil().max(b.floor() + 1.0)),
        (Some(a), None) => Some(a.ceil()),
        (None, Some(b)) => Some(b.floor() + 1.0),
        (None, None) => None,
    };
    let hi = match (num("maximum"), num("exclusiveMaximum")) {
        (Some(a), Some(b)) => Some(a.floor().min(b.ceil() - 1.0)),
        (Some(a), None) => Some(a.floor()),
        (None, Some(b)) => Some(b.ceil() - 1.0),
        (None, None) => None,
    };
    let mut v = match (lo, hi) {
        (Some(lo), _) => lo,
        (None, Some(hi)) => hi.min(1.0),
        (None, None) => 1.0,
    } + variant as f64;
    if let Some(m) = num("multipleOf").filter(|m| *m > 0.0) {
        v = (v / m).ceil() * m;
    }
    if let Some(hi) = hi {
        v = v.min(hi);
    }
    Value::from(v as i64)
}

fn number(s: &Map<String, Value>, variant: usize) -> Value {
    let num = |k: &str| s.get(k).and_then(Value::as_f64);
    let (lo, lo_ex) = match (num("minimum"), num("exclusiveMinimum")) {
        (_, Some(b)) => (Some(b), true),
        (Some(a), None) => (Some(a), false),
        (None, None) => (None, false),
    };
    let (hi, hi_ex) = match (num("maximum"), num("exclusiveMaximum")) {
        (_, Some(b)) => (Some(b), true),
        (Some(a), None) => (Some(a), false),
        (None, None) => (None, false),
    };
    let v = match (lo, hi) {
        (Some(lo), Some(hi)) if lo_ex || hi_ex => (lo + hi) / 2.0,
        (Some(lo), Some(hi)) => (lo + variant as f64).min(hi),
        (Some(lo), None) => lo + if lo_ex { 1.0 } else { 0.0 } + variant as f64,
        (None, Some(hi)) if hi_ex && hi <= 0.5 => hi - 1.0,
        (None, Some(hi)) => hi.min(0.5),
        (None, None) => 0.5 + variant as f64,
    };
    Number::from_f64(v).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A small validator for the same subset, to check the generator against.
    fn valid(root: &Value, schema: &Value, v: &Value) -> Result<(), String> {
        let s = match schema {
            Value::Bool(true) => return Ok(()),
            Value::Bool(false) => return Err("false schema".into()),
            Value::Object(s) => s,
            _ => return Err("bad schema".into()),
        };
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let target = root.pointer(&r[1..]).ok_or("dangling ref")?;
            return valid(root, target, v);
        }
        if let Some(c) = s.get("const")
            && c != v
        {
            return Err(format!("{v} != const {c}"));
        }
        if let Some(e) = s.get("enum").and_then(Value::as_array)
            && !e.contains(v)
        {
            return Err(format!("{v} not in enum"));
        }
        if let Some(alts) = s.get("anyOf").or(s.get("oneOf")).and_then(Value::as_array)
            && !alts.iter().any(|a| valid(root, a, v).is_ok())
        {
            return Err(format!("{v} matches no alternative"));
        }
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            for a in all {
                valid(root, a, v)?;
            }
        }
        let types: Vec<&str> = match s.get("type") {
            Some(Value::String(t)) => vec![t],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let is = |t: &str| match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        };
        if !types.is_empty() && !types.iter().any(|t| is(t)) {
            return Err(format!("{v} is not {types:?}"));
        }
        if let Some(o) = v.as_object() {
            for r in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if !o.contains_key(r.as_str().unwrap()) {
                    return Err(format!("missing {r}"));
                }
            }
            let props = s.get("properties").and_then(Value::as_object);
            for (k, item) in o {
                match props.and_then(|p| p.get(k)) {
                    Some(sub) => valid(root, sub, item).map_err(|e| format!("{k}: {e}"))?,
                    None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        return Err(format!("extra {k}"));
                    }
                    None => {}
                }
            }
        }
        if let Some(a) = v.as_array() {
            if let Some(min) = s.get("minItems").and_then(Value::as_u64) {
                assert!(a.len() as u64 >= min, "minItems");
            }
            if let Some(max) = s.get("maxItems").and_then(Value::as_u64) {
                assert!(a.len() as u64 <= max, "maxItems");
            }
            if s.get("uniqueItems") == Some(&Value::Bool(true)) {
                for (i, x) in a.iter().enumerate() {
                    assert!(!a[..i].contains(x), "uniqueItems");
                }
            }
            let prefix = s.get("prefixItems").and_then(Value::as_array);
            for (i, item) in a.iter().enumerate() {
                match prefix.and_then(|p| p.get(i)) {
                    Some(sub) => valid(root, sub, item)?,
                    None => {
                        if let Some(items) = s.get("items") {
                            valid(root, items, item)?;
                        }
                    }
                }
            }
        }
        if let Some(x) = v.as_f64() {
            if let Some(m) = s.get("minimum").and_then(Value::as_f64) {
                assert!(x >= m, "minimum");
            }
            if let Some(m) = s.get("maximum").and_then(Value::as_f64) {
                assert!(x <= m, "maximum");
            }
            if let Some(m) = s.get("exclusiveMinimum").and_then(Value::as_f64) {
                assert!(x > m, "exclusiveMinimum");
            }
            if let Some(m) = s.get("exclusiveMaximum").and_then(Value::as_f64) {
                assert!(x < m, "exclusiveMaximum");
            }
        }
        if let Some(t) = v.as_str() {
            let n = t.chars().count() as u64;
            if let Some(m) = s.get("minLength").and_then(Value::as_u64) {
                assert!(n >= m, "minLength");
            }
            if let Some(m) = s.get("maxLength").and_then(Value::as_u64) {
                assert!(n <= m, "maxLength");
            }
        }
        Ok(())
    }

    fn check(schema: Value) -> Value {
        for seed in 0..5 {
            let v = instance(&schema, seed);
            if let Err(e) = valid(&schema, &schema, &v) {
                panic!("instance {v} does not validate against {schema}: {e}");
            }
        }
        instance(&schema, 0)
    }

    #[test]
    fn classification_schema() {
        let v = check(json!({
            "type": "object",
            "properties": {
                "label": {"type": "string", "enum": ["positive", "negative", "neutral"]},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                "reasons": {"type": "array", "items": {"type": "string"}},
                "flagged": {"type": "boolean"},
                "count": {"type": "integer", "minimum": 3},
                "note": {"type": ["string", "null"]}
            },
            "required": ["label", "confidence"],
            "additionalProperties": false
        }));
        assert_eq!(v["label"], "positive");
        assert_eq!(v["count"], 3);
        assert_eq!(v["flagged"], true);
        assert!(v["note"].is_string());
        assert_eq!(v["reasons"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn nested_refs_and_combinators() {
        check(json!({
            "$defs": {
                "person": {"type": "object", "properties": {
                    "name": {"type": "string", "minLength": 12},
                    "email": {"type": "string", "format": "email"},
                    "born": {"type": "string", "format": "date"},
                    "id": {"type": "string", "format": "uuid"}
                }, "required": ["name", "email"], "additionalProperties": false}
            },
            "type": "object",
            "properties": {
                "people": {"type": "array", "items": {"$ref": "#/$defs/person"}, "minItems": 3, "uniqueItems": true},
                "lead": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/person"}]},
                "code": {"type": "string", "maxLength": 2},
                "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 2, "uniqueItems": true},
                "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}], "items": false},
                "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                "step": {"type": "integer", "minimum": 1, "multipleOf": 5},
                "merged": {"allOf": [
                    {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                    {"properties": {"b": {"const": "fixed"}}, "required": ["b"]}
                ]}
            },
            "required": ["people", "merged"]
        }));
    }

    #[test]
    fn recursive_schema_terminates() {
        let v = check(json!({
            "$defs": {"node": {"type": "object", "properties": {
                "value": {"type": "integer"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}
            }, "required": ["value"]}},
            "$ref": "#/$defs/node"
        }));
        assert!(v["children"].is_array());
    }

    #[test]
    fn required_without_properties_and_untyped() {
        let v = check(json!({"required": ["x"], "additionalProperties": {"type": "integer"}}));
        assert_eq!(v["x"], 1);
        assert!(check(json!({})).is_string());
        assert!(check(json!(true)).is_string());
    }

    #[test]
    fn strings_depend_on_seed_and_path_only() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}});
        assert_eq!(instance(&schema, 1), instance(&schema, 1));
        let differs = (0..20).any(|s| instance(&schema, s) != instance(&schema, s + 1));
        assert!(differs);
    }
}
