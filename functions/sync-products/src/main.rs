//! The sync function's HTTP side: on-demand sync and the products routes.

use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::logging::init();
    let (state, gateway, options) = sync_products::start_up().await?;
    let router = sync_products::router(state, Arc::new(gateway), options);
    shared::http::serve(shared::http::finish(router)).await
}
