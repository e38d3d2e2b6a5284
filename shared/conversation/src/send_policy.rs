//! Meta's sending rules, checked before any network call. Pure: the same input
//! always gives the same answer, and a refusal never reaches the Graph API.
//!
//! - RESPONSE and UPDATE only within 24 hours of the person's last interaction.
//! - MESSAGE_TAG only with a tag in force: HUMAN_AGENT, up to 7 days after the
//!   person's last interaction. CONFIRMED_EVENT_UPDATE, POST_PURCHASE_UPDATE and
//!   ACCOUNT_UPDATE have been rejected by Meta since 27 April 2026.
//! - A one-time notification token only while it is unused and unexpired (a year
//!   from its creation); no window applies.
//! - Never a PSID of one Page with another Page's token.
//! - Never on a thread another app controls (Handover Protocol standby).
//! - Never on an idle thread (24 hours without activity, Conversation Routing)
//!   unless this app is the Page's default app.
//! - CUSTOMER_FEEDBACK only with the `customer_feedback` template, up to 7 days
//!   after the person's last message.

use crate::thread::ThreadState;
use messenger_types::send::{MessageTag, MessagingType, OutgoingMessage};
use messenger_types::{AppId, PageId, Timestamp};

pub const STANDARD_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;
pub const HUMAN_AGENT_WINDOW_MS: i64 = 7 * STANDARD_WINDOW_MS;
pub const CUSTOMER_FEEDBACK_WINDOW_MS: i64 = 7 * STANDARD_WINDOW_MS;
/// An interaction stamped further in the future than this is not believed: the
/// clocks of Meta and AWS agree far better, so it cannot open a window.
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

/// Under which rule a message is to go out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Basis {
    /// `messaging_type` RESPONSE or UPDATE: inside the 24-hour window.
    Standard(MessagingType),
    /// `messaging_type` MESSAGE_TAG with this tag.
    Tag(MessageTag),
    /// A one-time notification token, in the state the store has it.
    OneTimeToken(TokenState),
}

/// A one-time notification token as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenState {
    pub used: bool,
    pub expires_at: Timestamp,
}

/// Everything the rules look at for one planned send.
#[derive(Debug, Clone, Copy)]
pub struct Planned<'a> {
    pub now: Timestamp,
    /// The Page whose token would be used.
    pub sending_page: &'a PageId,
    /// The Page the recipient's PSID belongs to.
    pub recipient_page: &'a PageId,
    pub thread: &'a ThreadState,
    pub basis: &'a Basis,
    /// The message, for the rules that look at what is sent (CUSTOMER_FEEDBACK).
    pub message: Option<&'a OutgoingMessage>,
    /// Whether this app is the Page's default app (`APP_IS_DEFAULT`): only that
    /// app may message an idle thread.
    pub app_is_default: bool,
}

/// Why a send was refused. Recorded on the event and logged; never retried.
/// [`Refusal::code`] is the stable name that metrics (`Reason`), bus events and
/// tests use; `Display` is for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Refusal {
    #[error("the recipient's PSID belongs to Page {recipient_page}, not to Page {sending_page}")]
    WrongPage {
        sending_page: PageId,
        recipient_page: PageId,
    },
    #[error("another app controls the thread (owner {owner:?}): this app is on standby")]
    NotThreadOwner { owner: Option<AppId> },
    #[error("outside the 24-hour window (last user interaction {last:?})")]
    OutsideWindow { last: Option<Timestamp> },
    #[error("the {tag} tag has been rejected by Meta since 27 April 2026")]
    RetiredTag { tag: String },
    #[error("HUMAN_AGENT is allowed only within 7 days of the user's last message (last {last:?})")]
    HumanAgentExpired { last: Option<Timestamp> },
    #[error(
        "the {tag} tag is not in force here: only HUMAN_AGENT and CUSTOMER_FEEDBACK may be used"
    )]
    UnsupportedTag { tag: String },
    #[error("MESSAGE_TAG must be sent with a tag")]
    MissingTag,
    #[error("the one-time notification token was already used")]
    TokenUsed,
    #[error("the one-time notification token expired at {expired_at}")]
    TokenExpired { expired_at: Timestamp },
    #[error("no such one-time notification token")]
    TokenUnknown,
    #[error("the one-time notification token is {status:?}")]
    TokenNotActive { status: crate::otn::TokenStatus },
    #[error("no Page access token for Page {page}")]
    NoPageToken { page: PageId },
    #[error("thread control needs the event's thread, and a PSID (not a user_ref)")]
    NoThreadToPass,
    #[error("one-time notifications are sent by notify commands, not by a bot's reply")]
    OtnOutsideNotify,
    #[error("HUMAN_AGENT is only for a message a person wrote (`human: true`)")]
    NotHumanWritten,
    #[error("the person holds no usable one-time notification token of topic {topic:?}")]
    NoTokenForTopic { topic: String },
    #[error(
        "the thread is idle (no activity since {last_activity:?}) and only the Page's default app may message it (APP_IS_DEFAULT is false)"
    )]
    ThreadIdle { last_activity: Option<Timestamp> },
    #[error("CUSTOMER_FEEDBACK is only for the customer_feedback template")]
    NotFeedbackTemplate,
    #[error(
        "CUSTOMER_FEEDBACK is allowed only within 7 days of the user's last message (last {last:?})"
    )]
    CustomerFeedbackExpired { last: Option<Timestamp> },
}

