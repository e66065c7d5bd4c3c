//! Herald's contact book without a request (docs/contacts.md, docs/decisions/0070).
//!
//! - [`book`]: writing contacts, one or many at once, through the event store's bulk paths.
//! - [`csv_file`]: reading a contacts CSV as it arrives, in bounded batches.
//! - [`import`]: a streamed import: the CSV read and applied batch by batch, in file order.
//! - [`error`]: [`ContactsError`], what the HTTP crate turns into answers.
pub mod book;
pub mod csv_file;
pub mod error;
pub mod import;

pub use error::ContactsError;
