//! Tensors: element types, storage, DLPack exchange, `.npy` files.

pub mod dlpack;
pub mod dtype;
pub mod npy;
pub mod storage;
#[allow(clippy::module_inception)]
mod tensor;

pub use dtype::{DType, Element};
pub use storage::Storage;
pub use tensor::{checked_nbytes, checked_numel, Tensor, MAX_RANK};
