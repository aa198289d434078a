//! Property tests of the KV cache manager: random admissions (with shared
//! prefixes), decode steps and frees never leak a block, never leave a block
//! both free and held, and keep every reference count equal to its holders.

use kv_cache::{BlockHashExtras, BlockHashes, KvCacheConfig, KvCacheManager, KvError, RequestId};
use proptest::prelude::*;

const BS: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    /// Admit a request: a shared prefix (of `prefix` blocks), then `tail` own tokens.
    Admit {
        prefix: usize,
        tail: usize,
        adapter: bool,
    },
    /// Grow running request `pick` by `n` tokens.
    Grow { pick: usize, n: usize },
    /// Free request `pick`.
    Free { pick: usize },
    /// Try to reset the prefix cache.
    Reset,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..4, 0usize..10, any::<bool>()).prop_map(|(prefix, tail, adapter)| Op::Admit { prefix, tail, adapter }),
        4 => (any::<usize>(), 1usize..6).prop_map(|(pick, n)| Op::Grow { pick, n }),
        2 => any::<usize>().prop_map(|pick| Op::Free { pick }),
        1 => Just(Op::Reset),
    ]
}

struct Live {
    id: RequestId,
    tokens: Vec<u32>,
    hashes: BlockHashes,
    computed: usize,
}

proptest! {
    #[test]
    fn manager_invariants_hold(num_blocks in 1usize..24, ops in proptest::collection::vec(op(), 1..80)) {
        let mut m = KvCacheManager::new(KvCacheConfig { num_blocks, block_size: BS, enable_prefix_caching: true }).unwrap();
        let mut live: Vec<Live> = Vec::new();
        let mut next_id = 0u32;
        let system: Vec<u32> = (1000..1000 + 4 * BS as u32).collect();
        for op in ops {
            match op {
                Op::Admit { prefix, tail, adapter } => {
                    next_id += 1;
                    let mut tokens: Vec<u32> = system[..prefix * BS].to_vec();
                    tokens.extend((0..tail as u32).map(|t| next_id * 100 + t));
                    if tokens.is_empty() {
                        tokens.push(next_id);
                    }
                    let extras = BlockHashExtras { adapter: adapter.then(|| "lora".to_string()), ..Default::default() };
                    let mut hashes = BlockHashes::new(BS, extras).unwrap();
                    hashes.update(&tokens);
                    let computed = m.get_computed_blocks(&hashes, tokens.len()).unwrap();
                    prop_assert!(computed.num_tokens < tokens.len());
                    let id = RequestId::from(format!("r{next_id}"));
                    let hit = computed.num_tokens;
                    match m.allocate_slots(&id, 0, tokens.len() - hit, Some(&computed), &hashes) {
                        Ok(_) => live.push(Live { id, computed: tokens.len(), tokens, hashes }),
                        Err(KvError::NoFreeBlocks { .. }) => {
                            prop_assert_eq!(m.block_ids(&id).len(), 0);
                        }
                        Err(e) => prop_assert!(false, "unexpected error {e}"),
                    }
                }
                Op::Grow { pick, n } if !live.is_empty() => {
                    let i = pick % live.len();
                    let r = &mut live[i];
                    let before = m.num_free_blocks();
                    let start = r.tokens.len() as u32;
                    r.tokens.extend(start..start + n as u32);
                    r.hashes.update(&r.tokens);
                    match m.allocate_slots(&r.id, r.computed, n, None, &r.hashes) {
                        Ok(_) => r.computed += n,
                        Err(KvError::NoFreeBlocks { .. }) => {
                            prop_assert_eq!(m.num_free_blocks(), before);
                            r.tokens.truncate(r.computed);
                            // Tokens never shrink in real use: drop the request instead.
                            let r = live.swap_remove(i);
                            m.free(&r.id);
                        }
                        Err(e) => prop_assert!(false, "unexpected error {e}"),
                    }
                }
                Op::Free { pick } if !live.is_empty() => {
                    let r = live.swap_remove(pick % live.len());
                    let held = m.block_ids(&r.id).len();
                    prop_assert_eq!(m.free(&r.id), held);
                }
                Op::Reset => {
                    prop_assert_eq!(m.reset_prefix_cache(), live.is_empty());
                }
                _ => {}
            }
            if let Err(e) = m.check_invariants() {
                prop_assert!(false, "{e}");
            }
            for r in &live {
                prop_assert_eq!(m.block_ids(&r.id).len(), r.computed.div_ceil(BS));
            }
            let held: std::collections::HashSet<u32> =
                live.iter().flat_map(|r| m.block_ids(&r.id).iter().copied()).collect();
            prop_assert_eq!(held.len() + m.num_free_blocks(), num_blocks);
        }
        for r in live.drain(..) {
            m.free(&r.id);
        }
        prop_assert_eq!(m.num_free_blocks(), num_blocks);
        if let Err(e) = m.check_invariants() {
            prop_assert!(false, "{e}");
        }
    }
}
