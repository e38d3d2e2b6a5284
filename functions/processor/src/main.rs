//! The processor Lambda function, with the default bot. To run your own bot, put
//! it in place of `DefaultBot` (see "The default bot, and replacing it" in the README).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    processor::run(processor::bot::DefaultBot).await
}
