//! What a business's own systems do, from the command line: send a message to one
//! person through the backend's rules (a `send` command on the events queue), and
//! watch what the backend publishes on its bus.

use std::time::Duration;

use app_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use messenger_types::Command;
use serde_json::{Value, json};

use crate::Result;
use crate::ops::describe;
use crate::settings::{Env, fresh_id};

const FROM_OUTPUTS: &str =
    "take it from the stack's Outputs (README, Deploy), or start the local stack with scripts/run";

/// `messenger send`: one message to one person, as a `send` command.
#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The Page that sends.
    #[arg(long, env = "PAGE_ID")]
    page: String,
    /// The person (their page-scoped id).
    #[arg(long)]
    psid: String,
    /// Send with `messaging_type: MESSAGE_TAG` and this tag (`HUMAN_AGENT`, with
    /// `--human`, is the one in force for most messages).
    #[arg(long)]
    tag: Option<String>,
    /// The message was written by a person (required for `HUMAN_AGENT`).
    #[arg(long)]
    human: bool,
    /// `RESPONSE` (the default) or `UPDATE`, inside the 24-hour window.
    #[arg(long, value_parser = ["RESPONSE", "UPDATE"], conflicts_with = "tag")]
    messaging_type: Option<String>,
    /// Spend the person's one-time notification token of this topic.
    #[arg(long, conflicts_with_all = ["tag", "messaging_type", "human"])]
    otn_topic: Option<String>,
    /// The command's id (a repeated id does nothing twice); a fresh one by default.
    #[arg(long)]
    id: Option<String>,
    /// The text to send (up to 2,000 characters).
    text: String,
}

impl SendArgs {
    /// The command these arguments ask for, checked as the HTTP route checks it.
    pub fn command(&self) -> Result<Command> {
        let mut body = json!({
            "type": "send",
            "command_id": self.id.clone().unwrap_or_else(|| format!("cli-{}", fresh_id())),
            "page_id": self.page,
            "recipient": {"id": self.psid},
            "message": {"text": self.text},
        });
        if let Some(tag) = &self.tag {
            body["messaging_type"] = json!("MESSAGE_TAG");
            body["tag"] = json!(tag);
        }
        if let Some(t) = &self.messaging_type {
            body["messaging_type"] = json!(t);
        }
        if self.human {
            body["human"] = json!(true);
        }
        if let Some(topic) = &self.otn_topic {
            body["otn_topic"] = json!(topic);
        }
        let command: Command =
            serde_json::from_value(body).map_err(|e| format!("not a valid command: {e}"))?;
        command
            .validate()
            .map_err(|invalid| format!("not a valid command: {invalid}"))?;
        Ok(command)
    }
}

/// `messenger forget`: erase everything kept about one person of one Page.
#[derive(Debug, clap::Args)]
pub struct ForgetArgs {
    #[arg(long, env = "PAGE_ID")]
    page: String,
    /// The person (their page-scoped id).
    #[arg(long)]
    psid: String,
    /// The command's id; a fresh one by default.
    #[arg(long)]
    id: Option<String>,
}

impl ForgetArgs {
    pub fn command(&self) -> Result<Command> {
        let command: Command = serde_json::from_value(json!({
            "type": "forget",
            "command_id": self.id.clone().unwrap_or_else(|| format!("cli-{}", fresh_id())),
            "page_id": self.page,
            "psid": self.psid,
        }))
        .map_err(|e| format!("not a valid command: {e}"))?;
        command
            .validate()
            .map_err(|invalid| format!("not a valid command: {invalid}"))?;
        Ok(command)
    }
}

/// Queues a `forget` in the person's thread group: it runs after whatever of the
/// person's events is already queued, and erases what they left.
pub async fn forget(env: &Env, sdk: &SdkConfig, args: &ForgetArgs) -> Result<()> {
    let command = args.command()?;
    queue(env, sdk, &command).await?;
    println!(
        "queued forget {} for {} of Page {}: Person Forgotten (with its confirmation code) is published once it is done (messenger events tail)",
        command.command_id(),
        args.psid,
        args.page
    );
    Ok(())
}

/// Queues the send in the person's thread group, as `POST /commands` does.
pub async fn send(env: &Env, sdk: &SdkConfig, args: &SendArgs) -> Result<()> {
    let command = args.command()?;
    queue(env, sdk, &command).await?;
    println!(
        "queued send {} to {} of Page {}: its outcome is published as Command Completed (messenger events tail)",
        command.command_id(),
        args.psid,
        args.page
    );
    Ok(())
}

