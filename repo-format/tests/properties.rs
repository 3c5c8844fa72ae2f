//! Property tests of the format crate.
//!
//! - Round trips: every encoding decodes to the value it was made from.
//! - Totality: every decoder, given arbitrary bytes or a valid encoding with random damage, returns an
//!   error or a value and never panics. Damage is also applied *beneath* the envelope (the damaged
//!   plaintext is sealed again with the right key), so the parsers behind the AEAD are exercised too;
//!   whatever such a parser accepts must re-encode to exactly the bytes it was given (the encodings are
//!   canonical).
//! - Tamper evidence: flipping any single byte of a sealed object gives an error, never other data.

#![allow(clippy::unwrap_used)]

use cairn_format::blob::{BlobKind, Compression, MAX_BLOB_PLAIN, open_blob, seal_blob};
use cairn_format::chunker::ChunkerParams;
use cairn_format::config::{Config, PACK_TARGET_RANGE};
use cairn_format::crypto::{MASTER_SECRET_LEN, MasterKey, NONCE_LEN, Nonce, SealKind};
use cairn_format::id::{ID_LEN, resolve_prefix};
use cairn_format::index::{CondemnedPack, IndexFile, IndexedPack};
use cairn_format::key::{KdfParams, KeyFile, SALT_LEN};
use cairn_format::lock::{Lock, LockKind};
use cairn_format::object::HEADER_LEN;
use cairn_format::pack::{
    self, BlobEntry, ENTRY_LEN, FRAME_LEN, MAX_STORED_BLOB, PackBuilder, TRAILER_LEN, decode_header, read_trailer,
    scan_frames,
};
use cairn_format::record::Record;
use cairn_format::snapshot::{MAX_PATH_LEN, Snapshot, SourceKind, Summary};
use cairn_format::tree::{Node, NodeKind, Tree, Xattr};
use cairn_format::{BlobId, FormatError, IndexId, PackId, SnapshotId, TreeId};
use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------------
// Keys and small values

fn test_key() -> MasterKey {
    MasterKey::from_random(std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11)))
}

fn arb_master_key() -> impl Strategy<Value = MasterKey> {
    vec(any::<u8>(), MASTER_SECRET_LEN).prop_map(|v| MasterKey::decode_secret(&v).unwrap())
}

fn arb_nonce() -> impl Strategy<Value = Nonce> {
    any::<[u8; NONCE_LEN]>()
}

fn arb_id() -> impl Strategy<Value = [u8; ID_LEN]> {
    any::<[u8; ID_LEN]>()
}

/// Text of any Unicode, including multi-byte characters.
fn arb_text(max_chars: usize) -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..=max_chars).prop_map(String::from_iter)
}

/// A valid entry name: non-empty raw bytes, mostly not UTF-8, never containing '/' or NUL, never '.' or '..'.
fn arb_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![vec(1u8..=255, 1..24), vec(b'-'..=b'z', 1..12)].prop_map(|mut name| {
        for b in &mut name {
            if *b == b'/' {
                *b = b'_';
            }
        }
        if name == b"." || name == b".." {
            name.push(b'x');
        }
        name
    })
}

// ---------------------------------------------------------------------------------------------------
// Trees

fn arb_node_kind() -> impl Strategy<Value = NodeKind> {
    prop_oneof![
        vec(arb_id(), 0..6)
            .prop_map(|ids| NodeKind::File { content: ids.into_iter().map(BlobId::from_bytes).collect() }),
        arb_id().prop_map(|id| NodeKind::Dir { subtree: TreeId::from_bytes(id) }),
        vec(any::<u8>(), 0..80).prop_map(|target| NodeKind::Symlink { target }),
        any::<u64>().prop_map(|rdev| NodeKind::BlockDevice { rdev }),
        any::<u64>().prop_map(|rdev| NodeKind::CharDevice { rdev }),
        Just(NodeKind::Fifo),
        Just(NodeKind::Socket),
    ]
}

/// Extended attributes: none most of the time (so that trees of both versions are made), else a few
/// with unique names of 1 to 255 bytes without NUL and values of any bytes, in any order.
fn arb_xattrs() -> impl Strategy<Value = Vec<Xattr>> {
    let name = vec(1u8..=255, 1..=255);
    prop_oneof![
        2 => Just(Vec::new()),
        1 => btree_map(name, vec(any::<u8>(), 0..40), 1..4).prop_map(|m| {
            // Reversed on purpose: from_nodes must sort.
            m.into_iter().rev().map(|(name, value)| Xattr { name, value }).collect()
        }),
    ]
}

/// A node with an empty name (names come from a map so that they are unique).
fn arb_nameless_node() -> impl Strategy<Value = Node> {
    (
        arb_node_kind(),
        (any::<u32>(), any::<u32>(), any::<u32>()),
        (arb_text(8), arb_text(8)),
        (any::<i64>(), any::<i64>()),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        arb_xattrs(),
    )
        .prop_map(
            |(kind, (mode, uid, gid), (user, group), (mtime_ns, ctime_ns), (inode, device, links, size), xattrs)| {
                Node {
                    name: Vec::new(),
                    kind,
                    mode,
                    uid,
                    gid,
                    user,
                    group,
                    mtime_ns,
                    ctime_ns,
                    inode,
                    device,
                    links,
                    size,
                    xattrs,
                }
            },
        )
}

