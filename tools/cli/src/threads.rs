//! `messenger threads list`: the people of a Page and what each can be sent now,
//! from the table's `people-by-page` index (Meta has no API listing a Page's
//! PSIDs). Queries only, never a scan.

use app_config::SdkConfig;
use messenger_store::people::Subscriber;
use messenger_types::{PageId, Timestamp};
use serde_json::json;

use crate::Result;
use crate::ops::FROM_OUTPUTS;
use crate::settings::Env;

#[derive(Debug, clap::Subcommand)]
pub enum ThreadsCommand {
    /// The people of a Page, most recently active first: until when the 24-hour
    /// window and HUMAN_AGENT's 7 days are open, the notification topics they
    /// hold, whether Meta said they cannot be reached, and who holds the thread.
    /// People who have not written since this version was deployed are not listed
    /// until they do.
    List {
        #[arg(long, env = "PAGE_ID")]
        page: String,
        /// Only the people something can be sent to now.
        #[arg(long)]
        messageable: bool,
        /// People per page of output (one Query each, plus one per person).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i32).range(1..=1000))]
        limit: i32,
        /// Start after this cursor (the `next` a page before printed).
        #[arg(long)]
        after: Option<String>,
        /// Every page, not just the first.
        #[arg(long)]
        all: bool,
        /// One JSON object: `{"people": [...], "next": "<cursor>"|null}`.
        #[arg(long)]
        json: bool,
    },
}

pub async fn threads(env: &Env, sdk: &SdkConfig, command: ThreadsCommand) -> Result<()> {
    let ThreadsCommand::List {
        page,
        messageable,
        limit,
        after,
        all,
        json,
    } = command;
    let store = messenger_store::DynamoStore::new(
        aws_sdk_dynamodb::Client::new(sdk),
        env.require("TABLE_NAME", FROM_OUTPUTS)?,
    );
    let page = PageId::new(page);
    let now = Timestamp::now();
    let mut people = Vec::new();
    let mut cursor = after;
    loop {
        let listed = store.people(&page, cursor.as_deref(), limit, now).await?;
        people.extend(
            listed
                .people
                .into_iter()
                .filter(|p| !messageable || p.messageable()),
        );
        cursor = listed.next;
        if !all || cursor.is_none() {
            break;
        }
    }
    if json {
        println!(
            "{}",
            json!({"page_id": page.as_str(), "people": people, "next": cursor})
        );
        return Ok(());
    }
    if people.is_empty() {
        println!("no one listed for Page {page}");
    }
    for p in &people {
        println!("{}", line(p));
    }
    if let Some(next) = cursor {
        println!("more: --after {next}");
    }
    Ok(())
}

/// One person on one line, for people.
fn line(p: &Subscriber) -> String {
    let at = |t: Option<Timestamp>| t.map_or_else(|| "-".to_owned(), |t| t.to_string());
    let can = if p.can_send.is_empty() {
        "nothing".to_owned()
    } else {
        p.can_send.join(",")
    };
    let mut out = format!(
        "{psid}  can send: {can}  window until {window}  human_agent until {agent}  owner {owner}",
        psid = p.psid,
        window = at(p.window_open_until),
        agent = at(p.human_agent_until),
        owner = p.thread_owner,
    );
    if !p.otn_topics.is_empty() {
        out.push_str(&format!("  topics {:?}", p.otn_topics));
    }
    if let Some(reason) = &p.unreachable {
        out.push_str(&format!("  unreachable: {reason}"));
    }
    out
}
