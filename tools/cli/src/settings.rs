//! Settings: the process environment, with defaults a local stack fills in.

use std::collections::BTreeMap;

use app_config::{Lookup, SdkConfig};

/// The environment the commands read: the process's own variables, over defaults
/// added by the local stack. What the user sets always wins.
#[derive(Debug, Clone, Default)]
pub struct Env {
    process: BTreeMap<String, String>,
    defaults: BTreeMap<String, String>,
}

impl Env {
    pub fn from_process() -> Self {
        Self {
            process: std::env::vars()
                .filter(|(_, v)| !v.trim().is_empty())
                .collect(),
            defaults: BTreeMap::new(),
        }
    }

    /// Adds `value` for `key` unless the environment sets it.
    pub fn default(&mut self, key: &str, value: impl Into<String>) {
        self.defaults.insert(key.to_owned(), value.into());
    }

    pub fn is_set(&self, key: &str) -> bool {
        self.process.contains_key(key)
    }

    /// A variable a command cannot do without, with a hint on where it comes from.
    pub fn require(&self, key: &str, hint: &str) -> crate::Result<String> {
        self.get(key)
            .ok_or_else(|| format!("{key} is not set: {hint}").into())
    }
}

impl Lookup for Env {
    fn get(&self, name: &str) -> Option<String> {
        self.process
            .get(name)
            .or_else(|| self.defaults.get(name))
            .cloned()
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A short identifier unique enough for local message ids and deduplication ids.
pub fn fresh_id() -> String {
    use sha2::{Digest, Sha256};
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let seed = format!(
        "{}:{}:{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
        N.fetch_add(1, Ordering::Relaxed)
    );
    hex::encode(&Sha256::digest(seed.as_bytes())[..12])
}

/// Where the operator's commands find AWS and the deployed stack.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AwsArgs {
    /// The deployed stack whose Outputs fill in the settings the environment leaves
    /// unset (EVENTS_QUEUE_URL, TABLE_NAME, ...). Default: `stack_name` in
    /// samconfig.toml, consulted on AWS only (not when AWS_ENDPOINT_URL points at an
    /// emulator).
    #[arg(long, env = "STACK_NAME", global = true)]
    pub stack_name: Option<String>,
    /// The AWS region (default: the SDK's, from AWS_REGION or the profile).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// The AWS profile (default: AWS_PROFILE, else `default`); SSO and
    /// credential_process profiles work.
    #[arg(long, global = true)]
    pub profile: Option<String>,
}

/// The AWS SDK configuration from its own variables (`AWS_ENDPOINT_URL` for the
/// emulator) and the `--region`/`--profile` flags, with the functions' timeouts.
pub async fn sdk(aws: &AwsArgs) -> SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(2))
        .operation_attempt_timeout(std::time::Duration::from_secs(10))
        .operation_timeout(std::time::Duration::from_secs(30))
        .build();
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(timeouts);
    if let Some(profile) = &aws.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &aws.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    loader.load().await
}

/// The stack Outputs the CLI reads, and the variable each one fills in.
pub const STACK_OUTPUTS: [(&str, &str); 9] = [
    ("EventsQueueUrl", "EVENTS_QUEUE_URL"),
    ("EventsDeadLetterQueueUrl", "EVENTS_DLQ_URL"),
    ("TableName", "TABLE_NAME"),
    ("QuarantineBucketName", "QUARANTINE_BUCKET"),
    ("TokenKeyId", "TOKEN_KEY_ID"),
    ("AppSecretArn", "SECRET_ARN"),
    ("EventBusName", "EVENT_BUS_NAME"),
    ("WebhookUrl", "WEBHOOK_URL"),
    ("AlarmTopicArn", "ALARM_TOPIC_ARN"),
];

