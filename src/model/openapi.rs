//! OpenAPI schemas of the model's hand-serialized types (the rest derive `utoipa::ToSchema`).
//!
//! These types serialize as plain strings or as a JSON scalar; their schemas say so, so that
//! the REST API's OpenAPI document (`/api/v1/openapi.json`) describes what is really sent.

use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};

use super::{LossCategory, MachineId, SignalId, TimeCategory, Timestamp, Value};

fn string(description: &str, format: Option<SchemaFormat>, example: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(format)
        .description(Some(description))
        .examples([serde_json::Value::String(example.to_string())])
        .into()
}

macro_rules! string_schema {
    ($ty:ty, $name:literal, $format:expr, $example:literal, $description:literal) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                string($description, $format, $example)
            }
        }
        impl utoipa::ToSchema for $ty {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed($name)
            }
        }
    };
}

string_schema!(
    Timestamp,
    "Timestamp",
    Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)),
    "2026-11-30T09:41:12.500000Z",
    "A UTC time in RFC 3339, to the microsecond."
);
string_schema!(
    MachineId,
    "MachineId",
    None,
    "okuma-1",
    "A machine's id: 1 to 64 of a-z, A-Z, 0-9, '-', '_', '.'."
);
string_schema!(
    SignalId,
    "SignalId",
    None,
    "execution",
    "A signal's id: a canonical signal (execution, program, part_count …) or the source's own key."
);
string_schema!(
    LossCategory,
    "LossCategory",
    None,
    "setup",
    "A loss category of the downtime taxonomy (see GET /api/v1/reasons)."
);
string_schema!(
    TimeCategory,
    "TimeCategory",
    None,
    "production",
    "Where time went: `production`, or a loss category of the taxonomy."
);

impl utoipa::PartialSchema for Value {
    fn schema() -> RefOr<Schema> {
        let t = |ty: Type| ObjectBuilder::new().schema_type(ty);
        OneOfBuilder::new()
            .item(t(Type::Boolean))
            .item(t(Type::Integer).format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))))
            .item(t(Type::Number).format(Some(SchemaFormat::KnownFormat(KnownFormat::Double))))
            .item(t(Type::String))
            .item(t(Type::Null))
            .description(Some(
                "A value as the source gave it; null is UNAVAILABLE (the source does not know).",
            ))
            .into()
    }
}
impl utoipa::ToSchema for Value {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Value")
    }
}