impl Refusal {
    /// A stable name for metrics, bus events and tests.
    pub fn code(&self) -> &'static str {
        match self {
            Self::WrongPage { .. } => "wrong_page",
            Self::NotThreadOwner { .. } => "not_thread_owner",
            Self::OutsideWindow { .. } => "outside_window",
            Self::RetiredTag { .. } => "retired_tag",
            Self::HumanAgentExpired { .. } => "human_agent_expired",
            Self::UnsupportedTag { .. } => "unsupported_tag",
            Self::MissingTag => "missing_tag",
            Self::TokenUsed => "token_used",
            Self::TokenExpired { .. } => "token_expired",
            Self::TokenUnknown => "token_unknown",
            Self::TokenNotActive { .. } => "token_not_active",
            Self::NoPageToken { .. } => "no_page_token",
            Self::NoThreadToPass => "no_thread_to_pass",
            Self::OtnOutsideNotify => "otn_outside_notify",
            Self::NotHumanWritten => "not_human_written",
            Self::NoTokenForTopic { .. } => "no_token_for_topic",
            Self::ThreadIdle { .. } => "thread_idle",
            Self::NotFeedbackTemplate => "not_feedback_template",
            Self::CustomerFeedbackExpired { .. } => "customer_feedback_expired",
        }
    }
}

/// Checks one planned send against every rule.
pub fn check(p: &Planned<'_>) -> Result<(), Refusal> {
    if p.sending_page != p.recipient_page {
        return Err(Refusal::WrongPage {
            sending_page: p.sending_page.clone(),
            recipient_page: p.recipient_page.clone(),
        });
    }
    if p.thread.idle(p.now) {
        // Whoever held the thread holds it no more: Meta lets the default app write.
        if !p.app_is_default {
            return Err(Refusal::ThreadIdle {
                last_activity: p.thread.last_activity(),
            });
        }
    } else if !p.thread.controlled_by_us() {
        return Err(Refusal::NotThreadOwner {
            owner: p.thread.control.as_ref().and_then(|c| c.owner.clone()),
        });
    }
    let last = p.thread.last_user_interaction;
    match p.basis {
        Basis::Standard(MessagingType::MessageTag) => Err(Refusal::MissingTag),
        Basis::Standard(_) => within(p.now, last, STANDARD_WINDOW_MS)
            .then_some(())
            .ok_or(Refusal::OutsideWindow { last }),
        Basis::Tag(tag) if tag.is_retired() => Err(Refusal::RetiredTag {
            tag: tag.as_str().to_owned(),
        }),
        Basis::Tag(MessageTag::HumanAgent) => {
            let last = p.thread.last_user_message;
            within(p.now, last, HUMAN_AGENT_WINDOW_MS)
                .then_some(())
                .ok_or(Refusal::HumanAgentExpired { last })
        }
        Basis::Tag(MessageTag::CustomerFeedback) => {
            if p.message.and_then(OutgoingMessage::template_type) != Some("customer_feedback") {
                return Err(Refusal::NotFeedbackTemplate);
            }
            let last = p.thread.last_user_message;
            within(p.now, last, CUSTOMER_FEEDBACK_WINDOW_MS)
                .then_some(())
                .ok_or(Refusal::CustomerFeedbackExpired { last })
        }
        Basis::Tag(tag) => Err(Refusal::UnsupportedTag {
            tag: tag.as_str().to_owned(),
        }),
        Basis::OneTimeToken(token) if token.used => Err(Refusal::TokenUsed),
        Basis::OneTimeToken(token) if p.now >= token.expires_at => Err(Refusal::TokenExpired {
            expired_at: token.expires_at,
        }),
        Basis::OneTimeToken(_) => Ok(()),
    }
}

