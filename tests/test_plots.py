"""Pure plotting functions: the figure shows the numbers it was given."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

from mnist_cnn import compare_chart, plots, plots_explain, plots_style
from mnist_cnn import plots_mosaics as mosaics

NAMES = [str(k) for k in range(10)]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_filter_grid_shows_each_kernel_on_a_zero_centred_scale():
    rng = np.random.default_rng(0)
    kernels = rng.normal(size=(32, 3, 3))
    kernels[5, 1, 1] = 4.0  # the largest magnitude sets the shared scale
    fig = mosaics.filter_grid(kernels, "conv1")
    [image] = [im for ax in fig.axes for im in ax.images]
    shown = np.asarray(image.get_array().filled(np.nan))
    assert shown.shape == (4 * 4 - 1, 8 * 4 - 1)  # 4 rows x 8 columns of 3x3, 1-pixel gaps
    for k, kernel in enumerate(kernels):
        r, c = divmod(k, 8)
        np.testing.assert_array_equal(shown[4 * r : 4 * r + 3, 4 * c : 4 * c + 3], kernel)
    assert image.get_clim() == (-4.0, 4.0)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["0", "8", "16", "24"]


def test_feature_maps_scale_each_map_to_its_own_maximum():
    maps = np.stack([np.full((5, 5), 2.0), np.zeros((5, 5)), np.eye(5) * 7])
    [image] = [im for ax in mosaics.feature_maps(maps, "x").axes for im in ax.images]
    shown = np.asarray(image.get_array().filled(np.nan))
    assert np.nanmax(shown[:5, :5]) == 1.0 and np.nanmax(shown[:5, 6:11]) == 0.0
    np.testing.assert_array_equal(shown[:5, 12:17], np.eye(5))


def test_confusion_matrix_title_counts_and_cells():
    cm = np.diag([5] * 10)
    cm[4, 9] = 3
    fig = plots.confusion_matrix(cm, NAMES, errors=False)
    ax = fig.axes[0]
    assert ax.get_title() == "Confusion matrix (counts)\n50 of 53 correct"
    texts = {t.get_text() for t in ax.texts}
    assert {"5", "3", "0"} <= texts and not any("." in t for t in texts)  # integers
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true"
    errors = plots.confusion_matrix(cm, NAMES, errors=True).axes[0]
    # the errors alone: 3 of the 8 true 4s read as 9 is 37.5%; nothing else is written
    assert {t.get_text() for t in errors.texts} == {"37.5"}
    assert errors.get_title() == "Errors by true class: 3 of 53 digits misread"
    rows = [t.get_text() for t in errors.get_yticklabels()]
    assert rows[4] == "4 (37.5%)" and rows[0] == "0 (0.0%)"
    shown = errors.images[0].get_array()
    assert np.isnan(np.asarray(shown, dtype=float)[4, 4]) or np.ma.is_masked(shown[4, 4])


def _captions(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_labelled_images_titles_and_empty_case():
    images = np.zeros((2, 1, 28, 28), np.uint8)
    fig = plots.labelled_images(images, [4, 7], [9, 1], [0.5, 0.987], NAMES, "mistakes")
    assert _captions(fig) == ["true 4\npred 9 50%", "true 7\npred 1 99%"]
    assert [t.get_text() for t in fig.texts] == ["mistakes"]
    assert len([im for ax in fig.axes for im in ax.images]) == 2
    empty = plots.labelled_images(images[:0], [], [], [], NAMES, "none here")
    assert _captions(empty) == ["none"] and not empty.axes[0].images


def test_attributions_one_row_per_digit_each_map_on_its_rows_scale():
    rng = np.random.default_rng(1)
    images = rng.random((2, 1, 28, 28))
    maps = [(rng.normal(size=(1, 28, 28)), 3 * rng.normal(size=(1, 28, 28))) for _ in range(2)]
    fig = plots_explain.attributions(images, maps, [4, 7], [9, 1], [4, 2], NAMES)
    assert _captions(fig) == ["true 4", "answer 9", "runner-up 4", "true 7", "answer 1",
                              "runner-up 2"]  # fmt: skip
    shown = fig.axes[0].images
    for row, (toward, other) in enumerate(maps):
        digit, answer, runner_up = shown[3 * row : 3 * row + 3]
        np.testing.assert_array_equal(digit.get_array(), images[row, 0])
        np.testing.assert_array_equal(answer.get_array(), toward[0])
        limit = max(np.abs(toward).max(), np.abs(other).max())
        assert answer.get_clim() == runner_up.get_clim() == (-limit, limit)
    assert _captions(plots_explain.attributions(images[:0], [], [], [], [], NAMES)) == [
        "no mistakes"]  # fmt: skip


def _nothing_overlaps_or_leaves_the_page(fig) -> None:
    """Every visible text and image of the drawn figure inside it, no two of them meeting."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    page = fig.bbox
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    ticks = {id(t) for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels()}
    for text in texts:  # and each readable on a card: captions and titles as titles are
        least = plots_style.MIN_TICK_PX if id(text) in ticks else plots_style.MIN_PX
        assert plots_style.card_px(fig, text.get_fontsize()) >= least - 1e-6, text.get_text()
    boxes = [t.get_window_extent(renderer) for t in texts]
    boxes += [im.get_window_extent(renderer) for ax in fig.axes for im in ax.images]
    for box in boxes:
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0, box
        assert box.y1 <= page.y1, box
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (a, b)


