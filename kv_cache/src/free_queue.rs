//! The free-block queue: an intrusive doubly linked list over block ids.
//!
//! Like vLLM's `FreeKVCacheBlockQueue`, it supports O(1) pop from the front
//! (the next block to hand out, i.e. to evict), push to either end, and
//! removal from the middle (a cached block that a new request hits is taken
//! out of the queue without being evicted). Links are two `u32` arrays
//! indexed by block id rather than heap nodes, so the queue allocates only
//! at construction.

use crate::BlockId;

const NIL: u32 = u32::MAX;

/// Free blocks in eviction order: the front is evicted (reused) first.
#[derive(Debug, Clone)]
pub(crate) struct FreeBlockQueue {
    prev: Vec<u32>,
    next: Vec<u32>,
    linked: Vec<bool>,
    head: u32,
    tail: u32,
    len: usize,
}

impl FreeBlockQueue {
    /// A queue holding every block `0..num_blocks` in id order.
    pub(crate) fn new_full(num_blocks: u32) -> Self {
        let n = num_blocks as usize;
        let mut q = Self {
            prev: vec![NIL; n],
            next: vec![NIL; n],
            linked: vec![false; n],
            head: NIL,
            tail: NIL,
            len: 0,
        };
        for id in 0..num_blocks {
            q.push_back(id);
        }
        q
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn contains(&self, id: BlockId) -> bool {
        self.linked.get(id as usize).copied().unwrap_or(false)
    }

    /// Takes the block at the front, the least recently freed one.
    pub(crate) fn pop_front(&mut self) -> Option<BlockId> {
        let id = self.head;
        if id == NIL {
            return None;
        }
        self.remove(id);
        Some(id)
    }

    /// Appends a block at the back: it will be evicted last.
    pub(crate) fn push_back(&mut self, id: BlockId) {
        let i = id as usize;
        if self.linked[i] {
            return;
        }
        self.prev[i] = self.tail;
        self.next[i] = NIL;
        if self.tail == NIL {
            self.head = id;
        } else {
            self.next[self.tail as usize] = id;
        }
        self.tail = id;
        self.linked[i] = true;
        self.len += 1;
    }

    /// Puts a block at the front: it will be reused first.
    pub(crate) fn push_front(&mut self, id: BlockId) {
        let i = id as usize;
        if self.linked[i] {
            return;
        }
        self.next[i] = self.head;
        self.prev[i] = NIL;
        if self.head == NIL {
            self.tail = id;
        } else {
            self.prev[self.head as usize] = id;
        }
        self.head = id;
        self.linked[i] = true;
        self.len += 1;
    }

    /// Unlinks a block wherever it is; a no-op if it is not in the queue.
    pub(crate) fn remove(&mut self, id: BlockId) {
        let i = id as usize;
        if !self.linked[i] {
            return;
        }
        let (p, n) = (self.prev[i], self.next[i]);
        if p == NIL {
            self.head = n;
        } else {
            self.next[p as usize] = n;
        }
        if n == NIL {
            self.tail = p;
        } else {
            self.prev[n as usize] = p;
        }
        self.prev[i] = NIL;
        self.next[i] = NIL;
        self.linked[i] = false;
        self.len -= 1;
    }

    /// The blocks front to back; walks the links (for checks and tests).
    pub(crate) fn iter(&self) -> impl Iterator<Item = BlockId> + '_ {
        let mut cur = self.head;
        let mut steps = 0usize;
        std::iter::from_fn(move || {
            if cur == NIL || steps > self.linked.len() {
                return None;
            }
            let id = cur;
            cur = self.next[id as usize];
            steps += 1;
            Some(id)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_full_in_id_order() {
        let q = FreeBlockQueue::new_full(4);
        assert_eq!(q.iter().collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        assert_eq!(q.len(), 4);
    }

    #[test]
    fn remove_middle_and_requeue() {
        let mut q = FreeBlockQueue::new_full(5);
        q.remove(2);
        assert!(!q.contains(2));
        assert_eq!(q.iter().collect::<Vec<_>>(), vec![0, 1, 3, 4]);
        assert_eq!(q.pop_front(), Some(0));
        q.push_back(2);
        q.push_front(0);
        assert_eq!(q.iter().collect::<Vec<_>>(), vec![0, 1, 3, 4, 2]);
        q.remove(0);
        q.remove(2);
        assert_eq!(q.iter().collect::<Vec<_>>(), vec![1, 3, 4]);
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn drains_to_empty() {
        let mut q = FreeBlockQueue::new_full(3);
        assert_eq!(q.pop_front(), Some(0));
        assert_eq!(q.pop_front(), Some(1));
        assert_eq!(q.pop_front(), Some(2));
        assert_eq!(q.pop_front(), None);
        assert_eq!(q.len(), 0);
        q.push_back(1);
        assert_eq!(q.iter().collect::<Vec<_>>(), vec![1]);
    }
}
