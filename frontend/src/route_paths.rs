//! Every path the gateway serves: the keys of the route table
//! ([`crate::routes`]) and the bounded set of `handler` labels of the HTTP
//! metrics ([`crate::metrics`]), in a module of their own so neither of
//! those imports the other.

/// Every path served, also the bounded set of `handler` metric labels.
pub(crate) const PATHS: [&str; 24] = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/models",
    "/health",
    "/metrics",
    "/tokenize",
    "/detokenize",
    "/v1/embeddings",
    "/v1/messages",
    "/key/generate",
    "/key/info",
    "/key/update",
    "/key/delete",
    "/key/list",
    "/team/new",
    "/team/info",
    "/team/list",
    "/team/delete",
    "/user/new",
    "/user/info",
    "/global/spend",
    "/global/spend/report",
    "/spend/logs",
    "/v1/models/{*id}",
];

/// The metric label for `path`: the path itself if it is a route, else
/// `"other"`.
pub fn handler_label(path: &str) -> &'static str {
    if path
        .strip_prefix("/v1/models/")
        .is_some_and(|id| !id.is_empty())
    {
        return PATHS[23];
    }
    PATHS
        .iter()
        .find(|p| **p == path)
        .copied()
        .unwrap_or("other")
}
