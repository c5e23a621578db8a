#!/usr/bin/env bash
# Placeholder until the CUDA sources land.
echo "nvrtc-check: no CUDA sources yet"
