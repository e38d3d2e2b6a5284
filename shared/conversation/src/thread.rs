//! The thread: a Page and a person, and what is known of their conversation.
//! Every field that events move forward carries the time of the event that set it:
//! a change applies only when it is newer than what the field holds, so events
//! arriving out of order leave the newest state.

use messenger_types::{AppId, PageId, Psid, Timestamp, UserRef};

/// Whom a thread is with: a PSID, or the checkbox plugin's `user_ref` before the
/// person has written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Person {
    Psid(Psid),
    UserRef(UserRef),
}

/// One conversation: a Page and a person.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ThreadKey {
    pub page: PageId,
    pub person: Person,
}

impl ThreadKey {
    pub fn psid(page: PageId, psid: Psid) -> Self {
        Self {
            page,
            person: Person::Psid(psid),
        }
    }
}

/// What the table knows of a thread. A thread never seen has the default state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadState {
    /// The newest user message, postback, reaction, optin or referral: the 24-hour
    /// window runs from here.
    pub last_user_interaction: Option<Timestamp>,
    /// The newest message the person wrote: HUMAN_AGENT's 7 days run from here
    /// (MESSENGER.md §5: "up to 7 days after the user's last message").
    pub last_user_message: Option<Timestamp>,
    pub control: Option<Control>,
    pub entry_point: Option<EntryPoint>,
    pub account_link: Option<AccountLink>,
    /// Set when Meta said the person cannot receive messages (551, 2018108, ...).
    pub unreachable: Option<Unreachable>,
    /// When the person wrote again after being unreachable: with
    /// `unreachable.at`, the time reachability last changed.
    pub reachable_since: Option<Timestamp>,
}

impl ThreadState {
    /// Whether this app controls the thread. With no Handover Protocol events seen,
    /// the app that receives `messaging` events is the owner.
    pub fn controlled_by_us(&self) -> bool {
        self.control.as_ref().is_none_or(|c| c.ours)
    }

    /// When reachability last changed, either way.
    pub fn reachability_at(&self) -> Option<Timestamp> {
        self.unreachable
            .as_ref()
            .map(|u| u.at)
            .max(self.reachable_since)
    }

    /// Applies `change` if it is newer than the field it sets; returns whether it
    /// did. The store's conditional writes follow the same rule.
    pub fn apply(&mut self, change: &ThreadChange) -> bool {
        fn newer(held: Option<Timestamp>, at: Timestamp) -> bool {
            held.is_none_or(|held| held < at)
        }
        match change {
            ThreadChange::UserInteraction { at } => {
                let ok = newer(self.last_user_interaction, *at);
                if ok {
                    self.last_user_interaction = Some(*at);
                }
                ok
            }
            ThreadChange::UserMessage { at } => {
                let ok = newer(self.last_user_message, *at);
                if ok {
                    self.last_user_message = Some(*at);
                }
                ok
            }
            ThreadChange::Control(c) => {
                let ok = newer(self.control.as_ref().map(|c| c.since), c.since);
                if ok {
                    let owner = match (&c.owner, c.ours) {
                        (Some(owner), _) => Some(owner.clone()),
                        (None, true) => None,
                        // Someone else's, unnamed (a standby event): keep the owner we know.
                        (None, false) => self.control.as_ref().and_then(|c| c.owner.clone()),
                    };
                    self.control = Some(Control {
                        ours: c.ours,
                        owner,
                        since: c.since,
                    });
                }
                ok
            }
            ThreadChange::EntryPoint(e) => {
                let ok = newer(self.entry_point.as_ref().map(|e| e.at), e.at);
                if ok {
                    self.entry_point = Some(e.clone());
                }
                ok
            }
            ThreadChange::AccountLink(l) => {
                let ok = newer(self.account_link.as_ref().map(|l| l.at), l.at);
                if ok {
                    self.account_link = Some(l.clone());
                }
                ok
            }
            ThreadChange::Unreachable(u) => {
                let ok = newer(self.reachability_at(), u.at);
                if ok {
                    self.unreachable = Some(u.clone());
                    self.reachable_since = None;
                }
                ok
            }
            ThreadChange::Reachable { at } => {
                let ok = newer(self.reachability_at(), *at);
                if ok {
                    self.unreachable = None;
                    self.reachable_since = Some(*at);
                }
                ok
            }
        }
    }
}

/// Thread control under the Handover Protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub ours: bool,
    /// The owning app, when known (pass/take events and our own passes name it).
    pub owner: Option<AppId>,
    pub since: Timestamp,
}

/// How the person arrived: an m.me ref, an ad, a plugin's data-ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPoint {
    pub reference: Option<String>,
    pub source: Option<String>,
    pub at: Timestamp,
}

/// Whether the person linked an account on the business's site. The
/// `authorization_code` Meta sends with it is a short-lived credential for the
/// business's own linking flow and is not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountLink {
    pub linked: bool,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    pub reason: String,
    pub at: Timestamp,
}

/// A change to a thread, applied only if `at` is newer than what the field holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadChange {
    UserInteraction {
        at: Timestamp,
    },
    /// The person wrote a message (not an echo).
    UserMessage {
        at: Timestamp,
    },
    Control(Control),
    EntryPoint(EntryPoint),
    AccountLink(AccountLink),
    Unreachable(Unreachable),
    /// The person wrote again after being unreachable.
    Reachable {
        at: Timestamp,
    },
}

/// A change to a Page's own record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageChange {
    /// `policy_enforcement`: warning, block or unblock.
    PolicyEnforcement {
        action: String,
        reason: Option<String>,
        at: Timestamp,
    },
    /// `app_roles`, as the JSON Meta sent.
    AppRoles { roles: String, at: Timestamp },
}

/// What the table knows of a Page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageState {
    pub policy_action: Option<String>,
    pub policy_reason: Option<String>,
    pub app_roles: Option<String>,
}
