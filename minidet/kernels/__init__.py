"""Hand-written GPU kernels (Triton). Each module here imports Triton and is loaded lazily by the
PyTorch code that uses it, which keeps a working CPU fallback: :mod:`minidet.kernels.focal_triton` is
used by :func:`minidet.losses.fused_sigmoid_focal_loss`."""
