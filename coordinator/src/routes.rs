//! Several gRPC services on one tonic server without tonic's axum router: a request whose
//! path names service `A` (`/<package>.<Service>/<Method>`) goes to `A`, any other to `Rest`
//! (the last one answers unknown paths with `Unimplemented`).

use std::convert::Infallible;

use tonic::body::Body;
use tonic::codegen::{BoxFuture, Context, Poll, Service, http};
use tonic::server::NamedService;

#[derive(Clone)]
pub struct PathRoute<A, Rest> {
    first: A,
    rest: Rest,
}

impl<A, Rest> PathRoute<A, Rest> {
    pub fn new(first: A, rest: Rest) -> Self {
        Self { first, rest }
    }
}

type Reply = http::Response<Body>;

impl<A, Rest> Service<http::Request<Body>> for PathRoute<A, Rest>
where
    A: Service<http::Request<Body>, Response = Reply, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + 'static,
    A::Future: Send + 'static,
    Rest:
        Service<http::Request<Body>, Response = Reply, Error = Infallible> + Clone + Send + 'static,
    Rest::Future: Send + 'static,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = BoxFuture<Reply, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Each inner service is cloned per call and tonic's generated servers are always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let ours = request
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(A::NAME))
            .is_some_and(|p| p.starts_with('/'));
        if ours {
            let mut first = self.first.clone();
            Box::pin(async move { first.call(request).await })
        } else {
            let mut rest = self.rest.clone();
            Box::pin(async move { rest.call(request).await })
        }
    }
}
