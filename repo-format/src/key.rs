//! Key files: a password, stretched with argon2id, wraps the repository's master secret.
//!
//! ```text
//! header "CRNK" v1 | m_cost u32 | t_cost u32 | p_cost u32 | salt [32] | created_unix i64
//!   | host (u16 len + UTF-8) | user (u16 len + UTF-8) | sealed master secret (24 + 72 + 16)
//! ```
//! The associated data of the sealed secret is every byte before it, so changing a parameter, the salt
//! or the metadata is an authentication failure, never a silently different key. The argon2id
//! parameters live in the file so they can be raised later for new keys.

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use crate::crypto::{self, MASTER_SECRET_LEN, MasterKey, Nonce, SEAL_OVERHEAD, SealKind};
use crate::object::ObjectKind;
use crate::wire::{Reader, Writer, clamp_short};
use crate::{FormatError, Result};

/// Length of the argon2id salt.
pub const SALT_LEN: usize = 32;

/// Argon2id cost parameters, as stored in a key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl KdfParams {
    /// The default for new key files: 64 MiB, 3 passes, 2 lanes (computed in parallel: the same
    /// memory and passes as one lane, in about two thirds of the time on two cores).
    pub const DEFAULT: KdfParams = KdfParams { m_cost: 64 * 1024, t_cost: 3, p_cost: 2 };
    /// Deliberately weak parameters for tests only (microseconds, not seconds).
    pub const INSECURE_FOR_TESTS: KdfParams = KdfParams { m_cost: 64, t_cost: 1, p_cost: 1 };
    /// Upper bounds accepted when decoding (and creating), so a hostile key file cannot make an
    /// unlock allocate more than 2 GiB or spin for minutes: 2 GiB, 16 passes, 16 lanes, and at
    /// most [`KdfParams::MAX_WORK`] in all (spec/keys.md).
    pub const MAX: KdfParams = KdfParams { m_cost: 2 * 1024 * 1024, t_cost: 16, p_cost: 16 };
    /// The largest memory × passes (KiB × passes) accepted: 8 GiB of memory filled in all, e.g.
    /// 2 GiB × 4 passes or 512 MiB × 16 (about ten seconds of one core here; the default is 192 MiB).
    pub const MAX_WORK: u64 = 8 * 1024 * 1024;

    /// `m_cost` KiB and `t_cost` passes with the default lanes, fewer when the memory is too small
    /// for them (argon2id needs 8 KiB per lane).
    pub fn with_costs(m_cost: u32, t_cost: u32) -> KdfParams {
        KdfParams { m_cost, t_cost, p_cost: Self::DEFAULT.p_cost.min(m_cost / 8).max(1) }
    }

    fn validate(self) -> Result<Self> {
        let what = "key file";
        if self.m_cost > Self::MAX.m_cost {
            return Err(FormatError::TooLarge { what, len: self.m_cost.into(), max: Self::MAX.m_cost.into() });
        }
        if self.t_cost > Self::MAX.t_cost {
            return Err(FormatError::TooLarge { what, len: self.t_cost.into(), max: Self::MAX.t_cost.into() });
        }
        if self.p_cost > Self::MAX.p_cost {
            return Err(FormatError::TooLarge { what, len: self.p_cost.into(), max: Self::MAX.p_cost.into() });
        }
        let work = u64::from(self.m_cost) * u64::from(self.t_cost);
        if work > Self::MAX_WORK {
            let what = "key file's argon2id memory (KiB) x passes";
            return Err(FormatError::TooLarge { what, len: work, max: Self::MAX_WORK });
        }
        Params::new(self.m_cost, self.t_cost, self.p_cost, Some(32))
            .map_err(|_| FormatError::Invalid { what, reason: "argon2id parameters out of range" })?;
        Ok(self)
    }

    /// Derives the 32-byte key-wrapping key from a password (wiped when dropped).
    pub fn derive(&self, password: &[u8], salt: &[u8; SALT_LEN]) -> Result<Zeroizing<[u8; 32]>> {
        let params = Params::new(self.m_cost, self.t_cost, self.p_cost, Some(32))
            .map_err(|_| FormatError::Invalid { what: "key file", reason: "argon2id parameters out of range" })?;
        let mut out = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(password, salt, &mut *out)
            .map_err(|_| FormatError::Invalid { what: "key file", reason: "argon2id rejected its input" })?;
        Ok(out)
    }
}

