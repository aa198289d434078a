//! Where the sampling rank gets a step's allowed-token bitmasks.
//!
//! The engine computes the bitmasks of its constrained requests while the
//! workers run the step's forward pass and sends them after the step
//! (`StepRequest.bitmasks_follow`, then `SubmitBitmasks`), as vLLM splits
//! `execute_model` from `sample_tokens(grammar_output)`: the grammar's
//! work hides behind the forward pass instead of adding to every step.
//! The runner asks a [`BitmaskSource`] for them between the forward pass
//! and sampling.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use proto::worker::StepBitmasks;

/// How long the sampling rank waits for a step's bitmasks before failing
/// the step's requests: only a lost message waits this long (the engine's
/// own step deadline ends a stuck group first).
pub const BITMASK_WAIT: Duration = Duration::from_secs(30);

/// Hands the runner the bitmasks of the step it is running.
pub trait BitmaskSource {
    /// Blocks until the bitmasks of step `step_id` are here; the reason
    /// they will not come otherwise.
    fn wait(&mut self, step_id: u64) -> Result<StepBitmasks, String>;
}

/// For callers that never send bitmasks: a step that says they follow
/// fails its requests.
pub struct NoBitmasks;

impl BitmaskSource for NoBitmasks {
    fn wait(&mut self, step_id: u64) -> Result<StepBitmasks, String> {
        Err(format!(
            "step {step_id} announced bitmasks, and nothing sends them"
        ))
    }
}

/// An in-process sender's channel (the uniproc executor).
impl BitmaskSource for std::sync::mpsc::Receiver<StepBitmasks> {
    fn wait(&mut self, step_id: u64) -> Result<StepBitmasks, String> {
        let deadline = Instant::now() + BITMASK_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_timeout(left) {
                Ok(masks) if masks.step_id == step_id => return Ok(masks),
                Ok(_) => continue,
                Err(e) => return Err(format!("the bitmasks of step {step_id}: {e}")),
            }
        }
    }
}

/// One slot shared by the gRPC handler that receives bitmasks and the
/// model thread that waits for them. It holds one step's bitmasks at most
/// (the engine runs one step at a time), so a sender cannot fill memory;
/// bitmasks of an older step, left when that step failed before sampling,
/// are dropped.
#[derive(Default)]
pub struct BitmaskMailbox {
    slot: Mutex<Option<StepBitmasks>>,
    arrived: Condvar,
}

impl BitmaskMailbox {
    /// Leaves `masks` for the step that waits for them (replacing any not
    /// taken).
    pub fn put(&self, masks: StepBitmasks) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Some(masks);
        self.arrived.notify_all();
    }

    /// [`BitmaskSource::wait`] with a chosen limit (tests use short ones).
    pub fn wait_for(&self, step_id: u64, limit: Duration) -> Result<StepBitmasks, String> {
        let deadline = Instant::now() + limit;
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match slot.take() {
                Some(masks) if masks.step_id == step_id => return Ok(masks),
                // A newer step's (this step is over for the engine): keep.
                Some(masks) if masks.step_id > step_id => {
                    *slot = Some(masks);
                    return Err(format!("the bitmasks of step {step_id} never came"));
                }
                _ => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "the bitmasks of step {step_id} did not come within {limit:?}"
                ));
            }
            slot = self
                .arrived
                .wait_timeout(slot, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl BitmaskSource for &BitmaskMailbox {
    fn wait(&mut self, step_id: u64) -> Result<StepBitmasks, String> {
        self.wait_for(step_id, BITMASK_WAIT)
    }
}

/// Why `mask` cannot constrain a vocabulary of `vocab_size` tokens, if it
/// cannot: too short, or allowing nothing.
pub fn check_bitmask(mask: &[u32], vocab_size: usize) -> Result<(), String> {
    let needed = vocab_size.div_ceil(32);
    if mask.len() < needed || mask.iter().all(|&w| w == 0) {
        return Err(format!(
            "the allowed-token bitmask of {} words allows no token or does not cover the {} tokens of the vocabulary",
            mask.len(),
            vocab_size
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn masks(step_id: u64) -> StepBitmasks {
        StepBitmasks {
            step_id,
            masks: Vec::new(),
        }
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a plain thread, no runtime to block
    fn a_waiting_step_gets_its_own_bitmasks_and_skips_stale_ones() {
        let mailbox = Arc::new(BitmaskMailbox::default());
        mailbox.put(masks(3));
        let sender = Arc::clone(&mailbox);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            sender.put(masks(4));
        });
        let got = mailbox.wait_for(4, Duration::from_secs(5)).unwrap();
        assert_eq!(got.step_id, 4);
        t.join().unwrap();
    }

    #[test]
    fn bitmasks_that_never_come_fail_after_the_limit() {
        let mailbox = BitmaskMailbox::default();
        let started = Instant::now();
        let err = mailbox.wait_for(7, Duration::from_millis(100)).unwrap_err();
        assert!(err.contains("step 7"), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(100));
        // A newer step's are kept for it and end the older wait at once.
        mailbox.put(masks(9));
        assert!(mailbox.wait_for(8, Duration::from_secs(5)).is_err());
        assert_eq!(mailbox.wait_for(9, Duration::ZERO).unwrap().step_id, 9);
    }

    #[test]
    fn short_or_empty_bitmasks_are_refused() {
        assert!(check_bitmask(&[1, 0], 64).is_ok());
        assert!(check_bitmask(&[1], 64).is_err());
        assert!(check_bitmask(&[0, 0], 64).is_err());
        assert!(check_bitmask(&[], 1).is_err());
    }
}
