"""Repository-wide pytest set-up.

Sets ``MINIDET_FAST=1`` before anything runs, so the lessons executed by nbval (their kernels inherit
this environment) shrink training to seconds while still running every cell.
"""
import os

os.environ.setdefault("MINIDET_FAST", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
