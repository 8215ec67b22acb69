//! Reference values (platform admins only): trusted launcher measurements and what tokens
//! say about them (`swversion`, `dbgstat`, `support_attributes`). Unknown launcher: no
//! support attributes.

use axum::extract::{Path, State};
use axum::routing::{delete, get};
use axum::{Json, Router};
use cloister_domain::Decision;
use cloister_store::ReferenceValueRecord;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::AdminCaller;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::state::AppState;
use crate::time_util;

const SUPPORT_ATTRIBUTES: [&str; 4] = ["LATEST", "STABLE", "USABLE", "EXPERIMENTAL"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/cloister/v1/verifier/referenceValues", get(list).post(put))
        .route(
            "/cloister/v1/verifier/referenceValues/{measurement}",
            delete(remove),
        )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReferenceValue {
    measurement: String,
    swversion: String,
    #[serde(default = "disabled")]
    dbgstat: String,
    #[serde(default)]
    support_attributes: Vec<String>,
    #[serde(default)]
    description: String,
}

fn disabled() -> String {
    "disabled-since-boot".into()
}

pub fn view(r: &ReferenceValueRecord) -> Value {
    json!({
        "measurement": r.measurement, "swversion": r.swversion, "dbgstat": r.dbgstat,
        "supportAttributes": r.support_attributes, "description": r.description,
        "createTime": time_util::rfc3339(r.create_time),
    })
}

async fn put(
    State(state): State<AppState>,
    AdminCaller(admin): AdminCaller,
    ApiJson(v): ApiJson<ReferenceValue>,
) -> Result<Json<Value>, ApiError> {
    let measurement = v.measurement.to_ascii_lowercase();
    if !(40..=128).contains(&measurement.len())
        || !measurement.chars().all(|c| c.is_ascii_hexdigit())
    {
        return Err(ApiError::InvalidArgument(format!(
            "measurement {:?} must be a hex digest (40 to 128 hex digits)",
            v.measurement
        )));
    }
    // A number, as Google's are, so `int(assertion.swversion[0]) >= N` conditions work.
    if !(1..=10).contains(&v.swversion.len()) || !v.swversion.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::InvalidArgument(format!(
            "swversion {:?} must be a number of 1 to 10 digits, such as 250301",
            v.swversion
        )));
    }
    if !matches!(v.dbgstat.as_str(), "disabled-since-boot" | "enabled") {
        return Err(ApiError::InvalidArgument(
            "dbgstat must be disabled-since-boot or enabled".into(),
        ));
    }
    if let Some(bad) = v
        .support_attributes
        .iter()
        .find(|a| !SUPPORT_ATTRIBUTES.contains(&a.as_str()))
    {
        return Err(ApiError::InvalidArgument(format!(
            "support attribute {bad:?} is not one of {}",
            SUPPORT_ATTRIBUTES.join(", ")
        )));
    }
    let record = ReferenceValueRecord {
        measurement,
        swversion: v.swversion,
        dbgstat: v.dbgstat,
        support_attributes: v.support_attributes,
        description: v.description,
        create_time: time::OffsetDateTime::now_utc(),
    };
    state.store.put_reference_value(&record).await?;
    state
        .authorizer
        .record(
            admin.to_string(),
            "cloister.referenceValues.put",
            &format!("referenceValues/{}", record.measurement),
            Decision::Allow,
            "platform admin".into(),
        )
        .await;
    Ok(Json(view(&record)))
}

async fn list(
    State(state): State<AppState>,
    AdminCaller(_): AdminCaller,
) -> Result<Json<Value>, ApiError> {
    let values = state.store.list_reference_values().await?;
    Ok(Json(
        json!({ "referenceValues": values.iter().map(view).collect::<Vec<_>>() }),
    ))
}

async fn remove(
    State(state): State<AppState>,
    AdminCaller(admin): AdminCaller,
    Path(measurement): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let m = measurement.to_ascii_lowercase();
    if !state.store.delete_reference_value(&m).await? {
        return Err(ApiError::NotFound(format!(
            "no reference value for measurement {measurement}"
        )));
    }
    state
        .authorizer
        .record(
            admin.to_string(),
            "cloister.referenceValues.delete",
            &format!("referenceValues/{m}"),
            Decision::Allow,
            "platform admin".into(),
        )
        .await;
    Ok(Json(json!({})))
}
