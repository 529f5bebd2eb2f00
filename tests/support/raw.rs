//! One request through a kube-rs client with the headers a test picks (an Accept header kube-rs
//! has no method for), answered with its status, Content-Type and JSON body.
use serde_json::Value;

/// What the server answered.
pub struct RawReply {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

/// `METHOD path` with `Accept: accept` (and a JSON body when given).
pub async fn request(client: &kube::Client, method: &str, path: &str, accept: &str, body: Option<Value>) -> RawReply {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::ACCEPT, accept);
    if body.is_some() {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let req = req.body(kube::client::Body::from(bytes)).expect("request");
    let resp = tokio::time::timeout(std::time::Duration::from_secs(30), client.send(req))
        .await
        .expect("answered within 30s")
        .expect("sent");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = resp.into_body().collect_bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    RawReply {
        status,
        content_type,
        body,
    }
}

/// `GET path` with `Accept: accept`.
pub async fn get(client: &kube::Client, path: &str, accept: &str) -> RawReply {
    request(client, "GET", path, accept, None).await
}