fn arb_tree() -> impl Strategy<Value = Tree> {
    btree_map(arb_name(), arb_nameless_node(), 0..8).prop_map(|nodes| {
        // Reversed on purpose: from_nodes must sort.
        Tree::from_nodes(nodes.into_iter().rev().map(|(name, node)| Node { name, ..node }).collect()).unwrap()
    })
}

// ---------------------------------------------------------------------------------------------------
// Snapshots, index files, configs

fn arb_source() -> impl Strategy<Value = SourceKind> {
    prop_oneof![Just(SourceKind::Files), Just(SourceKind::Stdin), Just(SourceKind::Command), Just(SourceKind::Postgres)]
}

fn arb_summary() -> impl Strategy<Value = Summary> {
    any::<[u64; 15]>().prop_map(|v| Summary {
        files_new: v[0],
        files_changed: v[1],
        files_unchanged: v[2],
        dirs_new: v[3],
        dirs_changed: v[4],
        dirs_unchanged: v[5],
        data_blobs_added: v[6],
        tree_blobs_added: v[7],
        bytes_read: v[8],
        total_size: v[9],
        bytes_added_plain: v[10],
        bytes_added_stored: v[11],
        started_ns: v[12] as i64,
        duration_ns: v[13],
        warnings: v[14],
    })
}

fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
    (
        (any::<i64>(), -93_600i32..=93_600, arb_text(12), arb_text(12), any::<u32>(), any::<u32>()),
        (vec(arb_text(10), 0..4), vec(arb_text(40), 0..4), arb_source(), arb_text(12)),
        (arb_id(), proptest::option::of(arb_id()), proptest::option::of(arb_id()), arb_text(12), arb_summary()),
    )
        .prop_map(
            |(
                (time_ns, utc_offset_s, host, user, uid, gid),
                (tags, paths, source, source_detail),
                (tree, parent, original, program_version, summary),
            )| Snapshot {
                time_ns,
                utc_offset_s,
                host,
                user,
                uid,
                gid,
                tags,
                paths,
                source,
                source_detail,
                tree: TreeId::from_bytes(tree),
                parent: parent.map(SnapshotId::from_bytes),
                original: original.map(SnapshotId::from_bytes),
                program_version,
                summary,
            },
        )
}

fn arb_kind() -> impl Strategy<Value = BlobKind> {
    prop_oneof![Just(BlobKind::Data), Just(BlobKind::Tree)]
}

fn arb_compression() -> impl Strategy<Value = Compression> {
    prop_oneof![Just(Compression::Raw), Just(Compression::Zstd)]
}

/// An index entry that is valid on its own: lengths in range, end within `u32`.
fn arb_entry() -> impl Strategy<Value = BlobEntry> {
    (
        arb_kind(),
        arb_compression(),
        0..=(u32::MAX - MAX_STORED_BLOB),
        40u32..=MAX_STORED_BLOB,
        0..=MAX_BLOB_PLAIN,
        arb_id(),
    )
        .prop_map(|(kind, compression, offset, stored_len, plain_len, id)| BlobEntry {
            kind,
            id: BlobId::from_bytes(id),
            compression,
            offset,
            stored_len,
            plain_len,
        })
}

fn arb_indexed_pack() -> impl Strategy<Value = IndexedPack> {
    (arb_id(), vec(arb_entry(), 0..4), 0u64..1000).prop_map(|(id, blobs, slack)| {
        let end = blobs.iter().map(BlobEntry::end).max().unwrap_or(0);
        IndexedPack { id: PackId::from_bytes(id), len: (end + slack).min(u64::from(u32::MAX)), blobs }
    })
}

fn arb_index() -> impl Strategy<Value = IndexFile> {
    (vec(arb_id(), 0..4), vec(arb_indexed_pack(), 0..4), vec((any::<i64>(), arb_indexed_pack()), 0..3)).prop_map(
        |(supersedes, packs, condemned)| IndexFile {
            supersedes: supersedes.into_iter().map(IndexId::from_bytes).collect(),
            packs,
            condemned: condemned.into_iter().map(|(since_ns, pack)| CondemnedPack { since_ns, pack }).collect(),
        },
    )
}

fn even(range: std::ops::RangeInclusive<u32>) -> impl Strategy<Value = u32> {
    range.prop_map(|v| v & !1)
}

fn arb_chunker_params() -> impl Strategy<Value = ChunkerParams> {
    even(258..=4 * 1024 * 1024).prop_flat_map(|avg| {
        let min_hi = (avg - 2).min(1024 * 1024);
        let max_lo = (avg + 2).max(1024);
        (even(64..=min_hi), even(max_lo..=16 * 1024 * 1024)).prop_map(move |(min, max)| ChunkerParams {
            min_size: min,
            avg_size: avg,
            max_size: max,
        })
    })
}

fn arb_config() -> impl Strategy<Value = Config> {
    (arb_id(), arb_chunker_params(), -7i32..=19, PACK_TARGET_RANGE, PACK_TARGET_RANGE).prop_map(
        |(repository_id, chunker, compression_level, data_pack_target, tree_pack_target)| Config {
            repository_id,
            chunker,
            compression_level,
            data_pack_target,
            tree_pack_target,
        },
    )
}

