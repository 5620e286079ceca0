//! Business-hours schedules (guide 2: Settings → Business Hours): a name, an IANA zone,
//! opening intervals per weekday (Monday first) and closed dates. Validated before they
//! are stored (400 naming the field); a schedule a campaign uses cannot be deleted (409).
//! Edits apply to the campaigns using it at once (the engine is woken). Each account sees
//! and changes only its own schedules (another account's answers 404).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorBody};
use super::AppState;
use crate::campaign::model::{BusinessHours, BusinessHoursSpec, OpenHours};

/// One opening interval, "HH:MM"–"HH:MM" (end exclusive, may be "24:00").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenHoursView {
    pub start: String,
    pub end: String,
}

/// A schedule as written and read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleInput {
    pub name: String,
    /// IANA zone, e.g. America/New_York.
    pub timezone: String,
    /// 7 lists of opening intervals, Monday first; an empty list is a closed day.
    pub week: Vec<Vec<OpenHoursView>>,
    /// Whole days closed, "YYYY-MM-DD" in the schedule's zone.
    #[serde(default)]
    pub closed_dates: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleView {
    pub id: i64,
    pub name: String,
    pub timezone: String,
    pub week: Vec<Vec<OpenHoursView>>,
    pub closed_dates: Vec<String>,
}

impl ScheduleInput {
    fn spec(self) -> ApiResult<BusinessHoursSpec> {
        let days = self.week.len();
        let week: [Vec<OpenHours>; 7] = self
            .week
            .into_iter()
            .map(|day| {
                day.into_iter()
                    .map(|h| OpenHours {
                        start: h.start,
                        end: h.end,
                    })
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
            .try_into()
            .map_err(|_| {
                ApiError::invalid(
                    "week",
                    format!("has {days} days; expected 7 (Monday first)"),
                )
            })?;
        let spec = BusinessHoursSpec {
            name: self.name.trim().to_string(),
            timezone: self.timezone.trim().to_string(),
            week,
            closed_dates: self.closed_dates,
        };
        spec.validate()?;
        Ok(spec)
    }
}

impl From<BusinessHours> for ScheduleView {
    fn from(h: BusinessHours) -> Self {
        ScheduleView {
            id: h.id,
            name: h.spec.name,
            timezone: h.spec.timezone,
            week: h
                .spec
                .week
                .into_iter()
                .map(|day| {
                    day.into_iter()
                        .map(|o| OpenHoursView {
                            start: o.start,
                            end: o.end,
                        })
                        .collect()
                })
                .collect(),
            closed_dates: h.spec.closed_dates,
        }
    }
}

/// The account's schedules, by name.
#[utoipa::path(
    get,
    path = "/v1/schedules",
    tag = "schedules",
    responses(
        (status = 200, description = "The schedules", body = Vec<ScheduleView>),
        (status = 401, description = "No valid credentials", body = ErrorBody),
    )
)]
pub async fn list_schedules(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<ScheduleView>>> {
    let all = state.store.list_business_hours(caller.account_id).await?;
    Ok(Json(all.into_iter().map(ScheduleView::from).collect()))
}

/// Creates a schedule.
#[utoipa::path(
    post,
    path = "/v1/schedules",
    tag = "schedules",
    request_body = ScheduleInput,
    responses(
        (status = 201, description = "Created", body = ScheduleView),
        (status = 400, description = "A field is wrong (named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
    )
)]
pub async fn create_schedule(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<ScheduleInput>,
) -> ApiResult<(StatusCode, Json<ScheduleView>)> {
    let spec = input.spec()?;
    let created = state
        .store
        .create_business_hours(Some(caller.account_id), &spec, state.now())
        .await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// One schedule.
#[utoipa::path(
    get,
    path = "/v1/schedules/{id}",
    tag = "schedules",
    params(("id" = i64, Path, description = "Schedule id")),
    responses(
        (status = 200, description = "The schedule", body = ScheduleView),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
    )
)]
pub async fn get_schedule(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<ScheduleView>> {
    Ok(Json(
        state
            .store
            .account_business_hours(caller.account_id, id)
            .await?
            .into(),
    ))
}

/// Replaces a schedule; campaigns using it follow at once.
#[utoipa::path(
    put,
    path = "/v1/schedules/{id}",
    tag = "schedules",
    params(("id" = i64, Path, description = "Schedule id")),
    request_body = ScheduleInput,
    responses(
        (status = 200, description = "Replaced", body = ScheduleView),
        (status = 400, description = "A field is wrong (named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
    )
)]
pub async fn update_schedule(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<ScheduleInput>,
) -> ApiResult<Json<ScheduleView>> {
    let spec = input.spec()?;
    let updated = state
        .store
        .update_business_hours(caller.account_id, id, &spec, state.now())
        .await?;
    state.wake_engine();
    Ok(Json(updated.into()))
}

/// Deletes a schedule no campaign uses (409 otherwise).
#[utoipa::path(
    delete,
    path = "/v1/schedules/{id}",
    tag = "schedules",
    params(("id" = i64, Path, description = "Schedule id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 409, description = "A campaign uses it", body = ErrorBody),
    )
)]
pub async fn delete_schedule(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    state
        .store
        .delete_business_hours(caller.account_id, id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(start: &str, end: &str) -> Vec<OpenHoursView> {
        vec![OpenHoursView {
            start: start.into(),
            end: end.into(),
        }]
    }

    #[test]
    fn a_week_has_seven_valid_days() {
        let mut input = ScheduleInput {
            name: "Office".into(),
            timezone: "America/New_York".into(),
            week: vec![day("09:00", "17:00"); 5],
            closed_dates: vec![],
        };
        assert_eq!(
            input.clone().spec().unwrap_err().field.as_deref(),
            Some("week")
        );
        input.week.extend([vec![], vec![]]);
        assert!(input.clone().spec().is_ok());
        input.week[0] = day("18:00", "09:00");
        assert_eq!(
            input.clone().spec().unwrap_err().field.as_deref(),
            Some("week")
        );
        input.week[0] = day("09:00", "17:00");
        input.timezone = "Mars/Base".into();
        assert_eq!(input.spec().unwrap_err().field.as_deref(), Some("timezone"));
    }
}