@pytest.mark.parametrize("seed", range(4))
def test_laid_out_figures_never_overlap_their_texts_the_images_or_the_edge(seed):
    """The figures laid out by arithmetic, from generated inputs: class names from one letter to
    twice Fashion-MNIST's longest (too long for four columns on a card: fewer are drawn), 0-12
    mistakes, 1-64 kernels or maps of any scale, titles of one and two lines and too long for
    one: every text readable on a card, none over another or an image, all inside the figure."""
    rng = np.random.default_rng(seed)
    names = ["".join(rng.choice(list("abcdefg hijk/-"), int(rng.integers(1, 41)))).strip() or "x"
             for _ in range(10)]  # fmt: skip
    n = int(rng.integers(0, 13))
    true, pred = rng.integers(0, 10, n), rng.integers(0, 10, n)
    k, side = int(rng.integers(1, 65)), int(rng.integers(3, 27))
    scale = float(10.0 ** rng.uniform(-4, 2))
    title = "conv2 activations (after ReLU) for test digit #0 (7)" + "\n(scaled)" * (seed % 2)
    title += " and a title far longer than any card can show on one line" * (seed % 3 == 2)
    figures = [
        plots.labelled_images(rng.random((n, 1, 28, 28)), true, pred, rng.random(n), names, "m"),
        plots.sample_grid(rng.random((10, 28, 28)), list(range(10)), names),
        mosaics.filter_grid(scale * rng.normal(size=(k, 3, 3)), f"conv1 kernels after {k} epochs"),
        mosaics.feature_maps(rng.random((k, side, side)), title, rng.random((28, 28)), "input\n#0"),
    ]
    for fig in figures:
        _nothing_overlaps_or_leaves_the_page(fig)


def test_learning_curves_two_panels_one_point_per_epoch():
    history = {"train/acc": [0.9, 0.95], "val/acc": [0.92, 0.96], "train/loss": [0.3, 0.1]}
    fig = plots.learning_curves(history)
    acc, loss = fig.axes
    assert [len(line.get_xdata()) for line in acc.lines] == [2, 2]
    assert len(loss.lines) == 1 and list(loss.lines[0].get_xdata()) == [1, 2]


def test_sample_grid_and_class_distribution():
    fig = plots.sample_grid(np.zeros((10, 1, 28, 28)), list(range(10)), NAMES)
    assert _captions(fig) == NAMES
    counts = {"train": np.arange(10), "test": np.ones(10)}
    bars = plots.class_distribution(counts, NAMES).axes[0]
    assert len(bars.patches) == 20
    assert [t.get_text() for t in bars.get_legend().get_texts()] == ["train (n=45)", "test (n=10)"]


