//! The Arrow builders a batch is decoded into: one [`Col`] per schema field,
//! nested as the field types nest ([`ListCol`] for lists, [`StructCol`] for
//! structs and for the event itself). They know how to append a null and how
//! to finish into arrays; filling them from JSON is `parse.rs`.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder, Int32Builder,
    Int64Builder, ListArray, NullBufferBuilder, StringBuilder, StructArray,
    TimestampMicrosecondBuilder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{FieldRef, Fields};

use crate::schema::{arrow_fields, list_element, FieldDef, FieldType, TimestampUnit, UTC};
use crate::{Error, Result};

pub(super) enum Col {
    Utf8(StringBuilder),
    Json(StringBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Bool(BooleanBuilder),
    Timestamp(TimestampMicrosecondBuilder, TimestampUnit),
    Binary(BinaryBuilder),
    List(Box<ListCol>),
    Struct(Box<StructCol>),
}

pub(super) struct ListCol {
    element: FieldRef,
    pub(super) item: Col,
    pub(super) offsets: Vec<i32>,
    pub(super) nulls: NullBufferBuilder,
}

pub(super) struct StructCol {
    fields: Fields,
    pub(super) children: Vec<Child>,
    pub(super) nulls: NullBufferBuilder,
    /// `seen[i] == generation` when child `i` was set in the current object.
    pub(super) seen: Vec<u32>,
    pub(super) generation: u32,
}

pub(super) struct Child {
    pub(super) name: String,
    pub(super) required: bool,
    pub(super) col: Col,
}

impl Col {
    fn new(ty: &FieldType) -> Self {
        match ty {
            FieldType::String => Col::Utf8(StringBuilder::new()),
            FieldType::Json => Col::Json(StringBuilder::new()),
            FieldType::Int32 => Col::Int32(Int32Builder::new()),
            FieldType::Int64 => Col::Int64(Int64Builder::new()),
            FieldType::Float32 => Col::Float32(Float32Builder::new()),
            FieldType::Float64 => Col::Float64(Float64Builder::new()),
            FieldType::Bool => Col::Bool(BooleanBuilder::new()),
            FieldType::Timestamp { unit } => {
                Col::Timestamp(TimestampMicrosecondBuilder::new().with_timezone(UTC), *unit)
            }
            FieldType::Binary => Col::Binary(BinaryBuilder::new()),
            FieldType::List { items } => Col::List(Box::new(ListCol {
                element: list_element(items),
                item: Col::new(&items.ty),
                offsets: vec![0],
                nulls: NullBufferBuilder::new(0),
            })),
            FieldType::Struct { fields } => Col::Struct(Box::new(StructCol::new(fields))),
        }
    }

    pub(super) fn append_null(&mut self) {
        match self {
            Col::Utf8(b) | Col::Json(b) => b.append_null(),
            Col::Int32(b) => b.append_null(),
            Col::Int64(b) => b.append_null(),
            Col::Float32(b) => b.append_null(),
            Col::Float64(b) => b.append_null(),
            Col::Bool(b) => b.append_null(),
            Col::Timestamp(b, _) => b.append_null(),
            Col::Binary(b) => b.append_null(),
            Col::List(l) => {
                let end = *l.offsets.last().expect("offsets start with 0");
                l.offsets.push(end);
                l.nulls.append_null();
            }
            Col::Struct(s) => {
                for child in &mut s.children {
                    child.col.append_null();
                }
                s.nulls.append_null();
            }
        }
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        Ok(match self {
            Col::Utf8(b) | Col::Json(b) => Arc::new(b.finish()),
            Col::Int32(b) => Arc::new(b.finish()),
            Col::Int64(b) => Arc::new(b.finish()),
            Col::Float32(b) => Arc::new(b.finish()),
            Col::Float64(b) => Arc::new(b.finish()),
            Col::Bool(b) => Arc::new(b.finish()),
            Col::Timestamp(b, _) => Arc::new(b.finish()),
            Col::Binary(b) => Arc::new(b.finish()),
            Col::List(l) => {
                let offsets = OffsetBuffer::new(std::mem::replace(&mut l.offsets, vec![0]).into());
                let values = l.item.finish()?;
                Arc::new(
                    ListArray::try_new(l.element.clone(), offsets, values, l.nulls.finish())
                        .map_err(|e| Error::Internal(format!("building a list column: {e}")))?,
                )
            }
            Col::Struct(s) => Arc::new(s.finish()?),
        })
    }
}

impl StructCol {
    pub(super) fn new(fields: &[FieldDef]) -> Self {
        StructCol {
            fields: arrow_fields(fields),
            children: fields
                .iter()
                .map(|f| Child {
                    name: f.name.clone(),
                    required: f.required,
                    col: Col::new(&f.ty),
                })
                .collect(),
            nulls: NullBufferBuilder::new(0),
            seen: vec![0; fields.len()],
            generation: 0,
        }
    }

    pub(super) fn columns(&mut self) -> Result<Vec<ArrayRef>> {
        self.children.iter_mut().map(|c| c.col.finish()).collect()
    }

    fn finish(&mut self) -> Result<StructArray> {
        let columns = self.columns()?;
        StructArray::try_new(self.fields.clone(), columns, self.nulls.finish())
            .map_err(|e| Error::Internal(format!("building a struct column: {e}")))
    }
}
