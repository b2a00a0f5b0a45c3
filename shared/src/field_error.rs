//! One problem in a validated document (the fleet file, a manifest), named by its path so
//! that every problem can be reported at once and fixed in one pass.

use std::fmt;

/// One validation problem, named by its path (e.g. `regions[1].name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the offending field.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}
