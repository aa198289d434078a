//! Content hashes of full KV blocks, chained from the first block on.
//!
//! A block's hash covers its parent block's hash, its token ids and its extra
//! keys (LoRA adapter, cache salt, multimodal input hashes), so two blocks
//! share a hash only if their whole prefix up to and including them is the
//! same. This is vLLM v1's `hash_block_tokens` / request block hasher design;
//! where vLLM hashes pickled Python tuples, we hash a length-prefixed byte
//! encoding with 128-bit XXH3, which is far faster and, with 128 bits,
//! collision-free in practice for non-adversarial traffic (a prompt cannot
//! choose its hash without controlling the tokenizer output bit by bit; if
//! that ever matters, a keyed hash or SHA-256 can replace [`hash_block`]
//! without touching callers).
//!
//! Only full blocks are hashed: a partial block can still change.

use std::fmt;

use xxhash_rust::xxh3::xxh3_128;

use crate::KvError;

/// The 128-bit content hash of one full block and its whole prefix.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockHash(u128);

impl BlockHash {
    /// The raw hash value, e.g. to put on the wire for KV transfer.
    pub fn as_u128(self) -> u128 {
        self.0
    }

    /// Big-endian bytes of the hash, the form it is chained with.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }
}

impl fmt::Debug for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockHash({:032x})", self.0)
    }
}

/// One extra key mixed into a block's hash besides its tokens.
///
/// Extra keys keep blocks apart whose token ids are equal but whose KV is
/// not: the same placeholder tokens with different images, or the same
/// prompt under a different LoRA adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraKey<'a> {
    /// Name (or id) of the LoRA adapter the request runs with.
    Adapter(&'a str),
    /// A per-tenant salt so tenants cannot probe each other's cache.
    CacheSalt(&'a str),
    /// The hash of a multimodal input overlapping this block.
    MultiModal(&'a str),
}

impl ExtraKey<'_> {
    fn tag(&self) -> u8 {
        match self {
            ExtraKey::Adapter(_) => b'A',
            ExtraKey::CacheSalt(_) => b'S',
            ExtraKey::MultiModal(_) => b'M',
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            ExtraKey::Adapter(s) | ExtraKey::CacheSalt(s) | ExtraKey::MultiModal(s) => s.as_bytes(),
        }
    }
}

/// Hashes one full block: its parent's hash (`None` for the first block),
/// its token ids and its extra keys.
///
/// The encoding is length-prefixed and tagged, so no two different inputs
/// produce the same byte string.
///
/// ```
/// use kv_cache::{hash_block, ExtraKey};
/// let a = hash_block(None, &[1, 2, 3, 4], &[]);
/// let b = hash_block(None, &[1, 2, 3, 4], &[ExtraKey::Adapter("sql-lora")]);
/// assert_ne!(a, b);
/// assert_eq!(a, hash_block(None, &[1, 2, 3, 4], &[]));
/// ```
pub fn hash_block(
    parent: Option<BlockHash>,
    tokens: &[u32],
    extra_keys: &[ExtraKey<'_>],
) -> BlockHash {
    let mut buf = Vec::with_capacity(32 + tokens.len() * 4);
    hash_block_with(&mut buf, parent, tokens, extra_keys)
}

/// [`hash_block`] reusing a caller's scratch buffer, for hashing many blocks.
fn hash_block_with(
    buf: &mut Vec<u8>,
    parent: Option<BlockHash>,
    tokens: &[u32],
    extra_keys: &[ExtraKey<'_>],
) -> BlockHash {
    buf.clear();
    match parent {
        Some(p) => {
            buf.push(b'P');
            buf.extend_from_slice(&p.to_bytes());
        }
        None => buf.push(b'R'),
    }
    buf.extend_from_slice(&(tokens.len() as u64).to_le_bytes());
    for t in tokens {
        buf.extend_from_slice(&t.to_le_bytes());
    }
    for key in extra_keys {
        let bytes = key.bytes();
        buf.push(key.tag());
        buf.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        buf.extend_from_slice(bytes);
    }
    BlockHash(xxh3_128(buf))
}

/// A multimodal input's placeholder span in the prompt and its content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiModalSpan {
    /// Position of the first placeholder token.
    pub offset: usize,
    /// Number of placeholder tokens.
    pub length: usize,
    /// Hash of the input's content (e.g. of the image bytes).
    pub hash: String,
}

/// The extra keys of a request, from which each block's keys are derived.
///
/// The adapter applies to every block, the cache salt to the first block
/// only (it then reaches all others through the chain), and a multimodal
/// hash to the blocks its placeholder span overlaps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockHashExtras {
    /// LoRA adapter name or id, if any.
    pub adapter: Option<String>,
    /// Cache salt, if any.
    pub cache_salt: Option<String>,
    /// Multimodal inputs, sorted by offset.
    pub mm_spans: Vec<MultiModalSpan>,
}

impl BlockHashExtras {
    /// True when no block gets any extra key.
    pub fn is_empty(&self) -> bool {
        self.adapter.is_none() && self.cache_salt.is_none() && self.mm_spans.is_empty()
    }

    fn keys_for_block<'a>(&'a self, start: usize, end: usize, out: &mut Vec<ExtraKey<'a>>) {
        out.clear();
        if let Some(adapter) = &self.adapter {
            out.push(ExtraKey::Adapter(adapter));
        }
        if start == 0 {
            if let Some(salt) = &self.cache_salt {
                out.push(ExtraKey::CacheSalt(salt));
            }
        }
        for span in &self.mm_spans {
            if span.offset < end && span.offset + span.length > start {
                out.push(ExtraKey::MultiModal(&span.hash));
            }
        }
    }
}

