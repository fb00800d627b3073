//! The endpoint's HTTP routes, under `/v4/<token>` and `/v3/<token>` alike: the container,
//! the task, and their Docker stats. A token that names no known container answers 404 with
//! the ECS agent's JSON string message; any other path answers 404.
//!
//! Engine calls are bounded by [`ENGINE_TIMEOUT`]. A container whose inspect fails is still
//! described with what its owner knows rather than failing the whole document.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::future::join_all;

use super::documents::{self, ContainerResponse, DocumentContext};
use super::registry::{ContainerSnapshot, TaskSnapshot};
use super::Inner;
use crate::runtime::ContainerDetails;

/// How long one engine call of a request may take.
const ENGINE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn router(inner: Arc<Inner>) -> Router {
    let versioned = Router::new()
        .route("/{token}", get(container_metadata))
        .route("/{token}/task", get(task_metadata))
        .route("/{token}/stats", get(container_stats))
        .route("/{token}/task/stats", get(task_stats));
    Router::new()
        .nest("/v4", versioned.clone())
        .nest("/v3", versioned)
        .fallback(not_found)
        .with_state(inner)
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(error) => {
            tracing::warn!(error = %error, "cannot serialize a metadata document");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The ECS agent answers errors with a JSON string.
fn error(status: StatusCode, message: String) -> Response {
    json(status, &message)
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

fn unknown_container(handler: &str, token: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("{handler}: unable to get container ID from request: unable to get docker ID from v3 endpoint ID: {token}"),
    )
}

fn unknown_task(handler: &str, token: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("{handler}: unable to get task arn from request: unable to get task Arn from v3 endpoint ID: {token}"),
    )
}

/// The engine's details of a created container, `None` when they cannot be read now.
async fn details(inner: &Inner, container: &ContainerSnapshot) -> Option<ContainerDetails> {
    let id = container.runtime_id.as_deref()?;
    match tokio::time::timeout(ENGINE_TIMEOUT, inner.runtime.inspect_details(id)).await {
        Ok(Ok(details)) => Some(details),
        Ok(Err(error)) => {
            tracing::debug!(container_id = %id, error = %error, "cannot inspect container for metadata");
            None
        }
        Err(_) => {
            tracing::debug!(container_id = %id, "inspecting container for metadata timed out");
            None
        }
    }
}

async fn container_response(
    inner: &Inner,
    task: &TaskSnapshot,
    container: &ContainerSnapshot,
) -> ContainerResponse {
    let details = details(inner, container).await;
    documents::container_response(task, container, details.as_ref())
}

async fn container_metadata(
    State(inner): State<Arc<Inner>>,
    Path(token): Path<String>,
) -> Response {
    let handler = "V4 container metadata handler";
    let Some((task, name)) = inner.registry.resolve(&token) else {
        return unknown_container(handler, &token);
    };
    let Some(container) = task.container(&name) else {
        return unknown_container(handler, &token);
    };
    tracing::debug!(task_arn = %task.task_arn(), container = %name, "container metadata");
    json(
        StatusCode::OK,
        &container_response(&inner, &task, container).await,
    )
}

async fn task_metadata(State(inner): State<Arc<Inner>>, Path(token): Path<String>) -> Response {
    let Some((task, _)) = inner.registry.resolve(&token) else {
        return unknown_task("V4 task metadata handler", &token);
    };
    tracing::debug!(task_arn = %task.task_arn(), "task metadata");
    // Containers not created yet have no engine side to describe (as with ECS).
    let created = task.containers.iter().filter(|c| c.runtime_id.is_some());
    let containers = join_all(created.map(|c| container_response(&inner, &task, c))).await;
    let context = DocumentContext {
        cluster: &inner.config.cluster,
        availability_zone: &inner.config.availability_zone,
    };
    json(
        StatusCode::OK,
        &documents::task_response(&context, &task, containers),
    )
}

/// A running container's stats document, `None` when it is not running or cannot be read.
async fn stats_of(inner: &Inner, id: &str) -> Option<serde_json::Value> {
    match tokio::time::timeout(ENGINE_TIMEOUT, inner.runtime.stats_document(id)).await {
        Ok(Ok(stats)) => stats,
        Ok(Err(error)) => {
            tracing::debug!(container_id = %id, error = %error, "cannot read container stats for metadata");
            None
        }
        Err(_) => {
            tracing::debug!(container_id = %id, "reading container stats for metadata timed out");
            None
        }
    }
}

async fn container_stats(State(inner): State<Arc<Inner>>, Path(token): Path<String>) -> Response {
    let handler = "V4 container stats handler";
    let Some((task, name)) = inner.registry.resolve(&token) else {
        return unknown_task(handler, &token);
    };
    let Some(id) = task.container(&name).and_then(|c| c.runtime_id.clone()) else {
        return unknown_container(handler, &token);
    };
    match stats_of(&inner, &id).await {
        Some(stats) => json(StatusCode::OK, &stats),
        None => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Unable to get container stats for: {id}"),
        ),
    }
}

async fn task_stats(State(inner): State<Arc<Inner>>, Path(token): Path<String>) -> Response {
    let Some((task, _)) = inner.registry.resolve(&token) else {
        return unknown_task("V4 task stats handler", &token);
    };
    let ids: Vec<String> = task
        .containers
        .iter()
        .filter_map(|c| c.runtime_id.clone())
        .collect();
    let readings = join_all(ids.iter().map(|id| stats_of(&inner, id))).await;
    // A container that is not running maps to null, as with ECS.
    let stats: BTreeMap<String, Option<serde_json::Value>> =
        ids.into_iter().zip(readings).collect();
    json(StatusCode::OK, &stats)
}
