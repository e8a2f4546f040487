//! C2SP signed notes (`signed-note.md`) and checkpoints (`tlog-checkpoint.md`), Ed25519 keys.
//!
//! A note is UTF-8 text ending in a newline, a blank line, then one signature line per signer:
//! `— <key name> <base64(key hash (4 bytes, big-endian) || signature)>`. The key hash is the first
//! four bytes of SHA-256(`name` || `\n` || `0x01` || public key). Ed25519 signs the text (with its
//! final newline). A verifier key is `name+hash(8 hex)+base64(0x01 || public key)`; a signer key
//! `PRIVATE+KEY+name+hash+base64(0x01 || seed)`.
//!
//! A witness adds a cosignature (`tlog-cosignature.md`, algorithm 0x04): it signs
//! `cosignature/v1\ntime <unix seconds>\n` followed by the checkpoint's text, and its line holds
//! key hash || timestamp (8 bytes, big-endian) || signature; its key hash is computed with 0x04.
//! A checkpoint's text is its origin, the tree size in decimal, the base64 root hash, each on
//! its own line, then any extension lines.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use crate::merkle::Hash;

/// The signature algorithm byte of Ed25519 in signed notes.
pub const ALG_ED25519: u8 = 0x01;
/// The algorithm byte of a timestamped Ed25519 cosignature (C2SP tlog-cosignature v1).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// What is wrong with a key, note or checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed key: {0}")]
    Key(String),
    #[error("malformed note: {0}")]
    Note(String),
    #[error("malformed checkpoint: {0}")]
    Checkpoint(String),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The key hash of `name` and an algorithm byte with its public key.
pub fn key_hash(name: &str, alg: u8, public: &[u8]) -> u32 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[alg]);
    ctx.update(public);
    let d = ctx.finish();
    let b = d.as_ref();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// An Ed25519 signing key with its name.
pub struct Signer {
    name: String,
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Signer {
    /// A new random key named `name` (no whitespace, no `+`).
    pub fn generate(name: &str) -> Result<Signer, NoteError> {
        let mut seed = [0u8; 32];
        SystemRandom::new().fill(&mut seed).map_err(|_| NoteError::Key("no randomness".into()))?;
        Signer::from_seed(name, seed)
    }

    /// The key of `name` with this 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Signer, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::Key(format!("the key name {name:?} is empty or holds whitespace or '+'")));
        }
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|e| NoteError::Key(e.to_string()))?;
        Ok(Signer { name: name.to_owned(), seed, pair })
    }

    /// Reads a signer key `PRIVATE+KEY+name+hash+base64(0x01 || seed)`.
    pub fn parse(text: &str) -> Result<Signer, NoteError> {
        let text = text.trim();
        let rest = text
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| NoteError::Key("a signer key starts with PRIVATE+KEY+".into()))?;
        let (name, hash, key) = three_parts(rest)?;
        let key = B64.decode(key).map_err(|_| NoteError::Key("the key is not base64".into()))?;
        if key.len() != 33 || key[0] != ALG_ED25519 {
            return Err(NoteError::Key("the key is not 0x01 followed by a 32-byte Ed25519 seed".into()));
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&key[1..]);
        let signer = Signer::from_seed(name, seed)?;
        if signer.verifier().hash != hash {
            return Err(NoteError::Key("the key hash does not match the key".into()));
        }
        Ok(signer)
    }

    /// The signer key's text (a secret: never log it).
    pub fn to_key(&self) -> String {
        let mut key = vec![ALG_ED25519];
        key.extend_from_slice(&self.seed);
        format!("PRIVATE+KEY+{}+{:08x}+{}", self.name, self.verifier().hash, B64.encode(key))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn public(&self) -> [u8; 32] {
        let mut p = [0u8; 32];
        p.copy_from_slice(self.pair.public_key().as_ref());
        p
    }

    /// Its verifier key.
    pub fn verifier(&self) -> Verifier {
        Verifier::new(&self.name, ALG_ED25519, self.public())
    }

    /// The verifier key of its cosignatures (algorithm 0x04, the same public key).
    pub fn cosigner(&self) -> Verifier {
        Verifier::new(&self.name, ALG_COSIGNATURE_V1, self.public())
    }

    /// Signs a note's `text` (ending in a newline): its signature line.
    pub fn sign(&self, text: &str) -> Signature {
        let sig = self.pair.sign(text.as_bytes());
        let mut bytes = self.verifier().hash.to_be_bytes().to_vec();
        bytes.extend_from_slice(sig.as_ref());
        Signature { name: self.name.clone(), hash: self.verifier().hash, bytes }
    }

    /// Cosigns a checkpoint's `text` at `time` (Unix seconds): its cosignature line.
    pub fn cosign(&self, text: &str, time: u64) -> Signature {
        let sig = self.pair.sign(cosigned_message(text, time).as_bytes());
        let hash = self.cosigner().hash;
        let mut bytes = hash.to_be_bytes().to_vec();
        bytes.extend_from_slice(&time.to_be_bytes());
        bytes.extend_from_slice(sig.as_ref());
        Signature { name: self.name.clone(), hash, bytes }
    }
}