/// Whether `now` is less than `window` after `last`.
fn within(now: Timestamp, last: Option<Timestamp>, window: i64) -> bool {
    let Some(last) = last else { return false };
    let age = now.as_millis().saturating_sub(last.as_millis());
    (-MAX_CLOCK_SKEW_MS..window).contains(&age)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thread::Control;
    use proptest::prelude::*;

    const HOUR: i64 = 60 * 60 * 1000;
    const DAY: i64 = 24 * HOUR;
    const NOW: i64 = 1_795_269_600_000;

    fn page() -> PageId {
        PageId::new("100000000000001")
    }

    /// A thread whose last interaction, a message, was `last_ago` ms ago.
    fn thread(last_ago: Option<i64>) -> ThreadState {
        let last = last_ago.map(|ago| Timestamp::from_millis(NOW - ago));
        ThreadState {
            last_user_interaction: last,
            last_user_message: last,
            ..ThreadState::default()
        }
    }

    fn check_with(thread: &ThreadState, basis: Basis) -> Result<(), Refusal> {
        let page = page();
        check(&Planned {
            now: Timestamp::from_millis(NOW),
            sending_page: &page,
            recipient_page: &page,
            thread,
            basis: &basis,
            message: None,
            app_is_default: true,
        })
    }

    fn feedback_template() -> OutgoingMessage {
        serde_json::from_str(
            r#"{"attachment":{"type":"template","payload":{"template_type":"customer_feedback","title":"How did we do?","subtitle":"Tell us","button_title":"Rate","feedback_screens":[]}}}"#,
        )
        .unwrap()
    }

    fn check_message(
        thread: &ThreadState,
        basis: Basis,
        message: &OutgoingMessage,
        app_is_default: bool,
    ) -> Result<(), Refusal> {
        let page = page();
        check(&Planned {
            now: Timestamp::from_millis(NOW),
            sending_page: &page,
            recipient_page: &page,
            thread,
            basis: &basis,
            message: Some(message),
            app_is_default,
        })
    }

    #[test]
    fn customer_feedback_goes_only_as_its_template_within_seven_days_of_the_last_message() {
        let tag = || Basis::Tag(MessageTag::CustomerFeedback);
        let text = OutgoingMessage::text("How did we do?");
        assert_eq!(
            check_message(&thread(Some(6 * DAY)), tag(), &feedback_template(), true),
            Ok(())
        );
        assert_eq!(
            check_message(&thread(Some(HOUR)), tag(), &text, true),
            Err(Refusal::NotFeedbackTemplate)
        );
        assert!(matches!(
            check_message(&thread(Some(7 * DAY)), tag(), &feedback_template(), true),
            Err(Refusal::CustomerFeedbackExpired { .. })
        ));
        assert!(matches!(
            check_message(&thread(None), tag(), &feedback_template(), true),
            Err(Refusal::CustomerFeedbackExpired { last: None })
        ));
    }

    #[test]
    fn an_idle_thread_takes_messages_only_from_the_pages_default_app() {
        // The Page Inbox took the thread 25 hours ago and nothing happened since.
        let mut t = thread(Some(25 * HOUR));
        t.control = Some(Control {
            ours: false,
            owner: Some(AppId::new("263902037430900")),
            since: Timestamp::from_millis(NOW - 25 * HOUR),
        });
        assert!(t.idle(Timestamp::from_millis(NOW)));
        let human = || Basis::Tag(MessageTag::HumanAgent);
        let text = OutgoingMessage::text("An agent writes");
        assert_eq!(check_message(&t, human(), &text, true), Ok(()));
        assert_eq!(
            check_message(&t, human(), &text, false),
            Err(Refusal::ThreadIdle {
                last_activity: Some(Timestamp::from_millis(NOW - 25 * HOUR)),
            })
        );
        // 23 hours: still the Inbox's, default app or not.
        t.control.as_mut().unwrap().since = Timestamp::from_millis(NOW - 23 * HOUR);
        assert!(!t.idle(Timestamp::from_millis(NOW)));
        for default in [true, false] {
            assert!(matches!(
                check_message(&t, human(), &text, default),
                Err(Refusal::NotThreadOwner { .. })
            ));
        }
        // A thread nothing is known of is not idle.
        assert!(!ThreadState::default().idle(Timestamp::from_millis(NOW)));
    }

    fn response() -> Basis {
        Basis::Standard(MessagingType::Response)
    }

    #[test]
    fn response_and_update_only_inside_24_hours() {
        for basis in [response(), Basis::Standard(MessagingType::Update)] {
            assert_eq!(check_with(&thread(Some(0)), basis.clone()), Ok(()));
            assert_eq!(check_with(&thread(Some(23 * HOUR)), basis.clone()), Ok(()));
            assert_eq!(check_with(&thread(Some(DAY - 1)), basis.clone()), Ok(()));
            assert!(matches!(
                check_with(&thread(Some(DAY)), basis.clone()),
                Err(Refusal::OutsideWindow { .. })
            ));
            assert!(matches!(
                check_with(&thread(Some(25 * HOUR)), basis.clone()),
                Err(Refusal::OutsideWindow { .. })
            ));
            assert_eq!(
                check_with(&thread(None), basis),
                Err(Refusal::OutsideWindow { last: None })
            );
        }
    }

    #[test]
    fn human_agent_up_to_seven_days() {
        let human = Basis::Tag(MessageTag::HumanAgent);
        assert_eq!(check_with(&thread(Some(6 * DAY)), human.clone()), Ok(()));
        assert_eq!(
            check_with(&thread(Some(7 * DAY - 1)), human.clone()),
            Ok(())
        );
        assert!(matches!(
            check_with(&thread(Some(8 * DAY)), human.clone()),
            Err(Refusal::HumanAgentExpired { .. })
        ));
        assert!(matches!(
            check_with(&thread(None), human),
            Err(Refusal::HumanAgentExpired { last: None })
        ));
    }

    #[test]
    fn human_agent_counts_from_the_last_message_not_any_interaction() {
        let human = Basis::Tag(MessageTag::HumanAgent);
        // Wrote 8 days ago, tapped a button an hour ago: the window is open, the
        // human agent's 7 days are over.
        let mut t = thread(Some(8 * DAY));
        t.last_user_interaction = Some(Timestamp::from_millis(NOW - HOUR));
        assert_eq!(check_with(&t, response()), Ok(()));
        assert!(matches!(
            check_with(&t, human.clone()),
            Err(Refusal::HumanAgentExpired { .. })
        ));
        // Never wrote at all (only postbacks): no human agent reply.
        t.last_user_message = None;
        assert!(matches!(
            check_with(&t, human),
            Err(Refusal::HumanAgentExpired { last: None })
        ));
    }

    #[test]
    fn retired_tags_are_refused_even_inside_the_window() {
        for tag in [
            MessageTag::ConfirmedEventUpdate,
            MessageTag::PostPurchaseUpdate,
            MessageTag::AccountUpdate,
        ] {
            let err = check_with(&thread(Some(0)), Basis::Tag(tag)).unwrap_err();
            assert!(matches!(err, Refusal::RetiredTag { .. }));
            assert!(err.to_string().contains("27 April 2026"), "{err}");
        }
        assert!(matches!(
            check_with(
                &thread(Some(0)),
                Basis::Tag(MessageTag::Other("FEATURE_FUNCTIONALITY_UPDATE".into()))
            ),
            Err(Refusal::UnsupportedTag { .. })
        ));
        assert_eq!(
            check_with(&thread(Some(0)), Basis::Standard(MessagingType::MessageTag)),
            Err(Refusal::MissingTag)
        );
    }

    #[test]
    fn one_time_tokens_ignore_the_window_but_not_their_state() {
        let token = |used, expires_in| {
            Basis::OneTimeToken(TokenState {
                used,
                expires_at: Timestamp::from_millis(NOW + expires_in),
            })
        };
        assert_eq!(
            check_with(&thread(Some(300 * DAY)), token(false, DAY)),
            Ok(())
        );
        assert_eq!(check_with(&thread(None), token(false, 1)), Ok(()));
        assert_eq!(
            check_with(&thread(None), token(true, DAY)),
            Err(Refusal::TokenUsed)
        );
        assert!(matches!(
            check_with(&thread(None), token(false, 0)),
            Err(Refusal::TokenExpired { .. })
        ));
    }

    #[test]
    fn another_pages_psid_is_refused() {
        let (a, b) = (page(), PageId::new("100000000000002"));
        let thread = thread(Some(0));
        let err = check(&Planned {
            now: Timestamp::from_millis(NOW),
            sending_page: &a,
            recipient_page: &b,
            thread: &thread,
            basis: &response(),
            message: None,
            app_is_default: true,
        })
        .unwrap_err();
        assert!(matches!(err, Refusal::WrongPage { .. }));
    }

    #[test]
    fn a_thread_another_app_controls_gets_nothing() {
        let mut t = thread(Some(0));
        t.control = Some(Control {
            ours: false,
            owner: Some(AppId::new("263902037430900")),
            since: Timestamp::from_millis(NOW),
        });
        for basis in [response(), Basis::Tag(MessageTag::HumanAgent)] {
            assert!(matches!(
                check_with(&t, basis),
                Err(Refusal::NotThreadOwner { owner: Some(_) })
            ));
        }
        t.control = Some(Control {
            ours: true,
            owner: None,
            since: Timestamp::from_millis(NOW),
        });
        assert_eq!(check_with(&t, response()), Ok(()));
    }

    #[test]
    fn an_interaction_stamped_far_in_the_future_opens_no_window() {
        assert!(check_with(&thread(Some(-HOUR)), response()).is_err());
        assert_eq!(check_with(&thread(Some(-60_000)), response()), Ok(()));
    }

    proptest! {
        #[test]
        fn the_window_rules_hold_for_any_age(age in proptest::option::of(-400 * DAY..400 * DAY)) {
            let t = thread(age);
            let inside = |w: i64| age.is_some_and(|a| (-MAX_CLOCK_SKEW_MS..w).contains(&a));
            prop_assert_eq!(check_with(&t, response()).is_ok(), inside(DAY));
            prop_assert_eq!(
                check_with(&t, Basis::Tag(MessageTag::HumanAgent)).is_ok(),
                inside(7 * DAY)
            );
            for tag in [MessageTag::ConfirmedEventUpdate, MessageTag::PostPurchaseUpdate, MessageTag::AccountUpdate] {
                prop_assert!(check_with(&t, Basis::Tag(tag)).is_err());
            }
        }

        #[test]
        fn no_rule_lets_another_pages_psid_through(
            age in -400 * DAY..400 * DAY,
            other in "[0-9]{1,16}",
            expires_in in -DAY..DAY,
        ) {
            prop_assume!(other != page().as_str());
            let (a, b) = (page(), PageId::new(other));
            let t = thread(Some(age));
            for basis in [
                response(),
                Basis::Tag(MessageTag::HumanAgent),
                Basis::OneTimeToken(TokenState { used: false, expires_at: Timestamp::from_millis(NOW + expires_in) }),
            ] {
                let refused = check(&Planned {
                    message: None,
                    app_is_default: true,
                    now: Timestamp::from_millis(NOW),
                    sending_page: &a,
                    recipient_page: &b,
                    thread: &t,
                    basis: &basis,
                });
                let is_wrong_page = matches!(refused, Err(Refusal::WrongPage { .. }));
                prop_assert!(is_wrong_page);
            }
        }
    }
}
