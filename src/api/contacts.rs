//! Contacts of a campaign: list with the guides' filters (status in either guide's words,
//! tags, retries, text, primary-goal status), add one (phone normalised to E.164 with the campaign's default
//! country), read, edit, delete (pending only, guide 2), bulk remove and manual retry.
//! The CSV import is in [`super::import`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::campaigns::{load, record_event};
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use super::{split_list, AppState, PageQuery, Paged};
use crate::campaign::goals::GoalOutcome;
use crate::campaign::model::{Contact, ContactStatus, Millis};
use crate::contacts::normalize_phone;
use crate::store::{ContactFilter, NewContact, Page, MAX_PAGE};

/// The most ids one bulk request may carry.
pub const MAX_IDS: usize = 10_000;

/// A contact as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContactView {
    pub id: i64,
    pub campaign_id: i64,
    /// E.164.
    pub phone: String,
    pub name: String,
    pub comments: String,
    pub tags: Vec<String>,
    /// IANA zone, when known.
    pub timezone: Option<String>,
    pub status: ContactStatus,
    /// Calls placed so far.
    pub attempts: i64,
    /// Retries so far.
    pub retries: i64,
    pub next_attempt_at: Option<Millis>,
    pub last_attempt_at: Option<Millis>,
    /// The last attempt's outcome (answered, busy, no_answer, machine, failed, …).
    pub last_outcome: Option<String>,
    /// The outcome of the latest analysed conversation for the campaign's primary goal
    /// (unknown when the report does not say or there is no primary goal); null while no
    /// conversation of the contact was analysed.
    pub primary_goal_status: Option<GoalOutcome>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl From<Contact> for ContactView {
    fn from(c: Contact) -> Self {
        ContactView {
            id: c.id,
            campaign_id: c.campaign_id,
            phone: c.phone,
            name: c.name,
            comments: c.comments,
            tags: c.tags,
            timezone: c.timezone,
            status: c.status,
            attempts: c.attempts,
            retries: c.retries,
            next_attempt_at: c.next_attempt_at,
            last_attempt_at: c.last_attempt_at,
            last_outcome: c.last_outcome,
            primary_goal_status: None,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// A new contact (guide 1's dialog: phone number, name, comments, status).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ContactInput {
    /// Any common spelling; stored as E.164 (the campaign's default country applies to
    /// numbers without a `+`).
    #[serde(alias = "phone_number")]
    pub phone: String,
    pub name: String,
    pub comments: String,
    pub tags: Vec<String>,
    pub timezone: Option<String>,
    /// Initial status (default pending); not dialing or on_hold.
    pub status: Option<ContactStatus>,
}

/// A contact edit: absent fields keep their value; `timezone: null` clears it.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ContactPatch {
    #[serde(alias = "phone_number")]
    pub phone: Option<String>,
    pub name: Option<String>,
    pub comments: Option<String>,
    pub tags: Option<Vec<String>>,
    #[serde(deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub timezone: Option<Option<String>>,
    pub status: Option<ContactStatus>,
}

fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `{"ids": [1, 2, 3]}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdsInput {
    pub ids: Vec<i64>,
}

impl IdsInput {
    fn checked(&self) -> ApiResult<&[i64]> {
        if self.ids.len() > MAX_IDS {
            return Err(ApiError::invalid(
                "ids",
                format!("{} ids; at most {MAX_IDS} per request", self.ids.len()),
            ));
        }
        Ok(&self.ids)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RemoveResult {
    /// Pending contacts removed.
    pub removed: u64,
    /// Ids not removed: not pending, not in this campaign, or unknown.
    pub skipped: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RetryResult {
    /// Contacts queued for another call now.
    pub retried: u64,
    /// Ids left as they were: pending or retry already, in a call, not in this campaign.
    pub skipped: u64,
}

/// The guides' contact filters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContactListQuery {
    /// Comma-separated statuses, in either guide's words (`upcoming`, `not answered`,
    /// `no conversation`, …).
    pub status: Option<String>,
    /// Comma-separated tags (any of them).
    pub tags: Option<String>,
    pub min_retries: Option<i64>,
    pub max_retries: Option<i64>,
    /// Text in the name, phone or comments.
    pub q: Option<String>,
    /// Comma-separated primary-goal statuses (achieved, partially_achieved, not_achieved,
    /// unknown): the outcome of the contact's latest analysed conversation for the
    /// campaign's primary goal. Contacts never analysed match none.
    pub primary_goal_status: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl ContactListQuery {
    pub fn filter(&self) -> ApiResult<ContactFilter> {
        let mut filter = contact_filter(
            self.status.as_deref(),
            self.tags.as_deref(),
            self.min_retries,
            self.max_retries,
            self.q.as_deref(),
        )?;
        filter.primary_goal_statuses = goal_statuses(self.primary_goal_status.as_deref())?;
        Ok(filter)
    }

    pub fn page(&self) -> ApiResult<Page> {
        PageQuery {
            limit: self.limit,
            offset: self.offset,
        }
        .page()
    }
}

/// The store's filter from the query words; 400 naming the parameter.
pub(crate) fn contact_filter(
    status: Option<&str>,
    tags: Option<&str>,
    min_retries: Option<i64>,
    max_retries: Option<i64>,
    q: Option<&str>,
) -> ApiResult<ContactFilter> {
    let mut filter = ContactFilter::default();
    if let Some(list) = status {
        for word in split_list(list) {
            let status = ContactStatus::parse(word).ok_or_else(|| {
                ApiError::invalid(
                    "status",
                    format!(
                        "unknown value {word:?} (expected {})",
                        ContactStatus::expected()
                    ),
                )
            })?;
            if !filter.statuses.contains(&status) {
                filter.statuses.push(status);
            }
        }
    }
    if let Some(list) = tags {
        filter.tags = split_list(list).map(str::to_string).collect();
    }
    for (name, value) in [("min_retries", min_retries), ("max_retries", max_retries)] {
        if value.is_some_and(|n| n < 0) {
            return Err(ApiError::invalid(name, "must not be negative"));
        }
    }
    if let (Some(min), Some(max)) = (min_retries, max_retries) {
        if min > max {
            return Err(ApiError::invalid(
                "min_retries",
                format!("{min} is above max_retries {max}"),
            ));
        }
    }
    filter.min_retries = min_retries;
    filter.max_retries = max_retries;
    filter.search = q
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(str::to_string);
    Ok(filter)
}

/// `achieved, partially achieved` → the outcomes (either spelling), or 400 naming
/// `primary_goal_status`.
pub(crate) fn goal_statuses(list: Option<&str>) -> ApiResult<Vec<GoalOutcome>> {
    let mut out = Vec::new();
    for word in list.map(split_list).into_iter().flatten() {
        let outcome = GoalOutcome::parse(word).ok_or_else(|| {
            ApiError::invalid(
                "primary_goal_status",
                format!(
                    "unknown value {word:?} (expected {})",
                    GoalOutcome::expected()
                ),
            )
        })?;
        if !out.contains(&outcome) {
            out.push(outcome);
        }
    }
    Ok(out)
}

/// Each contact as the API shows it, with its primary-goal status.
pub(crate) async fn contact_views(
    state: &AppState,
    campaign_id: i64,
    contacts: Vec<Contact>,
) -> ApiResult<Vec<ContactView>> {
    let ids: Vec<i64> = contacts.iter().map(|c| c.id).collect();
    let statuses = state.store.primary_goal_statuses(campaign_id, &ids).await?;
    Ok(contacts
        .into_iter()
        .map(|c| {
            let status = statuses.get(&c.id).copied();
            ContactView {
                primary_goal_status: status,
                ..ContactView::from(c)
            }
        })
        .collect())
}

/// `phone` in E.164, or 400 naming the field.
pub(crate) fn e164(field: &str, text: &str, default_country: &str) -> ApiResult<String> {
    normalize_phone(text, default_country)
        .map_err(|reason| ApiError::invalid(field, format!("{text:?} {reason}")))
}

/// The contact if it belongs to the campaign and the campaign to the caller, else 404.
pub(crate) async fn load_contact(
    state: &AppState,
    caller: &Caller,
    campaign_id: i64,
    id: i64,
) -> ApiResult<Contact> {
    load(state, caller, campaign_id).await?;
    let contact = state.store.get_contact(id).await?;
    if contact.campaign_id != campaign_id {
        return Err(ApiError::not_found(format!(
            "contact {id} not found in campaign {campaign_id}"
        )));
    }
    Ok(contact)
}

/// The ids among `ids` that belong to the campaign.
async fn ids_in_campaign(state: &AppState, campaign_id: i64, ids: &[i64]) -> ApiResult<Vec<i64>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let filter = ContactFilter {
        ids: ids.to_vec(),
        ..ContactFilter::default()
    };
    let found = state
        .store
        .list_contacts(campaign_id, &filter, Page::new(MAX_PAGE, 0))
        .await?;
    Ok(found.items.into_iter().map(|c| c.id).collect())
}

// ---------------------------------------------------------------------------------------
// Handlers.

/// The campaign's contacts, filtered and paged.
#[utoipa::path(
    get,
    path = "/v1/campaigns/{id}/contacts",
    tag = "contacts",
    params(("id" = i64, Path, description = "Campaign id"), ContactListQuery),
    responses(
        (status = 200, description = "A page of contacts", body = Paged<ContactView>),
        (status = 400, description = "A bad filter (named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
    )
)]
pub async fn list_contacts(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<ContactListQuery>,
) -> ApiResult<Json<Paged<ContactView>>> {
    let filter = query.filter()?;
    let page = query.page()?;
    load(&state, &caller, id).await?;
    let found = state.store.list_contacts(id, &filter, page).await?;
    let items = contact_views(&state, id, found.items).await?;
    Ok(Json(Paged::new(items, found.total, page)))
}

/// Adds one contact; a phone already in the campaign is a 409.
#[utoipa::path(
    post,
    path = "/v1/campaigns/{id}/contacts",
    tag = "contacts",
    params(("id" = i64, Path, description = "Campaign id")),
    request_body = ContactInput,
    responses(
        (status = 201, description = "Added", body = ContactView),
        (status = 400, description = "A field is wrong (named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 409, description = "The phone is already in the campaign", body = ErrorBody),
    )
)]
pub async fn create_contact(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<ContactInput>,
) -> ApiResult<(StatusCode, Json<ContactView>)> {
    let campaign = load(&state, &caller, id).await?;
    if input.phone.trim().is_empty() {
        return Err(ApiError::invalid("phone", "is required"));
    }
    let phone = e164("phone", &input.phone, &campaign.settings.default_country)?;
    let contact = NewContact {
        phone,
        name: input.name.trim().to_string(),
        comments: input.comments,
        tags: clean_tags(input.tags),
        timezone: input.timezone.filter(|t| !t.trim().is_empty()),
        status: input.status.unwrap_or(ContactStatus::Pending),
        next_attempt_at: None,
    };
    let created = state
        .store
        .create_contact(id, &contact, state.now())
        .await?;
    state.wake_engine();
    Ok((StatusCode::CREATED, Json(created.into())))
}

fn clean_tags(tags: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tag in tags {
        let tag = tag.trim().to_string();
        if !tag.is_empty() && !out.contains(&tag) {
            out.push(tag);
        }
    }
    out
}

/// One contact of the campaign.
#[utoipa::path(
    get,
    path = "/v1/campaigns/{id}/contacts/{contact_id}",
    tag = "contacts",
    params(
        ("id" = i64, Path, description = "Campaign id"),
        ("contact_id" = i64, Path, description = "Contact id"),
    ),
    responses(
        (status = 200, description = "The contact", body = ContactView),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such contact in this campaign", body = ErrorBody),
    )
)]
pub async fn get_contact(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, contact_id)): ApiPath<(i64, i64)>,
) -> ApiResult<Json<ContactView>> {
    let contact = load_contact(&state, &caller, id, contact_id).await?;
    let mut views = contact_views(&state, id, vec![contact]).await?;
    views
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("contact {contact_id} not found")))
}

/// Edits a contact (its status cannot change during a call: 409).
#[utoipa::path(
    patch,
    path = "/v1/campaigns/{id}/contacts/{contact_id}",
    tag = "contacts",
    params(
        ("id" = i64, Path, description = "Campaign id"),
        ("contact_id" = i64, Path, description = "Contact id"),
    ),
    request_body = ContactPatch,
    responses(
        (status = 200, description = "Updated", body = ContactView),
        (status = 400, description = "A field is wrong (named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such contact in this campaign", body = ErrorBody),
        (status = 409, description = "In a call, or the phone is taken", body = ErrorBody),
    )
)]
pub async fn update_contact(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, contact_id)): ApiPath<(i64, i64)>,
    ApiJson(patch): ApiJson<ContactPatch>,
) -> ApiResult<Json<ContactView>> {
    let campaign = load(&state, &caller, id).await?;
    let current = load_contact(&state, &caller, id, contact_id).await?;
    let phone = match patch.phone {
        Some(p) => e164("phone", &p, &campaign.settings.default_country)?,
        None => current.phone,
    };
    let contact = NewContact {
        phone,
        name: patch.name.map_or(current.name, |n| n.trim().to_string()),
        comments: patch.comments.unwrap_or(current.comments),
        tags: patch.tags.map_or(current.tags, clean_tags),
        timezone: patch
            .timezone
            .unwrap_or(current.timezone)
            .filter(|t| !t.trim().is_empty()),
        status: patch.status.unwrap_or(current.status),
        next_attempt_at: current.next_attempt_at,
    };
    let updated = state
        .store
        .update_contact(contact_id, &contact, state.now())
        .await?;
    state.wake_engine();
    let mut views = contact_views(&state, id, vec![updated]).await?;
    views
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("contact {contact_id} not found")))
}

/// Deletes a contact nobody dialed yet (pending); any other status is a 409.
#[utoipa::path(
    delete,
    path = "/v1/campaigns/{id}/contacts/{contact_id}",
    tag = "contacts",
    params(
        ("id" = i64, Path, description = "Campaign id"),
        ("contact_id" = i64, Path, description = "Contact id"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such contact in this campaign", body = ErrorBody),
        (status = 409, description = "Not pending", body = ErrorBody),
    )
)]
pub async fn delete_contact(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, contact_id)): ApiPath<(i64, i64)>,
) -> ApiResult<StatusCode> {
    load_contact(&state, &caller, id, contact_id).await?;
    state.store.delete_contact(contact_id).await?;
    state.wake_engine();
    Ok(StatusCode::NO_CONTENT)
}

/// Bulk remove: the pending contacts among `ids` are deleted, the others are skipped.
#[utoipa::path(
    post,
    path = "/v1/campaigns/{id}/contacts/remove",
    tag = "contacts",
    params(("id" = i64, Path, description = "Campaign id")),
    request_body = IdsInput,
    responses(
        (status = 200, description = "Removed", body = RemoveResult),
        (status = 400, description = "Too many ids", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
    )
)]
pub async fn remove_contacts(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<IdsInput>,
) -> ApiResult<Json<RemoveResult>> {
    let ids = input.checked()?;
    load(&state, &caller, id).await?;
    let removed = state.store.delete_pending_contacts(id, ids).await?;
    if removed > 0 {
        state.wake_engine();
    }
    Ok(Json(RemoveResult {
        removed,
        skipped: ids.len() as u64 - removed.min(ids.len() as u64),
    }))
}

/// Manual retry (guide 2): contacts among `ids` that are final or called go to `retry`,
/// due now.
#[utoipa::path(
    post,
    path = "/v1/campaigns/{id}/contacts/retry",
    tag = "contacts",
    params(("id" = i64, Path, description = "Campaign id")),
    request_body = IdsInput,
    responses(
        (status = 200, description = "Queued again", body = RetryResult),
        (status = 400, description = "Too many ids", body = ErrorBody),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
    )
)]
pub async fn retry_contacts(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<IdsInput>,
) -> ApiResult<Json<RetryResult>> {
    let ids = input.checked()?;
    load(&state, &caller, id).await?;
    let mine = ids_in_campaign(&state, id, ids).await?;
    let retried = state.store.manual_retry(&mine, state.now()).await?;
    if retried > 0 {
        record_event(
            &state,
            Some(id),
            "contacts.retry",
            serde_json::json!({ "count": retried }),
        )
        .await;
        state.wake_engine();
    }
    Ok(Json(RetryResult {
        retried,
        skipped: ids.len() as u64 - retried.min(ids.len() as u64),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_read_both_guides_words() {
        let f = contact_filter(
            Some("Upcoming, not answered,No Conversation"),
            Some("vip, ads"),
            Some(1),
            Some(3),
            Some(" doe "),
        )
        .unwrap();
        assert_eq!(
            f.statuses,
            vec![
                ContactStatus::Pending,
                ContactStatus::NotAnswered,
                ContactStatus::NoConversation
            ]
        );
        assert_eq!(f.tags, vec!["vip".to_string(), "ads".to_string()]);
        assert_eq!(f.search.as_deref(), Some("doe"));
        let e = contact_filter(Some("sleeping"), None, None, None, None).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("status"));
        let e = contact_filter(None, None, Some(4), Some(2), None).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("min_retries"));
        assert_eq!(
            goal_statuses(Some("achieved, Partially Achieved,achieved")).unwrap(),
            vec![GoalOutcome::Achieved, GoalOutcome::PartiallyAchieved]
        );
        let e = goal_statuses(Some("great")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("primary_goal_status"));
    }

    #[test]
    fn tags_are_trimmed_and_unique() {
        assert_eq!(
            clean_tags(vec![" a".into(), "".into(), "a".into(), "b ".into()]),
            vec!["a".to_string(), "b".to_string()]
        );
    }
}
