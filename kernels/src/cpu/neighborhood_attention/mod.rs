//! 2-D (and 1-D) neighborhood attention on the CPU. Definition: ../shared/docs/neighborhood-attention.md,
//! docs/neighborhood-attention.md.
