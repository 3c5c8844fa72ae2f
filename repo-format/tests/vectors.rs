//! The test vectors of `spec/vectors/`: every file there is loaded, its inputs are encoded and must give
//! exactly its expected bytes, and its expected bytes are decoded and must give back its inputs. One
//! changed byte in any encoding fails this test.
//!
//! The files are produced by [`generate_vector_files`] from the fixed inputs in `fixed()` below.
//! Regenerating them is a format change and needs a spec change in the same commit:
//! `CAIRN_WRITE_VECTORS=1 cargo test -p cairn-format --test vectors -- --ignored`.
//! Without that variable the generator only compares what it would write with what is there (the zstd
//! frame in `blob.json` is an input produced by the zstd library, so after a zstd upgrade that frame
//! alone may differ; the stored one stays valid).
//!
//! Conventions of the files (also stated in `spec/README.md`): byte strings are lower-case hex,
//! integers wider than 32 bits are decimal strings, narrower ones are JSON numbers.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cairn_format::blob::{BlobKind, Compression, open_blob, seal_blob};
use cairn_format::chunker::{Chunker, ChunkerParams};
use cairn_format::config::Config;
use cairn_format::crypto::{self, MASTER_SECRET_LEN, MasterKey, NONCE_LEN, Nonce, SealKind};
use cairn_format::id::{ID_LEN, to_hex};
use cairn_format::index::{CondemnedPack, IndexFile, IndexedPack};
use cairn_format::key::{KdfParams, KeyFile, SALT_LEN};
use cairn_format::lock::{Lock, LockKind};
use cairn_format::pack::{self, BlobEntry, PackBuilder, TRAILER_LEN};
use cairn_format::record::Record;
use cairn_format::snapshot::{Snapshot, SourceKind, Summary};
use cairn_format::tree::{Node, NodeKind, Tree, Xattr};
use cairn_format::{BlobId, FormatError, IndexId, PackId, SnapshotId, TreeId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------------
// The harness

/// One kind of vector file.
trait Vector: Serialize + DeserializeOwned + Clone {
    /// File name in `spec/vectors/` and value of its `type` field.
    const TYPE: &'static str;
    /// The fixed inputs with empty outputs (the generator fills them with [`Vector::compute`]).
    fn fixed() -> Self;
    /// A copy whose outputs are recomputed from its inputs by the code under test.
    fn compute(&self) -> Self;
    /// Decodes the expected bytes and checks that they give back the inputs.
    fn check_decode(&self);
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors")
}

fn file_name(kind: &str) -> String {
    format!("{kind}.json")
}

fn render<V: Vector>() -> String {
    let v = V::fixed().compute();
    let mut text = serde_json::to_string_pretty(&v).unwrap();
    text.push('\n');
    text
}

/// Compares two JSON trees and names the first place where they differ (for hex, the byte offset).
fn assert_same_json(file: &str, path: &str, computed: &serde_json::Value, expected: &serde_json::Value) {
    use serde_json::Value;
    match (computed, expected) {
        (Value::Object(c), Value::Object(e)) => {
            let ck: BTreeSet<_> = c.keys().collect();
            let ek: BTreeSet<_> = e.keys().collect();
            assert_eq!(ck, ek, "{file}: fields of {path} differ");
            for k in ck {
                assert_same_json(file, &format!("{path}.{k}"), &c[k], &e[k]);
            }
        }
        (Value::Array(c), Value::Array(e)) => {
            assert_eq!(c.len(), e.len(), "{file}: length of {path} differs");
            for (i, (c, e)) in c.iter().zip(e).enumerate() {
                assert_same_json(file, &format!("{path}[{i}]"), c, e);
            }
        }
        (Value::String(c), Value::String(e)) if c != e => {
            let at = c.bytes().zip(e.bytes()).position(|(a, b)| a != b).unwrap_or(c.len().min(e.len()));
            panic!(
                "{file}: {path} differs at character {at} (byte {} if hex): encoded {} chars, expected {} chars",
                at / 2,
                c.len(),
                e.len()
            );
        }
        _ => assert_eq!(computed, expected, "{file}: {path} differs"),
    }
}

fn check_file<V: Vector>(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let stored: V = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert_same_json(
        &name,
        "$",
        &serde_json::to_value(stored.compute()).unwrap(),
        &serde_json::to_value(&stored).unwrap(),
    );
    stored.check_decode();
}

/// Calls `$f::<V>()` for every vector type; the list of types is written once, here.
macro_rules! for_each_vector {
    ($f:ident $(, $arg:expr)*) => {
        vec![
            $f::<EnvelopeVector>($($arg),*),
            $f::<HashesVector>($($arg),*),
            $f::<KeyFileVector>($($arg),*),
            $f::<ConfigVector>($($arg),*),
            $f::<BlobVector>($($arg),*),
            $f::<PackVector>($($arg),*),
            $f::<IndexVector>($($arg),*),
            $f::<TreeVector>($($arg),*),
            $f::<TreeXattrsVector>($($arg),*),
            $f::<SnapshotVector>($($arg),*),
            $f::<LockVector>($($arg),*),
            $f::<RecordVector>($($arg),*),
            $f::<ChunkerVector>($($arg),*),
        ]
    };
}

fn check_if_type<V: Vector>(path: &Path, kind: &str) -> bool {
    if kind == V::TYPE {
        check_file::<V>(path);
        true
    } else {
        false
    }
}

fn type_name<V: Vector>() -> &'static str {
    V::TYPE
}

#[test]
fn every_vector_file_encodes_and_decodes_exactly() {
    let mut seen = BTreeSet::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(vectors_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    for path in &paths {
        let value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let kind = value["type"].as_str().unwrap_or_else(|| panic!("{}: no \"type\" field", path.display()));
        assert_eq!(path.file_name().unwrap().to_string_lossy(), file_name(kind), "file name must match its type");
        let matched = for_each_vector!(check_if_type, path, kind);
        assert!(matched.iter().any(|m| *m), "{}: unknown vector type {kind}", path.display());
        seen.insert(kind.to_owned());
    }
    let expected: BTreeSet<String> = for_each_vector!(type_name).into_iter().map(str::to_owned).collect();
    assert_eq!(seen, expected, "every vector type must have its file in spec/vectors/");
}

fn write_or_compare<V: Vector>(write: bool) -> &'static str {
    let path = vectors_dir().join(file_name(V::TYPE));
    let text = render::<V>();
    if write {
        std::fs::write(&path, text).unwrap();
    } else {
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(on_disk == text, "{} is not what the generator produces; see this file's doc", path.display());
    }
    V::TYPE
}

/// Writes the vector files (with `CAIRN_WRITE_VECTORS=1`) or checks that they are what it would write.
#[test]
#[ignore = "generator; run explicitly, see the module doc"]
fn generate_vector_files() {
    let write = std::env::var_os("CAIRN_WRITE_VECTORS").is_some_and(|v| v == "1");
    for_each_vector!(write_or_compare, write);
}

// ---------------------------------------------------------------------------------------------------
// Fixed inputs and helpers

/// `start, start + 1, …` (wrapping), the shape of every fixed byte string.
fn pattern(start: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| start.wrapping_add(i as u8)).collect()
}

fn fixed_master_secret() -> String {
    to_hex(&pattern(0x00, MASTER_SECRET_LEN))
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd-length hex {s:?}");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn unhex_array<const N: usize>(s: &str) -> [u8; N] {
    unhex(s).try_into().unwrap_or_else(|v: Vec<u8>| panic!("expected {N} bytes, got {}", v.len()))
}

