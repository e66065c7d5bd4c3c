//! Whether `HERALD_JWT_SECRET` is strong enough to sign access tokens in production
//! (docs/decisions/0042). Whoever guesses the secret can sign a token for any tenant, and an
//! HS256 token is enough to test guesses offline, so a weak secret is refused at start.
//!
//! Herald cannot measure the entropy of a string it did not generate; it refuses what is
//! obviously weak: short, few distinct bytes, a repeated pattern, or a run such as
//! `abcdef...`. A secret made by `openssl rand -hex 32` or `openssl rand -base64 32` passes.

/// Fewest bytes of a secret.
pub const MIN_BYTES: usize = 32;
/// Fewest distinct byte values. Hex has 16, and random hex of 32 characters shows about 14, but
/// 9 or fewer about once in 10,000 (10 refused real `openssl rand -hex 16` secrets, and failed a
/// test that drew 400 of them); 7 or fewer about once in 30 million. `aaaa...bbbb...` or a word
/// repeated shows a handful.
pub const MIN_DISTINCT: usize = 8;

/// `Err` says what is wrong, without the secret.
pub fn check(secret: &str) -> Result<(), String> {
    let bytes = secret.as_bytes();
    if bytes.len() < MIN_BYTES {
        return Err(format!(
            "HERALD_JWT_SECRET must be at least {MIN_BYTES} bytes (it has {}); make one with `openssl rand -hex 32`",
            bytes.len()
        ));
    }
    let mut seen = [false; 256];
    for b in bytes {
        seen[*b as usize] = true;
    }
    let distinct = seen.iter().filter(|s| **s).count();
    if distinct < MIN_DISTINCT {
        return Err(format!(
            "HERALD_JWT_SECRET has too little entropy: only {distinct} distinct characters (at least {MIN_DISTINCT}); make one with `openssl rand -hex 32`"
        ));
    }
    if let Some(period) =
        (1..=bytes.len() / 2).find(|p| bytes.iter().skip(*p).zip(bytes).all(|(a, b)| a == b))
    {
        return Err(format!(
            "HERALD_JWT_SECRET has too little entropy: it repeats a {period}-character pattern; make one with `openssl rand -hex 32`"
        ));
    }
    // a run: most neighbours one apart in the same direction (`abcdefgh...`, `0123456789...`)
    let steps: Vec<i16> = bytes
        .windows(2)
        .map(|w| i16::from(w[1]) - i16::from(w[0]))
        .collect();
    let runs = steps.iter().filter(|s| s.abs() == 1).count();
    if runs * 2 > steps.len() {
        return Err(
            "HERALD_JWT_SECRET has too little entropy: it is mostly a run of consecutive characters; make one with `openssl rand -hex 32`"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_pass() {
        for _ in 0..200 {
            assert_eq!(check(&hex::encode(rand::random::<[u8; 32]>())), Ok(()));
            assert_eq!(check(&hex::encode(rand::random::<[u8; 16]>())), Ok(()));
        }
        assert_eq!(check("q8Zr4Lk0vXb2Nw7Ty1Hs9Pd3Fm6Jc5Ga"), Ok(()));
    }

    #[test]
    fn obviously_weak_secrets_are_refused() {
        for weak in [
            "short-secret",
            &"a".repeat(64),
            &"ab".repeat(20),
            "passwordpasswordpasswordpassword",
            "0123456789abcdef0123456789abcdef",
            "abcdefghijklmnopqrstuvwxyz012345",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabbbbbbbb",
        ] {
            let refused = check(weak).expect_err(weak);
            assert!(refused.contains("HERALD_JWT_SECRET"), "{refused}");
            assert!(
                !refused.contains(weak),
                "the message must not repeat the secret"
            );
        }
    }
}
