//! `POST /v1/messages`: Anthropic's Messages API in front of every
//! provider, so Anthropic SDK clients can use any model. The request is
//! translated to the OpenAI shape, routed by `model` like the OpenAI
//! routes, and the answer (or the chunk stream, as Anthropic SSE events)
//! translated back ([`crate::messages_api`]). Errors answer in Anthropic's
//! shape with the status the OpenAI routes would use.

use crate::control::demand::Demand;
use crate::control::gate::{meter, Gate};
use crate::control::Caller;
use crate::extract::OpenAiJson;
use crate::gateway_error::AnthropicError;
use crate::gateway_error::GatewayError;
use crate::guardrails::TextsMut;
use crate::messages_api::events::events;
use crate::messages_api::response::from_openai;
use crate::messages_api::types::{ErrorObject, MessagesRequest};
use crate::state::AppState;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use std::convert::Infallible;
use std::sync::Arc;

/// `POST /v1/messages`.
pub async fn messages(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<OpenAiJson<MessagesRequest>, GatewayError>,
) -> Result<Response, AnthropicError> {
    let OpenAiJson(req) = body?;
    req.validate()?;
    let mut chat = req.to_openai()?;
    chat.validate()?;
    let provider = state.route_model(&mut chat.model)?;
    let gate = match state.control() {
        Some(control) => {
            let gate = Gate::new(
                Arc::clone(control),
                control
                    .admit_with(&caller, &chat.model, &Demand::chat(&chat))
                    .await
                    .map_err(GatewayError::from)?,
            );
            let guardrails = control.guardrails_for(&caller, &chat.model, &mut chat.extra)?;
            control
                .apply_guardrails(&guardrails, TextsMut::from_chat(&mut chat))
                .await?;
            Some(gate)
        }
        None => None,
    };
    if req.is_stream() {
        let model = chat.model.clone();
        let chunks = match gate {
            Some(gate) => {
                chat.stream_options
                    .get_or_insert_with(Default::default)
                    .include_usage = Some(true);
                meter(provider.chat_stream(chat).await?, gate, true)
            }
            None => provider.chat_stream(chat).await?,
        };
        let body = events(chunks, &model).map(|ev| {
            let event = Event::default()
                .event(ev.name())
                .json_data(&ev)
                .unwrap_or_else(|e| {
                    let error = ErrorObject {
                        kind: "api_error".to_owned(),
                        message: format!("could not serialize an event: {e}"),
                    };
                    Event::default()
                        .event("error")
                        .data(serde_json::json!({"type": "error", "error": error}).to_string())
                });
            Ok::<_, Infallible>(event)
        });
        Ok(Sse::new(body)
            .keep_alive(KeepAlive::default())
            .into_response())
    } else {
        let resp = provider.chat(chat).await?;
        if let Some(gate) = gate {
            gate.finish(Some(&resp.usage), false);
        }
        Ok(Json(from_openai(resp)?).into_response())
    }
}
