#![no_main]
//! The salvage scan over a pack's plaintext frames, on raw input and behind a valid pack header.

use cairn_format::object::ObjectKind;
use cairn_format::pack::scan_frames;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for input in [data.to_vec(), cairn_fuzz::with_header(ObjectKind::Pack, data)] {
        if let Ok(entries) = scan_frames(&input) {
            for e in entries {
                assert!(e.end() <= input.len() as u64, "a salvaged entry lies outside the pack");
            }
        }
    }
});
