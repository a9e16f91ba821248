//! Ad destinations.
use super::DashError;
use super::error::DashResult;
use super::session::{Dash, DashForm};
use crate::state::AppState;
use axum::extract::{Path, State};

pub async fn list(State(_s): State<AppState>, _d: Dash, Path(_p): Path<String>) -> DashResult {
    Err(DashError::NotFound)
}
pub async fn new_page(
    State(_s): State<AppState>,
    _d: Dash,
    Path(_p): Path<(String, String)>,
) -> DashResult {
    Err(DashError::NotFound)
}
pub async fn create(
    State(_s): State<AppState>,
    Path(_p): Path<(String, String)>,
    _f: DashForm,
) -> DashResult {
    Err(DashError::NotFound)
}
pub async fn page(
    State(_s): State<AppState>,
    _d: Dash,
    Path(_p): Path<(String, String)>,
) -> DashResult {
    Err(DashError::NotFound)
}
pub async fn update(
    State(_s): State<AppState>,
    Path(_p): Path<(String, String)>,
    _f: DashForm,
) -> DashResult {
    Err(DashError::NotFound)
}
pub async fn pause(
    State(_s): State<AppState>,
    Path(_p): Path<(String, String)>,
    _f: DashForm,
) -> DashResult {
    Err(DashError::NotFound)
}
pub async fn send_test(
    State(_s): State<AppState>,
    Path(_p): Path<(String, String)>,
    _f: DashForm,
) -> DashResult {
    Err(DashError::NotFound)
}
