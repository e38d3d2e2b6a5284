use app_config::ProcessEnv;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = app_config::aws_sdk_config().await;
    let processor = processor::from_env(&ProcessEnv, &sdk)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "processor cannot start"))?;
    let processor = &processor;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = event.context.deadline();
        Ok::<SqsBatchResponse, Error>(processor.handle(event.payload, Some(deadline)).await)
    }))
    .await
}