impl Env {
    /// Fills in, from the stack's Outputs, the settings the environment leaves
    /// unset: the environment always wins. The stack is the one `--stack-name`
    /// names; without it, samconfig.toml's `stack_name`, on AWS only, and only
    /// when some setting is missing. A named stack that cannot be read is an
    /// error; the default one is a warning (the command then names what it lacks).
    pub async fn with_stack(&mut self, aws: &AwsArgs, sdk: &SdkConfig) -> crate::Result<()> {
        if STACK_OUTPUTS.iter().all(|(_, key)| self.is_set(key)) {
            return Ok(());
        }
        let (name, explicit) = match &aws.stack_name {
            Some(name) => (name.clone(), true),
            None if self.is_set("AWS_ENDPOINT_URL") => return Ok(()),
            None => match samconfig_stack_name(std::path::Path::new("samconfig.toml")) {
                Some(name) => (name, false),
                None => return Ok(()),
            },
        };
        match stack_outputs(sdk, &name).await {
            Ok(outputs) => {
                for (output, key) in STACK_OUTPUTS {
                    if let Some(value) = outputs.get(output) {
                        self.default(key, value.clone());
                    }
                }
                tracing::info!(stack = %name, outputs = outputs.len(), "settings from the stack's outputs");
                Ok(())
            }
            Err(e) if explicit => Err(e),
            Err(e) => {
                tracing::warn!(stack = %name, "the stack named in samconfig.toml cannot be read: {e}");
                Ok(())
            }
        }
    }
}

/// `DescribeStacks`: the stack's Outputs by their logical names.
pub async fn stack_outputs(sdk: &SdkConfig, name: &str) -> crate::Result<BTreeMap<String, String>> {
    let described = aws_sdk_cloudformation::Client::new(sdk)
        .describe_stacks()
        .stack_name(name)
        .send()
        .await
        .map_err(|e| {
            format!(
                "cannot read the outputs of stack {name}: {}",
                crate::ops::describe(&e)
            )
        })?;
    let stack = described
        .stacks()
        .first()
        .ok_or_else(|| format!("no stack {name}"))?;
    Ok(stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
        .collect())
}

/// `stack_name` in samconfig.toml, from the sections `sam deploy` reads
/// (`[default.deploy.parameters]`, then `[default.global.parameters]`). Only this
/// one key of this one file is read, so a line scan is enough.
pub fn samconfig_stack_name(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut section = String::new();
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_owned();
        } else if let Some((key, value)) = line.split_once('=')
            && key.trim() == "stack_name"
        {
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            found.insert(section.clone(), value.to_owned());
        }
    }
    ["default.deploy.parameters", "default.global.parameters"]
        .into_iter()
        .find_map(|s| found.remove(s))
        .filter(|name| !name.is_empty())
}

/// The log lines go to stderr, so that what a command prints on stdout (a body
/// byte for byte, JSON) is only that: warnings by default, `-v` info, `-vv` debug,
/// `-vvv` trace; RUST_LOG adds its directives.
pub fn init_logs(verbose: u8, default: tracing::Level) {
    use lambda_runtime::tracing::subscriber;
    use subscriber::filter::{EnvFilter, LevelFilter};
    let level = match verbose {
        0 => LevelFilter::from_level(default),
        1 => LevelFilter::INFO.max(LevelFilter::from_level(default)),
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy();
    subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_env_filter(filter)
        .init();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_stack_name_comes_from_the_deploy_section_then_the_global_one() {
        let dir = std::env::temp_dir().join(format!("samconfig-{}", fresh_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("samconfig.toml");
        std::fs::write(
            &path,
            "version = 0.1\n[default.global.parameters]\nstack_name = \"messenger-backend\"\n\
             [default.build.parameters]\nstack_name = \"not-this\"\n",
        )
        .unwrap();
        assert_eq!(
            samconfig_stack_name(&path).as_deref(),
            Some("messenger-backend")
        );
        std::fs::write(
            &path,
            "[default.global.parameters]\nstack_name = \"global\"\n\
             [default.deploy.parameters]\nstack_name = 'deployed'\n",
        )
        .unwrap();
        assert_eq!(samconfig_stack_name(&path).as_deref(), Some("deployed"));
        assert_eq!(samconfig_stack_name(&dir.join("missing.toml")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
