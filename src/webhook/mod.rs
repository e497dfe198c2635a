//! What a webhook receiver sees: the message body, the Standard Webhooks
//! headers and signature, and which endpoints we agree to call.

pub mod address;

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::SecondsFormat;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::domain::EventRecord;

const SECRET_PREFIX: &str = "whsec_";

/// A new signing secret: `whsec_` and the base64 of 32 random bytes.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// The JSON a receiver gets: `{id, type, timestamp, data}`, with `data` the
/// payload exactly as the sender gave it.
pub fn message_body(event: &EventRecord) -> String {
    let event_type = serde_json::to_string(&event.event_type).unwrap_or_else(|_| "\"\"".into());
    format!(
        r#"{{"id":"{}","type":{event_type},"timestamp":"{}","data":{}}}"#,
        event.id,
        event
            .created_at
            .to_rfc3339_opts(SecondsFormat::Millis, true),
        event.payload
    )
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>` for each secret,
/// space-separated, as Standard Webhooks specifies. Signing with the
/// previous secret too during a rotation lets receivers switch at leisure.
pub fn signature(secrets: &[&str], msg_id: &str, timestamp: i64, body: &str) -> String {
    secrets
        .iter()
        .filter_map(|secret| {
            let key = STANDARD
                .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
                .ok()?;
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
            mac.update(format!("{msg_id}.{timestamp}.{body}").as_bytes());
            Some(format!(
                "v1,{}",
                STANDARD.encode(mac.finalize().into_bytes())
            ))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_standard_webhooks_example() {
        // The example from the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        let sig = signature(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_rotation_signs_with_both_secrets() {
        let (a, b) = (generate_secret(), generate_secret());
        let both = signature(&[&a, &b], "id", 1, "{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], signature(&[&a], "id", 1, "{}"));
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
    }
}
