"""Plots and ipywidgets explorers for the lessons: boxes and samples, anchors and assignment,
training curves, focal-loss curves. Everything draws with matplotlib on a given ``Axes`` where it can."""
from minidet.viz.anchors import anchors_of_cell, draw_anchors, plot_delta_histograms, plot_iou_heatmap, plot_per_level
from minidet.viz.boxes import class_color, draw_detections, level_edges, plot_class_counts, plot_size_histogram, show_samples
from minidet.viz.focal import focal_curves, focal_loss_explorer, plot_focal_loss
from minidet.viz.training import plot_level_losses, plot_loss_components, plot_lr, plot_pos_neg_per_level

__all__ = [
    "anchors_of_cell", "class_color", "draw_anchors", "draw_detections", "focal_curves", "focal_loss_explorer",
    "level_edges", "plot_class_counts", "plot_delta_histograms", "plot_focal_loss", "plot_iou_heatmap",
    "plot_level_losses", "plot_loss_components", "plot_lr", "plot_per_level", "plot_pos_neg_per_level",
    "plot_size_histogram", "show_samples",
]