/// Puts a command on the events queue in its thread's group.
async fn queue(env: &Env, sdk: &SdkConfig, command: &Command) -> Result<()> {
    let queue = env.require("EVENTS_QUEUE_URL", FROM_OUTPUTS)?;
    aws_sdk_sqs::Client::new(sdk)
        .send_message()
        .queue_url(&queue)
        .message_group_id(command.queue_group())
        .message_deduplication_id(command.dedup_id())
        .message_body(serde_json::to_string(command)?)
        .send()
        .await
        .map_err(|e| format!("cannot queue the command: {}", describe(&e)))?;
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// Print what the backend publishes on its bus (EVENT_BUS_NAME), one line per
    /// event, until Ctrl-C. It subscribes a queue of its own with a rule on the
    /// backend's source, and removes both when it stops.
    Tail {
        /// Stop after this many events.
        #[arg(long)]
        max: Option<usize>,
        /// Stop after this many seconds.
        #[arg(long = "for", value_name = "SECONDS")]
        for_seconds: Option<u64>,
        /// Print each whole EventBridge event as one JSON line.
        #[arg(long)]
        json: bool,
    },
}

pub async fn events(env: &Env, sdk: &SdkConfig, command: EventsCommand) -> Result<()> {
    match command {
        EventsCommand::Tail {
            max,
            for_seconds,
            json,
        } => {
            let bus = env.require("EVENT_BUS_NAME", FROM_OUTPUTS)?;
            let tap = Tap::create(sdk, &bus).await?;
            eprintln!(
                "listening to bus {bus} (rule {name}, queue {name}; removed when this stops)",
                name = tap.name
            );
            let limit = for_seconds.map_or(Duration::MAX, Duration::from_secs);
            let printed = tokio::select! {
                printed = tap.print(max, json) => printed,
                () = tokio::time::sleep(limit) => Ok(()),
                () = stopped() => Ok(()),
            };
            let removed = tap.remove().await;
            printed.and(removed)
        }
    }
}

/// Ctrl-C, or a SIGTERM.
async fn stopped() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A queue of this command's own, subscribed to the bus by a rule on the
/// backend's source.
struct Tap {
    sqs: aws_sdk_sqs::Client,
    events: aws_sdk_eventbridge::Client,
    bus: String,
    name: String,
    queue_url: String,
}

impl Tap {
    async fn create(sdk: &SdkConfig, bus: &str) -> Result<Self> {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let events = aws_sdk_eventbridge::Client::new(sdk);
        let name = format!("messenger-tail-{}", &fresh_id()[..12]);
        let queue_url = sqs
            .create_queue()
            .queue_name(&name)
            .attributes(QueueAttributeName::MessageRetentionPeriod, "3600")
            .send()
            .await
            .map_err(|e| format!("cannot create the queue {name}: {}", describe(&e)))?
            .queue_url
            .unwrap_or_default();
        let tap = Self {
            sqs,
            events,
            bus: bus.to_owned(),
            name,
            queue_url,
        };
        match tap.subscribe().await {
            Ok(()) => Ok(tap),
            Err(e) => {
                let _ = tap.remove().await;
                Err(e)
            }
        }
    }

    async fn subscribe(&self) -> Result<()> {
        let queue_arn = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| format!("cannot read the queue's ARN: {}", describe(&e)))?
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .ok_or("the queue has no ARN")?;
        let rule_arn = self
            .events
            .put_rule()
            .name(&self.name)
            .event_bus_name(&self.bus)
            .description("messenger events tail (removed when it stops)")
            .event_pattern(json!({"source": [processor::publish::SOURCE]}).to_string())
            .send()
            .await
            .map_err(|e| format!("cannot create a rule on bus {}: {}", self.bus, describe(&e)))?
            .rule_arn
            .unwrap_or_default();
        // Only this rule may send to the queue.
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}
            }]
        });
        self.sqs
            .set_queue_attributes()
            .queue_url(&self.queue_url)
            .attributes(QueueAttributeName::Policy, policy.to_string())
            .send()
            .await
            .map_err(|e| format!("cannot let the rule send to the queue: {}", describe(&e)))?;
        let target = aws_sdk_eventbridge::types::Target::builder()
            .id("tail")
            .arn(queue_arn)
            .build()
            .map_err(|e| format!("cannot target the queue: {e}"))?;
        self.events
            .put_targets()
            .rule(&self.name)
            .event_bus_name(&self.bus)
            .targets(target)
            .send()
            .await
            .map_err(|e| format!("cannot target the queue: {}", describe(&e)))?;
        Ok(())
    }

    /// Prints events as they arrive, up to `max`.
    async fn print(&self, max: Option<usize>, whole: bool) -> Result<()> {
        let mut printed = 0usize;
        loop {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(2)
                .send()
                .await
                .map_err(|e| format!("cannot read the queue: {}", describe(&e)))?;
            for message in received.messages() {
                if max.is_some_and(|max| printed >= max) {
                    break;
                }
                if let Some(body) = message.body() {
                    println!("{}", line(body, whole));
                    printed += 1;
                }
                if let Some(handle) = message.receipt_handle() {
                    let _ = self
                        .sqs
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await;
                }
            }
            if max.is_some_and(|max| printed >= max) {
                return Ok(());
            }
        }
    }

    async fn remove(&self) -> Result<()> {
        let mut problems = Vec::new();
        if let Err(e) = self
            .events
            .remove_targets()
            .rule(&self.name)
            .event_bus_name(&self.bus)
            .ids("tail")
            .send()
            .await
        {
            problems.push(format!("the rule's target: {}", describe(&e)));
        }
        if let Err(e) = self
            .events
            .delete_rule()
            .name(&self.name)
            .event_bus_name(&self.bus)
            .send()
            .await
        {
            problems.push(format!("the rule {}: {}", self.name, describe(&e)));
        }
        if let Err(e) = self
            .sqs
            .delete_queue()
            .queue_url(&self.queue_url)
            .send()
            .await
        {
            problems.push(format!("the queue {}: {}", self.queue_url, describe(&e)));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("could not remove {}", problems.join("; ")).into())
        }
    }
}

