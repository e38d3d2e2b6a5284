//! What the processor counts: each outcome once, where it is decided (an action
//! settled by an earlier attempt is not counted again). Written once per
//! invocation by [`crate::Processor::handle`].

use graph_api::ErrorClass;
use signals::{Metric, count, count_by};

use crate::Outcome;

/// An action's outcome: a message sent, a send refused by the policy (by its
/// reason code), or a Graph refusal.
pub(crate) fn outcome(outcome: &Outcome) {
    match outcome {
        Outcome::Sent { .. } => count(Metric::MessagesSent, 1),
        Outcome::Refused { reason } => count_by(Metric::SendsRefused, reason.code(), 1),
        Outcome::GraphRefused { class, .. } => graph_error(*class),
        Outcome::ControlPassed { .. }
        | Outcome::ControlTaken
        | Outcome::ControlReleased
        | Outcome::ControlExtended { .. }
        | Outcome::ControlRequested
        | Outcome::ActionShown { .. }
        | Outcome::MaybeSent
        | Outcome::DoneEarlier
        | Outcome::NotRepeated => {}
    }
}

/// A Graph error of any kind (retried, refused for good, or without an answer),
/// by class; one that says the Page's token or its permission is gone also
/// counts as `PageCredentialsInvalid`.
pub(crate) fn graph_error(class: ErrorClass) {
    count_by(Metric::GraphErrors, class.as_str(), 1);
    if matches!(
        class,
        ErrorClass::TokenInvalid | ErrorClass::PermissionMissing | ErrorClass::PageRestricted
    ) {
        count(Metric::PageCredentialsInvalid, 1);
    }
}
