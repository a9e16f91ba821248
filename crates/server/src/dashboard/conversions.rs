//! Conversion log, live events, link checker.
use super::DashError;
use super::error::DashResult;
use super::session::{Dash, DashForm};
use crate::state::AppState;
use axum::extract::{Path, State};

pub async fn log(State(_s): State<AppState>, _d: Dash, Path(_p): Path<String>) -> DashResult {
    Err(DashError::NotFound)
}
pub async fn detail(
    State(_s): State<AppState>,
    _d: Dash,
    Path(_p): Path<(String, String)>,
) -> DashResult {
    Err(DashError::NotFound)
}
pub async fn retry_delivery(
    State(_s): State<AppState>,
    Path(_p): Path<(String, String)>,
    _f: DashForm,
) -> DashResult {
    Err(DashError::NotFound)
}
pub async fn live_page(State(_s): State<AppState>, _d: Dash, Path(_p): Path<String>) -> DashResult {
    Err(DashError::NotFound)
}
pub async fn live_json(State(_s): State<AppState>, _d: Dash, Path(_p): Path<String>) -> DashResult {
    Err(DashError::NotFound)
}
pub async fn link_checker_page(
    State(_s): State<AppState>,
    _d: Dash,
    Path(_p): Path<String>,
) -> DashResult {
    Err(DashError::NotFound)
}
pub async fn link_checker(
    State(_s): State<AppState>,
    Path(_p): Path<String>,
    _f: DashForm,
) -> DashResult {
    Err(DashError::NotFound)
}