@pytest.mark.parametrize("n", [1, 2, 7, 20])
def test_the_comparison_chart_scales_from_one_group_to_twenty_with_short_labels(n):
    """Generated group names as compare.py makes them (full keys, every digit of a float): the
    chart has one row per group, labels shortened and rounded, none broken mid-word."""
    import random

    rng = random.Random(n)
    groups = {}
    for i in range(n):
        lr, values = rng.uniform(1e-4, 1e-2), [0.98 + rng.uniform(0, 0.01) for _ in range(3)]
        mean = sum(values) / 3
        groups[f"optimizer.lr={lr!r}, data.batch_size={32 * (i + 1)}"] = {
            "values": values, "mean": mean, "ci95": [mean - 0.001, mean + 0.001]}  # fmt: skip
    ax = compare_chart.group_comparison(groups).axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == n and all("\n" not in t and len(t) <= 48 for t in labels)
    for label, name in zip(labels, groups, strict=True):
        lr = float(name.split(",")[0].split("=")[1])
        assert label.startswith(f"lr={lr:.3g}, batch_size=")


def test_short_labels_keep_full_names_where_short_ones_would_merge():
    assert compare_chart.short_labels(["a.lr=0.0015751320499779737", "a.lr=0.001"]) == [
        "lr=0.00158", "lr=0.001"]  # fmt: skip
    merged = ["optimizer.lr=0.001", "scheduler.lr=0.001"]
    assert compare_chart.short_labels(merged) == merged


def _every_card_figure(rng, n_classes: int):
    """Each figure a run logs to TensorBoard, from generated inputs of n_classes classes."""
    names = [f"c{k}" * int(rng.integers(1, 4)) for k in range(n_classes)]
    cm = rng.integers(0, 50, size=(n_classes, n_classes)) + np.diag(
        rng.integers(500, 900, n_classes)
    )
    images = rng.random((n_classes, 1, 28, 28))
    epochs = int(rng.integers(1, 30))
    history = {
        f"{s}/{m}": list(rng.random(epochs)) for s in ("train", "val") for m in ("acc", "loss")
    }
    wrong = int(rng.integers(0, 13))
    labels = rng.integers(0, n_classes, wrong)
    maps = [(rng.normal(size=(1, 28, 28)), rng.normal(size=(1, 28, 28))) for _ in range(wrong)]
    return {
        "samples": plots.sample_grid(images, list(range(n_classes)), names),
        "class_distribution": plots.class_distribution(
            {
                "train": rng.integers(100, 6000, n_classes),
                "test": rng.integers(10, 1000, n_classes),
            },
            names,
        ),
        "curves": plots.learning_curves(history),
        "filters": mosaics.filter_grid(rng.normal(size=(int(rng.integers(8, 65)), 3, 3)), "conv1"),
        "norms": plots.heatmap(rng.random((64, 32)), "conv2 norms", "in", "out"),
        "features": mosaics.feature_maps(rng.random((32, 26, 26)), "conv1", images[0], "input"),
        "counts": plots.confusion_matrix(cm, names, errors=False),
        "errors": plots.confusion_matrix(cm, names, errors=True),
        "mistakes": plots.labelled_images(
            images[:wrong], labels, labels, rng.random(wrong), names, "mistakes"
        ),
        "attributions": plots_explain.attributions(
            images[: min(wrong, 6)], maps[:6], labels[:6], labels[:6], labels[:6], names
        ),
    }


@pytest.mark.parametrize("draw", range(3))
def test_every_dashboard_figure_reads_at_card_size(draw):
    """Drawn, then scaled to a TensorBoard card: no title, label or legend under MIN_PX pixels,
    no tick label or cell number under MIN_TICK_PX (10 classes, and Fashion-length names)."""
    rng = np.random.default_rng(draw)
    for name, fig in _every_card_figure(rng, 10).items():
        fig.draw_without_rendering()
        small = {id(t) for ax in fig.axes for t in ax.texts}
        for ax in fig.axes:
            small |= {id(t) for t in ax.get_xticklabels() + ax.get_yticklabels()}
        for text in fig.findobj(Text):
            if not text.get_visible() or not text.get_text().strip():
                continue
            least = plots_style.MIN_TICK_PX if id(text) in small else plots_style.MIN_PX
            px = plots_style.card_px(fig, text.get_fontsize())
            assert px >= least - 1e-6, (
                f"{name}: {text.get_text()!r} is {px:.1f} px on a card, under {least}"
            )
