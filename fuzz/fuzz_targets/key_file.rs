#![no_main]
//! KeyFile::decode on raw input and on input behind a valid header; an accepted key file re-encodes
//! to the same bytes, and unlocking it (when its costs are cheap enough to try) never panics.

use cairn_format::key::KeyFile;
use cairn_format::object::ObjectKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for input in [data.to_vec(), cairn_fuzz::with_header(ObjectKind::Key, data)] {
        if let Ok(file) = KeyFile::decode(&input) {
            assert_eq!(file.encode(), input, "an accepted key file must re-encode to the same bytes");
            // Decoding bounds the costs (KdfParams::MAX), but those bounds are still seconds of work;
            // only cheap ones are worth an iteration.
            if file.kdf.m_cost <= 256 && file.kdf.t_cost <= 2 {
                let _ = file.unlock(b"password");
            }
        }
    }
});
