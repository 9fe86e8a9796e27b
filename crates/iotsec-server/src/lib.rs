//! iotsec-server: the ingest. (In progress: storage first.)

pub mod error;
pub mod ingest;
pub mod store;

pub use error::ServerError;
