//! One file per command: it parses the command's flags, calls one library function and prints.
//! Argument groups that several commands share are in `crate::args`.

pub mod attention;
pub mod boxes;
pub mod builtin;
pub mod convert;
pub mod crossmodal;
pub mod duplicates;
pub mod embed;
pub mod exemplars;
pub mod export;
pub mod filter;
pub mod info;
pub mod knn;
pub mod linear;
pub mod train;
