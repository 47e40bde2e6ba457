//! The translator's states: which top-level member a value is, where in the document the
//! next byte falls, and whether a byte is done with.

/// Which top-level member a value belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Schema,
    Results,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Before the top-level `{`.
    Start,
    /// After `{`: a key or `}`.
    FirstKey,
    /// After `,`: a key.
    Key,
    /// Inside a top-level key.
    InKey,
    /// After a key: `:`.
    Colon,
    /// After `:`: the value.
    Value,
    /// Inside a dropped string value.
    SkipString,
    /// Inside a dropped object or array.
    SkipContainer,
    /// Inside a dropped number or literal.
    SkipScalar,
    /// After `"schema": [`: an entry or `]`.
    SchemaFirst,
    /// Inside a schema entry.
    SchemaEntry,
    /// After a schema entry: `,` or `]`.
    SchemaAfter,
    /// After a `,` in the schema: an entry.
    SchemaNext,
    /// Inside the results array (passed through).
    Results,
    /// After a top-level value: `,` or `}`.
    AfterValue,
    /// After the top-level `}`: whitespace only.
    Done,
    /// An error was returned.
    Failed,
}

/// After a byte: go on to the next, or give the same byte to the new state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Next,
    Again,
}