fn arb_lock() -> impl Strategy<Value = Lock> {
    (
        prop_oneof![Just(LockKind::Shared), Just(LockKind::Exclusive)],
        arb_text(12),
        arb_text(12),
        any::<u32>(),
        any::<i64>(),
        any::<i64>(),
    )
        .prop_map(|(kind, host, user, pid, created_ns, refreshed_ns)| Lock {
            kind,
            host,
            user,
            pid,
            created_ns,
            refreshed_ns,
        })
}

fn arb_kdf() -> impl Strategy<Value = KdfParams> {
    (1u32..=2, 1u32..=2, 0u32..=64).prop_map(|(p_cost, t_cost, extra)| KdfParams {
        m_cost: 8 * p_cost + extra,
        t_cost,
        p_cost,
    })
}

// ---------------------------------------------------------------------------------------------------
// Damage

/// One random change to a byte string.
#[derive(Debug, Clone)]
enum Damage {
    Flip { at: usize, mask: u8 },
    Truncate { keep: usize },
    Extend { bytes: Vec<u8> },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
    Overwrite { at: usize, value: u32 },
}

fn arb_damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        3 => (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Damage::Flip { at, mask }),
        1 => any::<usize>().prop_map(|keep| Damage::Truncate { keep }),
        1 => vec(any::<u8>(), 1..64).prop_map(|bytes| Damage::Extend { bytes }),
        1 => (any::<usize>(), vec(any::<u8>(), 1..16)).prop_map(|(at, bytes)| Damage::Insert { at, bytes }),
        1 => (any::<usize>(), 1usize..16).prop_map(|(at, len)| Damage::Remove { at, len }),
        // Lengths and counts are u32/u16 fields: plant extreme values.
        2 => (any::<usize>(), prop_oneof![Just(0u32), Just(1), Just(u32::MAX), Just(u32::MAX / 2), Just(0xffff), any::<u32>()])
            .prop_map(|(at, value)| Damage::Overwrite { at, value }),
    ]
}

fn damage(bytes: &[u8], damages: &[Damage]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for d in damages {
        let len = out.len();
        match d {
            Damage::Flip { at, mask } if len > 0 => out[at % len] ^= mask,
            Damage::Truncate { keep } => out.truncate(keep % (len + 1)),
            Damage::Extend { bytes } => out.extend_from_slice(bytes),
            Damage::Insert { at, bytes } => {
                let at = at % (len + 1);
                out.splice(at..at, bytes.iter().copied());
            }
            Damage::Remove { at, len: n } if len > 0 => {
                let at = at % len;
                out.drain(at..(at + n).min(len));
            }
            Damage::Overwrite { at, value } if len >= 4 => {
                let at = at % (len - 3);
                out[at..at + 4].copy_from_slice(&value.to_le_bytes());
            }
            _ => {}
        }
    }
    out
}

fn arb_damages() -> impl Strategy<Value = Vec<Damage>> {
    vec(arb_damage(), 1..4)
}

/// Replaces a sealed object's plaintext: header || seal(kind, header, plaintext).
fn reseal(key: &MasterKey, kind: SealKind, stored: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let header = &stored[..HEADER_LEN];
    let mut out = header.to_vec();
    out.extend_from_slice(&key.seal(kind, header, &[7; NONCE_LEN], plaintext));
    out
}

fn plaintext_of(key: &MasterKey, kind: SealKind, stored: &[u8]) -> Vec<u8> {
    key.open(kind, &stored[..HEADER_LEN], &stored[HEADER_LEN..]).unwrap()
}

