//! The events queue on SQS FIFO (shared with the processor: see `event-queue`).

pub use event_queue::sqs::{SqsQueue, batch_entries, failures};
