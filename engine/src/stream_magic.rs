//! Recognising compressed or encrypted input from its first bytes, so that `backup --stdin` can
//! warn that it will not deduplicate: a compressed or encrypted stream changes throughout after any
//! small change of what it holds, so every backup of it stores it whole again.
/// Bytes read from the start of a stream to recognise compressed or encrypted input.
pub const MAGIC_PREFIX: usize = 32;

/// What a stream that starts with `prefix` is, when it is compressed or encrypted (such input
/// changes throughout after any small change, so it does not deduplicate): the format's name.
pub fn compressed_or_encrypted(prefix: &[u8]) -> Option<&'static str> {
    match prefix {
        [0x1f, 0x8b, ..] => Some("gzip"),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Some("zstd"),
        [b'B', b'Z', b'h', b'1'..=b'9', ..] => Some("bzip2"),
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Some("xz"),
        _ if prefix.starts_with(b"-----BEGIN PGP MESSAGE") => Some("OpenPGP (gpg)"),
        _ if is_openpgp_message(prefix) => Some("OpenPGP (gpg)"),
        _ => None,
    }
}

/// Whether `prefix` starts with the first packet of an encrypted OpenPGP message (RFC 9580): a
/// public-key encrypted session key (tag 1, version 3 or 6) or a symmetric-key encrypted session
/// key (tag 3, version 4, 5 or 6), in the legacy or the new packet format. The version byte is
/// checked too, so that other binary input starting with the tag byte does not match.
fn is_openpgp_message(prefix: &[u8]) -> bool {
    let Some(&first) = prefix.first() else { return false };
    // (tag, bytes of the length field before the packet body)
    let (tag, length_bytes) = match first {
        // Legacy format: 10TTTTLL, LL = 0 one length byte, 1 two.
        0x84 | 0x85 | 0x8c | 0x8d => ((first >> 2) & 0x0f, 1 + usize::from(first & 0x03)),
        // New format: 11TTTTTT, then a one-byte length (< 192) or a two-byte one (192..=223).
        0xc1 | 0xc3 => match prefix.get(1) {
            Some(&l) if l < 192 => (first & 0x3f, 1),
            Some(&l) if l <= 223 => (first & 0x3f, 2),
            _ => return false,
        },
        _ => return false,
    };
    matches!((tag, prefix.get(1 + length_bytes)), (1, Some(3 | 6)) | (3, Some(4..=6)))
}

#[cfg(test)]
mod tests {
    use super::compressed_or_encrypted;

    #[test]
    fn each_format_is_named_and_plain_text_or_look_alikes_are_not() {
        let cases: [(&[u8], Option<&str>); 14] = [
            (&[0x1f, 0x8b, 0x08, 0x00], Some("gzip")),
            (&[0x28, 0xb5, 0x2f, 0xfd, 0x04], Some("zstd")),
            (b"BZh91AY&SY", Some("bzip2")),
            (&[0xfd, b'7', b'z', b'X', b'Z', 0x00, 0x00], Some("xz")),
            // gpg --symmetric: a legacy-format SKESK packet, version 4.
            (&[0x8c, 0x0d, 0x04, 0x09, 0x03, 0x02], Some("OpenPGP (gpg)")),
            // gpg --encrypt: a legacy PKESK (two-byte length), version 3; and a new-format one.
            (&[0x85, 0x01, 0x0c, 0x03, 0x11], Some("OpenPGP (gpg)")),
            (&[0xc1, 0x4c, 0x03, 0x11], Some("OpenPGP (gpg)")),
            (b"-----BEGIN PGP MESSAGE-----\n", Some("OpenPGP (gpg)")),
            (b"-- PostgreSQL database dump\n", None),
            (b"BZh0", None),
            (&[0x8c, 0x0d, 0x09], None),
            (&[0xc3, 0xff, 0x04], None),
            (&[0x1f], None),
            (b"", None),
        ];
        for (bytes, expected) in cases {
            assert_eq!(compressed_or_encrypted(bytes), expected, "{bytes:02x?}");
        }
    }
}