/// One event as a line: `<time> <detail-type> <detail>`, or the whole event.
fn line(body: &str, whole: bool) -> String {
    let Ok(event) = serde_json::from_str::<Value>(body) else {
        return format!("(not an EventBridge event) {body}");
    };
    if whole {
        return event.to_string();
    }
    format!(
        "{} {} {}",
        event["time"].as_str().unwrap_or("-"),
        event["detail-type"].as_str().unwrap_or("?"),
        event["detail"]
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        send: SendArgs,
    }

    fn command(args: &[&str]) -> Result<Value> {
        let cli = Cli::try_parse_from(std::iter::once("send").chain(args.iter().copied()))?;
        Ok(serde_json::to_value(cli.send.command()?)?)
    }

    #[test]
    fn send_builds_the_documented_send_command() {
        let c = command(&["--page", "1", "--psid", "2", "--id", "c1", "hello"]).unwrap();
        assert_eq!(
            c,
            json!({"type": "send", "command_id": "c1", "page_id": "1", "recipient": {"id": "2"},
                "message": {"text": "hello"}, "messaging_type": null, "tag": null, "human": false, "otn_topic": null})
        );
        let agent = command(&[
            "--page",
            "1",
            "--psid",
            "2",
            "--tag",
            "HUMAN_AGENT",
            "--human",
            "An agent replies",
        ])
        .unwrap();
        assert_eq!(agent["messaging_type"], "MESSAGE_TAG");
        assert_eq!(agent["tag"], "HUMAN_AGENT");
        assert_eq!(agent["human"], true);
        assert!(agent["command_id"].as_str().unwrap().starts_with("cli-"));
        let otn = command(&["--page", "1", "--psid", "2", "--otn-topic", "shoes", "Back"]).unwrap();
        assert_eq!(otn["otn_topic"], "shoes");
        assert_eq!(otn["messaging_type"], Value::Null);
    }

    #[test]
    fn send_refuses_what_the_http_route_refuses_naming_the_problem() {
        for (args, says) in [
            (vec!["--page", "1", "--psid", "2", ""], "message.text"),
            (
                vec![
                    "--page",
                    "1",
                    "--psid",
                    "2",
                    "--tag",
                    "CONFIRMED_EVENT_UPDATE",
                    "x",
                ],
                "retired",
            ),
            (
                vec!["--page", "1", "--psid", "2", "--id", "", "x"],
                "command_id",
            ),
        ] {
            let e = command(&args).unwrap_err().to_string();
            assert!(e.contains(says), "{args:?}: {e}");
        }
        let long = "x".repeat(2001);
        let e = command(&["--page", "1", "--psid", "2", &long])
            .unwrap_err()
            .to_string();
        assert!(e.contains("2000"), "{e}");
        // Flags that cannot go together are refused by the parser.
        assert!(
            command(&[
                "--page",
                "1",
                "--psid",
                "2",
                "--otn-topic",
                "s",
                "--tag",
                "HUMAN_AGENT",
                "x"
            ])
            .is_err()
        );
    }

    #[test]
    fn tail_prints_time_type_and_detail_or_the_whole_event() {
        let body = json!({"time": "2026-12-01T10:00:00Z", "detail-type": "Message Sent",
            "source": "messenger-backend", "detail": {"page_id": "1"}})
        .to_string();
        assert_eq!(
            line(&body, false),
            r#"2026-12-01T10:00:00Z Message Sent {"page_id":"1"}"#
        );
        assert_eq!(
            serde_json::from_str::<Value>(&line(&body, true)).unwrap()["source"],
            "messenger-backend"
        );
        assert!(line("not json", false).starts_with("(not an EventBridge event)"));
    }
}
