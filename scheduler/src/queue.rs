//! The waiting queue, in the order the policy admits requests.
//!
//! Under FCFS it is a deque: new requests join the back, preempted ones
//! return to the front (they arrived earlier than anything still waiting
//! behind them). Under the priority policy it is an ordered map keyed by
//! (priority, arrival time, admission sequence), so a preempted request
//! re-enters at the place its own key gives it, which is ahead of every
//! later arrival of the same priority.

use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};

use kv_cache::RequestId;

use crate::SchedulingPolicy;

/// Sort key of the priority policy: lower priority value, then earlier
/// arrival, then earlier admission.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PriorityKey {
    pub(crate) priority: i32,
    pub(crate) arrival_time: f64,
    pub(crate) seq: u64,
}

impl Eq for PriorityKey {}

impl Ord for PriorityKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then(self.arrival_time.total_cmp(&other.arrival_time))
            .then(self.seq.cmp(&other.seq))
    }
}

impl PartialOrd for PriorityKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Requests waiting for admission (new or preempted).
#[derive(Debug)]
pub(crate) enum WaitingQueue {
    Fcfs(VecDeque<RequestId>),
    Priority(BTreeMap<PriorityKey, RequestId>),
}

impl WaitingQueue {
    pub(crate) fn new(policy: SchedulingPolicy) -> Self {
        match policy {
            SchedulingPolicy::Fcfs => WaitingQueue::Fcfs(VecDeque::new()),
            SchedulingPolicy::Priority => WaitingQueue::Priority(BTreeMap::new()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            WaitingQueue::Fcfs(q) => q.len(),
            WaitingQueue::Priority(m) => m.len(),
        }
    }

    /// Adds a new arrival.
    pub(crate) fn push(&mut self, id: RequestId, key: PriorityKey) {
        match self {
            WaitingQueue::Fcfs(q) => q.push_back(id),
            WaitingQueue::Priority(m) => {
                m.insert(key, id);
            }
        }
    }

    /// Returns a preempted request: to the front (FCFS) or to its key's place.
    pub(crate) fn push_preempted(&mut self, id: RequestId, key: PriorityKey) {
        match self {
            WaitingQueue::Fcfs(q) => q.push_front(id),
            WaitingQueue::Priority(m) => {
                m.insert(key, id);
            }
        }
    }

    /// The next request to admit.
    pub(crate) fn peek(&self) -> Option<&RequestId> {
        match self {
            WaitingQueue::Fcfs(q) => q.front(),
            WaitingQueue::Priority(m) => m.values().next(),
        }
    }

    /// Removes the next request to admit.
    pub(crate) fn pop(&mut self) -> Option<RequestId> {
        match self {
            WaitingQueue::Fcfs(q) => q.pop_front(),
            WaitingQueue::Priority(m) => m.pop_first().map(|(_, id)| id),
        }
    }

    /// Removes a request wherever it is (abort); false if absent.
    pub(crate) fn remove(&mut self, id: &RequestId, key: PriorityKey) -> bool {
        match self {
            WaitingQueue::Fcfs(q) => match q.iter().position(|x| x == id) {
                Some(i) => q.remove(i).is_some(),
                None => false,
            },
            WaitingQueue::Priority(m) => m.remove(&key).is_some(),
        }
    }

    /// The waiting ids in admission order.
    pub(crate) fn iter(&self) -> Box<dyn Iterator<Item = &RequestId> + '_> {
        match self {
            WaitingQueue::Fcfs(q) => Box::new(q.iter()),
            WaitingQueue::Priority(m) => Box::new(m.values()),
        }
    }
}
