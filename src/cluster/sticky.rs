//! `sticky`: sticky-session cookies.
//!
//! Owns the opaque token that names a backend in the sticky cookie: a keyed
//! SipHash-2-4 of the backend's name under a secret, so clients cannot forge or
//! guess tokens, while every ringlb instance configured with the same secret issues
//! and honours the same ones. Called when a shard builds its backend table and when
//! it writes a response head; pure computation.

/// SipHash-2-4 of `data` under the 128-bit key `(k0, k1)`.
pub fn siphash24(k0: u64, k1: u64, data: &[u8]) -> u64 {
    let mut v0 = k0 ^ 0x736f_6d65_7073_6575;
    let mut v1 = k1 ^ 0x646f_7261_6e64_6f6d;
    let mut v2 = k0 ^ 0x6c79_6765_6e65_7261;
    let mut v3 = k1 ^ 0x7465_6462_7974_6573;
    let round = |v0: &mut u64, v1: &mut u64, v2: &mut u64, v3: &mut u64| {
        *v0 = v0.wrapping_add(*v1);
        *v1 = v1.rotate_left(13);
        *v1 ^= *v0;
        *v0 = v0.rotate_left(32);
        *v2 = v2.wrapping_add(*v3);
        *v3 = v3.rotate_left(16);
        *v3 ^= *v2;
        *v0 = v0.wrapping_add(*v3);
        *v3 = v3.rotate_left(21);
        *v3 ^= *v0;
        *v2 = v2.wrapping_add(*v1);
        *v1 = v1.rotate_left(17);
        *v1 ^= *v2;
        *v2 = v2.rotate_left(32);
    };
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let m = u64::from_le_bytes(word);
        v3 ^= m;
        round(&mut v0, &mut v1, &mut v2, &mut v3);
        round(&mut v0, &mut v1, &mut v2, &mut v3);
        v0 ^= m;
    }
    let rest = chunks.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    last[7] = data.len() as u8;
    let m = u64::from_le_bytes(last);
    v3 ^= m;
    round(&mut v0, &mut v1, &mut v2, &mut v3);
    round(&mut v0, &mut v1, &mut v2, &mut v3);
    v0 ^= m;
    v2 ^= 0xff;
    for _ in 0..4 {
        round(&mut v0, &mut v1, &mut v2, &mut v3);
    }
    v0 ^ v1 ^ v2 ^ v3
}

/// The 128-bit key derived from a configured secret.
pub fn key_from_secret(secret: &str) -> (u64, u64) {
    (
        siphash24(
            0x0123_4567_89ab_cdef,
            0xfedc_ba98_7654_3210,
            secret.as_bytes(),
        ),
        siphash24(
            0x0f1e_2d3c_4b5a_6978,
            0x8796_a5b4_c3d2_e1f0,
            secret.as_bytes(),
        ),
    )
}

/// A random key for this process (no secret configured): tokens then change when
/// ringlb restarts and differ between instances.
pub fn random_key() -> (u64, u64) {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let mut a = state.build_hasher();
    a.write_u64(0x5eed);
    let mut b = state.build_hasher();
    b.write_u64(0xfeed);
    (a.finish(), b.finish())
}

/// The cookie value naming `backend` under `key`: 32 hex digits.
pub fn token(key: (u64, u64), backend: &str) -> String {
    let hi = siphash24(key.0, key.1, backend.as_bytes());
    let lo = siphash24(key.1, key.0, backend.as_bytes());
    format!("{hi:016x}{lo:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siphash_matches_the_reference_vector() {
        // The paper's test vector: key 00..0f, message 00..0e.
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let message: Vec<u8> = (0..15).collect();
        assert_eq!(siphash24(k0, k1, &message), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn tokens_are_opaque_stable_and_keyed() {
        let key = key_from_secret("s3cret");
        let t = token(key, "app1");
        assert_eq!(t.len(), 32);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!t.contains("app1"));
        assert_eq!(
            t,
            token(key_from_secret("s3cret"), "app1"),
            "same secret, same token"
        );
        assert_ne!(t, token(key, "app2"));
        assert_ne!(t, token(key_from_secret("other"), "app1"));
        assert_ne!(random_key(), random_key());
    }
}
