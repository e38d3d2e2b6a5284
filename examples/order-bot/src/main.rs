//! The processor Lambda function with the order bot in place of the default one.
//! Deploy it by setting `Binary: order-bot` on `ProcessorFunction` in
//! template.yaml (see the README, "A bot of your own").

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    processor::run(order_bot::bot()?).await
}
