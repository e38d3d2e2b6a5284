//! What an event changes in the table, decided without touching it.

use crate::otn::{NewToken, OTN_LIFETIME_MS, TokenKind};
use crate::thread::{
    AccountLink, AuthorizationCode, Control, EntryPoint, PageChange, Person, ThreadChange,
    ThreadKey, bounded_ads_context,
};
use messenger_types::event::{
    AccountLinking, EventKind, NotificationStatus, OptinVariant, Referral,
};
use messenger_types::{AppId, Event, PageId, Psid, Source, Timestamp, UserRef};

/// The thread an event belongs to and the changes it makes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub thread: Option<ThreadKey>,
    pub thread_changes: Vec<ThreadChange>,
    pub page_changes: Vec<PageChange>,
    /// Notification tokens to store, and whether each may be used (a recurring
    /// optin can say STOP).
    pub tokens: Vec<(NewToken, bool)>,
}

/// The thread of `event` on `page`: the person's PSID, or the checkbox plugin's
/// `user_ref` when the event has no PSID.
pub fn thread_of(page: &PageId, event: &Event) -> Option<ThreadKey> {
    let party = event.user();
    if let Some(id) = party.and_then(|p| p.id.as_deref()) {
        return Some(ThreadKey::psid(page.clone(), Psid::new(id)));
    }
    let user_ref = party
        .and_then(|p| p.user_ref.as_deref())
        .or(match &event.kind {
            EventKind::Optin(o) => o.user_ref.as_deref(),
            _ => None,
        })?;
    Some(ThreadKey {
        page: page.clone(),
        person: Person::UserRef(UserRef::new(user_ref)),
    })
}

/// Whether the event is the person doing something: these open (or reopen) the
/// 24-hour window from the event's timestamp.
fn is_user_interaction(kind: &EventKind) -> bool {
    match kind {
        EventKind::Message(m) => !m.is_echo,
        EventKind::Postback(_)
        | EventKind::Reaction(_)
        | EventKind::Optin(_)
        | EventKind::Referral(_) => true,
        _ => false,
    }
}

pub fn changes(page: &PageId, event: &Event, source: Source) -> Changes {
    changes_for(page, event, source, None)
}

/// Whether an echo was written by someone other than this app (`ours`, when
/// known): staff in the Page Inbox or Business Suite (no `app_id`, or the Inbox's),
/// or another app. Without `ours`, only the Inbox's echoes are told apart.
pub fn written_by_others(app_id: Option<&AppId>, ours: Option<&AppId>) -> bool {
    match (app_id, ours) {
        (None, _) => true,
        (Some(app), _) if app.as_str() == PAGE_INBOX_APP_ID => true,
        (Some(app), Some(ours)) => app != ours,
        (Some(_), None) => false,
    }
}

/// The Page Inbox's app id: staff replies written there echo with it.
pub const PAGE_INBOX_APP_ID: &str = "263902037430900";

