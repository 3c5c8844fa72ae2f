#![no_main]
//! Tree::decode on raw input and on input behind a valid header of either version; an accepted tree
//! is canonical.

use cairn_format::object::ObjectKind;
use cairn_format::tree::Tree;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Behind a version 1 header, and behind a version 2 one (entries with extended attributes).
    let mut v2 = cairn_fuzz::with_header(ObjectKind::Tree, data);
    v2[4] = 2;
    for input in [data.to_vec(), cairn_fuzz::with_header(ObjectKind::Tree, data), v2] {
        if let Ok(tree) = Tree::decode(&input) {
            assert_eq!(tree.encode(), input, "an accepted tree must re-encode to the same bytes");
        }
    }
});
