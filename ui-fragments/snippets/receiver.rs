// Verifies the deliveries of https://example.com/webhooks with the official
// Standard Webhooks crate. Cargo.toml:
//   standardwebhooks = "1"
//   axum = "0.8"
//   serde_json = "1"
//   tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
// WEBHOOK_SECRET is this webhook's signing secret (whsec_…), the one saved on
// its Edit page. It is never shown again: if it is lost, rotate it there.
// Run:  WEBHOOK_SECRET=whsec_… PORT=8000 cargo run
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use standardwebhooks::Webhook;

async fn receive(State(webhook): State<Arc<Webhook>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    // Verify the raw bytes, before any JSON parsing.
    if let Err(error) = webhook.verify(&body, &headers) {
        println!("refused: {error}");
        return StatusCode::BAD_REQUEST;
    }
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    // A delivery can arrive more than once: webhook-id tells them apart.
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
    println!("verified {} {id}", event["type"].as_str().unwrap_or_default());
    StatusCode::NO_CONTENT
}

#[tokio::main]
pub async fn main() {
    let secret = std::env::var("WEBHOOK_SECRET").expect("set WEBHOOK_SECRET");
    let webhook = Webhook::new(&secret).expect("WEBHOOK_SECRET is a whsec_… secret");
    let port = std::env::var("PORT").unwrap_or_else(|_| "8000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await.expect("the port is free");
    println!("listening on {}", listener.local_addr().expect("bound").port());
    let app = Router::new().fallback(post(receive)).with_state(Arc::new(webhook));
    axum::serve(listener, app).await.expect("serving");
}
