//! The Page's Messenger Profile (`GET|POST|DELETE /{page-id}/messenger_profile`):
//! the Get Started button, the greeting, ice breakers, the persistent menu, the
//! whitelisted domains. A profile is checked against Meta's limits when it is
//! built ([`MessengerProfile::new`]), so nothing Meta would refuse is ever sent.
//!
//! Limits (Messenger Profile API reference, Graph API v8.0 and later):
//! | field | rule |
//! |---|---|
//! | `get_started` | `{"payload"}`, at most 1000 characters |
//! | `greeting` | `[{"locale", "text"}]`, text at most 160 characters, a `default` locale |
//! | `ice_breakers` | at most 4 questions (per locale in the localized format), each with a payload |
//! | `persistent_menu` | a `default` locale; per locale at most 20 items, flat (`nested` was removed in v8.0), `postback` or `web_url`, title at most 30 characters, payload at most 1000 |
//! | `whitelisted_domains` | at most 50, each `https://` |
//! | `account_linking_url` | `https://` |

use std::fmt;

use messenger_types::PageId;
use reqwest::Method;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{Body, Call, ErrorClass, GraphClient, GraphError};

/// The profile fields this client knows; a file naming another is refused (a typo
/// would otherwise be sent and answered with an error, or silently ignored).
pub const PROFILE_FIELDS: [&str; 7] = [
    "get_started",
    "greeting",
    "ice_breakers",
    "persistent_menu",
    "whitelisted_domains",
    "account_linking_url",
    "commands",
];

pub const GREETING_MAX_CHARS: usize = 160;
pub const PAYLOAD_MAX_CHARS: usize = 1000;
pub const ICE_BREAKERS_MAX: usize = 4;
pub const MENU_ITEMS_MAX: usize = 20;
pub const MENU_TITLE_MAX_CHARS: usize = 30;
pub const WHITELISTED_DOMAINS_MAX: usize = 50;

/// A Messenger Profile within Meta's limits: exactly the fields it was built from.
#[derive(Debug, Clone, PartialEq)]
pub struct MessengerProfile(Map<String, Value>);

/// Why a profile was refused: every problem found, each naming where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Messenger Profile is not within Meta's limits: {}", .problems.join("; "))]
pub struct InvalidProfile {
    pub problems: Vec<String>,
}

impl MessengerProfile {
    /// Checks `value` against Meta's limits (the table above).
    pub fn new(value: Value) -> Result<Self, InvalidProfile> {
        let mut problems = Vec::new();
        let Value::Object(fields) = value else {
            return Err(InvalidProfile {
                problems: vec!["the profile must be a JSON object".to_owned()],
            });
        };
        if fields.is_empty() {
            problems.push("the profile names no field".to_owned());
        }
        for (name, value) in &fields {
            let mut p = Problems {
                list: &mut problems,
            };
            match name.as_str() {
                "get_started" => get_started(&mut p, value),
                "greeting" => greeting(&mut p, value),
                "ice_breakers" => ice_breakers(&mut p, value),
                "persistent_menu" => persistent_menu(&mut p, value),
                "whitelisted_domains" => whitelisted_domains(&mut p, value),
                "account_linking_url" => https(&mut p, "account_linking_url", value),
                "commands" => {
                    if !value.is_array() {
                        p.add("commands", "must be an array");
                    }
                }
                other => p.add(
                    other,
                    &format!(
                        "is not a profile field (known: {})",
                        PROFILE_FIELDS.join(", ")
                    ),
                ),
            }
        }
        if problems.is_empty() {
            Ok(Self(fields))
        } else {
            Err(InvalidProfile { problems })
        }
    }

    /// The fields, as they are sent.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.0
    }
}

struct Problems<'a> {
    list: &'a mut Vec<String>,
}

impl Problems<'_> {
    fn add(&mut self, at: &str, what: &str) {
        self.list.push(format!("{at}: {what}"));
    }

    /// A string of at most `max` characters (not bytes: Meta counts characters).
    fn text<'v>(&mut self, at: &str, value: &'v Value, max: usize) -> Option<&'v str> {
        match value.as_str() {
            None => {
                self.add(at, "must be a string");
                None
            }
            Some("") => {
                self.add(at, "must not be empty");
                None
            }
            Some(s) if s.chars().count() > max => {
                self.add(
                    at,
                    &format!("{} characters, at most {max}", s.chars().count()),
                );
                None
            }
            Some(s) => Some(s),
        }
    }

    fn array<'v>(&mut self, at: &str, value: &'v Value) -> &'v [Value] {
        match value.as_array() {
            Some(items) if !items.is_empty() => items,
            Some(_) => {
                self.add(at, "must not be empty");
                &[]
            }
            None => {
                self.add(at, "must be an array");
                &[]
            }
        }
    }

    /// Every item names a locale, once, and one of them is `default`.
    fn locales(&mut self, at: &str, items: &[Value]) {
        let mut seen = std::collections::BTreeSet::new();
        for (i, item) in items.iter().enumerate() {
            match item["locale"].as_str() {
                Some(locale) if !seen.insert(locale) => {
                    self.add(&format!("{at}[{i}].locale"), &format!("{locale:?} twice"));
                }
                Some(_) => {}
                None => self.add(&format!("{at}[{i}].locale"), "must be a string"),
            }
        }
        if !items.is_empty() && !seen.contains("default") {
            self.add(
                at,
                "needs a \"default\" locale (the one shown when no other matches)",
            );
        }
    }
}