/// The chained hashes of a request's full blocks, grown as tokens arrive.
///
/// The scheduler keeps one per request and calls [`BlockHashes::update`]
/// after appending tokens; the KV cache manager reads it to find cached
/// prefixes and to register newly filled blocks. Like vLLM's
/// `Request.block_hashes`, it assumes tokens are only ever appended.
#[derive(Debug, Clone)]
pub struct BlockHashes {
    block_size: usize,
    extras: BlockHashExtras,
    hashes: Vec<BlockHash>,
}

impl BlockHashes {
    /// An empty hash list for blocks of `block_size` tokens.
    pub fn new(block_size: usize, extras: BlockHashExtras) -> Result<Self, KvError> {
        if block_size == 0 {
            return Err(KvError::InvalidConfig("block_size must be positive".into()));
        }
        Ok(Self {
            block_size,
            extras,
            hashes: Vec::new(),
        })
    }

    /// Hashes every full block of `tokens` not hashed yet.
    ///
    /// `tokens` is the request's whole token list (prompt then output); the
    /// blocks hashed by earlier calls must not have changed.
    pub fn update(&mut self, tokens: &[u32]) {
        let full = tokens.len() / self.block_size;
        if full <= self.hashes.len() {
            return;
        }
        let mut buf = Vec::with_capacity(32 + self.block_size * 4);
        let mut keys = Vec::new();
        for i in self.hashes.len()..full {
            let start = i * self.block_size;
            let end = start + self.block_size;
            self.extras.keys_for_block(start, end, &mut keys);
            let parent = self.hashes.last().copied();
            let h = hash_block_with(&mut buf, parent, &tokens[start..end], &keys);
            self.hashes.push(h);
        }
    }

    /// The hashes of the full blocks seen so far, first block first.
    pub fn as_slice(&self) -> &[BlockHash] {
        &self.hashes
    }

    /// Number of full blocks hashed.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// True before the first full block.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The block size the hashes were computed with.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// The extra keys this request hashes with.
    pub fn extras(&self) -> &BlockHashExtras {
        &self.extras
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(tokens: &[u32], bs: usize, extras: BlockHashExtras) -> Vec<BlockHash> {
        let mut h = BlockHashes::new(bs, extras).unwrap();
        h.update(tokens);
        h.as_slice().to_vec()
    }

    #[test]
    fn only_full_blocks_are_hashed() {
        assert_eq!(hashes(&[1, 2, 3], 4, BlockHashExtras::default()).len(), 0);
        assert_eq!(
            hashes(&[1, 2, 3, 4, 5], 4, BlockHashExtras::default()).len(),
            1
        );
    }

    #[test]
    fn incremental_update_matches_one_shot() {
        let tokens: Vec<u32> = (0..37).collect();
        let mut inc = BlockHashes::new(4, BlockHashExtras::default()).unwrap();
        for n in 0..=tokens.len() {
            inc.update(&tokens[..n]);
        }
        assert_eq!(
            inc.as_slice(),
            hashes(&tokens, 4, BlockHashExtras::default()).as_slice()
        );
    }

    #[test]
    fn hash_chains_over_the_parent() {
        let a = hashes(&[1, 2, 3, 4, 5, 6, 7, 8], 4, BlockHashExtras::default());
        let b = hashes(&[9, 2, 3, 4, 5, 6, 7, 8], 4, BlockHashExtras::default());
        assert_ne!(a[0], b[0]);
        // Same tokens in block 1, different parent: different hash.
        assert_ne!(a[1], b[1]);
    }

    #[test]
    fn extra_keys_separate_blocks() {
        let tokens: Vec<u32> = (0..8).collect();
        let plain = hashes(&tokens, 4, BlockHashExtras::default());
        let lora = hashes(
            &tokens,
            4,
            BlockHashExtras {
                adapter: Some("a".into()),
                ..Default::default()
            },
        );
        let salt = hashes(
            &tokens,
            4,
            BlockHashExtras {
                cache_salt: Some("t1".into()),
                ..Default::default()
            },
        );
        assert!(plain.iter().zip(&lora).all(|(a, b)| a != b));
        assert!(plain.iter().zip(&salt).all(|(a, b)| a != b));
        let img = |h: &str| BlockHashExtras {
            mm_spans: vec![MultiModalSpan {
                offset: 5,
                length: 2,
                hash: h.into(),
            }],
            ..Default::default()
        };
        let cat = hashes(&tokens, 4, img("cat"));
        let dog = hashes(&tokens, 4, img("dog"));
        // Block 0 does not overlap the image, so it is shared; block 1 is not.
        assert_eq!(cat[0], dog[0]);
        assert_eq!(cat[0], plain[0]);
        assert_ne!(cat[1], dog[1]);
    }

    #[test]
    fn encoding_is_unambiguous() {
        // Extra key bytes must not be confusable with tokens.
        let a = hash_block(None, &[0x41], &[]);
        let b = hash_block(None, &[], &[ExtraKey::Adapter("A")]);
        assert_ne!(a, b);
        let c = hash_block(
            None,
            &[1],
            &[ExtraKey::Adapter("x"), ExtraKey::MultiModal("y")],
        );
        let d = hash_block(None, &[1], &[ExtraKey::Adapter("xy")]);
        assert_ne!(c, d);
    }
}
