//! One webhook event, at most once.
//!
//! An event that names a person is a turn on their thread: one read gives the
//! thread and where the event stands in its ledger; the event's changes are
//! applied to that state and the bot decides on it; one write, made only if the
//! thread is still as read, takes the event with the thread's new state and
//! marks the first action started (or the event done when there is nothing to
//! call); each action after the first is marked started in the write that records
//! the one before it done, and the last write completes the event with its typed
//! outcome. A replied text is 1 read and 2 writes, a duplicate 1 read.
//!
//! The opening read is eventually consistent (half a read unit) when nothing is
//! written before the take: a read that missed a recent write only makes the take
//! fail its version condition, and the turn is opened again with a strongly
//! consistent read. It is strongly consistent at once for a thread this instance
//! wrote in the last [`RECENT_WRITE`](crate::recent::RECENT_WRITE) (the next message of a conversation), for an
//! event that writes tokens or the Page before the take, and after a read that
//! found the event busy.
//!
//! An event that names no person (a Page's policy or roles) keeps a ledger item of
//! its own: claimed, then the same steps.

use std::time::SystemTime;

use event_queue::EventQueue;
use messenger_store::{
    Claim, ClaimToken, Consistency, Control, Opened, PageRegistry, Progress, Step, Store,
    ThreadKey, ThreadState, TokenStore, TurnKey,
};
use messenger_types::{Event, EventKey, PageId, QueuedEvent, Source, Timestamp};

use signals::Metric;

use crate::bot::{Action, Bot, Turn};
use crate::routing::Routed;
use crate::state::Changes;
use crate::{
    EventOutcome, MIN_TIME_PER_ACTION, MessageOutcome, Messenger, Outcome, ProcessError, Processor,
    counts, publish, state, time_left,
};

/// How many times a turn is opened again when the thread changed between the read
/// and the write that takes the event (another writer: a notification's
/// reachability, a redelivery): then the message is handed back.
const TAKE_ATTEMPTS: u32 = 3;

/// Who decides what a turn does.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Decision<'a> {
    /// The bot, on the event.
    Bot,
    /// A command: these actions.
    Given(&'a [Action]),
}

/// What became of an event this delivery opened.
pub(crate) enum Found {
    /// Processed now, with this outcome.
    Now(EventOutcome),
    /// Processed before: its recorded outcome, while the record keeps it.
    Before(Option<String>),
}

/// The parts of one event's processing that the steps share.
pub(crate) struct Work<'a> {
    pub(crate) page: &'a PageId,
    /// The webhook event; `None` for a command.
    pub(crate) event: Option<&'a Event>,
    pub(crate) source: Source,
    pub(crate) now: Timestamp,
    pub(crate) deadline: Option<SystemTime>,
}

/// The ledger entry this worker holds.
enum Hold<'a> {
    Turn {
        turn: &'a TurnKey,
        claim: ClaimToken,
    },
    Alone {
        key: &'a EventKey,
        claim: ClaimToken,
    },
}

/// Which actions an earlier attempt settled: the first `first - 1` are not called
/// again (done, or started and perhaps delivered), `first` is the next to call.
struct Plan {
    settled: Vec<Outcome>,
    first: u32,
}

impl Plan {
    fn new(progress: Progress) -> Self {
        let settled_count = progress.done_actions.max(progress.started_actions);
        let settled = (1..=settled_count)
            .map(|n| {
                if n <= progress.done_actions {
                    Outcome::DoneEarlier
                } else {
                    // An earlier attempt made this call and died before recording
                    // what came of it. It may have reached the person: at most
                    // once, so it is not repeated.
                    tracing::warn!(
                        action = n,
                        "an interrupted attempt made this call; not repeated"
                    );
                    Outcome::NotRepeated
                }
            })
            .collect();
        Self {
            settled,
            first: settled_count + 1,
        }
    }

