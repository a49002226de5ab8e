//! Execution: plans, sessions and the thread pool.

pub mod batch;
pub mod concat;
pub mod plan;
pub mod pool;
pub mod session;

pub use session::{Session, SessionOptions};