fn get_started(p: &mut Problems<'_>, value: &Value) {
    p.text("get_started.payload", &value["payload"], PAYLOAD_MAX_CHARS);
}

fn greeting(p: &mut Problems<'_>, value: &Value) {
    let items = p.array("greeting", value);
    p.locales("greeting", items);
    for (i, item) in items.iter().enumerate() {
        p.text(
            &format!("greeting[{i}].text"),
            &item["text"],
            GREETING_MAX_CHARS,
        );
    }
}

fn question(p: &mut Problems<'_>, at: &str, item: &Value) {
    p.text(&format!("{at}.question"), &item["question"], usize::MAX);
    p.text(
        &format!("{at}.payload"),
        &item["payload"],
        PAYLOAD_MAX_CHARS,
    );
}

fn ice_breakers(p: &mut Problems<'_>, value: &Value) {
    let items = p.array("ice_breakers", value);
    // The localized format: [{"locale", "call_to_actions": [{question, payload}]}].
    if items.iter().any(|i| i.get("call_to_actions").is_some()) {
        p.locales("ice_breakers", items);
        for (i, item) in items.iter().enumerate() {
            let at = format!("ice_breakers[{i}].call_to_actions");
            let questions = p.array(&at, &item["call_to_actions"]);
            if questions.len() > ICE_BREAKERS_MAX {
                p.add(
                    &at,
                    &format!("{} questions, at most {ICE_BREAKERS_MAX}", questions.len()),
                );
            }
            for (j, q) in questions.iter().enumerate() {
                question(p, &format!("{at}[{j}]"), q);
            }
        }
    } else {
        if items.len() > ICE_BREAKERS_MAX {
            p.add(
                "ice_breakers",
                &format!("{} questions, at most {ICE_BREAKERS_MAX}", items.len()),
            );
        }
        for (i, item) in items.iter().enumerate() {
            question(p, &format!("ice_breakers[{i}]"), item);
        }
    }
}

fn persistent_menu(p: &mut Problems<'_>, value: &Value) {
    let menus = p.array("persistent_menu", value);
    p.locales("persistent_menu", menus);
    for (i, menu) in menus.iter().enumerate() {
        let at = format!("persistent_menu[{i}].call_to_actions");
        let composer_disabled = menu["composer_input_disabled"].as_bool() == Some(true);
        let Some(items) = menu["call_to_actions"].as_array() else {
            if composer_disabled || !menu["call_to_actions"].is_null() {
                p.add(
                    &at,
                    "must be an array (required when the composer is disabled)",
                );
            }
            continue;
        };
        if items.len() > MENU_ITEMS_MAX {
            p.add(
                &at,
                &format!("{} items, at most {MENU_ITEMS_MAX}", items.len()),
            );
        }
        for (j, item) in items.iter().enumerate() {
            let at = format!("{at}[{j}]");
            p.text(&format!("{at}.title"), &item["title"], MENU_TITLE_MAX_CHARS);
            match item["type"].as_str() {
                Some("postback") => {
                    p.text(
                        &format!("{at}.payload"),
                        &item["payload"],
                        PAYLOAD_MAX_CHARS,
                    );
                }
                Some("web_url") => {
                    p.text(&format!("{at}.url"), &item["url"], usize::MAX);
                }
                Some("nested") => p.add(
                    &format!("{at}.type"),
                    "nested menus were removed in Graph API v8.0: list up to 20 items instead",
                ),
                _ => p.add(&format!("{at}.type"), "must be \"postback\" or \"web_url\""),
            }
        }
    }
}

fn https(p: &mut Problems<'_>, at: &str, value: &Value) {
    if let Some(url) = p.text(at, value, usize::MAX)
        && !url.starts_with("https://")
    {
        p.add(at, &format!("{url:?} is not an https:// URL"));
    }
}

