//! DinoNAT's tensor engine: tensors with views, reverse-mode autodiff, and ops built on
//! `dinonat-kernels`.

pub use dinonat_kernels as kernels;
