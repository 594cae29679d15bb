"""Libra R-CNN plots: the sampler explorer."""


def test_sampler_explorer_title_counts_per_image():
    """The explorer pools the candidates of several images; its title says how many negatives each one gets."""
    import matplotlib

    matplotlib.use("Agg")
    import torch

    from minidet.viz.libra import draw_sampler_explorer

    ious = torch.rand(4000) * 0.5
    fig = draw_sampler_explorer(ious, 192 * 16, images=16)
    assert fig.axes[1].get_title().startswith("3072 negatives from 16 images (192 per image)")
    assert draw_sampler_explorer(ious, 192).axes[1].get_title() == "192 negatives from 1 image"
