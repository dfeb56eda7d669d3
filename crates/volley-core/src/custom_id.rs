//! Provider custom ids derived from the user's ids.
//!
//! Anthropic allows only `^[a-zA-Z0-9_-]{1,64}$`; OpenAI and Gemini take any string. One rule
//! that satisfies the strictest keeps ids identical across providers: a valid id is used as is,
//! anything else is sanitised and suffixed with a hash of the original so two ids never meet.

/// Longest custom id any provider accepts.
pub const MAX_LEN: usize = 64;

/// Whether `id` may be sent to every provider unchanged.
pub fn is_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The custom id sent to providers for the user's `id`.
pub fn derive(id: &str) -> String {
    if is_valid(id) {
        return id.to_owned();
    }
    let hash = fnv1a(id.as_bytes());
    let stem: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_LEN - 17)
        .collect();
    format!("{stem}-{hash:016x}")
}

/// 64-bit FNV-1a: stable across platforms and releases, unlike `std`'s hasher.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hasher = Fnv1a::default();
    hasher.write(bytes);
    hasher.finish()
}

/// Incremental [`fnv1a`], for hashing a file in chunks.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    /// Feeds bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn valid_ids_pass_through() {
        assert_eq!(derive("q-001_A"), "q-001_A");
    }

    #[test]
    fn invalid_ids_are_sanitised_and_disambiguated() {
        let a = derive("doc 1");
        let b = derive("doc_1");
        assert_eq!(b, "doc_1");
        assert!(a.starts_with("doc_1-") && a != b, "{a}");
        assert!(is_valid(&derive(&"x".repeat(300))));
    }

    proptest! {
        #[test]
        fn derived_ids_are_always_valid(id in ".{1,200}") {
            prop_assert!(is_valid(&derive(&id)));
        }
    }
}
