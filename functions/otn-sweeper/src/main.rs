use app_config::ProcessEnv;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use otn_sweeper::SweepReport;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = app_config::aws_sdk_config().await;
    let sweeper = otn_sweeper::from_env(&ProcessEnv, &sdk)
        .inspect_err(|e| tracing::error!(error = %e, "otn-sweeper cannot start"))?;
    let sweeper = &sweeper;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            let deadline = event.context.deadline();
            Ok::<SweepReport, Error>(sweeper.handle(&event.payload, Some(deadline)).await?)
        },
    ))
    .await
}
