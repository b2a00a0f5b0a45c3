//! The local cloud's HTTP/1.1 listeners: the gateway and each region's front door. A
//! listener can refuse a request by closing its connection without an answer, which is
//! how a host in a region gone dark looks to a client: a connection error the SDK retries,
//! not an HTTP status.

use std::future::Future;

use axum::body::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// A request refused by closing its connection.
#[derive(Debug, thiserror::Error)]
#[error("connection closed without an answer: {0}")]
pub struct Dropped(pub String);

/// Serves `listener` until the returned future is dropped (and with it every open
/// connection). A connection accepted while `accepting()` is false is closed at once; a
/// request `respond` refuses closes its connection.
pub async fn serve<A, R, Fut>(listener: TcpListener, accepting: A, respond: R)
where
    A: Fn() -> bool + Send,
    R: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, Dropped>> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed");
                continue;
            }
        };
        if !accepting() {
            drop(stream);
            continue;
        }
        let respond = respond.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(respond);
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn refused_requests_and_closed_listeners_answer_nothing() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let open = Arc::new(AtomicBool::new(true));
        let server = {
            let open = open.clone();
            tokio::spawn(serve(
                listener,
                move || open.load(Ordering::SeqCst),
                |request: Request<Incoming>| async move {
                    if request.uri().path() == "/refused" {
                        return Err(Dropped("refused".into()));
                    }
                    Ok(Response::new(Body::from("answered")))
                },
            ))
        };
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let answered = client.get(format!("{url}/")).send().await.expect("answer");
        assert_eq!(answered.text().await.expect("body"), "answered");
        let refused = client.get(format!("{url}/refused")).send().await;
        assert!(refused.is_err(), "no answer: {refused:?}");
        open.store(false, Ordering::SeqCst);
        let closed = client.get(format!("{url}/")).send().await;
        assert!(closed.is_err(), "no answer: {closed:?}");
        server.abort();
    }
}
