#![no_main]
//! Opening blobs: the input (after a control byte and a declared length) is sealed as a blob body and
//! opened raw and as zstd, which feeds arbitrary frames to the decompressor; the input is also opened
//! as sealed bytes directly; and sealing then opening it must give it back.

use cairn_format::BlobId;
use cairn_format::blob::{BlobKind, Compression, MAX_BLOB_PLAIN, open_blob, seal_blob};
use cairn_format::crypto::SealKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = cairn_fuzz::key();
    let Some((&control, rest)) = data.split_first() else { return };
    let Some((len_bytes, body)) = rest.split_first_chunk::<4>() else { return };
    let (kind, seal) =
        if control & 1 == 0 { (BlobKind::Data, SealKind::DataBlob) } else { (BlobKind::Tree, SealKind::TreeBlob) };
    // Small declared lengths keep iterations fast (the decompressor reserves the declared length up
    // front); one control value allows any length, up to and past MAX_BLOB_PLAIN.
    let declared = u32::from_le_bytes(*len_bytes);
    let plain_len = if control == 0xff { declared } else { declared % (1 << 16) };

    let id = BlobId::from_bytes([0x42; 32]);
    let sealed = key.seal(seal, id.as_bytes(), &[0; 24], body);
    for compression in [Compression::Raw, Compression::Zstd] {
        // The id is not the hash of anything chosen here, so nothing can open successfully.
        assert!(open_blob(&key, kind, id, compression, plain_len, &sealed).is_err());
        assert!(open_blob(&key, kind, id, compression, plain_len, body).is_err());
    }

    if body.len() <= MAX_BLOB_PLAIN as usize {
        let id = key.blob_id(body);
        let level = if control & 4 == 0 { None } else { Some(i32::from(control >> 4) - 7) };
        let sealed = seal_blob(&key, kind, id, body, level, &[1; 24]);
        let opened = open_blob(&key, kind, id, sealed.compression, sealed.plain_len, &sealed.sealed);
        assert_eq!(opened.as_deref(), Ok(body), "a sealed blob must open to its plaintext");
    }
});
