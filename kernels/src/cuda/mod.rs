//! CUDA kernels: CUDA C sources compiled at run time with NVRTC and launched through cudarc
//! (dynamic loading: nothing here needs CUDA to build). See docs/gpu.md.