/// [`changes`], knowing this app's id (`APP_ID`), so that an echo written by
/// another app also counts as a human reply.
pub fn changes_for(page: &PageId, event: &Event, source: Source, ours: Option<&AppId>) -> Changes {
    let mut out = Changes {
        thread: thread_of(page, event),
        ..Changes::default()
    };
    // Without a timestamp there is nothing to order a change by: record nothing
    // rather than let an undated event overwrite dated state.
    let Some(at) = event.timestamp else {
        return out;
    };

    if is_user_interaction(&event.kind) {
        out.thread_changes
            .push(ThreadChange::UserInteraction { at });
        if matches!(&event.kind, EventKind::Message(m) if !m.is_echo) {
            out.thread_changes.push(ThreadChange::UserMessage { at });
        }
        out.thread_changes.push(ThreadChange::Reachable { at });
        // Meta sends `messaging` only to the app that owns the thread, `standby`
        // to the others: either way the event says who controls it now.
        out.thread_changes.push(ThreadChange::Control(Control {
            ours: source == Source::Messaging,
            owner: None,
            since: at,
        }));
    }

    if let EventKind::Message(m) = &event.kind
        && m.is_echo
        && written_by_others(m.app_id.as_ref(), ours)
    {
        out.thread_changes.push(ThreadChange::HumanReply { at });
    }

    match &event.kind {
        EventKind::Referral(r) => out
            .thread_changes
            .push(ThreadChange::EntryPoint(entry_point(r, at))),
        EventKind::Postback(p) => {
            if let Some(r) = &p.referral {
                out.thread_changes
                    .push(ThreadChange::EntryPoint(entry_point(r, at)));
            }
        }
        EventKind::Optin(o) => {
            let psid = match &out.thread {
                Some(ThreadKey {
                    person: Person::Psid(psid),
                    ..
                }) => Some(psid.clone()),
                _ => None,
            };
            match (o.variant(), psid) {
                (OptinVariant::OneTimeNotification { topic, token }, Some(psid)) => {
                    out.tokens.push((
                        NewToken {
                            page: page.clone(),
                            psid,
                            topic: topic.to_owned(),
                            token: token.to_owned(),
                            kind: TokenKind::OneTime,
                            created_at: at,
                            expires_at: at.plus_millis(OTN_LIFETIME_MS),
                        },
                        true,
                    ));
                }
                (
                    OptinVariant::Recurring {
                        topic: Some(topic),
                        token: Some(token),
                        expires_at,
                        status,
                    },
                    Some(psid),
                ) => {
                    out.tokens.push((
                        NewToken {
                            page: page.clone(),
                            psid,
                            topic: topic.to_owned(),
                            token: token.to_owned(),
                            kind: TokenKind::Recurring,
                            created_at: at,
                            expires_at: expires_at.unwrap_or(at.plus_millis(OTN_LIFETIME_MS)),
                        },
                        NotificationStatus::allows_messages(status),
                    ));
                }
                _ => {}
            }
            if let OptinVariant::Plugin {
                reference: Some(reference),
                user_ref,
            } = o.variant()
            {
                let source = if user_ref.is_some() {
                    "CHECKBOX_PLUGIN"
                } else {
                    "SEND_TO_MESSENGER_PLUGIN"
                };
                out.thread_changes
                    .push(ThreadChange::EntryPoint(EntryPoint {
                        reference: Some(reference.to_owned()),
                        source: Some(source.to_owned()),
                        ad_id: None,
                        ads_context_data: None,
                        at,
                    }));
            }
        }
        EventKind::AccountLinking(l) => out
            .thread_changes
            .push(ThreadChange::AccountLink(account_link(l, at))),
        // Delivered to the app that receives control: us.
        EventKind::PassThreadControl(p) => {
            out.thread_changes.push(ThreadChange::Control(Control {
                ours: true,
                owner: Some(p.new_owner_app_id.clone()),
                since: at,
            }))
        }
        // Delivered to the app that lost control: us.
        EventKind::TakeThreadControl(t) => {
            out.thread_changes.push(ThreadChange::Control(Control {
                ours: false,
                owner: t.new_owner_app_id.clone(),
                since: at,
            }))
        }
        EventKind::PolicyEnforcement(p) => out.page_changes.push(PageChange::PolicyEnforcement {
            action: p.action.clone(),
            reason: p.reason.clone(),
            at,
        }),
        EventKind::AppRoles(roles) => {
            if let Ok(roles) = serde_json::to_string(roles) {
                out.page_changes.push(PageChange::AppRoles { roles, at });
            }
        }
        _ => {}
    }
    out
}

/// A referral (on its own or on a Get Started) as the thread keeps it: every field
/// Meta sends, the ad's context bounded.
fn entry_point(r: &Referral, at: Timestamp) -> EntryPoint {
    EntryPoint {
        reference: r.reference.clone(),
        source: r.source.clone(),
        ad_id: r.ad_id.clone(),
        ads_context_data: bounded_ads_context(r.ads_context_data.as_ref()),
        at,
    }
}

