//! Signed sample deliveries, built as Meta builds them (one entry, one event, the
//! current time) and posted to a webhook.

use std::path::PathBuf;

use app_config::Lookup;
use serde_json::{Value, json};

use crate::Result;
use crate::settings::{Env, fresh_id, now_ms};

/// The documented local settings (README, events/): never real credentials.
pub const LOCAL_APP_SECRET: &str = "local-app-secret";
pub const LOCAL_VERIFY_TOKEN: &str = "local-verify-token";
pub const LOCAL_PAGE: &str = "100000000000001";
pub const LOCAL_PAGE_2: &str = "100000000000002";
pub const LOCAL_PSID: &str = "2000000000000001";

#[derive(Debug, clap::Subcommand)]
pub enum Sample {
    /// A text message from a person (`notify me about <topic>` asks for an OTN,
    /// `human` hands the thread to the Page Inbox).
    Message {
        #[command(flatten)]
        who: Who,
        text: String,
    },
    /// A postback: the person tapped a button.
    Postback {
        #[command(flatten)]
        who: Who,
        payload: String,
        #[arg(long, default_value = "Get Started")]
        title: String,
    },
    /// A one-time notification optin: the person tapped "Notify me" for `topic`.
    Optin {
        #[command(flatten)]
        who: Who,
        topic: String,
        /// The token Meta would issue (default: a fresh made-up one).
        #[arg(long)]
        token: Option<String>,
    },
    /// A referral: the person opened the thread from an m.me link with `ref`.
    Referral {
        #[command(flatten)]
        who: Who,
        #[arg(name = "ref")]
        reference: String,
    },
    /// Any body, from a file, signed and posted as it is.
    Raw { file: PathBuf },
}

#[derive(Debug, clap::Args)]
pub struct Who {
    /// The Page the event is for.
    #[arg(long, env = "PAGE_ID", default_value = LOCAL_PAGE)]
    page: String,
    /// The person (page-scoped id).
    #[arg(long, default_value = LOCAL_PSID)]
    psid: String,
}

/// The body Meta would POST for one messaging event.
pub fn delivery(page: &str, event: Value) -> String {
    json!({"object": "page", "entry": [{"id": page, "time": now_ms(), "messaging": [event]}]})
        .to_string()
}

fn event(who: &Who, kind: &str, payload: Value) -> Value {
    let mut event = json!({
        "sender": {"id": who.psid}, "recipient": {"id": who.page}, "timestamp": now_ms()
    });
    event[kind] = payload;
    event
}

pub fn body_of(sample: &Sample) -> Result<(String, String)> {
    let mid = || format!("m_local_{}", fresh_id());
    Ok(match sample {
        Sample::Message { who, text } => (
            who.page.clone(),
            delivery(
                &who.page,
                event(who, "message", json!({"mid": mid(), "text": text})),
            ),
        ),
        Sample::Postback {
            who,
            payload,
            title,
        } => (
            who.page.clone(),
            delivery(
                &who.page,
                event(
                    who,
                    "postback",
                    json!({"mid": mid(), "title": title, "payload": payload}),
                ),
            ),
        ),
        Sample::Optin { who, topic, token } => {
            let token = token
                .clone()
                .unwrap_or_else(|| format!("local-otn-token-{}", fresh_id()));
            let optin = json!({"type": "one_time_notif_req", "payload": topic, "one_time_notif_token": token});
            (
                who.page.clone(),
                delivery(&who.page, event(who, "optin", optin)),
            )
        }
        Sample::Referral { who, reference } => {
            let referral = json!({"ref": reference, "source": "SHORTLINK", "type": "OPEN_THREAD"});
            (
                who.page.clone(),
                delivery(&who.page, event(who, "referral", referral)),
            )
        }
        Sample::Raw { file } => (
            String::new(),
            std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?,
        ),
    })
}

/// `X-Hub-Signature-256` of `body` under `secret`, as Meta computes it.
pub fn sign(secret: &str, body: &[u8]) -> String {
    hub_signature::Verifier::new(secret.as_bytes()).sign_sha256(body)
}

pub async fn send(env: &Env, sample: Sample) -> Result<()> {
    let url = env.require(
        "WEBHOOK_URL",
        "start the local stack with scripts/run (scripts/cli reads its settings), or set it",
    )?;
    let secret = env
        .get("APP_SECRET")
        .ok_or("APP_SECRET is not set: the webhook only accepts bodies signed with it")?;
    let (_, body) = body_of(&sample)?;
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sign(&secret, body.as_bytes()))
        .body(body.clone())
        .send()
        .await
        .map_err(|e| format!("cannot reach the webhook at {url}: {e}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    println!("POST {url} -> {status} {text}");
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the webhook answered {status}").into())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn samples_are_page_deliveries_the_splitter_accepts() {
        let who = || Who {
            page: LOCAL_PAGE.to_owned(),
            psid: LOCAL_PSID.to_owned(),
        };
        for sample in [
            Sample::Message {
                who: who(),
                text: "hello".into(),
            },
            Sample::Postback {
                who: who(),
                payload: "GET_STARTED".into(),
                title: "Get Started".into(),
            },
            Sample::Optin {
                who: who(),
                topic: "back in stock".into(),
                token: None,
            },
            Sample::Referral {
                who: who(),
                reference: "winter-sale".into(),
            },
        ] {
            let (_, body) = body_of(&sample).unwrap();
            let split = webhook::accept::split(body.as_bytes()).unwrap();
            assert_eq!(split.messages.len(), 1, "{body}");
            assert_eq!(
                split.messages[0].group_id,
                format!("{LOCAL_PAGE}:{LOCAL_PSID}")
            );
        }
    }

    #[test]
    fn signatures_are_the_hmac_of_the_exact_body() {
        use hmac::{Hmac, Mac};
        let body = delivery(
            LOCAL_PAGE,
            json!({"sender": {"id": "1"}, "message": {"text": "Gr\u{fc}\u{df}e"}}),
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(LOCAL_APP_SECRET.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(sign(LOCAL_APP_SECRET, body.as_bytes()), expected);
    }
}