fn cosigned_message(text: &str, time: u64) -> String {
    format!("cosignature/v1\ntime {time}\n{text}")
}

fn three_parts(rest: &str) -> Result<(&str, u32, &str), NoteError> {
    let mut parts = rest.splitn(3, '+');
    let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::Key("a key is name+hash+key".into()));
    };
    if !valid_name(name) {
        return Err(NoteError::Key(format!("the key name {name:?} is empty or holds whitespace or '+'")));
    }
    if hash.len() != 8 {
        return Err(NoteError::Key("the key hash is 8 hexadecimal digits".into()));
    }
    let hash = u32::from_str_radix(hash, 16).map_err(|_| NoteError::Key("the key hash is not hexadecimal".into()))?;
    Ok((name, hash, key))
}

/// A verifier key: a name, its key hash, an algorithm and an Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    pub name: String,
    pub hash: u32,
    pub alg: u8,
    pub public: [u8; 32],
}

impl Verifier {
    fn new(name: &str, alg: u8, public: [u8; 32]) -> Verifier {
        Verifier { name: name.to_owned(), hash: key_hash(name, alg, &public), alg, public }
    }

    /// Reads `name+hash+base64(alg || public key)` (alg 0x01, or 0x04 for a cosigner).
    pub fn parse(text: &str) -> Result<Verifier, NoteError> {
        let (name, hash, key) = three_parts(text.trim())?;
        let key = B64.decode(key).map_err(|_| NoteError::Key("the key is not base64".into()))?;
        if key.len() != 33 || !(key[0] == ALG_ED25519 || key[0] == ALG_COSIGNATURE_V1) {
            return Err(NoteError::Key("the key is 0x01 (or 0x04) followed by a 32-byte Ed25519 public key".into()));
        }
        let mut public = [0u8; 32];
        public.copy_from_slice(&key[1..]);
        let v = Verifier::new(name, key[0], public);
        if v.hash != hash {
            return Err(NoteError::Key("the key hash does not match the name and key".into()));
        }
        Ok(v)
    }

    /// Whether `sig` is this key's valid signature (or cosignature) of `text`.
    pub fn verifies(&self, text: &str, sig: &Signature) -> bool {
        if sig.name != self.name || sig.hash != self.hash {
            return false;
        }
        let key = UnparsedPublicKey::new(&ED25519, &self.public);
        match self.alg {
            ALG_ED25519 => sig.bytes.len() == 68 && key.verify(text.as_bytes(), &sig.bytes[4..]).is_ok(),
            ALG_COSIGNATURE_V1 => {
                sig.bytes.len() == 76 && {
                    let mut t = [0u8; 8];
                    t.copy_from_slice(&sig.bytes[4..12]);
                    key.verify(cosigned_message(text, u64::from_be_bytes(t)).as_bytes(), &sig.bytes[12..]).is_ok()
                }
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut key = vec![self.alg];
        key.extend_from_slice(&self.public);
        write!(f, "{}+{:08x}+{}", self.name, self.hash, B64.encode(key))
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub name: String,
    pub hash: u32,
    /// Key hash (4 bytes) followed by the signature (and, for a cosignature, a timestamp first).
    pub bytes: Vec<u8>,
}

impl Signature {
    /// The line, without its newline.
    pub fn line(&self) -> String {
        format!("\u{2014} {} {}", self.name, B64.encode(&self.bytes))
    }

    fn parse(line: &str) -> Result<Signature, NoteError> {
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or_else(|| NoteError::Note("a signature line starts with an em dash and a space".into()))?;
        let (name, b64) =
            rest.split_once(' ').ok_or_else(|| NoteError::Note("a signature line is \"— name signature\"".into()))?;
        let bytes = B64.decode(b64).map_err(|_| NoteError::Note("a signature is not base64".into()))?;
        if bytes.len() < 5 {
            return Err(NoteError::Note("a signature is shorter than its key hash".into()));
        }
        let hash = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        Ok(Signature { name: name.to_owned(), hash, bytes })
    }

    /// For a cosignature: the time it carries (Unix seconds).
    pub fn cosigned_at(&self) -> Option<u64> {
        (self.bytes.len() == 76).then(|| {
            let mut t = [0u8; 8];
            t.copy_from_slice(&self.bytes[4..12]);
            u64::from_be_bytes(t)
        })
    }
}

/// A signed note: its text and signature lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub signatures: Vec<Signature>,
}

impl Note {
    /// Reads a signed note: the text up to the last blank line, then its signatures.
    pub fn parse(s: &str) -> Result<Note, NoteError> {
        let split = s.rfind("\n\n").ok_or_else(|| NoteError::Note("no blank line before the signatures".into()))?;
        let text = &s[..split + 1];
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(NoteError::Note("the text holds a control character".into()));
        }
        let sigs = &s[split + 2..];
        if !sigs.ends_with('\n') {
            return Err(NoteError::Note("a note ends in a newline".into()));
        }
        let signatures = sigs.lines().map(Signature::parse).collect::<Result<Vec<_>, _>>()?;
        if signatures.is_empty() {
            return Err(NoteError::Note("a signed note has at least one signature".into()));
        }
        Ok(Note { text: text.to_owned(), signatures })
    }

    /// Whether `key` signed (or cosigned) it.
    pub fn signed_by(&self, key: &Verifier) -> bool {
        self.signatures.iter().any(|s| key.verifies(&self.text, s))
    }
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.text)?;
        for s in &self.signatures {
            writeln!(f, "{}", s.line())?;
        }
        Ok(())
    }
}

