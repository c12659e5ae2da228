//! Execution: the tensor-op interface blocks are written against, and (on dfdx) the
//! executor that runs a checked net.

pub mod ops;
