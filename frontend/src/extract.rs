//! The JSON body extractor every route uses, so that body errors (not JSON,
//! wrong shape, wrong content type, too large) answer in OpenAI's error
//! shape instead of axum's plain text.

use crate::gateway_error::GatewayError;
use axum::extract::{FromRequest, Request};
use axum::Json;
use serde::de::DeserializeOwned;

/// Like [`axum::Json`], but rejects with a [`GatewayError`].
#[derive(Debug, Clone)]
pub struct OpenAiJson<T>(pub T);

impl<S, T> FromRequest<S> for OpenAiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = GatewayError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}
