#![no_main]
//! The reader's path into a pack: trailer, then sealed header. The input is tried as a whole pack,
//! and (after 8 bytes giving the pack length) as the plaintext of a well-sealed header.

use cairn_format::crypto::SealKind;
use cairn_format::object::HEADER_LEN;
use cairn_format::pack::{FRAME_LEN, TRAILER_LEN, decode_header, read_trailer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = cairn_fuzz::key();
    if data.len() >= TRAILER_LEN {
        let len = data.len() as u64;
        if let Ok(header_len) = read_trailer(&data[data.len() - TRAILER_LEN..], len) {
            let end = data.len() - TRAILER_LEN;
            let start = end.checked_sub(header_len as usize).expect("read_trailer bounds the header by the pack");
            let _ = decode_header(&data[start..end], &key, len);
        }
    }
    if let Some((len_bytes, plaintext)) = data.split_first_chunk::<8>() {
        let pack_len = u64::from_le_bytes(*len_bytes);
        let sealed = key.seal(SealKind::PackHeader, &[], &[0; 24], plaintext);
        if let Ok(entries) = decode_header(&sealed, &key, pack_len) {
            let mut next_free = HEADER_LEN as u64;
            for e in &entries {
                assert!(u64::from(e.offset) >= next_free + FRAME_LEN as u64, "entries overlap or lack a frame");
                assert!(e.end() + (TRAILER_LEN + sealed.len()) as u64 <= pack_len, "entry reaches the header");
                next_free = e.end();
            }
        }
    }
});
