//! `messenger profile ...`: the Page's Messenger Profile (Get Started button,
//! greeting, ice breakers, persistent menu, whitelisted domains) kept as a file and
//! set with `POST /{page-id}/messenger_profile`, with `appsecret_proof`.

use std::path::PathBuf;

use app_config::SdkConfig;
use graph_api::MessengerProfile;
use graph_api::profile::{FieldChange, PROFILE_FIELDS};
use messenger_types::PageId;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::Result;
use crate::ops::read_stdin;
use crate::pages::{graph, page_token};
use crate::settings::Env;

#[derive(Debug, clap::Args)]
pub struct Target {
    #[arg(long, env = "PAGE_ID")]
    page: String,
    /// Read the Page's access token from stdin instead of the table (or the seed).
    #[arg(long)]
    token_stdin: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum ProfileCommand {
    /// Check the file against Meta's limits (nothing is called when it is not
    /// within them), print how it differs from the Page's profile, then POST
    /// exactly the fields of the file. Fields the file does not name are left as
    /// they are (`profile delete --field` removes one).
    Set {
        /// The profile as JSON (see messenger-profile.example.json).
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        target: Target,
        /// Check and print the diff, but set nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// The Page's profile, as Graph has it.
    Get {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
    /// Remove fields from the Page's profile (repeat --field).
    Delete {
        #[arg(long = "field", required = true, value_parser = clap::builder::PossibleValuesParser::new(PROFILE_FIELDS))]
        fields: Vec<String>,
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
}

/// The profile in a file, checked before anything else happens.
pub fn read_profile(file: &std::path::Path) -> Result<MessengerProfile> {
    let text = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let value: Value = serde_json::from_slice(&text)
        .map_err(|e| format!("{} is not JSON: {e}", file.display()))?;
    Ok(MessengerProfile::new(value).map_err(|e| format!("{}: {e}", file.display()))?)
}

/// The Page, its token and a Graph client carrying `appsecret_proof` when the app
/// secret is known.
async fn connect(
    env: &Env,
    sdk: &SdkConfig,
    target: &Target,
) -> Result<(PageId, SecretString, graph_api::GraphClient)> {
    let page = PageId::new(&target.page);
    let token = if target.token_stdin {
        SecretString::from(read_stdin("the Page access token").await?)
    } else {
        page_token(env, sdk, &page).await?
    };
    let (secrets, _) = app_config::Secrets::load(env, sdk).await?;
    let client = graph(env, secrets.app_secret.clone())?;
    Ok((page, token, client))
}

pub async fn profile(env: &Env, sdk: &SdkConfig, command: ProfileCommand) -> Result<()> {
    match command {
        ProfileCommand::Set {
            file,
            target,
            dry_run,
            json,
        } => {
            let profile = read_profile(&file)?;
            if profile.fields().contains_key("ice_breakers")
                && profile.fields().contains_key("get_started")
            {
                eprintln!(
                    "note: Messenger shows ice breakers instead of the Get Started button when both are set"
                );
            }
            let (page, token, graph) = connect(env, sdk, &target).await?;
            let current = graph
                .messenger_profile(&page, &token, &PROFILE_FIELDS)
                .await
                .map_err(|e| format!("GET messenger_profile of Page {page}: {e}"))?;
            let diff = profile.diff(&current);
            let changed: Vec<&str> = diff
                .iter()
                .filter(|(_, c)| *c != FieldChange::Unchanged)
                .map(|(f, _)| f.as_str())
                .collect();
            if !json {
                for (field, change) in &diff {
                    println!("{field}: {change}");
                }
                for field in current
                    .keys()
                    .filter(|f| !profile.fields().contains_key(*f))
                {
                    println!("{field}: kept (not in the file)");
                }
            }
            let set = !dry_run && !changed.is_empty();
            if set {
                graph
                    .set_messenger_profile(&page, &token, &profile)
                    .await
                    .map_err(|e| format!("POST messenger_profile of Page {page}: {e}"))?;
            }
            if json {
                println!(
                    "{}",
                    json!({"page_id": page.as_str(), "changed": changed, "set": set})
                );
            } else if set {
                println!(
                    "Page {page}: profile set ({} field(s) changed)",
                    changed.len()
                );
            } else if changed.is_empty() {
                println!("Page {page}: the profile already matches the file; nothing set");
            } else {
                println!("Page {page}: dry run, nothing set");
            }
            Ok(())
        }
        ProfileCommand::Get { target, json } => {
            let (page, token, graph) = connect(env, sdk, &target).await?;
            let current = graph
                .messenger_profile(&page, &token, &PROFILE_FIELDS)
                .await
                .map_err(|e| format!("GET messenger_profile of Page {page}: {e}"))?;
            if json {
                println!("{}", Value::Object(current));
            } else if current.is_empty() {
                println!("Page {page} has no Messenger Profile fields set");
            } else {
                for (field, value) in &current {
                    println!("{field}: {value}");
                }
            }
            Ok(())
        }
        ProfileCommand::Delete {
            fields,
            target,
            json,
        } => {
            let (page, token, graph) = connect(env, sdk, &target).await?;
            let names: Vec<&str> = fields.iter().map(String::as_str).collect();
            graph
                .delete_messenger_profile(&page, &token, &names)
                .await
                .map_err(|e| format!("DELETE messenger_profile of Page {page}: {e}"))?;
            if json {
                println!("{}", json!({"page_id": page.as_str(), "deleted": names}));
            } else {
                println!("Page {page}: deleted {}", names.join(", "));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_sample_profile_is_within_metas_limits() {
        let sample =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../messenger-profile.example.json");
        let profile = read_profile(&sample).unwrap();
        assert_eq!(
            profile.fields()["get_started"]["payload"],
            "GET_STARTED",
            "the default bot answers this payload"
        );
    }
}