fn whitelisted_domains(p: &mut Problems<'_>, value: &Value) {
    let domains = p.array("whitelisted_domains", value);
    if domains.len() > WHITELISTED_DOMAINS_MAX {
        p.add(
            "whitelisted_domains",
            &format!(
                "{} domains, at most {WHITELISTED_DOMAINS_MAX}",
                domains.len()
            ),
        );
    }
    for (i, domain) in domains.iter().enumerate() {
        https(p, &format!("whitelisted_domains[{i}]"), domain);
    }
}

/// One field's change between the Page's profile and a new one.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldChange {
    Unchanged,
    Added(Value),
    Changed { from: Value, to: Value },
}

impl fmt::Display for FieldChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unchanged => write!(f, "unchanged"),
            Self::Added(to) => write!(f, "+ {to}"),
            Self::Changed { from, to } => write!(f, "- {from}\n  + {to}"),
        }
    }
}

impl MessengerProfile {
    /// How each of this profile's fields differs from `current` (the Page's).
    pub fn diff(&self, current: &Map<String, Value>) -> Vec<(String, FieldChange)> {
        self.0
            .iter()
            .map(|(name, to)| {
                let change = match current.get(name) {
                    Some(from) if from == to => FieldChange::Unchanged,
                    Some(from) => FieldChange::Changed {
                        from: from.clone(),
                        to: to.clone(),
                    },
                    None => FieldChange::Added(to.clone()),
                };
                (name.clone(), change)
            })
            .collect()
    }
}