// ---------------------------------------------------------------------------------------------------
// Round trips

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn tree_round_trips(tree in arb_tree()) {
        let bytes = tree.encode();
        prop_assert_eq!(Tree::decode(&bytes).unwrap(), tree.clone());
        // Canonical: the order entries were given in does not change the bytes.
        let mut nodes = tree.into_nodes();
        nodes.reverse();
        prop_assert_eq!(Tree::from_nodes(nodes).unwrap().encode(), bytes);
    }

    #[test]
    fn snapshot_round_trips(snapshot in arb_snapshot(), key in arb_master_key(), nonce in arb_nonce()) {
        let bytes = snapshot.encode(&key, &nonce);
        prop_assert_eq!(Snapshot::decode(&bytes, &key).unwrap(), snapshot);
    }

    #[test]
    fn index_round_trips(index in arb_index(), nonce in arb_nonce()) {
        let key = test_key();
        let bytes = index.encode(&key, &nonce);
        prop_assert_eq!(IndexFile::decode(&bytes, &key).unwrap(), index);
    }

    #[test]
    fn config_round_trips(config in arb_config(), key in arb_master_key(), nonce in arb_nonce()) {
        let bytes = config.encode(&key, &nonce);
        prop_assert_eq!(Config::decode(&bytes, &key).unwrap(), config);
    }

    #[test]
    fn lock_round_trips(lock in arb_lock(), key in arb_master_key(), nonce in arb_nonce()) {
        let bytes = lock.encode(&key, &nonce);
        prop_assert_eq!(Lock::decode(&bytes, &key).unwrap(), lock);
    }

    #[test]
    fn blob_seal_open_round_trips(
        key in arb_master_key(),
        kind in arb_kind(),
        plaintext in prop_oneof![vec(any::<u8>(), 0..2000), (vec(any::<u8>(), 1..8), 1usize..300).prop_map(|(p, n)| p.repeat(n))],
        level in prop_oneof![Just(None), Just(Some(1)), Just(Some(3)), Just(Some(-1))],
        nonce in arb_nonce(),
    ) {
        let id = key.blob_id(&plaintext);
        let sealed = seal_blob(&key, kind, id, &plaintext, level, &nonce);
        prop_assert_eq!(sealed.plain_len as usize, plaintext.len());
        if level.is_none() {
            prop_assert_eq!(sealed.compression, Compression::Raw);
        }
        let opened = open_blob(&key, kind, id, sealed.compression, sealed.plain_len, &sealed.sealed).unwrap();
        prop_assert_eq!(&opened, &plaintext);
        let other_kind = if kind == BlobKind::Data { BlobKind::Tree } else { BlobKind::Data };
        prop_assert!(open_blob(&key, other_kind, id, sealed.compression, sealed.plain_len, &sealed.sealed).is_err());
        let other_id = key.blob_id(&[&plaintext[..], b"x"].concat());
        prop_assert!(open_blob(&key, kind, other_id, sealed.compression, sealed.plain_len, &sealed.sealed).is_err());
        prop_assert!(open_blob(&key, kind, id, sealed.compression, sealed.plain_len.wrapping_add(1), &sealed.sealed).is_err());
    }

    #[test]
    fn pack_build_and_read_back(
        kind in arb_kind(),
        blobs in vec((vec(any::<u8>(), 0..300), prop_oneof![Just(None), Just(Some(3))], arb_nonce()), 0..6),
        header_nonce in arb_nonce(),
    ) {
        let key = test_key();
        let mut builder = PackBuilder::new(kind, 0);
        for (plain, level, nonce) in &blobs {
            builder.add(&seal_blob(&key, kind, key.blob_id(plain), plain, *level, nonce));
        }
        let (bytes, entries) = builder.finish(&key, &header_nonce);
        let len = bytes.len() as u64;
        let header_len = read_trailer(&bytes[bytes.len() - TRAILER_LEN..], len).unwrap() as usize;
        prop_assert_eq!(header_len, 4 + ENTRY_LEN * blobs.len() + 40);
        let sealed_header = &bytes[bytes.len() - TRAILER_LEN - header_len..bytes.len() - TRAILER_LEN];
        prop_assert_eq!(&decode_header(sealed_header, &key, len).unwrap(), &entries);
        prop_assert_eq!(&scan_frames(&bytes).unwrap(), &entries);
        for (e, (plain, _, _)) in entries.iter().zip(&blobs) {
            let sealed = &bytes[e.offset as usize..e.end() as usize];
            prop_assert_eq!(&open_blob(&key, e.kind, e.id, e.compression, e.plain_len, sealed).unwrap(), plain);
        }
    }

    #[test]
    fn ids_hex_round_trip(bytes in arb_id()) {
        let id = PackId::from_bytes(bytes);
        let hex = id.to_hex();
        prop_assert_eq!(hex.len(), 64);
        prop_assert!(hex.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        prop_assert_eq!(PackId::from_hex(&hex).unwrap(), id);
        prop_assert_eq!(PackId::from_hex(&hex.to_uppercase()).unwrap(), id);
        prop_assert_eq!(hex.parse::<PackId>().unwrap(), id);
        prop_assert!(PackId::from_hex(&hex[..63]).is_err());
        prop_assert_eq!(id.short(), hex[..8].to_owned());
    }

    #[test]
    fn id_prefixes_resolve_exactly_when_unique(ids in btree_set(arb_id(), 1..6), pick in any::<prop::sample::Index>(), len in 1usize..=64) {
        let ids: Vec<SnapshotId> = ids.into_iter().map(SnapshotId::from_bytes).collect();
        let wanted = ids[pick.index(ids.len())];
        let prefix = &wanted.to_hex()[..len];
        let matching = ids.iter().filter(|id| id.to_hex().starts_with(prefix)).count();
        match resolve_prefix(prefix, ids.iter().copied()) {
            Ok(found) => {
                prop_assert_eq!(matching, 1);
                prop_assert_eq!(found, wanted);
            }
            Err(FormatError::PrefixAmbiguous { count, .. }) => {
                prop_assert!(matching > 1);
                prop_assert_eq!(count, matching);
            }
            Err(e) => return Err(TestCaseError::fail(format!("unexpected {e:?}"))),
        }
    }

    #[test]
    fn master_secret_round_trips(bytes in vec(any::<u8>(), 0..100)) {
        match MasterKey::decode_secret(&bytes) {
            Ok(key) => {
                prop_assert_eq!(bytes.len(), MASTER_SECRET_LEN);
                prop_assert_eq!(&key.encode_secret()[..], &bytes[..]);
            }
            Err(_) => prop_assert_ne!(bytes.len(), MASTER_SECRET_LEN),
        }
    }
}