/// An account-linking event as the thread keeps it: `linked` with its code,
/// `unlinked` (or anything else) without one.
fn account_link(l: &AccountLinking, at: Timestamp) -> AccountLink {
    let linked = l.status == "linked";
    AccountLink {
        linked,
        authorization_code: l
            .authorization_code
            .as_deref()
            .filter(|_| linked)
            .and_then(AuthorizationCode::new),
        at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messenger_types::Timestamp;

    fn on(json: &str, source: Source) -> Changes {
        changes(
            &PageId::new("1"),
            &serde_json::from_str(json).unwrap(),
            source,
        )
    }

    #[test]
    fn a_message_opens_the_window_and_shows_who_controls_the_thread() {
        let c = on(
            r#"{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":7,"message":{"mid":"m","text":"hi"}}"#,
            Source::Messaging,
        );
        assert_eq!(
            c.thread,
            Some(ThreadKey::psid(PageId::new("1"), Psid::new("2")))
        );
        assert!(c.thread_changes.contains(&ThreadChange::UserInteraction {
            at: Timestamp::from_millis(7)
        }));
        assert!(c.thread_changes.contains(&ThreadChange::UserMessage {
            at: Timestamp::from_millis(7)
        }));
        assert!(
            c.thread_changes
                .iter()
                .any(|ch| matches!(ch, ThreadChange::Control(Control { ours: true, .. })))
        );

        let standby = on(
            r#"{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":7,"message":{"mid":"m","text":"hi"}}"#,
            Source::Standby,
        );
        assert!(
            standby
                .thread_changes
                .iter()
                .any(|ch| matches!(ch, ThreadChange::Control(Control { ours: false, .. })))
        );
    }

    #[test]
    fn echoes_deliveries_and_reads_open_no_window() {
        for json in [
            r#"{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":7,"message":{"mid":"m","is_echo":true,"app_id":"555"}}"#,
            r#"{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":7,"delivery":{"watermark":6}}"#,
            r#"{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":7,"read":{"watermark":6}}"#,
        ] {
            let c = on(json, Source::Messaging);
            assert!(c.thread_changes.is_empty(), "{json}");
            assert_eq!(
                c.thread.unwrap().person,
                Person::Psid(Psid::new("2")),
                "{json}"
            );
        }
    }

    #[test]
    fn an_echo_someone_else_wrote_is_a_human_reply_and_this_apps_own_is_not() {
        let echo = |app: &str| {
            serde_json::from_str::<Event>(&format!(
                r#"{{"sender":{{"id":"1"}},"recipient":{{"id":"2"}},"timestamp":7,"message":{{"mid":"m","text":"hi","is_echo":true{app}}}}}"#
            ))
            .unwrap()
        };
        let ours = AppId::new("555");
        let human = [ThreadChange::HumanReply {
            at: Timestamp::from_millis(7),
        }];
        let page = PageId::new("1");
        let cases: [(&str, Option<&AppId>, &[ThreadChange]); 6] = [
            // The Page Inbox: no app_id, or the Inbox's own.
            ("", None, &human),
            (r#","app_id":"263902037430900""#, None, &human),
            ("", Some(&ours), &human),
            // Another app: known as another only when this app's id is.
            (r#","app_id":"999""#, Some(&ours), &human),
            (r#","app_id":"999""#, None, &[]),
            // This app's own reply.
            (r#","app_id":"555""#, Some(&ours), &[]),
        ];
        for (app, known, expected) in cases {
            let c = changes_for(&page, &echo(app), Source::Messaging, known);
            assert_eq!(c.thread_changes, expected, "{app} {known:?}");
        }
    }

    #[test]
    fn referrals_plugins_and_account_links_are_recorded() {
        let c = on(
            r#"{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":7,"postback":{"title":"Get Started","payload":"GS","referral":{"ref":"winter","source":"SHORTLINK","type":"OPEN_THREAD"}}}"#,
            Source::Messaging,
        );
        assert!(c.thread_changes.iter().any(|ch| matches!(ch, ThreadChange::EntryPoint(e) if e.reference.as_deref() == Some("winter"))));
        // A tap opens the window but is not a message (HUMAN_AGENT's clock).
        assert!(
            c.thread_changes
                .iter()
                .any(|ch| matches!(ch, ThreadChange::UserInteraction { .. }))
        );
        assert!(
            !c.thread_changes
                .iter()
                .any(|ch| matches!(ch, ThreadChange::UserMessage { .. }))
        );

        let c = on(
            r#"{"recipient":{"id":"1"},"timestamp":7,"optin":{"ref":"cart","user_ref":"u-1"}}"#,
            Source::Messaging,
        );
        assert_eq!(
            c.thread.unwrap().person,
            Person::UserRef(UserRef::new("u-1"))
        );
        assert!(c.thread_changes.iter().any(|ch| matches!(ch, ThreadChange::EntryPoint(e) if e.source.as_deref() == Some("CHECKBOX_PLUGIN"))));

        let c = on(
            r#"{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":7,"account_linking":{"status":"linked","authorization_code":"code"}}"#,
            Source::Messaging,
        );
        assert!(
            c.thread_changes
                .iter()
                .any(|ch| matches!(ch, ThreadChange::AccountLink(l) if l.linked))
        );
    }

    #[test]
    fn an_ad_referral_and_an_account_link_are_kept_whole_and_unlinking_clears_the_code() {
        let c = on(
            r#"{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":7,"referral":{"ref":"winter","ad_id":6045246247433,"source":"ADS","type":"OPEN_THREAD","ads_context_data":{"ad_title":"Boots","post_id":"12_34"}}}"#,
            Source::Messaging,
        );
        let entry = c
            .thread_changes
            .iter()
            .find_map(|ch| match ch {
                ThreadChange::EntryPoint(e) => Some(e.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(entry.reference.as_deref(), Some("winter"));
        assert_eq!(entry.ad_id.as_deref(), Some("6045246247433"));
        assert_eq!(
            serde_json::Value::Object(entry.ads_context_data.unwrap()),
            serde_json::json!({"ad_title": "Boots", "post_id": "12_34"})
        );

        let link = |json: &str| {
            on(json, Source::Messaging)
                .thread_changes
                .into_iter()
                .find_map(|ch| match ch {
                    ThreadChange::AccountLink(l) => Some(l),
                    _ => None,
                })
                .unwrap()
        };
        let linked = link(
            r#"{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":7,"account_linking":{"status":"linked","authorization_code":"code-1"}}"#,
        );
        assert!(linked.linked);
        assert_eq!(
            linked
                .authorization_code
                .as_ref()
                .map(AuthorizationCode::expose),
            Some("code-1")
        );
        assert!(!format!("{linked:?}").contains("code-1"), "{linked:?}");
        let unlinked = link(
            r#"{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":8,"account_linking":{"status":"unlinked","authorization_code":"stray"}}"#,
        );
        assert_eq!(
            (unlinked.linked, unlinked.authorization_code),
            (false, None)
        );
        // A code longer than the thread keeps: the link is kept, the code is not.
        let long = link(&format!(
            r#"{{"sender":{{"id":"2"}},"recipient":{{"id":"1"}},"timestamp":9,"account_linking":{{"status":"linked","authorization_code":"{}"}}}}"#,
            "c".repeat(crate::thread::AUTHORIZATION_CODE_MAX_BYTES + 1)
        ));
        assert_eq!((long.linked, long.authorization_code), (true, None));
    }

    #[test]
    fn otn_and_recurring_optins_bring_tokens() {
        let c = on(
            r#"{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":7,"optin":{"type":"one_time_notif_req","payload":"back in stock","one_time_notif_token":"tok"}}"#,
            Source::Messaging,
        );
        let (token, active) = &c.tokens[0];
        assert!(*active);
        assert_eq!(token.topic, "back in stock");
        assert_eq!(token.expires_at.as_millis(), 7 + OTN_LIFETIME_MS);

        let c = on(
            r#"{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":7,"optin":{"type":"notification_messages","payload":"deals","notification_messages_token":"rn","token_expiry_timestamp":99,"notification_messages_status":"STOP NOTIFICATIONS"}}"#,
            Source::Messaging,
        );
        let (token, active) = &c.tokens[0];
        assert!(!*active);
        assert_eq!(token.kind, TokenKind::Recurring);
        assert_eq!(token.expires_at.as_millis(), 99);
    }

    #[test]
    fn handover_events_move_control() {
        let c = on(
            r#"{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":7,"pass_thread_control":{"new_owner_app_id":"99","metadata":"back to you"}}"#,
            Source::Messaging,
        );
        assert_eq!(
            c.thread_changes,
            vec![ThreadChange::Control(Control {
                ours: true,
                owner: Some(AppId::new("99")),
                since: Timestamp::from_millis(7)
            })]
        );
        let c = on(
            r#"{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":8,"take_thread_control":{"previous_owner_app_id":"99","new_owner_app_id":"263902037430900"}}"#,
            Source::Messaging,
        );
        assert!(matches!(
            &c.thread_changes[0],
            ThreadChange::Control(Control { ours: false, .. })
        ));
    }

    #[test]
    fn page_level_events_change_the_page() {
        let c = on(
            r#"{"recipient":{"id":"1"},"timestamp":7,"policy_enforcement":{"action":"block","reason":"spam"}}"#,
            Source::Messaging,
        );
        assert!(c.thread.is_none());
        assert_eq!(c.page_changes.len(), 1);
    }
}
