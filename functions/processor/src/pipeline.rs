//! One webhook event, at most once: claim it in the ledger, record what it
//! changes, ask the bot, carry out each action the bot asked for (each recorded as
//! started before its call and as done after it), then complete the event with
//! its typed outcome.

use std::time::SystemTime;

use event_queue::EventQueue;
use messenger_store::{Claim, ClaimToken, Store, ThreadState, TokenStore};
use messenger_types::{Event, EventKey, PageId, QueuedEvent, Source, Timestamp};

use crate::bot::{Bot, Turn};
use crate::{
    EventOutcome, MIN_TIME_PER_ACTION, MessageOutcome, Messenger, Outcome, ProcessError, Processor,
    state, time_left,
};

/// The parts of one event's processing that the steps share.
pub(crate) struct Work<'a> {
    pub(crate) page: &'a PageId,
    pub(crate) event: &'a Event,
    pub(crate) source: Source,
    pub(crate) key: &'a EventKey,
    pub(crate) claim: &'a ClaimToken,
    pub(crate) done_actions: u32,
    pub(crate) started_actions: u32,
    pub(crate) now: Timestamp,
    pub(crate) deadline: Option<SystemTime>,
}

impl<S: Store + TokenStore, M: Messenger, B: Bot, Q: EventQueue + Sync> Processor<S, M, B, Q> {
    /// Processes one queued webhook event, at most once.
    pub async fn process_event(
        &self,
        queued: &QueuedEvent,
        deadline: Option<SystemTime>,
    ) -> Result<MessageOutcome, ProcessError> {
        let event: Event =
            serde_json::from_str(queued.event.get()).map_err(|_| ProcessError::UnreadableEvent)?;
        let page = queued
            .page_id
            .clone()
            .or_else(|| event.page_id().map(PageId::new))
            .unwrap_or_else(|| PageId::new("unknown"));
        let key = messenger_types::route(Some(page.as_str()), &queued.event).key;
        let now = (self.clock)();

        let (claim, done_actions, started_actions) = match self.store.claim_event(&key, now).await?
        {
            Claim::Acquired {
                token,
                done_actions,
                started_actions,
            } => (token, done_actions, started_actions),
            Claim::Duplicate { .. } => {
                tracing::info!(event_key = %key, "duplicate event; nothing done");
                return Ok(MessageOutcome::Duplicate);
            }
            Claim::Busy => return Err(ProcessError::Busy),
        };

        let work = Work {
            page: &page,
            event: &event,
            source: queued.source,
            key: &key,
            claim: &claim,
            done_actions,
            started_actions,
            now,
            deadline,
        };
        match self.run(&work).await {
            Ok(outcome) => {
                self.store
                    .complete_event(&key, &claim, &outcome.to_record(), now)
                    .await?;
                tracing::info!(
                    page_id = %page,
                    event_kind = event.kind.as_str(),
                    source = queued.source.as_str(),
                    %outcome,
                    "event processed"
                );
                // What the model could not read is never silent. Not counted yet:
                // the EventsUnreadable metric comes with the processor's metrics.
                for unread in &event.unread {
                    tracing::warn!(
                        page_id = %page,
                        event_kind = event.kind.as_str(),
                        field = %unread.field,
                        problem = unread.problem.as_str(),
                        kind_read = unread.kind_read,
                        "a field of the event could not be read"
                    );
                }
                Ok(MessageOutcome::Event(outcome))
            }
            Err(e) => {
                if let Err(release) = self.store.release_event(&key, &claim, &e.to_string()).await {
                    tracing::warn!(error = %release, "could not release the event's claim; it frees itself when the lease ends");
                }
                Err(e)
            }
        }
    }

    async fn run(&self, w: &Work<'_>) -> Result<EventOutcome, ProcessError> {
        let changes = state::changes(w.page, w.event, w.source);
        if let Some(thread) = &changes.thread
            && !changes.thread_changes.is_empty()
        {
            self.store
                .update_thread_all(thread, &changes.thread_changes)
                .await?;
        }
        for change in &changes.page_changes {
            self.store.update_page(w.page, change).await?;
        }
        for (token, active) in &changes.tokens {
            self.store.save_token(token, *active, w.now).await?;
        }
        if w.source == Source::Standby {
            return Ok(EventOutcome::Standby);
        }

        let mut thread = match &changes.thread {
            Some(key) => self.store.thread(key).await?,
            None => ThreadState::default(),
        };
        let actions = self
            .bot
            .decide(&Turn {
                page: w.page,
                thread_key: changes.thread.as_ref(),
                event: w.event,
                source: w.source,
                thread: &thread,
                now: w.now,
            })
            .await;
        if actions.is_empty() {
            return Ok(EventOutcome::Recorded);
        }

        let mut outcomes = Vec::with_capacity(actions.len());
        for (i, action) in actions.iter().enumerate() {
            let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
            if n <= w.done_actions {
                outcomes.push(Outcome::DoneEarlier);
                continue;
            }
            if n <= w.started_actions {
                // An earlier attempt made this call and died before recording what
                // came of it. It may have reached the person: at most once, so skip.
                tracing::warn!(
                    action = n,
                    "an interrupted attempt made this call; not repeated"
                );
                outcomes.push(Outcome::NotRepeated);
                self.record_done(w, n).await?;
                continue;
            }
            if w.deadline
                .is_some_and(|d| time_left(d) < MIN_TIME_PER_ACTION)
            {
                return Err(ProcessError::OutOfTime);
            }
            self.store.start_action(w.key, w.claim, n).await?;
            let outcome = match self
                .act(w, changes.thread.as_ref(), &mut thread, action)
                .await
            {
                Ok(outcome) => outcome,
                Err(ProcessError::Graph(e)) if !e.outcome_unknown => {
                    // Meta answered with an error (or the request never left): the
                    // call did nothing, try again later.
                    self.store.abandon_action(w.key, w.claim, n).await?;
                    return Err(ProcessError::Graph(e));
                }
                // Anything else leaves the action started: a retry will not repeat it.
                Err(e) => return Err(e),
            };
            outcomes.push(outcome);
            self.record_done(w, n).await?;
        }
        Ok(EventOutcome::Acted { actions: outcomes })
    }

    /// Records action `n` as done, trying a few times: once a message has gone out,
    /// losing this record is what could make a retry send it again.
    async fn record_done(&self, w: &Work<'_>, n: u32) -> Result<(), ProcessError> {
        crate::persist("record progress", || {
            self.store.record_progress(w.key, w.claim, n)
        })
        .await
        .map_err(Into::into)
    }
}
