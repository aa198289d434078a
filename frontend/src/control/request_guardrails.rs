//! Which guardrails run on a request, and running them: every `default_on`
//! one, those of the model (`litellm_params.guardrails`), those of the key
//! (`metadata.guardrails`, set by `/key/generate`'s `guardrails`), and
//! those the request names (`"guardrails": [...]`, top level or in
//! `metadata`), as LiteLLM selects them.

use super::{Caller, ControlPlane};
use crate::guardrails::{requested_guardrails, GuardrailError, TextsMut};
use serde_json::{Map, Value};

impl ControlPlane {
    /// The guardrail names for this request, in config order. Takes
    /// `guardrails` out of the body (no provider should see it). An unknown
    /// name is a 400 rather than an unguarded request.
    pub fn guardrails_for(
        &self,
        caller: &Caller,
        model: &str,
        extra: &mut Map<String, Value>,
    ) -> Result<Vec<String>, GuardrailError> {
        let mut requested = requested_guardrails(extra);
        extra.remove("guardrails");
        requested.extend(self.model_guardrails(model).iter().cloned());
        if let Caller::Key(ctx) = caller {
            if let Some(Value::Array(names)) = ctx.key.metadata.get("guardrails") {
                requested.extend(names.iter().filter_map(Value::as_str).map(str::to_owned));
            }
        }
        Ok(self
            .guardrails()
            .select(&requested)?
            .into_iter()
            .map(str::to_owned)
            .collect())
    }

    /// Runs `names` on the request's texts: masks in place or refuses.
    pub async fn apply_guardrails(
        &self,
        names: &[String],
        texts: TextsMut<'_>,
    ) -> Result<(), GuardrailError> {
        if names.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.guardrails().apply_pre_call(&names, texts).await?;
        Ok(())
    }
}
