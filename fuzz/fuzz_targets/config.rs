#![no_main]
//! Config::decode on raw input (refused at the magic or the tag), and on the input sealed as the
//! plaintext of a well-formed config; an accepted plaintext must encode back to itself.

use cairn_format::config::Config;
use cairn_format::crypto::SealKind;
use cairn_format::object::ObjectKind;
use cairn_fuzz::{key, plaintext_of, sealed_object};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = key();
    assert!(Config::decode(data, &key).is_err(), "unsealed input must not decode");
    let stored = sealed_object(&key, ObjectKind::Config, SealKind::Config, data);
    if let Ok(value) = Config::decode(&stored, &key) {
        let again = value.encode(&key, &[1; 24]);
        assert_eq!(plaintext_of(&key, SealKind::Config, &again), data, "accepted plaintexts are canonical");
    }
});
