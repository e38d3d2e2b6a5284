use app_config::ProcessEnv;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use page_check::CheckReport;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = app_config::aws_sdk_config().await;
    let checker = page_check::from_env(&ProcessEnv, &sdk)
        .inspect_err(|e| tracing::error!(error = %e, "page-check cannot start"))?;
    let checker = &checker;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            let deadline = event.context.deadline();
            Ok::<CheckReport, Error>(checker.handle(&event.payload, Some(deadline)).await?)
        },
    ))
    .await
}