proptest! {
    // Each case runs argon2id (with tiny costs) up to three times.
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn key_file_round_trips_and_unlocks(
        key in arb_master_key(),
        password in vec(any::<u8>(), 0..32),
        kdf in arb_kdf(),
        salt in any::<[u8; SALT_LEN]>(),
        nonce in arb_nonce(),
        created_unix in any::<i64>(),
        host in arb_text(12),
        user in arb_text(12),
    ) {
        let file = KeyFile::create(&key, &password, kdf, salt, &nonce, created_unix, &host, &user).unwrap();
        let bytes = file.encode();
        let decoded = KeyFile::decode(&bytes).unwrap();
        prop_assert_eq!(&decoded, &file);
        prop_assert_eq!(*decoded.unlock(&password).unwrap().encode_secret(), *key.encode_secret());
        let mut wrong = password.clone();
        wrong.push(0);
        prop_assert!(matches!(decoded.unlock(&wrong), Err(FormatError::WrongPassword)));
    }

    #[test]
    fn damaged_key_files_never_panic_nor_unlock(damages in arb_damages()) {
        let key = test_key();
        let file = KeyFile::create(&key, b"pw", KdfParams::INSECURE_FOR_TESTS, [1; SALT_LEN], &[2; NONCE_LEN], 0, "h", "u")
            .unwrap();
        let bytes = damage(&file.encode(), &damages);
        if let Ok(decoded) = KeyFile::decode(&bytes) {
            prop_assert_eq!(&decoded.encode(), &bytes, "accepted key files are canonical");
            // Only unlock when the (possibly damaged) costs are cheap; hostile costs are bounded by
            // KdfParams::MAX, which is still far too slow for a test.
            if decoded.kdf.m_cost <= 1024 && decoded.kdf.t_cost <= 4 {
                match decoded.unlock(b"pw") {
                    Ok(k) => {
                        prop_assert_eq!(*k.encode_secret(), *key.encode_secret());
                        prop_assert_eq!(&bytes, &file.encode(), "a damaged key file unlocked");
                    }
                    Err(e) => prop_assert_eq!(e, FormatError::WrongPassword),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Totality: arbitrary bytes

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_are_refused(bytes in vec(any::<u8>(), 0..600), pack_len in any::<u64>()) {
        let key = test_key();
        prop_assert!(Tree::decode(&bytes).is_err());
        prop_assert!(Snapshot::decode(&bytes, &key).is_err());
        prop_assert!(IndexFile::decode(&bytes, &key).is_err());
        prop_assert!(Config::decode(&bytes, &key).is_err());
        prop_assert!(Lock::decode(&bytes, &key).is_err());
        prop_assert!(Record::decode(&bytes, &key).is_err());
        prop_assert!(KeyFile::decode(&bytes).is_err());
        prop_assert!(scan_frames(&bytes).is_err());
        prop_assert!(decode_header(&bytes, &key, pack_len).is_err());
        prop_assert!(open_blob(&key, BlobKind::Data, BlobId::default(), Compression::Raw, bytes.len() as u32, &bytes).is_err());
        prop_assert!(open_blob(&key, BlobKind::Tree, BlobId::default(), Compression::Zstd, 1000, &bytes).is_err());
        if bytes.len() >= TRAILER_LEN {
            let trailer = &bytes[bytes.len() - TRAILER_LEN..];
            if let Ok(header_len) = read_trailer(trailer, pack_len) {
                prop_assert!(header_len as usize >= 44);
                prop_assert!(u64::from(header_len) + (HEADER_LEN + TRAILER_LEN) as u64 <= pack_len);
            }
        }
        prop_assert_eq!(MasterKey::decode_secret(&bytes).is_ok(), bytes.len() == MASTER_SECRET_LEN);
    }

    #[test]
    fn arbitrary_trailers_never_panic(trailer in vec(any::<u8>(), 0..12), header_len in any::<u32>(), pack_len in any::<u64>()) {
        // Mostly well-formed trailers with arbitrary lengths, plus arbitrary short or long slices.
        let mut good = header_len.to_le_bytes().to_vec();
        good.extend_from_slice(&pack::TRAILER_MAGIC);
        if let Ok(len) = read_trailer(&good, pack_len) {
            prop_assert_eq!(len, header_len);
            prop_assert!(u64::from(len) + 16 <= pack_len && len >= 44);
        }
        let _ = read_trailer(&trailer, pack_len);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_never_panic(body in vec(any::<u8>(), 0..800)) {
        for version in [1u8, 2] {
            let tree = [&b"CRNT"[..], &[version, 0, 0, 0], &body].concat();
            if let Ok(t) = Tree::decode(&tree) {
                prop_assert_eq!(t.encode(), tree);
            }
        }
        let pack = [&b"CRNP\x01\x00\x00\x00"[..], &body].concat();
        for e in scan_frames(&pack).unwrap() {
            prop_assert!(e.offset as usize >= HEADER_LEN + FRAME_LEN && e.end() <= pack.len() as u64);
        }
        let key_file = [&b"CRNK\x01\x00\x00\x00"[..], &body].concat();
        if let Ok(k) = KeyFile::decode(&key_file) {
            prop_assert_eq!(k.encode(), key_file);
        }
    }

    /// Arbitrary plaintexts sealed with the right key reach the parsers behind the envelope.
    #[test]
    fn arbitrary_sealed_plaintexts_never_panic(plain in vec(any::<u8>(), 0..800), pack_len in any::<u64>()) {
        let key = test_key();
        let snapshot = reseal(&key, SealKind::Snapshot, b"CRNS\x01\x00\x00\x00", &plain);
        if let Ok(s) = Snapshot::decode(&snapshot, &key) {
            prop_assert_eq!(plaintext_of(&key, SealKind::Snapshot, &s.encode(&key, &[0; NONCE_LEN])), plain.clone());
        }
        let index = reseal(&key, SealKind::Index, b"CRNI\x01\x00\x00\x00", &plain);
        if let Ok(i) = IndexFile::decode(&index, &key) {
            prop_assert_eq!(plaintext_of(&key, SealKind::Index, &i.encode(&key, &[0; NONCE_LEN])), plain.clone());
        }
        let config = reseal(&key, SealKind::Config, b"CRNC\x01\x00\x00\x00", &plain);
        if let Ok(c) = Config::decode(&config, &key) {
            prop_assert_eq!(plaintext_of(&key, SealKind::Config, &c.encode(&key, &[0; NONCE_LEN])), plain.clone());
        }
        let lock = reseal(&key, SealKind::Lock, b"CRNL\x01\x00\x00\x00", &plain);
        if let Ok(l) = Lock::decode(&lock, &key) {
            prop_assert_eq!(plaintext_of(&key, SealKind::Lock, &l.encode(&key, &[0; NONCE_LEN])), plain.clone());
        }
        let header = key.seal(SealKind::PackHeader, &[], &[0; NONCE_LEN], &plain);
        if let Ok(entries) = decode_header(&header, &key, pack_len) {
            let mut next_free = HEADER_LEN as u64;
            for e in &entries {
                prop_assert!(u64::from(e.offset) >= next_free + FRAME_LEN as u64);
                prop_assert!(e.end() + (TRAILER_LEN + header.len()) as u64 <= pack_len);
                next_free = e.end();
            }
        }
    }

    /// Arbitrary bodies sealed as blobs reach the decompressor and the length and id checks.
    #[test]
    fn arbitrary_sealed_blob_bodies_never_panic(
        body in prop_oneof![vec(any::<u8>(), 0..400), vec(any::<u8>(), 0..400).prop_map(|mut b| {
            // A zstd frame magic makes the decompressor parse the rest.
            b.splice(0..0, [0x28, 0xb5, 0x2f, 0xfd]);
            b
        })],
        plain_len in prop_oneof![0u32..=4096, Just(MAX_BLOB_PLAIN), Just(MAX_BLOB_PLAIN + 1), any::<u32>()],
        compression in arb_compression(),
    ) {
        let key = test_key();
        let id = BlobId::from_bytes([3; ID_LEN]);
        let sealed = key.seal(SealKind::DataBlob, id.as_bytes(), &[0; NONCE_LEN], &body);
        // The id cannot match (it is not the hash of anything we chose), so every outcome is an error.
        prop_assert!(open_blob(&key, BlobKind::Data, id, compression, plain_len, &sealed).is_err());
    }
}

// ---------------------------------------------------------------------------------------------------
// Totality: valid encodings with random damage

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn damaged_trees_never_panic(tree in arb_tree(), damages in arb_damages()) {
        let bytes = damage(&tree.encode(), &damages);
        if let Ok(t) = Tree::decode(&bytes) {
            prop_assert_eq!(t.encode(), bytes, "accepted trees are canonical");
        }
    }

    #[test]
    fn damaged_snapshots_never_panic(snapshot in arb_snapshot(), damages in arb_damages()) {
        let key = test_key();
        let stored = snapshot.encode(&key, &[1; NONCE_LEN]);
        // Damage to the stored bytes: always refused (the envelope covers everything after the header).
        let damaged = damage(&stored, &damages);
        if damaged != stored {
            prop_assert!(Snapshot::decode(&damaged, &key).is_err());
        }
        // Damage beneath the envelope: never a panic; what is accepted is canonical.
        let plain = damage(&plaintext_of(&key, SealKind::Snapshot, &stored), &damages);
        if let Ok(s) = Snapshot::decode(&reseal(&key, SealKind::Snapshot, &stored, &plain), &key) {
            prop_assert_eq!(plaintext_of(&key, SealKind::Snapshot, &s.encode(&key, &[0; NONCE_LEN])), plain);
        }
    }

    #[test]
    fn damaged_indexes_never_panic(index in arb_index(), damages in arb_damages()) {
        let key = test_key();
        let stored = index.encode(&key, &[1; NONCE_LEN]);
        let damaged = damage(&stored, &damages);
        if damaged != stored {
            prop_assert!(IndexFile::decode(&damaged, &key).is_err());
        }
        let plain = damage(&plaintext_of(&key, SealKind::Index, &stored), &damages);
        if let Ok(i) = IndexFile::decode(&reseal(&key, SealKind::Index, &stored, &plain), &key) {
            prop_assert_eq!(plaintext_of(&key, SealKind::Index, &i.encode(&key, &[0; NONCE_LEN])), plain);
        }
    }

    #[test]
    fn damaged_configs_never_panic(config in arb_config(), damages in arb_damages()) {
        let key = test_key();
        let stored = config.encode(&key, &[1; NONCE_LEN]);
        let damaged = damage(&stored, &damages);
        if damaged != stored {
            prop_assert!(Config::decode(&damaged, &key).is_err());
        }
        let plain = damage(&plaintext_of(&key, SealKind::Config, &stored), &damages);
        if let Ok(c) = Config::decode(&reseal(&key, SealKind::Config, &stored, &plain), &key) {
            prop_assert_eq!(plaintext_of(&key, SealKind::Config, &c.encode(&key, &[0; NONCE_LEN])), plain);
        }
    }

    #[test]
    fn damaged_locks_never_panic(lock in arb_lock(), damages in arb_damages()) {
        let key = test_key();
        let stored = lock.encode(&key, &[1; NONCE_LEN]);
        let damaged = damage(&stored, &damages);
        if damaged != stored {
            prop_assert!(Lock::decode(&damaged, &key).is_err());
        }
        let plain = damage(&plaintext_of(&key, SealKind::Lock, &stored), &damages);
        if let Ok(l) = Lock::decode(&reseal(&key, SealKind::Lock, &stored, &plain), &key) {
            prop_assert_eq!(plaintext_of(&key, SealKind::Lock, &l.encode(&key, &[0; NONCE_LEN])), plain);
        }
    }

    #[test]
    fn damaged_packs_never_panic(
        blobs in vec(vec(any::<u8>(), 0..200), 1..5),
        damages in arb_damages(),
        header_damages in arb_damages(),
    ) {
        let key = test_key();
        let (bytes, entries) = build_pack(&key, &blobs);
        let damaged = damage(&bytes, &damages);
        let _ = read_pack(&key, &damaged);
        for e in scan_frames(&damaged).unwrap_or_default() {
            prop_assert!(e.end() <= damaged.len() as u64);
        }
        // Damage beneath the header's envelope.
        prop_assert_eq!(read_pack(&key, &bytes).unwrap().len(), entries.len());
        let header_len = read_trailer(&bytes[bytes.len() - TRAILER_LEN..], bytes.len() as u64).unwrap() as usize;
        let sealed = &bytes[bytes.len() - TRAILER_LEN - header_len..bytes.len() - TRAILER_LEN];
        let plain = damage(&key.open(SealKind::PackHeader, &[], sealed).unwrap(), &header_damages);
        let resealed = key.seal(SealKind::PackHeader, &[], &[0; NONCE_LEN], &plain);
        let _ = decode_header(&resealed, &key, bytes.len() as u64);
    }
}

// ---------------------------------------------------------------------------------------------------
// Tamper evidence: every single byte

fn build_pack(key: &MasterKey, blobs: &[Vec<u8>]) -> (Vec<u8>, Vec<BlobEntry>) {
    let mut builder = PackBuilder::new(BlobKind::Data, 0);
    for (i, plain) in blobs.iter().enumerate() {
        builder.add(&seal_blob(key, BlobKind::Data, key.blob_id(plain), plain, None, &[i as u8; NONCE_LEN]));
    }
    builder.finish(key, &[0xee; NONCE_LEN])
}

/// Reads a pack the way a reader does: trailer, header, then every blob.
fn read_pack(key: &MasterKey, bytes: &[u8]) -> Result<Vec<(BlobEntry, Vec<u8>)>, FormatError> {
    if bytes.len() < TRAILER_LEN {
        return Err(FormatError::Truncated { what: "pack", need: TRAILER_LEN as u64, got: bytes.len() as u64 });
    }
    let len = bytes.len() as u64;
    let header_len = read_trailer(&bytes[bytes.len() - TRAILER_LEN..], len)? as usize;
    let sealed_header = &bytes[bytes.len() - TRAILER_LEN - header_len..bytes.len() - TRAILER_LEN];
    let entries = decode_header(sealed_header, key, len)?;
    entries
        .into_iter()
        .map(|e| {
            let sealed = &bytes[e.offset as usize..e.end() as usize];
            Ok((e, open_blob(key, e.kind, e.id, e.compression, e.plain_len, sealed)?))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn every_flipped_byte_of_a_snapshot_is_refused(snapshot in arb_snapshot(), mask in 1u8..=255) {
        let key = test_key();
        let stored = snapshot.encode(&key, &[9; NONCE_LEN]);
        for i in 0..stored.len() {
            let mut bad = stored.clone();
            bad[i] ^= mask;
            prop_assert!(Snapshot::decode(&bad, &key).is_err(), "byte {} flipped was accepted", i);
        }
    }

    #[test]
    fn every_flipped_byte_of_an_index_is_refused(index in arb_index(), mask in 1u8..=255) {
        let key = test_key();
        let stored = index.encode(&key, &[9; NONCE_LEN]);
        for i in 0..stored.len() {
            let mut bad = stored.clone();
            bad[i] ^= mask;
            prop_assert!(IndexFile::decode(&bad, &key).is_err(), "byte {} flipped was accepted", i);
        }
    }

    #[test]
    fn every_flipped_byte_of_a_lock_is_refused(lock in arb_lock(), mask in 1u8..=255) {
        let key = test_key();
        let stored = lock.encode(&key, &[9; NONCE_LEN]);
        for i in 0..stored.len() {
            let mut bad = stored.clone();
            bad[i] ^= mask;
            prop_assert!(Lock::decode(&bad, &key).is_err(), "byte {} flipped was accepted", i);
        }
    }

    #[test]
    fn every_flipped_byte_of_a_config_is_refused(config in arb_config(), mask in 1u8..=255) {
        let key = test_key();
        let stored = config.encode(&key, &[9; NONCE_LEN]);
        for i in 0..stored.len() {
            let mut bad = stored.clone();
            bad[i] ^= mask;
            prop_assert!(Config::decode(&bad, &key).is_err(), "byte {} flipped was accepted", i);
        }
    }

    /// Bytes of the sealed header, the trailer or a sealed blob: refused. Bytes of the plaintext frames
    /// and the pack's own magic are not read by a reader that trusts the header, so the pack still
    /// reads, but never as different data (and the pack no longer matches its name).
    #[test]
    fn every_flipped_byte_of_a_pack_is_refused_or_harmless(blobs in vec(vec(any::<u8>(), 0..100), 1..4), mask in 1u8..=255) {
        let key = test_key();
        let (bytes, entries) = build_pack(&key, &blobs);
        let good = read_pack(&key, &bytes).unwrap();
        let header_start = entries.last().map_or(HEADER_LEN as u64, BlobEntry::end) as usize;
        let authenticated = |i: usize| i >= header_start || entries.iter().any(|e| (e.offset as usize..e.end() as usize).contains(&i));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= mask;
            match read_pack(&key, &bad) {
                Err(_) => {}
                Ok(read) => {
                    prop_assert!(!authenticated(i), "byte {} flipped was accepted", i);
                    prop_assert_eq!(&read, &good, "byte {} flipped changed the data", i);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Examples that once broke or are easy to break

#[test]
fn snapshot_path_cut_at_the_limit_stays_utf8() {
    // A path longer than the limit whose cut would fall inside a multi-byte character.
    let mut path = "a".repeat(MAX_PATH_LEN as usize - 1);
    path.push('é');
    let key = test_key();
    let snapshot = Snapshot {
        time_ns: 0,
        utc_offset_s: 0,
        host: String::new(),
        user: String::new(),
        uid: 0,
        gid: 0,
        tags: Vec::new(),
        paths: vec![path.clone()],
        source: SourceKind::Files,
        source_detail: String::new(),
        tree: TreeId::default(),
        parent: None,
        original: None,
        program_version: String::new(),
        summary: Summary::default(),
    };
    let decoded = Snapshot::decode(&snapshot.encode(&key, &[0; NONCE_LEN]), &key).unwrap();
    assert_eq!(decoded.paths, vec![path[..MAX_PATH_LEN as usize - 1].to_owned()]);
}

#[test]
fn declared_plain_len_must_match_the_zstd_output() {
    let key = test_key();
    let plain = b"tiny";
    let id = key.blob_id(plain);
    let frame = zstd::bulk::compress(plain, 3).unwrap();
    let sealed = key.seal(SealKind::DataBlob, id.as_bytes(), &[0; NONCE_LEN], &frame);
    assert_eq!(open_blob(&key, BlobKind::Data, id, Compression::Zstd, 4, &sealed).unwrap(), plain);
    assert!(matches!(
        open_blob(&key, BlobKind::Data, id, Compression::Zstd, MAX_BLOB_PLAIN, &sealed),
        Err(FormatError::Decompress { .. })
    ));
    assert!(matches!(
        open_blob(&key, BlobKind::Data, id, Compression::Zstd, MAX_BLOB_PLAIN + 1, &sealed),
        Err(FormatError::TooLarge { .. })
    ));
    assert!(open_blob(&key, BlobKind::Data, id, Compression::Zstd, 3, &sealed).is_err());
}

// ---------------------------------------------------------------------------------------------------
// Records

fn arb_record() -> impl Strategy<Value = Record> {
    (
        any::<i64>(),
        any::<u64>(),
        ".{0,20}",
        ".{0,20}",
        "[a-z0-9_-]{1,32}",
        ".{0,30}",
        any::<bool>(),
        ".{0,80}",
        ".{0,80}",
    )
        .prop_map(|(time_ns, duration_ns, host, user, kind, scope, ok, summary, details)| Record {
            time_ns,
            duration_ns,
            host,
            user,
            kind,
            scope,
            ok,
            summary,
            details,
            program_version: "cairn 0.1.0".into(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn record_round_trips(record in arb_record(), nonce in arb_nonce()) {
        let key = test_key();
        let bytes = record.encode(&key, &nonce);
        prop_assert_eq!(Record::decode(&bytes, &key).unwrap(), record);
    }

    /// Any plaintext sealed with the right key (what a hostile key holder could write) decodes or
    /// is refused, and what decodes re-encodes to the same plaintext.
    #[test]
    fn hostile_record_plaintexts_never_panic(record in arb_record(), cut in any::<usize>(), flip in any::<(usize, u8)>(), junk in vec(any::<u8>(), 0..200)) {
        let key = test_key();
        let header = cairn_format::object::ObjectKind::Record.header();
        let good = record.encode(&key, &[3; NONCE_LEN]);
        let mut plain = key.open(SealKind::Record, &header, &good[HEADER_LEN..]).unwrap();
        let n = plain.len();
        plain[flip.0 % n] ^= flip.1;
        plain.truncate(cut % (n + 1));
        for body in [plain, junk] {
            let mut bytes = header.to_vec();
            bytes.extend_from_slice(&key.seal(SealKind::Record, &header, &[4; NONCE_LEN], &body));
            if let Ok(r) = Record::decode(&bytes, &key) {
                let again = r.encode(&key, &[4; NONCE_LEN]);
                prop_assert_eq!(again, bytes, "accepted records are canonical");
            }
        }
    }
}