    /// The outcome when nothing is left to call.
    fn finished(&self, source: Source, actions: usize) -> Option<EventOutcome> {
        if source == Source::Standby && actions == 0 {
            return Some(EventOutcome::Standby);
        }
        if actions == 0 {
            return Some(EventOutcome::Recorded);
        }
        (self.first as usize > actions).then(|| EventOutcome::Acted {
            actions: self.settled.iter().take(actions).cloned().collect(),
        })
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl<S: Store + TokenStore + PageRegistry, M: Messenger, B: Bot, Q: EventQueue + Sync>
    Processor<S, M, B, Q>
{
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
        let work = Work {
            page: &page,
            event: Some(&event),
            source: queued.source,
            now: (self.clock)(),
            deadline,
        };
        let changes = state::changes_for(&page, &event, queued.source, self.app_id.as_ref());
        let outcome = match &changes.thread {
            Some(thread) => {
                let turn = TurnKey {
                    thread: thread.clone(),
                    event: key.clone(),
                    at: event.timestamp.unwrap_or(Timestamp::from_millis(0)),
                };
                self.process_turn(&work, &turn, &changes, Decision::Bot)
                    .await?
            }
            None => self.process_alone(&work, &key, &changes).await?,
        };
        let outcome = match outcome {
            Found::Now(outcome) => outcome,
            Found::Before(recorded) => {
                signals::count(Metric::DuplicatesSkipped, 1);
                tracing::info!(event_key = %key, "duplicate event; nothing done");
                // Its bus events may not have gone out (a failed publish hands the
                // message back): publish them again from the record. Consumers
                // dedupe on the event's key.
                if let Some(outcome) = recorded
                    .as_deref()
                    .and_then(|r| EventOutcome::parse(r).ok())
                {
                    let events =
                        publish::event_events(&page, queued, &event, &key, &changes, &outcome);
                    publish::publish(&*self.bus, events).await?;
                }
                return Ok(MessageOutcome::Duplicate);
            }
        };
        signals::count(Metric::EventsProcessed, 1);
        if !event.unread.is_empty() {
            signals::count(Metric::EventsUnreadable, 1);
        }
        tracing::info!(
            page_id = %page,
            event_kind = event.kind.as_str(),
            source = queued.source.as_str(),
            %outcome,
            "event processed"
        );
        // What the model could not read is never silent: counted above, and named here.
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
        // Recorded first, published second: a publish that fails hands the message
        // back, and its redelivery (a duplicate) publishes again.
        let events = publish::event_events(&page, queued, &event, &key, &changes, &outcome);
        publish::publish(&*self.bus, events).await?;
        Ok(MessageOutcome::Event(outcome))
    }

    /// An event on its person's thread.
    pub(crate) async fn process_turn(
        &self,
        w: &Work<'_>,
        turn: &TurnKey,
        changes: &Changes,
        decision: Decision<'_>,
    ) -> Result<Found, ProcessError> {
        let result = self.take_and_carry_out(w, turn, changes, decision).await;
        self.recent_writes.note(&turn.thread);
        result
    }

    async fn take_and_carry_out(
        &self,
        w: &Work<'_>,
        turn: &TurnKey,
        changes: &Changes,
        decision: Decision<'_>,
    ) -> Result<Found, ProcessError> {
        let mut side_written = false;
        let mut read = if changes.page_changes.is_empty()
            && changes.tokens.is_empty()
            && !self.recent_writes.contains(&turn.thread)
        {
            Consistency::Eventual
        } else {
            Consistency::Strong
        };
        let mut attempts = 0;
        let mut looked = false;
        while attempts < TAKE_ATTEMPTS {
            // Looking again starts the message over: only with a message's time.
            if looked && !crate::budget::allows(crate::MIN_TIME_PER_MESSAGE) {
                return Err(ProcessError::OutOfTime);
            }
            looked = true;
            let opened = self.store.open_turn(turn, w.now, read).await?;
            let (mut thread, progress, version) = match opened {
                Opened::Open {
                    thread,
                    progress,
                    version,
                } => (thread, progress, version),
                // A done entry is never undone: even a stale read is right.
                Opened::Duplicate { outcome } => return Ok(Found::Before(outcome)),
                Opened::Busy if read == Consistency::Eventual => {
                    // Perhaps finished since: look again before handing it back.
                    read = Consistency::Strong;
                    continue;
                }
                Opened::Busy => return Err(ProcessError::Busy),
            };
            attempts += 1;
            if !side_written {
                self.write_side(w, changes).await?;
                side_written = true;
            }
            for change in &changes.thread_changes {
                thread.apply(change);
            }
            let actions = match decision {
                Decision::Bot => self.decide(w, Some(&turn.thread), &thread).await,
                Decision::Given(actions) => actions.to_vec(),
            };
            // The bot's memory of the person goes with the write that takes the
            // turn: never ahead of what the turn did, never lost after it.
            let actions: Vec<Action> = actions
                .into_iter()
                .filter_map(|action| match action {
                    Action::SetState(state) => {
                        thread.bot_state = state;
                        None
                    }
                    other => Some(other),
                })
                .collect();
            let plan = Plan::new(progress);
            let finished = plan.finished(w.source, actions.len());
            let record;
            let step = match &finished {
                Some(outcome) => {
                    record = outcome.to_record();
                    Step::Done { outcome: &record }
                }
                None => {
                    self.check_time(w)?;
                    Step::Working {
                        done: plan.first - 1,
                        started: plan.first,
                    }
                }
            };
            let Some(claim) = self
                .store
                .take_turn(turn, version, &thread, step, w.now)
                .await?
            else {
                tracing::warn!(event_key = %turn.event, ?read, "the thread was written since it was read; reading it again");
                read = Consistency::Strong;
                continue;
            };
            if let Some(outcome) = finished {
                return Ok(Found::Now(outcome));
            }
            let hold = Hold::Turn { turn, claim };
            return self
                .carry_out(w, &hold, Some(&turn.thread), &mut thread, &actions, plan)
                .await
                .map(Found::Now);
        }
        Err(ProcessError::Busy)
    }

    /// An event that names no person, on a ledger item of its own.
    async fn process_alone(
        &self,
        w: &Work<'_>,
        key: &EventKey,
        changes: &Changes,
    ) -> Result<Found, ProcessError> {
        let (claim, progress) = match self.store.claim_event(key, w.now).await? {
            Claim::Acquired {
                token,
                done_actions,
                started_actions,
            } => (
                token,
                Progress {
                    done_actions,
                    started_actions,
                },
            ),
            Claim::Duplicate { outcome } => return Ok(Found::Before(outcome)),
            Claim::Busy => return Err(ProcessError::Busy),
        };
        let hold = Hold::Alone { key, claim };
        let mut thread = ThreadState::default();
        let prepared = async {
            self.write_side(w, changes).await?;
            let mut actions = self.decide(w, None, &thread).await;
            // No person, no place to keep a bot's state.
            actions.retain(|a| !matches!(a, Action::SetState(_)));
            let plan = Plan::new(progress);
            if let Some(outcome) = plan.finished(w.source, actions.len()) {
                self.finish(&hold, &outcome).await?;
                return Ok(Err(outcome));
            }
            self.check_time(w)?;
            self.advance(&hold, plan.first - 1, plan.first).await?;
            Ok(Ok((actions, plan)))
        }
        .await;
        let (actions, plan) = match prepared {
            Ok(Ok(ready)) => ready,
            Ok(Err(finished)) => return Ok(Found::Now(finished)),
            Err(e) => {
                self.release(
                    w,
                    &hold,
                    progress.done_actions,
                    progress.started_actions,
                    &e,
                )
                .await;
                return Err(e);
            }
        };
        self.carry_out(w, &hold, None, &mut thread, &actions, plan)
            .await
            .map(Found::Now)
    }

    /// What an event changes outside its thread: the Page's record and the tokens
    /// an optin gives. Each write is idempotent, so a retry makes them again.
    async fn write_side(&self, w: &Work<'_>, changes: &Changes) -> Result<(), ProcessError> {
        for change in &changes.page_changes {
            self.store.update_page(w.page, change).await?;
        }
        for (token, active) in &changes.tokens {
            self.store.save_token(token, *active, w.now).await?;
        }
        Ok(())
    }

    async fn decide(
        &self,
        w: &Work<'_>,
        thread_key: Option<&ThreadKey>,
        thread: &ThreadState,
    ) -> Vec<Action> {
        let Some(event) = w.event else {
            return Vec::new();
        };
        if !self.bot_on {
            return Vec::new();
        }
        let (mut actions, source, taken);
        let thread = match self.routing.decide(event, w.source, thread, w.now) {
            Routed::Instead(action) => {
                tracing::info!(page_id = %w.page, "thread control asked for by an app in HANDOVER_ALLOWED_APPS: passing it");
                return vec![action];
            }
            Routed::TakeBack(take) => {
                tracing::info!(page_id = %w.page, "the Page Inbox held the thread past INBOX_TAKE_BACK_HOURS without a word: taking it back");
                actions = vec![take];
                source = Source::Messaging;
                // The bot answers as the owner it is about to be: the take runs
                // first, and the send policy sees the thread as taken.
                taken = ThreadState {
                    control: Some(Control {
                        ours: true,
                        owner: None,
                        since: w.now,
                    }),
                    ..thread.clone()
                };
                &taken
            }
            Routed::AskBot if w.source == Source::Standby => return Vec::new(),
            Routed::AskBot => {
                actions = Vec::new();
                source = w.source;
                thread
            }
        };
        if thread.paused_for_human(w.now, self.human_pause) {
            tracing::info!(page_id = %w.page, "a person from the Page (or another app) wrote on this thread lately: the bot stays quiet (HUMAN_PAUSE_HOURS)");
            return Vec::new();
        }
        actions.extend(
            self.bot
                .decide(&Turn {
                    page: w.page,
                    thread_key,
                    event,
                    source,
                    thread,
                    now: w.now,
                })
                .await,
        );
        actions
    }

    fn check_time(&self, w: &Work<'_>) -> Result<(), ProcessError> {
        if w.deadline
            .is_some_and(|d| time_left(d) < MIN_TIME_PER_ACTION)
        {
            return Err(ProcessError::OutOfTime);
        }
        Ok(())
    }

    /// Carries out the actions from `plan.first` on, the first already marked
    /// started; each later one is marked started in the write that records the
    /// one before it done, and the event is completed with its outcome.
    async fn carry_out(
        &self,
        w: &Work<'_>,
        hold: &Hold<'_>,
        event_thread: Option<&ThreadKey>,
        thread: &mut ThreadState,
        actions: &[Action],
        plan: Plan,
    ) -> Result<EventOutcome, ProcessError> {
        let mut outcomes = plan.settled;
        outcomes.truncate(actions.len());
        // What the ledger holds: (done, started).
        let mut recorded = (plan.first - 1, plan.first);
        for (i, action) in actions.iter().enumerate().skip(outcomes.len()) {
            let n = count(i + 1);
            if n > plan.first {
                if let Err(e) = self.check_time(w) {
                    // The action before went out: record it done on the way out.
                    self.release(w, hold, n - 1, n - 1, &e).await;
                    return Err(e);
                }
                if let Err(e) = self.advance(hold, n - 1, n).await {
                    self.release(w, hold, recorded.0, recorded.1, &e).await;
                    return Err(e);
                }
                recorded = (n - 1, n);
            }
            let acted = self.act(w, event_thread, thread, action).await;
            match &acted {
                Ok(outcome) => counts::outcome(outcome),
                Err(ProcessError::Graph(e)) => counts::graph_error(e.class),
                Err(_) => {}
            }
            match acted {
                Ok(outcome) => outcomes.push(outcome),
                Err(ProcessError::Graph(e)) if !e.outcome_unknown => {
                    // Meta answered with an error (or the request never left): the
                    // call did nothing, try it again later.
                    let e = ProcessError::Graph(e);
                    self.release(w, hold, n - 1, n - 1, &e).await;
                    return Err(e);
                }
                // Anything else leaves the action started: a retry will not repeat it.
                Err(e) => {
                    self.release(w, hold, recorded.0, recorded.1, &e).await;
                    return Err(e);
                }
            }
        }
        let outcome = EventOutcome::Acted { actions: outcomes };
        if let Err(e) = self.finish(hold, &outcome).await {
            self.release(w, hold, recorded.0, recorded.1, &e).await;
            return Err(e);
        }
        Ok(outcome)
    }

    /// Records the first `done` actions done and `started` started. Tried a few
    /// times: once a message has gone out, losing this record is what could make a
    /// retry send it again.
    async fn advance(&self, hold: &Hold<'_>, done: u32, started: u32) -> Result<(), ProcessError> {
        match hold {
            Hold::Turn { turn, claim } => crate::persist("record progress", || {
                self.store
                    .step_turn(turn, claim, Step::Working { done, started }, (self.clock)())
            })
            .await
            .map_err(Into::into),
            Hold::Alone { key, claim } => {
                crate::persist("record progress", || {
                    self.store.record_progress(key, claim, done)
                })
                .await?;
                if started > done {
                    self.store.start_action(key, claim, started).await?;
                }
                Ok(())
            }
        }
    }

    /// Completes the event with its outcome (tried a few times, as [`Self::advance`]).
    async fn finish(&self, hold: &Hold<'_>, outcome: &EventOutcome) -> Result<(), ProcessError> {
        let record = outcome.to_record();
        let now = (self.clock)();
        crate::persist("complete the event", || async {
            match hold {
                Hold::Turn { turn, claim } => {
                    self.store
                        .step_turn(turn, claim, Step::Done { outcome: &record }, now)
                        .await
                }
                Hold::Alone { key, claim } => {
                    self.store.complete_event(key, claim, &record, now).await
                }
            }
        })
        .await
        .map_err(Into::into)
    }

    /// Gives the event back after `e`, with `done` actions done and `started`
    /// started, so that the redelivery can take it at once. A failure here is only
    /// logged: the claim frees itself when its lease ends.
    async fn release(
        &self,
        w: &Work<'_>,
        hold: &Hold<'_>,
        done: u32,
        started: u32,
        e: &ProcessError,
    ) {
        let reason = e.to_string();
        let result = match hold {
            Hold::Turn { turn, claim } => {
                let step = Step::Released {
                    done,
                    started,
                    reason: &reason,
                };
                self.store.step_turn(turn, claim, step, w.now).await
            }
            Hold::Alone { key, claim } => {
                let progress = if started == done {
                    self.store.record_progress(key, claim, done).await
                } else {
                    Ok(())
                };
                match progress {
                    Ok(()) => self.store.release_event(key, claim, &reason).await,
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(release) = result {
            tracing::warn!(error = %release, "could not release the event's claim; it frees itself when the lease ends");
        }
    }
}
