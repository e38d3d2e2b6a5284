//! What connecting a Page takes (`messenger page connect`): a user token made
//! long-lived, the Pages it manages with their tokens, a token's validity, and the
//! fields a Page's subscription has.

use std::fmt;

use messenger_types::PageId;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::{Call, ErrorClass, GraphClient, GraphError};

/// A Page the user manages, with its token.
#[derive(Clone, Deserialize)]
pub struct PageAccount {
    pub id: PageId,
    #[serde(default)]
    pub name: String,
    pub access_token: SecretString,
    /// What the user may do on the Page (`MESSAGING`, `MODERATE`, ...).
    #[serde(default)]
    pub tasks: Vec<String>,
}

impl fmt::Debug for PageAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageAccount")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("access_token", &"[redacted]")
            .field("tasks", &self.tasks)
            .finish()
    }
}

/// Every webhook field the product handles: what `page connect`, `page subscribe`
/// and the hourly Page check subscribe a Page to.
/// `message_echoes` carries what staff write in the Page Inbox (the human pause).
pub const WEBHOOK_FIELDS: &str = "messages,messaging_postbacks,messaging_optins,messaging_referrals,message_deliveries,message_reads,message_echoes,message_reactions,message_edits,messaging_account_linking,messaging_handovers,standby,messaging_policy_enforcement";

/// What `debug_token` says of a token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenInfo {
    pub is_valid: bool,
    /// The app the token was issued for.
    #[serde(default)]
    pub app_id: Option<String>,
    /// Seconds since the epoch; 0: never.
    #[serde(default)]
    pub expires_at: i64,
    #[serde(default)]
    pub scopes: Vec<String>,
}

fn unreadable(what: &str) -> GraphError {
    GraphError::new(
        ErrorClass::Permanent,
        format!("the answer to {what} could not be read"),
    )
}

fn read<T: for<'de> Deserialize<'de>>(body: Option<Vec<u8>>, what: &str) -> Result<T, GraphError> {
    body.and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| unreadable(what))
}

impl GraphClient {
    /// `GET /oauth/access_token?grant_type=fb_exchange_token`: a long-lived user
    /// token (about 60 days) for a short-lived one.
    pub async fn exchange_user_token(
        &self,
        app_id: &str,
        app_secret: &SecretString,
        user_token: &SecretString,
    ) -> Result<SecretString, GraphError> {
        #[derive(Deserialize)]
        struct Answer {
            access_token: SecretString,
        }
        let query = [
            ("grant_type", "fb_exchange_token"),
            ("client_id", app_id),
            ("client_secret", app_secret.expose_secret()),
            ("fb_exchange_token", user_token.expose_secret()),
        ];
        let body = self
            .call(
                Call {
                    method: Method::GET,
                    page: &PageId::new("oauth"),
                    edge: "access_token",
                    query: &query,
                    body: None,
                    retired_tag: false,
                },
                user_token,
            )
            .await?;
        Ok(read::<Answer>(body, "oauth/access_token")?.access_token)
    }

    /// `GET /me/accounts`: every Page the user manages, with its Page token (these
    /// do not expire when the user token is long-lived), all pages of the answer.
    pub async fn page_accounts(
        &self,
        user_token: &SecretString,
    ) -> Result<Vec<PageAccount>, GraphError> {
        #[derive(Deserialize)]
        struct Cursors {
            after: Option<String>,
        }
        #[derive(Deserialize)]
        struct Paging {
            cursors: Option<Cursors>,
            next: Option<String>,
        }
        #[derive(Deserialize)]
        struct Answer {
            data: Vec<PageAccount>,
            paging: Option<Paging>,
        }
        let mut pages = Vec::new();
        let mut after: Option<String> = None;
        // A user manages at most a few thousand Pages: bounded, whatever the answers.
        for _ in 0..100 {
            let mut query = vec![("fields", "id,name,access_token,tasks"), ("limit", "100")];
            if let Some(cursor) = &after {
                query.push(("after", cursor.as_str()));
            }
            let body = self
                .call(
                    Call {
                        method: Method::GET,
                        page: &PageId::new("me"),
                        edge: "accounts",
                        query: &query,
                        body: None,
                        retired_tag: false,
                    },
                    user_token,
                )
                .await?;
            let answer: Answer = read(body, "me/accounts")?;
            let got = answer.data.len();
            pages.extend(answer.data);
            after = match answer.paging {
                Some(Paging {
                    cursors: Some(Cursors { after: Some(a) }),
                    next: Some(_),
                }) if got > 0 => Some(a),
                _ => None,
            };
            if after.is_none() {
                break;
            }
        }
        Ok(pages)
    }

    /// `GET /debug_token?input_token=<token>`, asked with the app's own token
    /// (`<app id>|<app secret>`).
    pub async fn debug_token(
        &self,
        app_id: &str,
        app_secret: &SecretString,
        token: &SecretString,
    ) -> Result<TokenInfo, GraphError> {
        let app_token = SecretString::from(format!("{app_id}|{}", app_secret.expose_secret()));
        self.inspect_token(&app_token, token).await
    }

    /// `GET /debug_token?input_token=<token>`, asked with the token itself (when
    /// the app id is not known). A token that is no longer valid makes the call
    /// fail with its own error (190, [`ErrorClass::TokenInvalid`]).
    pub async fn debug_own_token(&self, token: &SecretString) -> Result<TokenInfo, GraphError> {
        self.inspect_token(token, token).await
    }

    async fn inspect_token(
        &self,
        asking: &SecretString,
        token: &SecretString,
    ) -> Result<TokenInfo, GraphError> {
        #[derive(Deserialize)]
        struct Answer {
            data: TokenInfo,
        }
        let query = [("input_token", token.expose_secret())];
        let body = self
            .call(
                Call {
                    method: Method::GET,
                    page: &PageId::new("debug_token"),
                    edge: "",
                    query: &query,
                    body: None,
                    retired_tag: false,
                },
                asking,
            )
            .await?;
        Ok(read::<Answer>(body, "debug_token")?.data)
    }

    /// `GET /{page-id}/subscribed_apps`: the fields each app subscribed to the
    /// Page has; `app_id` picks this app's (any app's when there is one).
    pub async fn subscribed_fields(
        &self,
        page: &PageId,
        token: &SecretString,
        app_id: Option<&str>,
    ) -> Result<Vec<String>, GraphError> {
        #[derive(Deserialize)]
        struct App {
            #[serde(default)]
            id: Option<String>,
            #[serde(default)]
            subscribed_fields: Vec<String>,
        }
        #[derive(Deserialize)]
        struct Answer {
            data: Vec<App>,
        }
        let body = self
            .call(
                Call {
                    method: Method::GET,
                    page,
                    edge: "subscribed_apps",
                    query: &[],
                    body: None,
                    retired_tag: false,
                },
                token,
            )
            .await?;
        let answer: Answer = read(body, "subscribed_apps")?;
        Ok(answer
            .data
            .into_iter()
            .find(|app| app_id.is_none() || app.id.as_deref() == app_id)
            .map(|app| app.subscribed_fields)
            .unwrap_or_default())
    }
}
