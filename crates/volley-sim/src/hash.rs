//! Stable hashing and id generation.
//!
//! `std`'s hashers are not guaranteed stable across Rust releases, and the simulator promises
//! "same request content + seed → same answer", so it uses its own FNV-1a with a SplitMix64
//! finalizer.

use serde_json::Value;

/// FNV-1a over bytes, finished with a SplitMix64 mix.
#[derive(Debug, Clone)]
pub(crate) struct StableHasher(u64);

impl StableHasher {
    pub(crate) fn new(seed: u64) -> Self {
        let mut h = Self(0xcbf2_9ce4_8422_2325);
        h.u64(seed);
        h
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// A string followed by a separator byte (so `("ab","c")` and `("a","bc")` differ).
    pub(crate) fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
        self.bytes(&[0xff]);
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// Hashes a JSON value structurally (object keys in sorted order, as serde_json's default
    /// `Map` keeps them), without serializing it.
    pub(crate) fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.bytes(b"n"),
            Value::Bool(b) => self.bytes(if *b { b"T" } else { b"F" }),
            Value::Number(n) => {
                self.bytes(b"#");
                self.str(&n.to_string());
            }
            Value::String(s) => {
                self.bytes(b"s");
                self.str(s);
            }
            Value::Array(items) => {
                self.bytes(b"[");
                for item in items {
                    self.value(item);
                }
                self.bytes(b"]");
            }
            Value::Object(map) => {
                self.bytes(b"{");
                for (k, item) in map {
                    self.str(k);
                    self.value(item);
                }
                self.bytes(b"}");
            }
        }
    }

    pub(crate) fn finish(&self) -> u64 {
        mix64(self.0)
    }
}

/// SplitMix64 finalizer: a good bijective bit mixer.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Combines two values into one well-mixed hash.
pub(crate) fn mix2(a: u64, b: u64) -> u64 {
    mix64(a ^ mix64(b).rotate_left(17))
}

/// Maps a hash to a float uniformly distributed in `[0, 1)`.
pub(crate) fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Appends `width` base-62 digits of `v` (most significant first, zero padded, truncated).
pub(crate) fn push_base62(out: &mut String, mut v: u64, width: usize) {
    let mut buf = [b'0'; 16];
    let width = width.min(buf.len());
    for slot in buf[..width].iter_mut().rev() {
        *slot = BASE62[(v % 62) as usize];
        v /= 62;
    }
    out.extend(buf[..width].iter().map(|&b| char::from(b)));
}

/// Decodes a fixed-width base-62 number.
pub(crate) fn parse_base62(s: &str) -> Option<u64> {
    let mut v: u64 = 0;
    for b in s.bytes() {
        let d = BASE62.iter().position(|&c| c == b)? as u64;
        v = v.checked_mul(62)?.checked_add(d)?;
    }
    Some(v)
}

/// An Anthropic-looking opaque id: `prefix` + `01` + 22 base-62 characters derived from `h`.
pub(crate) fn opaque_id(prefix: &str, h: u64) -> String {
    let mut s = String::with_capacity(prefix.len() + 24);
    s.push_str(prefix);
    s.push_str("01");
    push_base62(&mut s, mix64(h), 11);
    push_base62(&mut s, mix64(h ^ 0x5bd1_e995), 11);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base62_round_trips() {
        for v in [0u64, 1, 61, 62, 12_345_678, 56_800_235_583] {
            let mut s = String::new();
            push_base62(&mut s, v, 7);
            assert_eq!(s.len(), 7);
            assert_eq!(parse_base62(&s), Some(v));
        }
        assert_eq!(parse_base62("!"), None);
    }

    #[test]
    fn hashing_is_structural_and_stable() {
        let a = serde_json::json!({"b": 1, "a": [true, null, "x"]});
        let b: Value = serde_json::from_str(r#"{"a":[true,null,"x"],"b":1}"#).unwrap();
        let mut ha = StableHasher::new(7);
        ha.value(&a);
        let mut hb = StableHasher::new(7);
        hb.value(&b);
        assert_eq!(ha.finish(), hb.finish());
        let mut hc = StableHasher::new(8);
        hc.value(&a);
        assert_ne!(ha.finish(), hc.finish());
        // Pinned so an accidental change of the algorithm (and thus of every answer) is noticed.
        let mut h = StableHasher::new(0);
        h.str("volley");
        assert_eq!(h.finish(), 3_211_789_795_523_202_703);
    }

    #[test]
    fn unit_is_in_range() {
        for i in 0..1000 {
            let u = unit(mix64(i));
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn opaque_ids_look_right() {
        let id = opaque_id("msg_", 42);
        assert!(id.starts_with("msg_01"));
        assert_eq!(id.len(), 4 + 2 + 22);
        assert_ne!(id, opaque_id("msg_", 43));
    }
}
