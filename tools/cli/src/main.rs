//! `messenger`: the local stack and the operator's commands.
//!
//! `messenger local` runs the whole backend on one machine against the AWS emulator
//! (or real AWS): the webhook on a local HTTP port, the events queue fed to the
//! processor the way Lambda's SQS trigger does it, the OTN sweeper on a timer, and a
//! fake Graph API that prints and records every call. `simulate` sends signed
//! sample events to a webhook; `send` and `events tail` do what a business's own
//! systems do; the rest operate a deployed (or local) stack.

mod business;
mod doctor;
mod fake_graph;
mod local;
mod ops;
mod pages;
mod profile;
mod samples;
mod settings;
mod threads;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The local stack and operator commands of the Messenger backend.
///
/// Settings come from the environment (the same variables the functions read, see the
/// README), then from the deployed stack's Outputs (--stack-name); `scripts/cli` adds
/// the ones `messenger local` wrote to .local/stack.env. Logs go to stderr.
#[derive(Debug, Parser)]
#[command(name = "messenger", version)]
struct Cli {
    /// More logs on stderr: -v info, -vv debug, -vvv trace (default: warnings only;
    /// `local` shows info).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(flatten)]
    aws: settings::AwsArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole backend locally until Ctrl-C.
    Local(local::Options),
    /// Create the table, the events queue with its dead-letter queue, and the
    /// quarantine bucket on the emulator, and print their settings as KEY=VALUE.
    Setup {
        /// Suffix of the resource names, so several stacks can share one emulator.
        #[arg(long, default_value = "local")]
        name: String,
    },
    /// Run only the fake Graph API (prints and records every call).
    FakeGraph {
        /// Port on 127.0.0.1 (0 picks a free one; the URL is printed).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// File that receives one JSON line per call.
        #[arg(long, default_value = ".local/graph-calls.jsonl")]
        record: PathBuf,
    },
    /// Play a person writing to the Page: a signed sample delivery to the webhook
    /// (WEBHOOK_URL).
    #[command(subcommand)]
    Simulate(samples::Sample),
    /// Send one message to one person through the backend's rules (a `send`
    /// command on EVENTS_QUEUE_URL, in the person's thread group).
    Send(business::SendArgs),
    /// Erase everything kept about one person of one Page (a `forget` command on
    /// EVENTS_QUEUE_URL, after whatever of theirs is already queued).
    Forget(business::ForgetArgs),
    /// What the backend publishes on its EventBridge bus (EVENT_BUS_NAME).
    #[command(subcommand)]
    Events(business::EventsCommand),
    /// Put a notify command on the events queue (EVENTS_QUEUE_URL).
    Notify {
        #[arg(long, env = "PAGE_ID", default_value = samples::LOCAL_PAGE)]
        page: String,
        /// The OTN topic (the payload of the people's optins).
        #[arg(long)]
        topic: String,
        /// The text to send to everyone holding a token of this topic.
        text: String,
    },
    /// Signed bodies the webhook kept because they were not Page deliveries.
    #[command(subcommand)]
    Quarantine(ops::QuarantineCommand),
    /// The dead-letter queue of the events queue.
    #[command(subcommand)]
    Dlq(ops::DlqCommand),
    /// A Page: its token, status, parked messages and subscription.
    #[command(subcommand)]
    Page(pages::PageCommand),
    /// The Page's Messenger Profile (Get Started, greeting, ice breakers,
    /// persistent menu, whitelisted domains) as a file.
    #[command(subcommand)]
    Profile(profile::ProfileCommand),
    /// The people of a Page (the subscriber list) and what each can be sent now.
    #[command(subcommand)]
    Threads(threads::ThreadsCommand),
    /// Check that the stack can work, one line per check: the secret's fields, the
    /// webhook's answer to the verify token, each Page's token and subscription, the
    /// queue, the DLQ, the table, the alarms' topic. Exits 1 on any failure.
    Doctor {
        /// One JSON document instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Set the app secret or the verify token in the secret (SECRET_ARN), from stdin.
    SetSecret {
        #[arg(value_enum)]
        field: ops::SecretField,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The local stack runs the functions: their info lines are what one watches.
    let default_level = match cli.command {
        Command::Local(_) => tracing::Level::INFO,
        _ => tracing::Level::WARN,
    };
    settings::init_logs(cli.verbose, default_level);
    match run(cli.command, &cli.aws).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, aws: &settings::AwsArgs) -> Result<()> {
    let mut env = settings::Env::from_process();
    let sdk = settings::sdk(aws).await;
    match command {
        // These make or fake a stack of their own.
        Command::Local(_) | Command::Setup { .. } | Command::FakeGraph { .. } => {}
        _ => env.with_stack(aws, &sdk).await?,
    }
    let sdk = &sdk;
    match command {
        Command::Local(options) => local::run(&env, sdk, options).await,
        Command::Setup { name } => {
            for (key, value) in local::create_resources(sdk, &name).await? {
                println!("{key}={value}");
            }
            Ok(())
        }
        Command::FakeGraph { port, record } => {
            let graph = fake_graph::start(port, &record).await?;
            println!("GRAPH_API_BASE_URL={}", graph.url);
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
        Command::Simulate(sample) => samples::send(&env, sample).await,
        Command::Send(args) => business::send(&env, sdk, &args).await,
        Command::Forget(args) => business::forget(&env, sdk, &args).await,
        Command::Events(command) => business::events(&env, sdk, command).await,
        Command::Notify { page, topic, text } => ops::notify(&env, sdk, &page, &topic, &text).await,
        Command::Quarantine(command) => ops::quarantine(&env, sdk, command).await,
        Command::Dlq(command) => ops::dlq(&env, sdk, command).await,
        Command::Page(command) => pages::page(&env, sdk, command).await,
        Command::Profile(command) => profile::profile(&env, sdk, command).await,
        Command::Threads(command) => threads::threads(&env, sdk, command).await,
        Command::Doctor { json } => doctor::doctor(&env, sdk, json).await,
        Command::SetSecret { field } => ops::set_secret(&env, sdk, field).await,
    }
}
