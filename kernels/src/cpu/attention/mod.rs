//! Full self-attention on the CPU with O(N) memory (flash style). Math: docs/attention.md.