impl GraphClient {
    /// `GET /{page-id}/messenger_profile?fields=...`: the Page's profile (the
    /// fields that are set among `fields`).
    pub async fn messenger_profile(
        &self,
        page: &PageId,
        token: &SecretString,
        fields: &[&str],
    ) -> Result<Map<String, Value>, GraphError> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            data: Vec<Map<String, Value>>,
        }
        let fields = fields.join(",");
        let body = self
            .call(
                Call {
                    method: Method::GET,
                    page,
                    edge: "messenger_profile",
                    query: &[("fields", fields.as_str())],
                    body: None,
                    retired_tag: false,
                },
                token,
            )
            .await?;
        let answer: Answer = body
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                GraphError::new(
                    ErrorClass::Permanent,
                    "the answer to messenger_profile could not be read",
                )
            })?;
        Ok(answer.data.into_iter().next().unwrap_or_default())
    }

    /// `POST /{page-id}/messenger_profile`: sets exactly the profile's fields
    /// (the Page's other fields stay as they are).
    pub async fn set_messenger_profile(
        &self,
        page: &PageId,
        token: &SecretString,
        profile: &MessengerProfile,
    ) -> Result<(), GraphError> {
        let body = Value::Object(profile.0.clone());
        self.call(
            Call {
                method: Method::POST,
                page,
                edge: "messenger_profile",
                query: &[],
                body: Some(Body::Json(&body)),
                retired_tag: false,
            },
            token,
        )
        .await
        .map(|_| ())
    }

    /// `DELETE /{page-id}/messenger_profile` with `{"fields": [...]}`.
    pub async fn delete_messenger_profile(
        &self,
        page: &PageId,
        token: &SecretString,
        fields: &[&str],
    ) -> Result<(), GraphError> {
        let body = json!({ "fields": fields });
        self.call(
            Call {
                method: Method::DELETE,
                page,
                edge: "messenger_profile",
                query: &[],
                body: Some(Body::Json(&body)),
                retired_tag: false,
            },
            token,
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{body_json, method, path, query_param_contains};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn problems(value: Value) -> Vec<String> {
        MessengerProfile::new(value).unwrap_err().problems
    }

    #[test]
    fn a_profile_within_the_limits_is_kept_exactly() {
        let value = json!({
            "get_started": {"payload": "GET_STARTED"},
            "greeting": [{"locale": "default", "text": "x".repeat(160)}, {"locale": "de_DE", "text": "Hallo"}],
            "ice_breakers": [{"question": "Where is my order?", "payload": "ORDER"}],
            "persistent_menu": [{"locale": "default", "composer_input_disabled": false,
                "call_to_actions": [{"type": "postback", "title": "Talk to a person", "payload": "HUMAN"},
                                    {"type": "web_url", "title": "Shop", "url": "https://shop.example"}]}],
            "whitelisted_domains": ["https://shop.example"],
        });
        let profile = MessengerProfile::new(value.clone()).unwrap();
        assert_eq!(Value::Object(profile.fields().clone()), value);
    }

    #[test]
    fn a_greeting_of_161_characters_is_refused_naming_it() {
        let p = problems(json!({"greeting": [{"locale": "default", "text": "é".repeat(161)}]}));
        assert_eq!(p, ["greeting[0].text: 161 characters, at most 160"]);
    }

    #[test]
    fn each_limit_is_named_where_it_is_broken() {
        let q = json!({"question": "?", "payload": "P"});
        let item = json!({"type": "postback", "title": "t", "payload": "p"});
        for (value, says) in [
            (
                json!({"greeting": [{"locale": "fr_FR", "text": "Salut"}]}),
                "greeting: needs a \"default\" locale",
            ),
            (
                json!({"ice_breakers": [q, q, q, q, q]}),
                "ice_breakers: 5 questions, at most 4",
            ),
            (
                json!({"ice_breakers": [{"locale": "default", "call_to_actions": [q, q, q, q, q]}]}),
                "ice_breakers[0].call_to_actions: 5 questions, at most 4",
            ),
            (
                json!({"persistent_menu": [{"locale": "default", "call_to_actions": vec![item.clone(); 21]}]}),
                "persistent_menu[0].call_to_actions: 21 items, at most 20",
            ),
            (
                json!({"persistent_menu": [{"locale": "default", "call_to_actions": [{"type": "nested", "title": "More", "call_to_actions": [item]}]}]}),
                "persistent_menu[0].call_to_actions[0].type: nested menus were removed",
            ),
            (
                json!({"persistent_menu": [{"locale": "default", "call_to_actions": [{"type": "postback", "title": "x".repeat(31), "payload": "p"}]}]}),
                "persistent_menu[0].call_to_actions[0].title: 31 characters, at most 30",
            ),
            (
                json!({"whitelisted_domains": ["http://shop.example"]}),
                "whitelisted_domains[0]: \"http://shop.example\" is not an https:// URL",
            ),
            (
                json!({"get_started": {"payload": "p".repeat(1001)}}),
                "get_started.payload: 1001 characters, at most 1000",
            ),
            (
                json!({"greetings": []}),
                "greetings: is not a profile field",
            ),
            (json!([]), "the profile must be a JSON object"),
        ] {
            let p = problems(value.clone());
            assert!(p.iter().any(|p| p.starts_with(says)), "{value}: {p:?}");
        }
    }

    #[test]
    fn the_diff_names_each_field_of_the_file_against_the_pages() {
        let profile = MessengerProfile::new(json!({
            "get_started": {"payload": "GET_STARTED"},
            "greeting": [{"locale": "default", "text": "Hi"}],
            "whitelisted_domains": ["https://a.example"],
        }))
        .unwrap();
        let current = json!({"get_started": {"payload": "GET_STARTED"},
            "greeting": [{"locale": "default", "text": "Hello"}], "ice_breakers": []});
        let diff = profile.diff(current.as_object().unwrap());
        assert_eq!(diff[0], ("get_started".to_owned(), FieldChange::Unchanged));
        assert!(matches!(&diff[1], (f, FieldChange::Changed { .. }) if f == "greeting"));
        assert!(matches!(&diff[2], (f, FieldChange::Added(_)) if f == "whitelisted_domains"));
    }

    #[tokio::test]
    async fn set_posts_exactly_the_profile_with_appsecret_proof() {
        let graph = MockServer::start().await;
        let value = json!({"get_started": {"payload": "GET_STARTED"},
            "greeting": [{"locale": "default", "text": "Hi"}]});
        Mock::given(method("POST"))
            .and(path(format!(
                "/{}/1234/messenger_profile",
                crate::DEFAULT_VERSION
            )))
            .and(query_param_contains("appsecret_proof", ""))
            .and(body_json(&value))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": "success"})))
            .expect(1)
            .mount(&graph)
            .await;
        let client = GraphClient::new(crate::GraphConfig {
            base_url: graph.uri(),
            app_secret: Some(SecretString::from("test-app-secret")),
            ..crate::GraphConfig::default()
        })
        .unwrap();
        let token = SecretString::from("test-page-token");
        let page = PageId::new("1234");
        client
            .set_messenger_profile(&page, &token, &MessengerProfile::new(value).unwrap())
            .await
            .unwrap();

        Mock::given(method("GET"))
            .and(path(format!(
                "/{}/1234/messenger_profile",
                crate::DEFAULT_VERSION
            )))
            .and(query_param_contains("fields", "greeting"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"data": [{"greeting": [{"locale": "default", "text": "Hi"}]}]}),
            ))
            .mount(&graph)
            .await;
        let got = client
            .messenger_profile(&page, &token, &PROFILE_FIELDS)
            .await
            .unwrap();
        assert_eq!(got["greeting"][0]["text"], "Hi");

        Mock::given(method("DELETE"))
            .and(path(format!(
                "/{}/1234/messenger_profile",
                crate::DEFAULT_VERSION
            )))
            .and(body_json(json!({"fields": ["greeting"]})))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": "success"})))
            .expect(1)
            .mount(&graph)
            .await;
        client
            .delete_messenger_profile(&page, &token, &["greeting"])
            .await
            .unwrap();
    }
}
