//! Ops, one file per family; each file holds forward and backward side by side with the shapes.

mod attention;
mod binary;
mod conv;
mod drop_path;
mod matmul;
mod neighborhood_attention;
mod norm;
mod reduce;
pub(crate) mod shape;
mod softmax;
mod unary;
