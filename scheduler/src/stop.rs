//! Token-level stop checks, run after each appended output token.
//!
//! Order: EOS and stop token ids (only once `min_tokens` outputs exist),
//! then `max_model_len`, then `max_tokens`. vLLM checks length first; we
//! check stops first so a request whose last allowed token is EOS reports
//! "stop" rather than "length", which is what the model did.

use crate::{FinishReason, Request};

/// Why the request must stop after its latest token, if it must.
pub(crate) fn check_stop(req: &Request, max_model_len: usize) -> Option<FinishReason> {
    let last = *req.output_token_ids().last()?;
    let n_out = req.num_output_tokens();
    if n_out >= req.stop.min_tokens {
        if !req.stop.ignore_eos && req.stop.eos_token_ids.contains(&last) {
            return Some(FinishReason::Eos);
        }
        if req.stop.stop_token_ids.contains(&last) {
            return Some(FinishReason::StopToken(last));
        }
    }
    if req.num_tokens() >= max_model_len {
        return Some(FinishReason::MaxModelLen);
    }
    if n_out >= req.stop.max_tokens {
        return Some(FinishReason::MaxTokens);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_output(b: crate::RequestBuilder, out: &[u32]) -> Request {
        let mut r = b.build();
        r.all_token_ids.extend_from_slice(out);
        r
    }

    #[test]
    fn reasons_in_order() {
        let b = || {
            Request::builder("r", vec![1, 2])
                .eos_token_id(0)
                .stop_token_ids(vec![9])
                .max_tokens(3)
        };
        assert_eq!(check_stop(&with_output(b(), &[5]), 100), None);
        assert_eq!(
            check_stop(&with_output(b(), &[0]), 100),
            Some(FinishReason::Eos)
        );
        assert_eq!(
            check_stop(&with_output(b(), &[9]), 100),
            Some(FinishReason::StopToken(9))
        );
        assert_eq!(
            check_stop(&with_output(b(), &[5, 5, 5]), 100),
            Some(FinishReason::MaxTokens)
        );
        assert_eq!(
            check_stop(&with_output(b(), &[5, 5, 0]), 100),
            Some(FinishReason::Eos)
        );
        assert_eq!(
            check_stop(&with_output(b(), &[5]), 3),
            Some(FinishReason::MaxModelLen)
        );
        assert_eq!(
            check_stop(&with_output(b().ignore_eos(true), &[0]), 100),
            None
        );
        assert_eq!(check_stop(&with_output(b().min_tokens(2), &[0]), 100), None);
        assert_eq!(check_stop(&with_output(b().min_tokens(2), &[9]), 100), None);
        assert_eq!(
            check_stop(&with_output(b().min_tokens(2), &[5, 9]), 100),
            Some(FinishReason::StopToken(9))
        );
    }
}
