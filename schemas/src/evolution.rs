//! Which changes of a stream's schema are made in place: the ones every
//! event accepted under the old schema still fits, read as the new one
//! (`pipe_transform::PipelinePlan::conform` reads buffered records of the
//! old schema that way), and that an Iceberg table can follow without
//! rewriting its files.
//!
//! | change | in place |
//! |---|---|
//! | a new optional field | yes: old events read it as null |
//! | `int32` → `int64`, `float32` → `float64` | yes: old values widen |
//! | a required field made optional | yes |
//! | a field removed, renamed or made required, a new required field | no: old events do not fit |
//! | any other type change, a change inside a list or struct | no |
//!
//! Both schemas are compared as the Arrow schemas events decode into
//! ([`crate::EventDecoder::table_schema`]), so a JSON Schema stream is
//! judged the same way as one in the Pipelines field format.

use arrow::datatypes::{DataType, Schema};

/// The changes from `old` to `new`, one line each (empty: none); or why
/// the change cannot be made in place, and what to do instead.
pub fn changes(old: &Schema, new: &Schema) -> Result<Vec<String>, String> {
    let mut changes = Vec::new();
    for was in old.fields() {
        let name = was.name();
        let Ok(now) = new.field_with_name(name) else {
            return Err(format!(
                "field `{name}` is gone: events already accepted carry it, and fields are not removed in place. Keep it (make it optional and stop sending it) instead"
            ));
        };
        if now.data_type() != was.data_type() {
            match (was.data_type(), now.data_type()) {
                (DataType::Int32, DataType::Int64) | (DataType::Float32, DataType::Float64) => {
                    changes.push(format!(
                        "widen field `{name}` from {} to {}",
                        was.data_type(),
                        now.data_type()
                    ));
                }
                (DataType::List(_) | DataType::Struct(_), _) => {
                    return Err(format!(
                        "field `{name}` changes inside: changes within a list or struct are not made in place. Add a new top-level field instead"
                    ))
                }
                (from, to) => {
                    return Err(format!(
                        "field `{name}` changes from {from} to {to}: only int32 → int64 and float32 → float64 widen in place. Add a field of the new type under another name instead"
                    ))
                }
            }
        }
        match (was.is_nullable(), now.is_nullable()) {
            (true, false) => {
                return Err(format!(
                    "field `{name}` becomes required: events already accepted may lack it. Keep it optional"
                ))
            }
            (false, true) => changes.push(format!("make field `{name}` optional")),
            _ => {}
        }
    }
    for now in new.fields() {
        if old.field_with_name(now.name()).is_ok() {
            continue;
        }
        if !now.is_nullable() {
            return Err(format!(
                "new field `{}` is required: events already accepted lack it. Add it as optional",
                now.name()
            ));
        }
        changes.push(format!(
            "add optional field `{}` ({})",
            now.name(),
            now.data_type()
        ));
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::Field;

    use super::*;

    fn schema(fields: Vec<Field>) -> Schema {
        Schema::new(fields)
    }

    #[test]
    fn what_old_events_fit_is_a_change_in_place_and_nothing_else() {
        let old = schema(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int32, true),
            Field::new("x", DataType::Float32, false),
        ]);
        let new = schema(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
            Field::new("tag", DataType::Utf8, true),
        ]);
        assert_eq!(
            changes(&old, &new).unwrap(),
            vec![
                "widen field `n` from Int32 to Int64",
                "widen field `x` from Float32 to Float64",
                "make field `x` optional",
                "add optional field `tag` (Utf8)",
            ]
        );
        assert_eq!(changes(&old, &old).unwrap(), Vec::<String>::new());
        let refused = |fields: Vec<Field>| changes(&old, &schema(fields)).unwrap_err();
        let gone = refused(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int32, true),
        ]);
        assert!(gone.contains("field `x` is gone"), "{gone}");
        let narrowed = refused(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int32, true),
            Field::new("x", DataType::Int32, false),
        ]);
        assert!(narrowed.contains("from Float32 to Int32"), "{narrowed}");
        let required = refused(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int32, false),
            Field::new("x", DataType::Float32, false),
        ]);
        assert!(required.contains("`n` becomes required"), "{required}");
        let new_required = refused(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int32, true),
            Field::new("x", DataType::Float32, false),
            Field::new("must", DataType::Utf8, false),
        ]);
        assert!(
            new_required.contains("new field `must` is required"),
            "{new_required}"
        );
    }
}
