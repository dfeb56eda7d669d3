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

const BASE36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Appends `width` lowercase base-36 digits of `v` (most significant first, zero padded,
/// truncated): Gemini resource ids are lowercase alphanumerics.
pub(crate) fn push_base36(out: &mut String, mut v: u64, width: usize) {
    let mut buf = [b'0'; 16];
    let width = width.min(buf.len());
    for slot in buf[..width].iter_mut().rev() {
        *slot = BASE36[(v % 36) as usize];
        v /= 36;
    }
    out.extend(buf[..width].iter().map(|&b| char::from(b)));
}

/// Decodes a fixed-width lowercase base-36 number.
pub(crate) fn parse_base36(s: &str) -> Option<u64> {
    let mut v: u64 = 0;
    for b in s.bytes() {
        let d = BASE36.iter().position(|&c| c == b)? as u64;
        v = v.checked_mul(36)?.checked_add(d)?;
    }
    Some(v)
}

/// Appends `width` lowercase hex digits of `v`.
pub(crate) fn push_hex(out: &mut String, v: u64, width: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..width.min(16)).rev() {
        out.push(char::from(HEX[((v >> (i * 4)) & 0xf) as usize]));
    }
}

/// Decodes lowercase hex.
pub(crate) fn parse_hex(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// Standard base64 with padding.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// SHA-256 of `data` (FIPS 180-4), for the `sha256Hash` of Gemini files.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let bit_len = (data.len() as u64).wrapping_mul(8);
    let mut tail = Vec::with_capacity(128);
    let full = data.len() - data.len() % 64;
    tail.extend_from_slice(&data[full..]);
    tail.push(0x80);
    while tail.len() % 64 != 56 {
        tail.push(0);
    }
    tail.extend_from_slice(&bit_len.to_be_bytes());
    let mut w = [0u32; 64];
    for block in data[..full].chunks_exact(64).chain(tail.chunks_exact(64)) {
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (slot, v) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *slot = slot.wrapping_add(v);
        }
    }
    let mut out = [0u8; 32];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
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
    #[test]
    fn sha256_matches_known_vectors() {
        let hex = |d: [u8; 32]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(sha256(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(
            hex(sha256(&[b'a'; 1000])),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"
        );
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn base36_and_hex_round_trip() {
        for v in [0u64, 35, 36, 1_234_567, 2_176_782_335] {
            let mut s = String::new();
            push_base36(&mut s, v, 6);
            assert_eq!(s.len(), 6);
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            );
            assert_eq!(parse_base36(&s), Some(v));
            let mut h = String::new();
            push_hex(&mut h, v, 8);
            assert_eq!(parse_hex(&h), Some(v));
        }
        assert_eq!(parse_base36("A"), None);
        assert_eq!(parse_hex("xyz"), None);
    }
}
