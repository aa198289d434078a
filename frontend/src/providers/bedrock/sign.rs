//! AWS SigV4 signing of Bedrock requests, by the `aws-sigv4` crate (the
//! AWS SDK's own signer): service `bedrock`, the deployment's region and
//! static credentials. Only static keys (and a session token) are taken;
//! the SDK's credential chain (profiles, IMDS, SSO) is not run here.

use crate::error::ProviderError;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use std::time::SystemTime;

/// The AWS service name Bedrock's runtime signs with.
pub const SERVICE: &str = "bedrock";

/// Static AWS credentials of a deployment.
#[derive(Clone, PartialEq)]
pub struct AwsCredentials {
    /// `aws_access_key_id`.
    pub access_key_id: String,
    /// `aws_secret_access_key`.
    pub secret_access_key: String,
    /// `aws_session_token`, for temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    /// Never prints the secret (deployments are logged).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"**")
            .field("session_token", &self.session_token.as_ref().map(|_| "**"))
            .finish()
    }
}

/// The headers (`authorization`, `x-amz-date`, `x-amz-security-token`)
/// that sign a `POST` of `body` to `url` (already percent-encoded) with
/// the given extra signed `headers`, at `time`.
pub fn sign_post(
    creds: &AwsCredentials,
    region: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    time: SystemTime,
) -> Result<Vec<(String, String)>, ProviderError> {
    let failed = |e: &dyn std::fmt::Display| ProviderError::Internal {
        message: format!("cannot sign the Bedrock request: {e}"),
    };
    let identity: Identity = Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.clone(),
        creds.session_token.clone(),
        None,
        "litellm_params",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| failed(&e))?
        .into();
    let request = SignableRequest::new(
        "POST",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| failed(&e))?;
    let (instructions, _signature) = sign(request, &params).map_err(|e| failed(&e))?.into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn creds(token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(str::to_owned),
        }
    }

    fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn authorization_is_well_formed_and_deterministic() {
        let time = UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 2015-08-30T12:36:00Z
        let url =
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3%3A0/converse";
        let ct = [("content-type", "application/json")];
        let a = sign_post(&creds(None), "us-east-1", url, &ct, b"{}", time).unwrap();
        let b = sign_post(&creds(None), "us-east-1", url, &ct, b"{}", time).unwrap();
        assert_eq!(a, b, "same inputs, same signature");
        assert_eq!(header(&a, "x-amz-date"), Some("20150830T123600Z"));
        let auth = header(&a, "authorization").unwrap();
        let prefix =
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, \
                      SignedHeaders=content-type;host;x-amz-date, Signature=";
        assert!(auth.starts_with(prefix), "{auth}");
        let sig = &auth[prefix.len()..];
        assert_eq!(sig.len(), 64);
        assert!(sig.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(header(&a, "x-amz-security-token").is_none());

        // Anything signed changes the signature.
        let other_body = sign_post(&creds(None), "us-east-1", url, &ct, b"{ }", time).unwrap();
        assert_ne!(header(&other_body, "authorization"), Some(auth));
        let other_region = sign_post(&creds(None), "us-west-2", url, &ct, b"{}", time).unwrap();
        assert!(header(&other_region, "authorization")
            .unwrap()
            .contains("/us-west-2/bedrock/"));
    }

    #[test]
    fn session_token_is_sent_and_signed() {
        let time = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let h = sign_post(
            &creds(Some("TOKEN")),
            "eu-west-1",
            "https://bedrock-runtime.eu-west-1.amazonaws.com/model/m/converse",
            &[("content-type", "application/json")],
            b"{}",
            time,
        )
        .unwrap();
        assert_eq!(header(&h, "x-amz-security-token"), Some("TOKEN"));
        assert!(header(&h, "authorization")
            .unwrap()
            .contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"));
    }

    #[test]
    fn debug_hides_secrets() {
        let shown = format!("{:?}", creds(Some("TOKEN")));
        assert!(!shown.contains("EXAMPLEKEY") && !shown.contains("TOKEN"));
    }
}
