//! Whose fault a DataFusion error is: one rule for pipeline SQL (is a
//! failed row the data's fault, to be set aside, or the machine's, to be
//! retried?) and for queries (400 or 503?). Before, the two classified
//! apart and disagreed: an `Execution` error (a function refusing a
//! value) was the data's fault to pipelines and the store's to queries.

use arrow::error::ArrowError;
use datafusion::error::DataFusionError;

/// See the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The statement: it does not parse, plan or fit the schema.
    Statement,
    /// A value: a cast that fails, a division by zero, a function that
    /// refuses its argument. Trying again fails the same way.
    Data,
    /// A memory or spill limit.
    Resources,
    /// The machine: I/O, a data file that does not read, the object store
    /// or catalog, a task that died.
    Machine,
}

impl Fault {
    /// Whether trying again could succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, Fault::Resources | Fault::Machine)
    }
}

/// Whose fault `e` is (by its root cause).
pub fn fault(e: &DataFusionError) -> Fault {
    match e.find_root() {
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_) => Fault::Statement,
        DataFusionError::ResourcesExhausted(_) => Fault::Resources,
        DataFusionError::ArrowError(a, _) => match **a {
            ArrowError::MemoryError(_) => Fault::Resources,
            ArrowError::IoError(..) | ArrowError::ExternalError(_) => Fault::Machine,
            _ => Fault::Data,
        },
        DataFusionError::IoError(_)
        | DataFusionError::ParquetError(_)
        | DataFusionError::ObjectStore(_)
        | DataFusionError::ExecutionJoin(_)
        | DataFusionError::External(_) => Fault::Machine,
        _ => Fault::Data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_has_one_fault() {
        let io = || std::io::Error::other("disk");
        for (e, expected) in [
            (DataFusionError::Plan("no column".into()), Fault::Statement),
            (DataFusionError::Execution("refused".into()), Fault::Data),
            (
                DataFusionError::ArrowError(Box::new(ArrowError::CastError("x".into())), None),
                Fault::Data,
            ),
            (
                DataFusionError::ArrowError(Box::new(ArrowError::MemoryError("m".into())), None),
                Fault::Resources,
            ),
            (
                DataFusionError::ResourcesExhausted("pool".into()),
                Fault::Resources,
            ),
            (DataFusionError::IoError(io()), Fault::Machine),
            (DataFusionError::External(Box::new(io())), Fault::Machine),
            (
                DataFusionError::Context("ctx".into(), Box::new(DataFusionError::IoError(io()))),
                Fault::Machine,
            ),
        ] {
            assert_eq!(fault(&e), expected, "{e}");
        }
    }
}
