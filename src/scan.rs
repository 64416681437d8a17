//! Byte scans on hot paths: whether any byte of a field, a value or a string is one a rule
//! refuses (or must escape). Most such inputs are short and clean, so the scan has no early
//! exit inside a block: a fixed 16-byte block folded with `|` compiles to vector compares.

/// Whether any byte of `s` is `bad`, 16 bytes at a time; the last short block is padded with
/// `filler`, which must not be `bad`.
#[inline(always)]
pub fn any_byte(s: &[u8], filler: u8, bad: impl Fn(u8) -> bool) -> bool {
    debug_assert!(!bad(filler), "the filler must pass");
    let mut chunks = s.chunks_exact(16);
    for c in &mut chunks {
        if c.iter().fold(false, |any, &b| any | bad(b)) {
            return true;
        }
    }
    let rest = chunks.remainder();
    let mut block = [filler; 16];
    block[..rest.len()].copy_from_slice(rest);
    block.iter().fold(false, |any, &b| any | bad(b))
}

/// Whether `s` has a control byte other than tab: what a field value may not carry (RFC 9110
/// 5.5; `http::HeaderValue`'s rule) and what a signed value is refused for.
pub fn any_control(s: &[u8]) -> bool {
    any_byte(s, b'a', |b| (b < 0x20 && b != b'\t') | (b == 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length around the block size, and the bad byte at every place.
    #[test]
    fn finds_a_bad_byte_wherever_it_is() {
        let bad = |b: u8| b == b'"';
        for len in 0..40 {
            let clean = vec![b'x'; len];
            assert!(!any_byte(&clean, b'a', bad), "{len}");
            for at in 0..len {
                let mut s = clean.clone();
                s[at] = b'"';
                assert!(any_byte(&s, b'a', bad), "{len} {at}");
            }
        }
    }

    #[test]
    fn control_bytes_but_tab() {
        assert!(!any_control(b"a\tb \x80\xff ~"));
        for b in (0u8..0x20).filter(|&b| b != b'\t').chain([0x7f]) {
            assert!(any_control(&[b'x', b]), "{b}");
        }
    }
}
