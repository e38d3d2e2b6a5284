use app_config::ProcessEnv;
use lambda_http::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let sdk = app_config::aws_sdk_config().await;
    let app = webhook::from_env(&ProcessEnv, &sdk)
        .await
        .inspect_err(|e| {
            // Names the variable at fault; Lambda reports the init error with it.
            tracing::error!(error = %e, "webhook cannot start");
        })?;
    let app = &app;
    lambda_http::run(service_fn(move |req| app.handle(req))).await
}