fn master(secret_hex: &str) -> MasterKey {
    MasterKey::decode_secret(&unhex(secret_hex)).unwrap()
}

fn nonce(hex: &str) -> Nonce {
    unhex_array::<NONCE_LEN>(hex)
}

fn id_hex(start: u8) -> String {
    to_hex(&pattern(start, ID_LEN))
}

fn object_name_hex(stored: &[u8]) -> String {
    to_hex(&crypto::object_name(stored))
}

fn seal_kind(byte: u8) -> SealKind {
    match byte {
        1 => SealKind::Config,
        2 => SealKind::MasterSecret,
        3 => SealKind::DataBlob,
        4 => SealKind::TreeBlob,
        5 => SealKind::PackHeader,
        6 => SealKind::Index,
        7 => SealKind::Snapshot,
        8 => SealKind::Lock,
        9 => SealKind::Record,
        _ => panic!("no seal kind {byte}"),
    }
}

/// 64-bit integers as decimal strings (JSON numbers lose precision above 2^53 in many readers).
mod dec {
    use super::*;
    pub fn serialize<T: Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }
    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: serde::Deserializer<'de>,
    {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------------
// envelope.json: the master secret layout and one sealed object per SealKind

#[derive(Serialize, Deserialize, Clone)]
struct EnvelopeVector {
    r#type: String,
    description: String,
    master_secret: String,
    /// Outputs: the three parts of the master secret.
    data_key: String,
    id_key: String,
    #[serde(with = "dec")]
    chunker_seed: u64,
    cases: Vec<EnvelopeCase>,
}

#[derive(Serialize, Deserialize, Clone)]
struct EnvelopeCase {
    seal_kind: u8,
    context: String,
    nonce: String,
    plaintext: String,
    /// Output: 0x<seal_kind> || context.
    associated_data: String,
    /// Output: nonce || ciphertext || tag.
    sealed: String,
}

impl Vector for EnvelopeVector {
    const TYPE: &'static str = "envelope";

    fn fixed() -> Self {
        let contexts: [(u8, Vec<u8>); 8] = [
            (1, b"CRNC\x01\x00\x00\x00".to_vec()),
            (2, b"key file bytes before the sealed secret".to_vec()),
            (3, pattern(0x30, 32)),
            (4, pattern(0x50, 32)),
            (5, Vec::new()),
            (6, b"CRNI\x01\x00\x00\x00".to_vec()),
            (7, b"CRNS\x01\x00\x00\x00".to_vec()),
            (8, b"CRNL\x01\x00\x00\x00".to_vec()),
        ];
        EnvelopeVector {
            r#type: Self::TYPE.into(),
            description: "XChaCha20-Poly1305 envelope under the data key of master_secret. sealed = nonce (24) || \
                          ciphertext || tag (16); associated data = one seal-kind byte || context. The master \
                          secret is data_key (32) || id_key (32) || chunker_seed (u64 LE)."
                .into(),
            master_secret: fixed_master_secret(),
            data_key: String::new(),
            id_key: String::new(),
            chunker_seed: 0,
            cases: contexts
                .into_iter()
                .map(|(kind, context)| EnvelopeCase {
                    seal_kind: kind,
                    context: to_hex(&context),
                    nonce: to_hex(&pattern(0x10 * kind, NONCE_LEN)),
                    plaintext: to_hex(format!("plaintext of seal kind {kind}").as_bytes()),
                    associated_data: String::new(),
                    sealed: String::new(),
                })
                .collect(),
        }
    }

    fn compute(&self) -> Self {
        let key = master(&self.master_secret);
        let secret = key.encode_secret();
        let mut out = self.clone();
        out.data_key = to_hex(&secret[..32]);
        out.id_key = to_hex(&secret[32..64]);
        out.chunker_seed = key.chunker_seed();
        for c in &mut out.cases {
            let context = unhex(&c.context);
            c.associated_data = to_hex(&[&[c.seal_kind][..], &context].concat());
            c.sealed = to_hex(&key.seal(seal_kind(c.seal_kind), &context, &nonce(&c.nonce), &unhex(&c.plaintext)));
        }
        out
    }

    fn check_decode(&self) {
        let key = master(&self.master_secret);
        assert_eq!(to_hex(&key.encode_secret()[..]), self.master_secret);
        for c in &self.cases {
            let kind = seal_kind(c.seal_kind);
            let opened = key.open(kind, &unhex(&c.context), &unhex(&c.sealed)).unwrap();
            assert_eq!(to_hex(&opened), c.plaintext);
            // The kind byte is bound: no other kind opens it.
            for other in (1..=8).filter(|k| *k != c.seal_kind) {
                assert!(key.open(seal_kind(other), &unhex(&c.context), &unhex(&c.sealed)).is_err());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// hashes.json: keyed blob ids and unkeyed object names

#[derive(Serialize, Deserialize, Clone)]
struct HashesVector {
    r#type: String,
    description: String,
    master_secret: String,
    blob_ids: Vec<HashCase>,
    object_names: Vec<HashCase>,
}

#[derive(Serialize, Deserialize, Clone)]
struct HashCase {
    input: String,
    /// Output.
    hash: String,
}

impl Vector for HashesVector {
    const TYPE: &'static str = "hashes";

    fn fixed() -> Self {
        let inputs = || {
            [Vec::new(), b"abc".to_vec(), pattern(0, 1000)]
                .into_iter()
                .map(|i| HashCase { input: to_hex(&i), hash: String::new() })
                .collect::<Vec<_>>()
        };
        HashesVector {
            r#type: Self::TYPE.into(),
            description: "blob_ids: BLAKE3 in keyed mode, key = id_key (bytes 32..64 of master_secret), of the \
                          blob plaintext. object_names: plain BLAKE3 (32-byte output) of the stored bytes."
                .into(),
            master_secret: fixed_master_secret(),
            blob_ids: inputs(),
            object_names: inputs(),
        }
    }

    fn compute(&self) -> Self {
        let key = master(&self.master_secret);
        let mut out = self.clone();
        for c in &mut out.blob_ids {
            c.hash = key.blob_id(&unhex(&c.input)).to_hex();
        }
        for c in &mut out.object_names {
            c.hash = object_name_hex(&unhex(&c.input));
        }
        out
    }

    fn check_decode(&self) {
        for c in self.blob_ids.iter().chain(&self.object_names) {
            assert_eq!(BlobId::from_hex(&c.hash).unwrap().to_hex(), c.hash);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// key-file.json

#[derive(Serialize, Deserialize, Clone, Copy)]
struct KdfJson {
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
}

impl From<KdfJson> for KdfParams {
    fn from(k: KdfJson) -> Self {
        KdfParams { m_cost: k.m_cost, t_cost: k.t_cost, p_cost: k.p_cost }
    }
}

#[derive(Serialize, Deserialize, Clone)]
struct KeyFileVector {
    r#type: String,
    description: String,
    master_secret: String,
    /// UTF-8 password; its bytes are the argon2id password.
    password: String,
    kdf: KdfJson,
    salt: String,
    nonce: String,
    #[serde(with = "dec")]
    created_unix: i64,
    host: String,
    user: String,
    /// Output: argon2id(password, salt, kdf), 32 bytes.
    wrapping_key: String,
    /// Output: the stored key file.
    stored: String,
    /// Output: BLAKE3 of `stored`, the name under `keys/`.
    object_name: String,
}

impl KeyFileVector {
    fn create(&self) -> KeyFile {
        KeyFile::create(
            &master(&self.master_secret),
            self.password.as_bytes(),
            self.kdf.into(),
            unhex_array::<SALT_LEN>(&self.salt),
            &nonce(&self.nonce),
            self.created_unix,
            &self.host,
            &self.user,
        )
        .unwrap()
    }
}

impl Vector for KeyFileVector {
    const TYPE: &'static str = "key-file";

    fn fixed() -> Self {
        let p = KdfParams::INSECURE_FOR_TESTS;
        KeyFileVector {
            r#type: Self::TYPE.into(),
            description: "A key file wrapping master_secret under password with argon2id (version 0x13, 32-byte \
                          output). kdf holds the deliberately weak test parameters; real key files use m_cost \
                          65536, t_cost 3, p_cost 1."
                .into(),
            master_secret: fixed_master_secret(),
            password: "correct horse".into(),
            kdf: KdfJson { m_cost: p.m_cost, t_cost: p.t_cost, p_cost: p.p_cost },
            salt: to_hex(&pattern(0xa0, SALT_LEN)),
            nonce: to_hex(&pattern(0xc0, NONCE_LEN)),
            created_unix: 1_700_000_000,
            host: "backup-host".into(),
            user: "root".into(),
            wrapping_key: String::new(),
            stored: String::new(),
            object_name: String::new(),
        }
    }

    fn compute(&self) -> Self {
        let wrapping =
            KdfParams::from(self.kdf).derive(self.password.as_bytes(), &unhex_array::<SALT_LEN>(&self.salt)).unwrap();
        let stored = self.create().encode();
        let mut out = self.clone();
        out.wrapping_key = to_hex(&wrapping[..]);
        out.object_name = object_name_hex(&stored);
        out.stored = to_hex(&stored);
        out
    }

    fn check_decode(&self) {
        let decoded = KeyFile::decode(&unhex(&self.stored)).unwrap();
        assert_eq!(decoded, self.create());
        assert_eq!(
            decoded.unlock(self.password.as_bytes()).map(|k| *k.encode_secret()),
            Ok(*master(&self.master_secret).encode_secret())
        );
        assert!(matches!(decoded.unlock(b"correct horse battery"), Err(FormatError::WrongPassword)));
    }
}

// ---------------------------------------------------------------------------------------------------
// config.json

#[derive(Serialize, Deserialize, Clone)]
struct ConfigJson {
    repository_id: String,
    min_size: u32,
    avg_size: u32,
    max_size: u32,
    compression_level: i32,
    data_pack_target: u32,
    tree_pack_target: u32,
}

impl ConfigJson {
    fn to_config(&self) -> Config {
        Config {
            repository_id: unhex_array(&self.repository_id),
            chunker: ChunkerParams { min_size: self.min_size, avg_size: self.avg_size, max_size: self.max_size },
            compression_level: self.compression_level,
            data_pack_target: self.data_pack_target,
            tree_pack_target: self.tree_pack_target,
        }
    }
}

#[derive(Serialize, Deserialize, Clone)]
struct ConfigVector {
    r#type: String,
    description: String,
    master_secret: String,
    nonce: String,
    config: ConfigJson,
    /// Output: the plaintext inside the envelope.
    plaintext: String,
    /// Output: the stored `config` file.
    stored: String,
}

impl Vector for ConfigVector {
    const TYPE: &'static str = "config";

    fn fixed() -> Self {
        let c = Config::new(pattern(0x20, 32).try_into().unwrap());
        ConfigVector {
            r#type: Self::TYPE.into(),
            description: "The repository config with the defaults of a new repository: header || envelope \
                          (seal kind 1, context = the 8 header bytes) of the 56-byte plaintext."
                .into(),
            master_secret: fixed_master_secret(),
            nonce: to_hex(&pattern(0x30, NONCE_LEN)),
            config: ConfigJson {
                repository_id: to_hex(&c.repository_id),
                min_size: c.chunker.min_size,
                avg_size: c.chunker.avg_size,
                max_size: c.chunker.max_size,
                compression_level: c.compression_level,
                data_pack_target: c.data_pack_target,
                tree_pack_target: c.tree_pack_target,
            },
            plaintext: String::new(),
            stored: String::new(),
        }
    }

    fn compute(&self) -> Self {
        let key = master(&self.master_secret);
        let stored = self.config.to_config().encode(&key, &nonce(&self.nonce));
        let plaintext = key.open(SealKind::Config, &stored[..8], &stored[8..]).unwrap();
        let mut out = self.clone();
        out.plaintext = to_hex(&plaintext);
        out.stored = to_hex(&stored);
        out
    }

    fn check_decode(&self) {
        let decoded = Config::decode(&unhex(&self.stored), &master(&self.master_secret)).unwrap();
        assert_eq!(decoded, self.config.to_config());
    }
}

// ---------------------------------------------------------------------------------------------------
// blob.json

#[derive(Serialize, Deserialize, Clone)]
struct BlobCase {
    /// 1 data, 2 tree.
    kind: u8,
    plaintext: String,
    nonce: String,
    /// A zstd frame of the plaintext, present for a compressed blob. It is an input, not an output:
    /// zstd's output may differ between versions and is not part of the format; any conforming zstd
    /// decoder must read it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    zstd_frame: Option<String>,
    /// Output: 0 raw, 1 zstd.
    compression: u8,
    /// Output: keyed BLAKE3 of the plaintext.
    id: String,
    /// Output.
    plain_len: u32,
    /// Output: nonce || ciphertext || tag, the bytes stored in a pack.
    sealed: String,
}

impl BlobCase {
    fn kind(&self) -> BlobKind {
        BlobKind::from_u8(self.kind).unwrap()
    }
}

#[derive(Serialize, Deserialize, Clone)]
struct BlobVector {
    r#type: String,
    description: String,
    master_secret: String,
    cases: Vec<BlobCase>,
}

impl Vector for BlobVector {
    const TYPE: &'static str = "blob";

    fn fixed() -> Self {
        let case = |plaintext: &[u8], zstd_frame: Option<Vec<u8>>, nonce_start| BlobCase {
            kind: 1,
            plaintext: to_hex(plaintext),
            nonce: to_hex(&pattern(nonce_start, NONCE_LEN)),
            zstd_frame: zstd_frame.as_deref().map(to_hex),
            compression: 0,
            id: String::new(),
            plain_len: 0,
            sealed: String::new(),
        };
        let sql = b"INSERT INTO t VALUES (1, 'aaaa');\n".repeat(20);
        BlobVector {
            r#type: Self::TYPE.into(),
            description: "Sealed data blobs: envelope with seal kind 3 (data), context = the 32-byte blob id, \
                          around the plaintext (compression 0) or around a zstd frame of it (compression 1)."
                .into(),
            master_secret: fixed_master_secret(),
            cases: vec![
                case(b"hello, cairn\n", None, 0x40),
                case(&sql, Some(zstd::bulk::compress(&sql, 3).unwrap()), 0x50),
            ],
        }
    }

    fn compute(&self) -> Self {
        let key = master(&self.master_secret);
        let mut out = self.clone();
        for c in &mut out.cases {
            let plain = unhex(&c.plaintext);
            let id = key.blob_id(&plain);
            let seal_kind = match c.kind() {
                BlobKind::Data => SealKind::DataBlob,
                BlobKind::Tree => SealKind::TreeBlob,
            };
            let (compression, sealed) = match &c.zstd_frame {
                Some(frame) => (Compression::Zstd, key.seal(seal_kind, id.as_bytes(), &nonce(&c.nonce), &unhex(frame))),
                None => {
                    let s = seal_blob(&key, c.kind(), id, &plain, None, &nonce(&c.nonce));
                    (s.compression, s.sealed)
                }
            };
            c.compression = compression as u8;
            c.id = id.to_hex();
            c.plain_len = plain.len() as u32;
            c.sealed = to_hex(&sealed);
        }
        out
    }

    fn check_decode(&self) {
        let key = master(&self.master_secret);
        for c in &self.cases {
            let compression = Compression::from_u8(c.compression).unwrap();
            let id = BlobId::from_hex(&c.id).unwrap();
            let plain = open_blob(&key, c.kind(), id, compression, c.plain_len, &unhex(&c.sealed)).unwrap();
            assert_eq!(to_hex(&plain), c.plaintext);
            // Claiming the other compression never yields the plaintext.
            let other = if compression == Compression::Raw { Compression::Zstd } else { Compression::Raw };
            assert!(open_blob(&key, c.kind(), id, other, c.plain_len, &unhex(&c.sealed)).is_err());
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Blob entries, shared by pack.json and index.json

#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct EntryJson {
    kind: u8,
    compression: u8,
    offset: u32,
    stored_len: u32,
    plain_len: u32,
    id: String,
}

impl EntryJson {
    fn from_entry(e: &BlobEntry) -> Self {
        EntryJson {
            kind: e.kind as u8,
            compression: e.compression as u8,
            offset: e.offset,
            stored_len: e.stored_len,
            plain_len: e.plain_len,
            id: e.id.to_hex(),
        }
    }

    fn to_entry(&self) -> BlobEntry {
        BlobEntry {
            kind: BlobKind::from_u8(self.kind).unwrap(),
            id: BlobId::from_hex(&self.id).unwrap(),
            compression: Compression::from_u8(self.compression).unwrap(),
            offset: self.offset,
            stored_len: self.stored_len,
            plain_len: self.plain_len,
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// pack.json

#[derive(Serialize, Deserialize, Clone)]
struct PackBlobJson {
    plaintext: String,
    nonce: String,
}

#[derive(Serialize, Deserialize, Clone)]
struct PackVector {
    r#type: String,
    description: String,
    master_secret: String,
    /// Blob kind of every blob in the pack.
    kind: u8,
    blobs: Vec<PackBlobJson>,
    header_nonce: String,
    /// Output: the header entries.
    entries: Vec<EntryJson>,
    /// Output: the plaintext of the sealed header.
    header_plaintext: String,
    /// Output: the stored pack.
    stored: String,
    /// Output: BLAKE3 of `stored`, the pack id.
    object_name: String,
}

impl Vector for PackVector {
    const TYPE: &'static str = "pack";

    fn fixed() -> Self {
        PackVector {
            r#type: Self::TYPE.into(),
            description: "A data pack holding two raw (uncompressed) blobs, each a 44-byte frame then its sealed \
                          bytes, followed by the sealed header (seal kind 5, empty context) and the 8-byte trailer."
                .into(),
            master_secret: fixed_master_secret(),
            kind: 1,
            blobs: vec![
                PackBlobJson { plaintext: to_hex(b"first blob\n"), nonce: to_hex(&pattern(0x60, NONCE_LEN)) },
                PackBlobJson {
                    plaintext: to_hex(b"second blob, a little longer\n"),
                    nonce: to_hex(&pattern(0x70, NONCE_LEN)),
                },
            ],
            header_nonce: to_hex(&pattern(0x80, NONCE_LEN)),
            entries: Vec::new(),
            header_plaintext: String::new(),
            stored: String::new(),
            object_name: String::new(),
        }
    }

    fn compute(&self) -> Self {
        let key = master(&self.master_secret);
        let kind = BlobKind::from_u8(self.kind).unwrap();
        let mut builder = PackBuilder::new(kind, 0);
        for b in &self.blobs {
            let plain = unhex(&b.plaintext);
            builder.add(&seal_blob(&key, kind, key.blob_id(&plain), &plain, None, &nonce(&b.nonce)));
        }
        let (stored, entries) = builder.finish(&key, &nonce(&self.header_nonce));
        let header_len = read_header_len(&stored);
        let sealed_header = &stored[stored.len() - TRAILER_LEN - header_len..stored.len() - TRAILER_LEN];
        let header_plaintext = key.open(SealKind::PackHeader, &[], sealed_header).unwrap();
        let mut out = self.clone();
        out.entries = entries.iter().map(EntryJson::from_entry).collect();
        out.header_plaintext = to_hex(&header_plaintext);
        out.object_name = object_name_hex(&stored);
        out.stored = to_hex(&stored);
        out
    }

    fn check_decode(&self) {
        let key = master(&self.master_secret);
        let stored = unhex(&self.stored);
        let len = stored.len() as u64;
        let header_len = read_header_len(&stored);
        let sealed_header = &stored[stored.len() - TRAILER_LEN - header_len..stored.len() - TRAILER_LEN];
        let expected: Vec<BlobEntry> = self.entries.iter().map(EntryJson::to_entry).collect();
        assert_eq!(pack::decode_header(sealed_header, &key, len).unwrap(), expected);
        assert_eq!(pack::scan_frames(&stored).unwrap(), expected);
        for (e, b) in expected.iter().zip(&self.blobs) {
            let sealed = &stored[e.offset as usize..e.end() as usize];
            let plain = open_blob(&key, e.kind, e.id, e.compression, e.plain_len, sealed).unwrap();
            assert_eq!(to_hex(&plain), b.plaintext);
        }
    }
}

fn read_header_len(stored: &[u8]) -> usize {
    pack::read_trailer(&stored[stored.len() - TRAILER_LEN..], stored.len() as u64).unwrap() as usize
}

// ---------------------------------------------------------------------------------------------------
// index.json

#[derive(Serialize, Deserialize, Clone)]
struct IndexedPackJson {
    id: String,
    #[serde(with = "dec")]
    len: u64,
    blobs: Vec<EntryJson>,
}

impl IndexedPackJson {
    fn to_pack(&self) -> IndexedPack {
        IndexedPack {
            id: PackId::from_hex(&self.id).unwrap(),
            len: self.len,
            blobs: self.blobs.iter().map(EntryJson::to_entry).collect(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone)]
struct CondemnedPackJson {
    #[serde(with = "dec")]
    since_ns: i64,
    pack: IndexedPackJson,
}

#[derive(Serialize, Deserialize, Clone)]
struct IndexVector {
    r#type: String,
    description: String,
    master_secret: String,
    nonce: String,
    supersedes: Vec<String>,
    packs: Vec<IndexedPackJson>,
    condemned: Vec<CondemnedPackJson>,
    /// Output: the plaintext inside the envelope.
    plaintext: String,
    /// Output: the stored index file.
    stored: String,
    /// Output: BLAKE3 of `stored`, the name under `index/`.
    object_name: String,
}

impl IndexVector {
    fn index(&self) -> IndexFile {
        IndexFile {
            supersedes: self.supersedes.iter().map(|s| IndexId::from_hex(s).unwrap()).collect(),
            packs: self.packs.iter().map(IndexedPackJson::to_pack).collect(),
            condemned: self
                .condemned
                .iter()
                .map(|c| CondemnedPack { since_ns: c.since_ns, pack: c.pack.to_pack() })
                .collect(),
        }
    }
}

impl Vector for IndexVector {
    const TYPE: &'static str = "index";

    fn fixed() -> Self {
        let entry = |kind, compression, offset, stored_len, plain_len, id_start| EntryJson {
            kind,
            compression,
            offset,
            stored_len,
            plain_len,
            id: id_hex(id_start),
        };
        IndexVector {
            r#type: Self::TYPE.into(),
            description: "An index file that supersedes two older ones, lists a data pack with a raw and a \
                          zstd blob and a tree pack with one blob, and one condemned data pack: header || \
                          envelope (seal kind 6, context = the 8 header bytes)."
                .into(),
            master_secret: fixed_master_secret(),
            nonce: to_hex(&pattern(0xc0, NONCE_LEN)),
            supersedes: vec![id_hex(0x90), id_hex(0x98)],
            packs: vec![
                IndexedPackJson {
                    id: id_hex(0xa0),
                    len: 1000,
                    blobs: vec![entry(1, 0, 52, 60, 20, 0x01), entry(1, 1, 156, 100, 300, 0x02)],
                },
                IndexedPackJson { id: id_hex(0xb0), len: 500, blobs: vec![entry(2, 0, 52, 200, 160, 0x03)] },
            ],
            condemned: vec![CondemnedPackJson {
                since_ns: 1_699_000_000_000_000_000,
                pack: IndexedPackJson {
                    id: id_hex(0xd0),
                    len: 700,
                    blobs: vec![entry(1, 0, 52, 300, 260, 0x04), entry(1, 1, 396, 240, 900, 0x05)],
                },
            }],
            plaintext: String::new(),
            stored: String::new(),
            object_name: String::new(),
        }
    }

    fn compute(&self) -> Self {
        let key = master(&self.master_secret);
        let stored = self.index().encode(&key, &nonce(&self.nonce));
        let plaintext = key.open(SealKind::Index, &stored[..8], &stored[8..]).unwrap();
        let mut out = self.clone();
        out.plaintext = to_hex(&plaintext);
        out.object_name = object_name_hex(&stored);
        out.stored = to_hex(&stored);
        out
    }

    fn check_decode(&self) {
        let decoded = IndexFile::decode(&unhex(&self.stored), &master(&self.master_secret)).unwrap();
        assert_eq!(decoded, self.index());
    }
}

// ---------------------------------------------------------------------------------------------------
// tree.json

#[derive(Serialize, Deserialize, Clone)]
struct NodeJson {
    /// Raw name bytes (need not be UTF-8).
    name: String,
    /// file, dir, symlink, blockdev, chardev, fifo or socket.
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    content: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    subtree: Option<String>,
    /// Raw target bytes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    rdev: Option<String>,
    mode: u32,
    uid: u32,
    gid: u32,
    user: String,
    group: String,
    #[serde(with = "dec")]
    mtime_ns: i64,
    #[serde(with = "dec")]
    ctime_ns: i64,
    #[serde(with = "dec")]
    inode: u64,
    #[serde(with = "dec")]
    device: u64,
    #[serde(with = "dec")]
    links: u64,
    #[serde(with = "dec")]
    size: u64,
    /// Extended attributes (raw name and value bytes); absent for none.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    xattrs: Vec<XattrJson>,
}

#[derive(Serialize, Deserialize, Clone)]
struct XattrJson {
    name: String,
    value: String,
}

impl NodeJson {
    fn to_node(&self) -> Node {
        let rdev = || self.rdev.as_deref().unwrap().parse::<u64>().unwrap();
        let kind = match self.kind.as_str() {
            "file" => NodeKind::File {
                content: self.content.as_ref().unwrap().iter().map(|c| BlobId::from_hex(c).unwrap()).collect(),
            },
            "dir" => NodeKind::Dir { subtree: TreeId::from_hex(self.subtree.as_deref().unwrap()).unwrap() },
            "symlink" => NodeKind::Symlink { target: unhex(self.target.as_deref().unwrap()) },
            "blockdev" => NodeKind::BlockDevice { rdev: rdev() },
            "chardev" => NodeKind::CharDevice { rdev: rdev() },
            "fifo" => NodeKind::Fifo,
            "socket" => NodeKind::Socket,
            other => panic!("unknown node kind {other}"),
        };
        Node {
            name: unhex(&self.name),
            kind,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            user: self.user.clone(),
            group: self.group.clone(),
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            inode: self.inode,
            device: self.device,
            links: self.links,
            size: self.size,
            xattrs: self.xattrs.iter().map(|x| Xattr { name: unhex(&x.name), value: unhex(&x.value) }).collect(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone)]
struct TreeVector {
    r#type: String,
    description: String,
    master_secret: String,
    nonce: String,
    /// Entries in ascending order of name bytes.
    nodes: Vec<NodeJson>,
    /// Output: the canonical tree encoding (the blob plaintext).
    plaintext: String,
    /// Output: keyed BLAKE3 of the plaintext.
    tree_id: String,
    /// Output: the plaintext sealed as a raw tree blob (seal kind 4, context = tree id).
    sealed: String,
}

impl TreeVector {
    fn tree(&self) -> Tree {
        Tree::from_nodes(self.nodes.iter().map(NodeJson::to_node).collect()).unwrap()
    }
}

impl Vector for TreeVector {
    const TYPE: &'static str = "tree";

    fn fixed() -> Self {
        let node = |name: &[u8], kind: &str, mode: u32| NodeJson {
            name: to_hex(name),
            kind: kind.into(),
            content: None,
            subtree: None,
            target: None,
            rdev: None,
            mode,
            uid: 1000,
            gid: 1000,
            user: "alice".into(),
            group: "staff".into(),
            mtime_ns: 1_699_999_000_500_000_000,
            ctime_ns: 1_699_999_001_000_000_001,
            inode: 4242,
            device: 2049,
            links: 1,
            size: 0,
            xattrs: Vec::new(),
        };
        let root = |mut n: NodeJson| {
            n.uid = 0;
            n.gid = 0;
            n.user = "root".into();
            n.group = "root".into();
            n
        };
        TreeVector {
            r#type: Self::TYPE.into(),
            description: "A directory with one entry of every kind; the file name caf\\xe9.txt is Latin-1, not \
                          UTF-8, and the file's mtime is before 1970."
                .into(),
            master_secret: fixed_master_secret(),
            nonce: to_hex(&pattern(0xd0, NONCE_LEN)),
            nodes: vec![
                NodeJson { subtree: Some(id_hex(0x11)), links: 2, inode: 4243, ..node(b"bin", "dir", 0o040755) },
                NodeJson {
                    content: Some(vec![id_hex(0x21), id_hex(0x31)]),
                    size: 1_500_000,
                    mtime_ns: -1_000_000_001,
                    inode: 4244,
                    ..node(b"caf\xe9.txt", "file", 0o100644)
                },
                root(NodeJson { rdev: Some("1281".into()), inode: 5, ..node(b"console", "chardev", 0o020600) }),
                NodeJson { inode: 4245, ..node(b"fifo", "fifo", 0o010644) },
                NodeJson { target: Some(to_hex(b"bin/tool")), inode: 4246, ..node(b"link", "symlink", 0o120777) },
                root(NodeJson { rdev: Some("2048".into()), inode: 6, ..node(b"sda", "blockdev", 0o060660) }),
                NodeJson { inode: 4247, ..node(b"sock", "socket", 0o140755) },
            ],
            plaintext: String::new(),
            tree_id: String::new(),
            sealed: String::new(),
        }
    }

    fn compute(&self) -> Self {
        let key = master(&self.master_secret);
        let plaintext = self.tree().encode();
        let id = key.blob_id(&plaintext);
        let sealed = seal_blob(&key, BlobKind::Tree, id, &plaintext, None, &nonce(&self.nonce));
        assert_eq!(sealed.compression, Compression::Raw);
        let mut out = self.clone();
        out.plaintext = to_hex(&plaintext);
        out.tree_id = id.to_hex();
        out.sealed = to_hex(&sealed.sealed);
        out
    }

    fn check_decode(&self) {
        let key = master(&self.master_secret);
        let plaintext = unhex(&self.plaintext);
        assert_eq!(Tree::decode(&plaintext).unwrap(), self.tree());
        let id = BlobId::from_hex(&self.tree_id).unwrap();
        let opened =
            open_blob(&key, BlobKind::Tree, id, Compression::Raw, plaintext.len() as u32, &unhex(&self.sealed))
                .unwrap();
        assert_eq!(opened, plaintext);
    }
}

// ---------------------------------------------------------------------------------------------------
// tree-xattrs.json

/// A version 2 tree: the same kind of file as `tree.json`, with extended attributes.
#[derive(Serialize, Deserialize, Clone)]
#[serde(transparent)]
struct TreeXattrsVector(TreeVector);

impl Vector for TreeXattrsVector {
    const TYPE: &'static str = "tree-xattrs";

    fn fixed() -> Self {
        let plain = TreeVector::fixed();
        let attr = |name: &[u8], value: &[u8]| XattrJson { name: to_hex(name), value: to_hex(value) };
        // The kernel's ACL xattr form: version 2, then (tag u16, perm u16, id u32) entries.
        let acl = |entries: &[(u16, u16, u32)]| {
            let mut v = 2u32.to_le_bytes().to_vec();
            for (tag, perm, id) in entries {
                v.extend_from_slice(&tag.to_le_bytes());
                v.extend_from_slice(&perm.to_le_bytes());
                v.extend_from_slice(&id.to_le_bytes());
            }
            v
        };
        let (user_obj, user, group_obj, mask, other) = (0x01, 0x02, 0x04, 0x10, 0x20);
        let none = u32::MAX;
        let access =
            acl(&[(user_obj, 7, none), (user, 6, 1001), (group_obj, 5, none), (mask, 7, none), (other, 5, none)]);
        let default = acl(&[(user_obj, 7, none), (group_obj, 5, none), (other, 0, none)]);
        let nodes = plain.nodes[..2]
            .iter()
            .cloned()
            .zip([
                vec![attr(b"system.posix_acl_access", &access), attr(b"system.posix_acl_default", &default)],
                vec![attr(b"security.capability", &[1, 0, 0, 2, 0, 4, 0, 0]), attr(b"user.mime_type", b"text/plain")],
            ])
            .map(|(node, xattrs)| NodeJson { xattrs, ..node })
            .chain([plain.nodes[3].clone()])
            .collect();
        TreeXattrsVector(TreeVector {
            r#type: Self::TYPE.into(),
            description: "Version 2: a folder with a POSIX access and default ACL (raw kernel values), a file \
                          with a capability and a user attribute, and a FIFO without attributes."
                .into(),
            nodes,
            ..plain
        })
    }

    fn compute(&self) -> Self {
        TreeXattrsVector(self.0.compute())
    }

    fn check_decode(&self) {
        assert_eq!(unhex(&self.0.plaintext)[4..8], [2, 0, 0, 0], "a tree with attributes is version 2");
        self.0.check_decode();
    }
}

// ---------------------------------------------------------------------------------------------------
// snapshot.json

#[derive(Serialize, Deserialize, Clone)]
struct SummaryJson {
    #[serde(with = "dec")]
    files_new: u64,
    #[serde(with = "dec")]
    files_changed: u64,
    #[serde(with = "dec")]
    files_unchanged: u64,
    #[serde(with = "dec")]
    dirs_new: u64,
    #[serde(with = "dec")]
    dirs_changed: u64,
    #[serde(with = "dec")]
    dirs_unchanged: u64,
    #[serde(with = "dec")]
    data_blobs_added: u64,
    #[serde(with = "dec")]
    tree_blobs_added: u64,
    #[serde(with = "dec")]
    bytes_read: u64,
    #[serde(with = "dec")]
    total_size: u64,
    #[serde(with = "dec")]
    bytes_added_plain: u64,
    #[serde(with = "dec")]
    bytes_added_stored: u64,
    #[serde(with = "dec")]
    started_ns: i64,
    #[serde(with = "dec")]
    duration_ns: u64,
    #[serde(with = "dec")]
    warnings: u64,
}

#[derive(Serialize, Deserialize, Clone)]
struct SnapshotJson {
    #[serde(with = "dec")]
    time_ns: i64,
    utc_offset_s: i32,
    host: String,
    user: String,
    uid: u32,
    gid: u32,
    tags: Vec<String>,
    paths: Vec<String>,
    /// 1 files, 2 stdin, 3 command, 4 postgres.
    source: u8,
    source_detail: String,
    tree: String,
    parent: Option<String>,
    original: Option<String>,
    program_version: String,
    summary: SummaryJson,
}

impl SnapshotJson {
    fn to_snapshot(&self) -> Snapshot {
        let s = &self.summary;
        Snapshot {
            time_ns: self.time_ns,
            utc_offset_s: self.utc_offset_s,
            host: self.host.clone(),
            user: self.user.clone(),
            uid: self.uid,
            gid: self.gid,
            tags: self.tags.clone(),
            paths: self.paths.clone(),
            source: match self.source {
                1 => SourceKind::Files,
                2 => SourceKind::Stdin,
                3 => SourceKind::Command,
                4 => SourceKind::Postgres,
                other => panic!("unknown source kind {other}"),
            },
            source_detail: self.source_detail.clone(),
            tree: TreeId::from_hex(&self.tree).unwrap(),
            parent: self.parent.as_deref().map(|p| SnapshotId::from_hex(p).unwrap()),
            original: self.original.as_deref().map(|p| SnapshotId::from_hex(p).unwrap()),
            program_version: self.program_version.clone(),
            summary: Summary {
                files_new: s.files_new,
                files_changed: s.files_changed,
                files_unchanged: s.files_unchanged,
                dirs_new: s.dirs_new,
                dirs_changed: s.dirs_changed,
                dirs_unchanged: s.dirs_unchanged,
                data_blobs_added: s.data_blobs_added,
                tree_blobs_added: s.tree_blobs_added,
                bytes_read: s.bytes_read,
                total_size: s.total_size,
                bytes_added_plain: s.bytes_added_plain,
                bytes_added_stored: s.bytes_added_stored,
                started_ns: s.started_ns,
                duration_ns: s.duration_ns,
                warnings: s.warnings,
            },
        }
    }
}

#[derive(Serialize, Deserialize, Clone)]
struct SnapshotCase {
    nonce: String,
    snapshot: SnapshotJson,
    /// Output: the plaintext inside the envelope.
    plaintext: String,
    /// Output: the stored snapshot file.
    stored: String,
    /// Output: BLAKE3 of `stored`, the name under `snapshots/`.
    object_name: String,
}

#[derive(Serialize, Deserialize, Clone)]
struct SnapshotVector {
    r#type: String,
    description: String,
    master_secret: String,
    cases: Vec<SnapshotCase>,
}

impl Vector for SnapshotVector {
    const TYPE: &'static str = "snapshot";

    fn fixed() -> Self {
        let summary = SummaryJson {
            files_new: 3,
            files_changed: 1,
            files_unchanged: 120,
            dirs_new: 2,
            dirs_changed: 4,
            dirs_unchanged: 30,
            data_blobs_added: 17,
            tree_blobs_added: 6,
            bytes_read: 734_003_200,
            total_size: 5_368_709_120,
            bytes_added_plain: 18_874_368,
            bytes_added_stored: 6_291_456,
            started_ns: 1_699_999_990_000_000_000,
            duration_ns: 10_123_456_789,
            warnings: 2,
        };
        let postgres = SnapshotJson {
            time_ns: 1_700_000_000_123_456_789,
            utc_offset_s: 3600,
            host: "db1.example".into(),
            user: "postgres".into(),
            uid: 108,
            gid: 114,
            tags: vec!["hourly".into(), "pg".into()],
            paths: vec!["/var/lib/postgresql".into()],
            source: 4,
            source_detail: "appdb".into(),
            tree: id_hex(0xe0),
            parent: Some(id_hex(0xe8)),
            original: None,
            program_version: "cairn 0.1.0".into(),
            summary: summary.clone(),
        };
        let repaired = SnapshotJson {
            time_ns: -86_400_000_000_000,
            utc_offset_s: -12_600,
            host: "files".into(),
            user: "root".into(),
            uid: 0,
            gid: 0,
            tags: Vec::new(),
            paths: vec!["/etc".into(), "/srv/uploads/été".into()],
            source: 1,
            source_detail: String::new(),
            tree: id_hex(0xf0),
            parent: None,
            original: Some(id_hex(0xf8)),
            program_version: "cairn 0.1.0".into(),
            summary: SummaryJson { started_ns: -86_400_000_000_000, warnings: 0, ..summary },
        };
        let case = |nonce_start, snapshot| SnapshotCase {
            nonce: to_hex(&pattern(nonce_start, NONCE_LEN)),
            snapshot,
            plaintext: String::new(),
            stored: String::new(),
            object_name: String::new(),
        };
        SnapshotVector {
            r#type: Self::TYPE.into(),
            description: "Snapshots: header || envelope (seal kind 7, context = the 8 header bytes). The first \
                          has a parent and no original, the second an original, no parent, no tags, a negative \
                          time and offset, and a non-ASCII path."
                .into(),
            master_secret: fixed_master_secret(),
            cases: vec![case(0xf0, postgres), case(0x08, repaired)],
        }
    }

    fn compute(&self) -> Self {
        let key = master(&self.master_secret);
        let mut out = self.clone();
        for c in &mut out.cases {
            let stored = c.snapshot.to_snapshot().encode(&key, &nonce(&c.nonce));
            let plaintext = key.open(SealKind::Snapshot, &stored[..8], &stored[8..]).unwrap();
            c.plaintext = to_hex(&plaintext);
            c.object_name = object_name_hex(&stored);
            c.stored = to_hex(&stored);
        }
        out
    }

    fn check_decode(&self) {
        let key = master(&self.master_secret);
        for c in &self.cases {
            assert_eq!(Snapshot::decode(&unhex(&c.stored), &key).unwrap(), c.snapshot.to_snapshot());
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// record.json

#[derive(Serialize, Deserialize, Clone)]
struct RecordJson {
    #[serde(with = "dec")]
    time_ns: i64,
    #[serde(with = "dec")]
    duration_ns: u64,
    host: String,
    user: String,
    kind: String,
    scope: String,
    ok: bool,
    summary: String,
    details: String,
    program_version: String,
}

impl RecordJson {
    fn to_record(&self) -> Record {
        Record {
            time_ns: self.time_ns,
            duration_ns: self.duration_ns,
            host: self.host.clone(),
            user: self.user.clone(),
            kind: self.kind.clone(),
            scope: self.scope.clone(),
            ok: self.ok,
            summary: self.summary.clone(),
            details: self.details.clone(),
            program_version: self.program_version.clone(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone)]
struct RecordCase {
    nonce: String,
    record: RecordJson,
    /// Output: the plaintext inside the envelope.
    plaintext: String,
    /// Output: the stored record file.
    stored: String,
    /// Output: BLAKE3 of `stored`, the name under `records/`.
    object_name: String,
}

#[derive(Serialize, Deserialize, Clone)]
struct RecordVector {
    r#type: String,
    description: String,
    master_secret: String,
    cases: Vec<RecordCase>,
}

impl Vector for RecordVector {
    const TYPE: &'static str = "record";

    fn fixed() -> Self {
        let check = RecordJson {
            time_ns: 1_700_000_400_000_000_000,
            duration_ns: 12_500_000_000,
            host: "db1.example".into(),
            user: "root".into(),
            kind: "check".into(),
            scope: String::new(),
            ok: true,
            summary: "no damage found; read 5% of the packs".into(),
            details: r#"{"damage":0,"level":"data","subset":"5%"}"#.into(),
            program_version: "cairn 0.1.0".into(),
        };
        let failed_run = RecordJson {
            time_ns: 1_700_086_400_000_000_000,
            duration_ns: 0,
            host: "files".into(),
            user: "backup".into(),
            kind: "run".into(),
            scope: "nightly/uploads".into(),
            ok: false,
            summary: "source command 'pg_dump' exited with status 1".into(),
            details: String::new(),
            program_version: "cairn 0.1.0".into(),
        };
        let case = |nonce_start, record| RecordCase {
            nonce: to_hex(&pattern(nonce_start, NONCE_LEN)),
            record,
            plaintext: String::new(),
            stored: String::new(),
            object_name: String::new(),
        };
        RecordVector {
            r#type: Self::TYPE.into(),
            description: "Records: header || envelope (seal kind 9, context = the 8 header bytes). The first is a \
                          successful check with no scope and a details object, the second a failed run of a \
                          profile's job with empty details."
                .into(),
            master_secret: fixed_master_secret(),
            cases: vec![case(0x30, check), case(0x50, failed_run)],
        }
    }

    fn compute(&self) -> Self {
        let key = master(&self.master_secret);
        let mut out = self.clone();
        for c in &mut out.cases {
            let stored = c.record.to_record().encode(&key, &nonce(&c.nonce));
            let plaintext = key.open(SealKind::Record, &stored[..8], &stored[8..]).unwrap();
            c.plaintext = to_hex(&plaintext);
            c.object_name = object_name_hex(&stored);
            c.stored = to_hex(&stored);
        }
        out
    }

    fn check_decode(&self) {
        let key = master(&self.master_secret);
        for c in &self.cases {
            assert_eq!(Record::decode(&unhex(&c.stored), &key).unwrap(), c.record.to_record());
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// lock.json

#[derive(Serialize, Deserialize, Clone)]
struct LockCase {
    nonce: String,
    /// 1 shared, 2 exclusive.
    kind: u8,
    host: String,
    user: String,
    pid: u32,
    #[serde(with = "dec")]
    created_ns: i64,
    #[serde(with = "dec")]
    refreshed_ns: i64,
    /// Output: the plaintext inside the envelope.
    plaintext: String,
    /// Output: the stored lock file.
    stored: String,
}

impl LockCase {
    fn lock(&self) -> Lock {
        Lock {
            kind: match self.kind {
                1 => LockKind::Shared,
                2 => LockKind::Exclusive,
                other => panic!("unknown lock kind {other}"),
            },
            host: self.host.clone(),
            user: self.user.clone(),
            pid: self.pid,
            created_ns: self.created_ns,
            refreshed_ns: self.refreshed_ns,
        }
    }
}

#[derive(Serialize, Deserialize, Clone)]
struct LockVector {
    r#type: String,
    description: String,
    master_secret: String,
    cases: Vec<LockCase>,
}

impl Vector for LockVector {
    const TYPE: &'static str = "lock";

    fn fixed() -> Self {
        let case = |nonce_start, kind, host: &str, user: &str, pid, created_ns, refreshed_ns| LockCase {
            nonce: to_hex(&pattern(nonce_start, NONCE_LEN)),
            kind,
            host: host.into(),
            user: user.into(),
            pid,
            created_ns,
            refreshed_ns,
            plaintext: String::new(),
            stored: String::new(),
        };
        LockVector {
            r#type: Self::TYPE.into(),
            description: "Lock files: header || envelope (seal kind 8, context = the 8 header bytes). Lock files \
                          have random names, so no object name is given."
                .into(),
            master_secret: fixed_master_secret(),
            cases: vec![
                case(0x18, 1, "db1.example", "postgres", 4242, 1_700_000_000_000_000_000, 1_700_000_060_000_000_000),
                case(0x28, 2, "backup-host", "root", 1, 1_700_000_100_000_000_000, 1_700_000_100_000_000_000),
            ],
        }
    }

    fn compute(&self) -> Self {
        let key = master(&self.master_secret);
        let mut out = self.clone();
        for c in &mut out.cases {
            let stored = c.lock().encode(&key, &nonce(&c.nonce));
            c.plaintext = to_hex(&key.open(SealKind::Lock, &stored[..8], &stored[8..]).unwrap());
            c.stored = to_hex(&stored);
        }
        out
    }

    fn check_decode(&self) {
        let key = master(&self.master_secret);
        for c in &self.cases {
            assert_eq!(Lock::decode(&unhex(&c.stored), &key).unwrap(), c.lock());
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// chunker.json

const XORSHIFT: &str = "xorshift64";
const ZEROS: &str = "zeros";

#[derive(Serialize, Deserialize, Clone)]
struct ChunkerInput {
    /// "xorshift64" or "zeros".
    generator: String,
    #[serde(with = "dec")]
    seed: u64,
    length: usize,
}

impl ChunkerInput {
    fn bytes(&self) -> Vec<u8> {
        match self.generator.as_str() {
            XORSHIFT => {
                let mut x = self.seed;
                (0..self.length)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect()
            }
            ZEROS => vec![0; self.length],
            other => panic!("unknown generator {other}"),
        }
    }
}

#[derive(Serialize, Deserialize, Clone)]
struct ChunkerCase {
    min_size: u32,
    avg_size: u32,
    max_size: u32,
    /// The repository's chunker seed (bytes 64..72 of the master secret, little-endian).
    #[serde(with = "dec")]
    chunker_seed: u64,
    input: ChunkerInput,
    /// Output: BLAKE3 of the generated input, to check the generator.
    input_blake3: String,
    /// Output: the chunk lengths, in order; they add up to the input length.
    lengths: Vec<usize>,
}

#[derive(Serialize, Deserialize, Clone)]
struct ChunkerVector {
    r#type: String,
    description: String,
    generators: String,
    /// Output: the unseeded gear table, 256 64-bit values as 16 hex digits each.
    gear_table: Vec<String>,
    cases: Vec<ChunkerCase>,
}

impl Vector for ChunkerVector {
    const TYPE: &'static str = "chunker";

    fn fixed() -> Self {
        let case = |chunker_seed, generator: &str, seed, length| ChunkerCase {
            min_size: 2048,
            avg_size: 8192,
            max_size: 32768,
            chunker_seed,
            input: ChunkerInput { generator: generator.into(), seed, length },
            input_blake3: String::new(),
            lengths: Vec::new(),
        };
        ChunkerVector {
            r#type: Self::TYPE.into(),
            description: "FastCDC 2020 cut points (normalization level 1) with the gear table XOR'd with the \
                          chunker seed, see spec/chunking.md. gear_table is the unseeded table."
                .into(),
            generators: "xorshift64: a 64-bit state starts at seed; for each byte: state ^= state << 13; \
                         state ^= state >> 7; state ^= state << 17 (64-bit shifts, bits shifted out are lost); \
                         the byte is the low 8 bits of the new state. zeros: length zero bytes, seed unused."
                .into(),
            gear_table: Vec::new(),
            cases: vec![
                case(0x0123_4567_89ab_cdef, XORSHIFT, 0x9e37_79b9_7f4a_7c15, 262_144),
                case(0, XORSHIFT, 0x9e37_79b9_7f4a_7c15, 262_144),
                case(0x0123_4567_89ab_cdef, ZEROS, 0, 100_001),
            ],
        }
    }

    fn compute(&self) -> Self {
        let (gear, _) = fastcdc::v2020::get_gear_with_seed(0);
        let mut out = self.clone();
        out.gear_table = gear.iter().map(|g| format!("{g:016x}")).collect();
        for c in &mut out.cases {
            let params =
                ChunkerParams { min_size: c.min_size, avg_size: c.avg_size, max_size: c.max_size }.validate().unwrap();
            let input = c.input.bytes();
            c.input_blake3 = to_hex(blake3::hash(&input).as_bytes());
            c.lengths = Chunker::new(params, c.chunker_seed).cut(&input, true).0;
        }
        out
    }

    fn check_decode(&self) {
        let gear: Vec<u64> = self.gear_table.iter().map(|g| u64::from_str_radix(g, 16).unwrap()).collect();
        for c in &self.cases {
            // The seeded tables are the unseeded ones XOR the seed (and the seed shifted left by one).
            let (seeded, seeded_ls) = fastcdc::v2020::get_gear_with_seed(c.chunker_seed);
            for (i, g) in gear.iter().enumerate() {
                assert_eq!(seeded[i], g ^ c.chunker_seed);
                assert_eq!(seeded_ls[i], (g << 1) ^ (c.chunker_seed << 1));
            }
            assert_eq!(c.lengths.iter().sum::<usize>(), c.input.length);
            // Streaming in uneven buffers gives the same cut points (the rule of spec/chunking.md).
            let params = ChunkerParams { min_size: c.min_size, avg_size: c.avg_size, max_size: c.max_size };
            let chunker = Chunker::new(params, c.chunker_seed);
            let input = c.input.bytes();
            let mut streamed = Vec::new();
            let mut carry = Vec::new();
            for piece in input.chunks(12_345) {
                carry.extend_from_slice(piece);
                let (lens, used) = chunker.cut(&carry, false);
                streamed.extend(lens);
                carry.drain(..used);
            }
            streamed.extend(chunker.cut(&carry, true).0);
            assert_eq!(streamed, c.lengths);
        }
    }
}