/// A decoded key file. The master secret inside stays sealed until [`KeyFile::unlock`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    pub kdf: KdfParams,
    pub salt: [u8; SALT_LEN],
    /// When the key was added, seconds since the Unix epoch.
    pub created_unix: i64,
    /// Host the key was added on.
    pub host: String,
    /// User who added the key.
    pub user: String,
    sealed_secret: Vec<u8>,
}

impl KeyFile {
    /// Wraps `master` under `password`. `salt` and `nonce` come from a cryptographic RNG.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        master: &MasterKey,
        password: &[u8],
        kdf: KdfParams,
        salt: [u8; SALT_LEN],
        nonce: &Nonce,
        created_unix: i64,
        host: &str,
        user: &str,
    ) -> Result<Self> {
        let kdf = kdf.validate()?;
        let mut file = KeyFile {
            kdf,
            salt,
            created_unix,
            host: clamp_short(host).to_owned(),
            user: clamp_short(user).to_owned(),
            sealed_secret: Vec::new(),
        };
        let wrapping = kdf.derive(password, &salt)?;
        let aad = file.encode_unsealed_part();
        file.sealed_secret = crypto::seal_with(
            &crypto::cipher_for(&wrapping),
            SealKind::MasterSecret,
            &aad,
            nonce,
            &*master.encode_secret(),
        );
        Ok(file)
    }

    fn encode_unsealed_part(&self) -> Vec<u8> {
        let mut w = Writer::new();
        ObjectKind::Key.write_header(&mut w);
        w.u32(self.kdf.m_cost);
        w.u32(self.kdf.t_cost);
        w.u32(self.kdf.p_cost);
        w.raw(&self.salt);
        w.i64(self.created_unix);
        w.bytes16(self.host.as_bytes());
        w.bytes16(self.user.as_bytes());
        w.into_bytes()
    }

    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.encode_unsealed_part();
        out.extend_from_slice(&self.sealed_secret);
        out
    }

    /// Decodes a key file without unlocking it.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "key file");
        ObjectKind::Key.read_header(&mut r)?;
        let kdf = KdfParams { m_cost: r.u32()?, t_cost: r.u32()?, p_cost: r.u32()? }.validate()?;
        let salt = r.id()?;
        let created_unix = r.i64()?;
        let host = r.string16()?;
        let user = r.string16()?;
        let sealed_secret = r.take(MASTER_SECRET_LEN + SEAL_OVERHEAD)?.to_vec();
        r.finish()?;
        Ok(KeyFile { kdf, salt, created_unix, host, user, sealed_secret })
    }

    /// Unwraps the master secret. A wrong password, like any damage to the file, yields
    /// [`FormatError::WrongPassword`]; the two cannot be told apart by design.
    pub fn unlock(&self, password: &[u8]) -> Result<MasterKey> {
        let wrapping = self.kdf.derive(password, &self.salt)?;
        let aad = self.encode_unsealed_part();
        let secret = crypto::open_with(
            &crypto::cipher_for(&wrapping),
            SealKind::MasterSecret,
            &aad,
            &self.sealed_secret,
            "key file",
        )
        .map_err(|_| FormatError::WrongPassword)?;
        let secret = Zeroizing::new(secret);
        MasterKey::decode_secret(&secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (MasterKey, KeyFile) {
        let master = MasterKey::from_random([9; MASTER_SECRET_LEN]);
        let kf = KeyFile::create(
            &master,
            b"pw",
            KdfParams::INSECURE_FOR_TESTS,
            [3; SALT_LEN],
            &[4; 24],
            1_700_000_000,
            "host",
            "root",
        )
        .expect("valid parameters");
        (master, kf)
    }

    #[test]
    fn unlock_round_trip() {
        let (master, kf) = sample();
        let decoded = KeyFile::decode(&kf.encode()).expect("decodes");
        assert_eq!(decoded, kf);
        assert_eq!(decoded.unlock(b"pw").map(|k| *k.encode_secret()), Ok(*master.encode_secret()));
        assert!(matches!(decoded.unlock(b"wrong"), Err(FormatError::WrongPassword)));
    }

    #[test]
    fn any_flipped_byte_is_refused() {
        let (_, kf) = sample();
        let bytes = kf.encode();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x80;
            match KeyFile::decode(&bad) {
                Err(_) => {}
                Ok(k) => assert!(k.unlock(b"pw").is_err(), "byte {i} flipped still unlocked"),
            }
        }
    }

    #[test]
    fn default_parameters_unlock() {
        // The costs every real key file gets (64 MiB, 3 passes): about a second of work in the test
        // profile. Only correctness is checked here; the time is never asserted.
        let master = MasterKey::from_random([6; MASTER_SECRET_LEN]);
        let kf = KeyFile::create(&master, b"correct horse", KdfParams::DEFAULT, [1; SALT_LEN], &[2; 24], 0, "h", "u")
            .expect("default parameters are valid");
        let decoded = KeyFile::decode(&kf.encode()).expect("decodes");
        assert_eq!(decoded.kdf, KdfParams::DEFAULT);
        assert_eq!(decoded.unlock(b"correct horse").map(|k| *k.encode_secret()), Ok(*master.encode_secret()));
    }

    #[test]
    fn lanes_computed_in_parallel_match_the_reference_implementation() {
        // Expected values from the reference argon2 command (Debian's `argon2` package):
        // `echo -n "correct horse" | argon2 0123456789abcdef0123456789abcdef -id -t 2 -m 10 -p P -l 32 -r`
        let salt: [u8; SALT_LEN] = *b"0123456789abcdef0123456789abcdef";
        for (lanes, expected) in [
            (1, "fb6f05cfa5c289bf729770faf1d845e3177bafa339e78d5a336537ee5ee32b64"),
            (2, "0a307f611dec88e25e7307028932a4a501df67f92d0a774d33ef9ec9a05fdb60"),
            (4, "e6e028363fcd7a031f5b3a6867073e3013262047e370f6726d34ab046d6de21f"),
        ] {
            let params = KdfParams { m_cost: 1024, t_cost: 2, p_cost: lanes };
            let key = params.derive(b"correct horse", &salt).expect("valid parameters");
            assert_eq!(crate::id::to_hex(&*key), expected, "{lanes} lanes");
        }
    }

    #[test]
    fn costs_from_the_command_line_get_the_default_lanes_when_the_memory_allows() {
        assert_eq!(KdfParams::with_costs(64 * 1024, 3), KdfParams::DEFAULT);
        assert_eq!(KdfParams::with_costs(64, 1).p_cost, 2);
        // argon2id needs 8 KiB per lane.
        assert_eq!(KdfParams::with_costs(8, 1).p_cost, 1);
        assert!(KdfParams::with_costs(8, 1).validate().is_ok());
    }

    #[test]
    fn secrets_are_wiped_on_drop_and_not_comparable() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wiped_on_drop::<MasterKey>();
        wiped_on_drop::<Zeroizing<[u8; 32]>>();
        let wrapping: Zeroizing<[u8; 32]> =
            KdfParams::INSECURE_FOR_TESTS.derive(b"pw", &[1; SALT_LEN]).expect("valid parameters");
        assert_ne!(*wrapping, [0; 32]);
    }

    #[test]
    fn a_key_file_demanding_unbounded_argon2_work_is_refused_before_any_work() {
        let (_, kf) = sample();
        let bytes = kf.encode();
        let with = |m: u32, t: u32, p: u32| {
            let mut b = bytes.clone();
            b[8..12].copy_from_slice(&m.to_le_bytes());
            b[12..16].copy_from_slice(&t.to_le_bytes());
            b[16..20].copy_from_slice(&p.to_le_bytes());
            KeyFile::decode(&b)
        };
        // Each bound alone, and memory × passes together (each within its own bound).
        for (m, t, p) in [(KdfParams::MAX.m_cost + 1, 1, 1), (64, KdfParams::MAX.t_cost + 1, 1), (64, 1, 17)] {
            assert!(matches!(with(m, t, p), Err(FormatError::TooLarge { .. })), "{m} {t} {p}");
        }
        assert!(matches!(with(KdfParams::MAX.m_cost, 5, 1), Err(FormatError::TooLarge { .. })));
        assert!(matches!(with(1024 * 1024, 16, 1), Err(FormatError::TooLarge { .. })));
        // The bounds themselves decode (no unlock is attempted here).
        assert!(with(KdfParams::MAX.m_cost, 4, 16).is_ok());
        assert!(with(512 * 1024, 16, 4).is_ok());
        assert!(KdfParams::DEFAULT.validate().is_ok());
    }

    #[test]
    fn hostile_parameters_are_refused_before_work() {
        let (_, kf) = sample();
        let mut bytes = kf.encode();
        bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(KeyFile::decode(&bytes), Err(FormatError::TooLarge { .. })));
    }
}