/// A checkpoint: the log's origin, its size and root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// Its note text.
    pub fn text(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root))
    }

    /// Its note signed by `signer`.
    pub fn sign(&self, signer: &Signer) -> Note {
        let text = self.text();
        let signature = signer.sign(&text);
        Note { text, signatures: vec![signature] }
    }

    /// Reads the checkpoint of a note's text (extension lines are allowed and ignored).
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let mut lines = text.lines();
        let bad = |m: &str| NoteError::Checkpoint(m.to_owned());
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or_else(|| bad("no origin line"))?;
        let size = lines
            .next()
            .and_then(|s| (!(s.starts_with('+') || s.len() > 1 && s.starts_with('0'))).then_some(s))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| bad("the second line is the tree size in decimal"))?;
        let root = lines
            .next()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|r| <[u8; 32]>::try_from(r).ok())
            .ok_or_else(|| bad("the third line is the base64 SHA-256 root hash"))?;
        Ok(Checkpoint { origin: origin.to_owned(), size, root })
    }

    /// Reads a signed checkpoint and checks `key` signed it.
    pub fn open(note: &str, key: &Verifier) -> Result<(Checkpoint, Note), NoteError> {
        let note = Note::parse(note)?;
        if !note.signed_by(key) {
            return Err(NoteError::Note(format!("not signed by {}", key.name)));
        }
        Ok((Checkpoint::parse(&note.text)?, note))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_verifies_and_round_trips() {
        let signer = Signer::from_seed("hub.example", [7; 32]).unwrap();
        let again = Signer::parse(&signer.to_key()).unwrap();
        assert_eq!(again.verifier(), signer.verifier());
        let key = Verifier::parse(&signer.verifier().to_string()).unwrap();
        let cp = Checkpoint { origin: "hub.example/ledger".into(), size: 3, root: [9; 32] };
        let note = cp.sign(&signer).to_string();
        let (read, parsed) = Checkpoint::open(&note, &key).unwrap();
        assert_eq!(read, cp);
        assert_eq!(parsed.to_string(), note);
        let tampered = note.replacen("\n3\n", "\n4\n", 1);
        assert_eq!(Checkpoint::open(&tampered, &key).unwrap_err(), NoteError::Note("not signed by hub.example".into()));
    }

    #[test]
    fn cosignature_verifies_with_the_witness_key_only() {
        let hub = Signer::from_seed("hub.example", [1; 32]).unwrap();
        let witness = Signer::from_seed("witness.example", [2; 32]).unwrap();
        let cp = Checkpoint { origin: "hub.example/ledger".into(), size: 1, root: [3; 32] };
        let mut note = cp.sign(&hub);
        note.signatures.push(witness.cosign(&note.text, 1_700_000_000));
        let note = Note::parse(&note.to_string()).unwrap();
        assert!(note.signed_by(&hub.verifier()));
        assert!(note.signed_by(&witness.cosigner()));
        assert!(!note.signed_by(&witness.verifier()));
        assert_eq!(note.signatures[1].cosigned_at(), Some(1_700_000_000));
    }

    #[test]
    fn go_sumdb_note_vector() {
        // The example key of golang.org/x/mod/sumdb/note's documentation (a public test vector):
        // a verifier key string parses and its hash matches its name and key.
        let v = Verifier::parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").unwrap();
        assert_eq!(v.hash, 0xc74f20a3);
        let note = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        let parsed = Note::parse(note).unwrap();
        assert!(parsed.signed_by(&v));
    }
}
