"""PNG figures of a run: confusion matrix, 2-D embedding scatter, reliability diagram and long-tail plot.

Figures are drawn on matplotlib's Agg canvas directly (`matplotlib.figure.Figure` +
`FigureCanvasAgg`), without pyplot: no global backend switch, no open-figure registry, safe to call
from training code and from headless machines.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

__all__ = [
    "draw_confusion_matrix", "draw_embedding", "draw_long_tail", "draw_reliability_diagram", "plot_confusion_matrix",
    "plot_embedding", "plot_long_tail", "plot_reliability_diagram",
]

_ANNOTATE_MAX_CLASSES = 20
_TICK_LABELS_MAX_CLASSES = 40
_LEGEND_MAX_CLASSES = 30
_MAX_COUNT_TICKS = 6   # long-tail plot: at most this many distinct counts become the x ticks
_LABEL_GAP = 0.04      # long-tail plot: least vertical distance between two class names (recall units)


def _save(fig: Figure, path: "str | os.PathLike[str]") -> None:
    """Writes `fig` as PNG, creating the parent folder if needed."""
    folder = os.path.dirname(os.fspath(path))
    if folder:
        os.makedirs(folder, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(os.fspath(path), format="png", dpi=120, bbox_inches="tight")


def _check_class_names(class_names: Optional[Sequence[str]], num_classes: int) -> Optional[list]:
    if class_names is None:
        return None
    names = [str(n) for n in class_names]
    if len(names) < num_classes:
        raise ValueError(
            f"class_names must name every class ({num_classes}), got {len(names)} names."
        )
    return names


def plot_confusion_matrix(
    confusion: Any,
    path: "str | os.PathLike[str]",
    *,
    class_names: Optional[Sequence[str]] = None,
    title: Optional[str] = None,
    normalize: bool = True,
) -> None:
    """Saves a confusion-matrix heat map (rows = true class, columns = predicted) as PNG.

    With `normalize=True` the colours show each row divided by its total (per-class recall on the
    diagonal; an all-zero row stays 0); otherwise raw counts. When C ≤ 20 every cell is annotated
    with its count.
    """
    num_classes = np.shape(confusion)[0] if np.ndim(confusion) == 2 else 0
    side = float(np.clip(0.45 * num_classes + 2.5, 4.0, 16.0))
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.add_subplot()
    image, colour_label = draw_confusion_matrix(ax, confusion, class_names=class_names, title=title,
                                                normalize=normalize)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=colour_label)
    _save(fig, path)


def draw_confusion_matrix(
    ax: Any,
    confusion: Any,
    *,
    class_names: Optional[Sequence[str]] = None,
    title: Optional[str] = None,
    normalize: bool = True,
) -> tuple[Any, str]:
    """Draws the heat map of :func:`plot_confusion_matrix` on ``ax`` (for figures with several panels);
    returns the image and its colour-bar label."""
    conf = np.asarray(confusion)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1] or conf.shape[0] < 1:
        raise ValueError(f"confusion must be a non-empty square [C, C] matrix, got shape {conf.shape}.")
    conf = conf.astype(np.float64)
    num_classes = conf.shape[0]
    names = _check_class_names(class_names, num_classes)
    if normalize:
        row_sums = conf.sum(axis=1, keepdims=True)
        shown = np.divide(conf, row_sums, out=np.zeros_like(conf), where=row_sums > 0)
        colour_label, vmax = "fraction of true class", 1.0
    else:
        shown = conf
        colour_label, vmax = "count", max(float(conf.max()), 1.0)

    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title if title is not None else "Confusion matrix")
    if num_classes <= _TICK_LABELS_MAX_CLASSES:
        ticks = np.arange(num_classes)
        labels = names[:num_classes] if names is not None else [str(t) for t in ticks]
        ax.set_xticks(ticks, labels=labels, rotation=90 if names is not None else 0)
        ax.set_yticks(ticks, labels=labels)
    if num_classes <= _ANNOTATE_MAX_CLASSES:
        for row in range(num_classes):
            for col in range(num_classes):
                dark = shown[row, col] > 0.5 * vmax
                ax.text(col, row, f"{int(round(conf[row, col]))}", ha="center", va="center",
                        fontsize=8, color="white" if dark else "black")
    return image, colour_label


def _project_2d(features: np.ndarray) -> tuple[np.ndarray, tuple[str, str]]:
    """Maps [N, D] features to [N, 2]: identity for D = 2, zeros as y for D = 1, PCA for D > 2."""
    dim = features.shape[1]
    if dim == 1:
        return np.concatenate([features, np.zeros_like(features)], axis=1), ("feature 1", "0")
    if dim == 2:
        return features, ("feature 1", "feature 2")
    centred = features - features.mean(axis=0, keepdims=True)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:2]
    if components.shape[0] < 2:  # a single point: SVD yields one direction only
        components = np.concatenate([components, np.zeros((2 - components.shape[0], dim))], axis=0)
    variance = singular**2
    share = variance / variance.sum() if variance.sum() > 0 else np.zeros_like(variance)
    share = np.concatenate([share, np.zeros(2)])[:2]
    axis_names = tuple(f"PC {k + 1} ({100.0 * share[k]:.1f}% var.)" for k in range(2))
    return centred @ components.T, axis_names  # type: ignore[return-value]


def _class_colours(num_classes: int) -> ListedColormap:
    if num_classes <= 10:
        return ListedColormap(colormaps["tab10"].colors[:num_classes])
    if num_classes <= 20:
        return ListedColormap(colormaps["tab20"].colors[:num_classes])
    return ListedColormap(colormaps["turbo"](np.linspace(0.0, 1.0, num_classes)))


def plot_embedding(
    features: Any,
    labels: Any,
    path: "str | os.PathLike[str]",
    *,
    class_names: Optional[Sequence[str]] = None,
    title: Optional[str] = None,
    max_points: int = 5000,
) -> None:
    """Saves a 2-D scatter of embeddings coloured by class as PNG.

    D = 2 is plotted as is, D = 1 against zeros, D > 2 after PCA to 2-D (numpy SVD of the centred
    features, explained variance on the axes). At most `max_points` points are drawn, a uniform
    random subset fixed by seed 0 (PCA is fitted on that subset). Rows with non-finite features
    (e.g. a diverged run) are dropped and counted in the title. A legend names the classes when
    there are at most 30 of them, otherwise a colour bar shows the class index.
    """
    feats = np.asarray(features, dtype=np.float64)
    labs = np.asarray(labels)
    if feats.ndim != 2 or feats.shape[1] < 1:
        raise ValueError(f"features must be float[N, D] with D >= 1, got shape {feats.shape}.")
    if labs.ndim != 1 or labs.shape[0] != feats.shape[0]:
        raise ValueError(f"labels must be int[N] with N = {feats.shape[0]}, got shape {labs.shape}.")
    if labs.size and (not np.issubdtype(labs.dtype, np.integer) or labs.min() < 0):
        raise ValueError("labels must be non-negative integers.")
    if not isinstance(max_points, (int, np.integer)) or max_points < 1:
        raise ValueError(f"max_points must be a positive int, got {max_points!r}.")
    num_classes = int(labs.max()) + 1 if labs.size else 0
    if class_names is not None:
        num_classes = max(num_classes, len(class_names))
    names = _check_class_names(class_names, num_classes)

    finite = np.all(np.isfinite(feats), axis=1)
    dropped = int((~finite).sum())
    feats, labs = feats[finite], labs[finite]
    if feats.shape[0] > max_points:
        keep = np.sort(np.random.default_rng(0).choice(feats.shape[0], max_points, replace=False))
        feats, labs = feats[keep], labs[keep]

    fig = Figure(figsize=(7.5, 6.0))
    ax = fig.add_subplot()
    heading = title if title is not None else "Embedding"
    if dropped:
        heading += f" ({dropped} non-finite rows dropped)"
    scatter = draw_embedding(ax, feats, labs, num_classes, names=names, title=heading)
    if scatter is not None:
        fig.colorbar(scatter, ax=ax, label="class")
    _save(fig, path)


def draw_embedding(ax: Any, feats: np.ndarray, labs: np.ndarray, num_classes: int, *,
                   names: Optional[Sequence[str]] = None, title: str = "Embedding") -> Any:
    """Draws the scatter of :func:`plot_embedding` on ``ax`` for already checked, finite, subsampled
    ``feats`` [N, D] and ``labs`` [N]; returns the scatter that needs a colour bar (more classes than
    a legend can name), else None."""
    ax.set_title(title)
    if feats.shape[0] == 0:
        ax.text(0.5, 0.5, "no finite features to plot", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return None

    points, (x_name, y_name) = _project_2d(feats)
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    cmap = _class_colours(num_classes)
    size = float(np.clip(3000.0 / points.shape[0], 4.0, 30.0))
    if num_classes <= _LEGEND_MAX_CLASSES:
        for cls in range(num_classes):
            chosen = labs == cls
            if not np.any(chosen):
                continue
            name = names[cls] if names is not None else str(cls)
            ax.scatter(points[chosen, 0], points[chosen, 1], s=size, color=cmap(cls), alpha=0.7,
                       linewidths=0, label=name)
        ax.legend(title="class", loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8,
                  markerscale=max(1.0, 20.0 / size) ** 0.5, frameon=False)
        return None
    return ax.scatter(points[:, 0], points[:, 1], s=size, c=labs, cmap=cmap, vmin=-0.5,
                      vmax=num_classes - 0.5, alpha=0.7, linewidths=0)


def _optional_floats(values: Any, name: str, length: int) -> list:
    """A length-`length` list of floats in [0, 1] or None (JSON metrics: None = undefined)."""
    if isinstance(values, (str, bytes)) or np.ndim(np.asarray(values, dtype=object)) != 1 or len(values) != length:
        raise ValueError(f"{name} must be a sequence of {length} values (float in [0, 1] or None), got {values!r}.")
    result = []
    for value in values:
        if value is None:
            result.append(None)
            continue
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must hold values in [0, 1] or None, got {value!r}.")
        result.append(value)
    return result


def plot_reliability_diagram(
    calibration: Mapping[str, Any],
    path: "str | os.PathLike[str]",
    *,
    title: Optional[str] = None,
) -> None:
    """Saves the reliability diagram of :func:`imbalance_jax.evaluation.metrics.expected_calibration_error`
    (or the "calibration" entry of `logit_metrics`) as PNG; see :func:`draw_reliability_diagram`."""
    fig = Figure(figsize=(5.5, 5.5))
    draw_reliability_diagram(fig.add_subplot(), calibration, title=title)
    _save(fig, path)


def draw_reliability_diagram(ax: Any, calibration: Mapping[str, Any], *, title: Optional[str] = None) -> Any:
    """Draws a reliability diagram (Guo et al. 2017, Fig. 1, bottom row) on ``ax``.

    One bar per confidence bin with the bin's accuracy (no bar for an empty bin), a hatched bar for
    the gap between that accuracy and the bin's mean confidence, the diagonal of perfect
    calibration, the example count above each bar and the ECE in the title. Returns the
    accuracy bars (a BarContainer; bar m spans bin m).

    Args:
      ax: a matplotlib Axes.
      calibration: dict with "bin_edges" (M + 1 increasing floats in [0, 1]), "bin_accuracy",
        "bin_confidence" (M floats or None), "bin_count" (M ints) and "ece".
      title: heading (default "Reliability diagram"); the ECE and M are appended.
    """
    if not isinstance(calibration, Mapping):
        raise ValueError(f"calibration must be the dict of expected_calibration_error, got {type(calibration).__name__}.")
    missing = [k for k in ("bin_edges", "bin_accuracy", "bin_confidence", "bin_count", "ece") if k not in calibration]
    if missing:
        raise ValueError(f"calibration lacks {missing}; pass the dict of expected_calibration_error.")
    edges = np.asarray(calibration["bin_edges"], dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0) or edges[0] < 0 or edges[-1] > 1:
        raise ValueError(f"calibration['bin_edges'] must be increasing floats in [0, 1], got {edges.tolist()}.")
    num_bins = edges.size - 1
    accuracy = _optional_floats(calibration["bin_accuracy"], "calibration['bin_accuracy']", num_bins)
    confidence = _optional_floats(calibration["bin_confidence"], "calibration['bin_confidence']", num_bins)
    counts = [int(c) for c in calibration["bin_count"]]
    if len(counts) != num_bins:
        raise ValueError(f"calibration['bin_count'] must have {num_bins} entries, got {len(counts)}.")

    lefts, widths = edges[:-1], np.diff(edges)
    heights = [a if a is not None else 0.0 for a in accuracy]
    bars = ax.bar(lefts, heights, width=widths, align="edge", color="tab:blue", edgecolor="black", linewidth=0.6,
                  label="accuracy")
    filled = [m for m in range(num_bins) if accuracy[m] is not None and confidence[m] is not None]
    if filled:
        low = [min(accuracy[m], confidence[m]) for m in filled]
        gap = [abs(confidence[m] - accuracy[m]) for m in filled]
        ax.bar(lefts[filled], gap, width=widths[filled], bottom=low, align="edge", color="tab:red", alpha=0.3,
               edgecolor="tab:red", hatch="//", linewidth=0.6, label="gap to mean confidence")
    for m in filled:
        ax.text(lefts[m] + widths[m] / 2, min(max(accuracy[m], confidence[m]) + 0.01, 0.97), str(counts[m]),
                ha="center", va="bottom", fontsize=6)
    ax.plot([0.0, 1.0], [0.0, 1.0], linestyle="--", color="gray", linewidth=1.0, label="perfect calibration")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("confidence (largest class probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title if title is not None else 'Reliability diagram'} "
                 f"(ECE {float(calibration['ece']):.4f}, {num_bins} bins)")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return bars


def plot_long_tail(
    train_class_counts: Any,
    per_class_recall: Any,
    path: "str | os.PathLike[str]",
    *,
    label: str = "method",
    baseline_recall: Optional[Any] = None,
    baseline_label: str = "baseline",
    many_shot_threshold: Optional[float] = None,
    few_shot_threshold: Optional[float] = None,
    title: Optional[str] = None,
    class_names: Optional[Sequence[str]] = None,
) -> None:
    """Saves the long-tail plot (per-class test recall against training images, log x) as PNG;
    see :func:`draw_long_tail`."""
    fig = Figure(figsize=(7.0, 4.8))
    draw_long_tail(fig.add_subplot(), train_class_counts, per_class_recall, label=label,
                   baseline_recall=baseline_recall, baseline_label=baseline_label,
                   many_shot_threshold=many_shot_threshold, few_shot_threshold=few_shot_threshold, title=title,
                   class_names=class_names)
    _save(fig, path)


def _label_points(ax: Any, xs: Sequence[float], ys: Sequence[float], names: Sequence[str]) -> None:
    """Writes each name beside its point on a log x axis: left of points in the upper half of the x range,
    right of the others. Names at one x are spread to be at least `_LABEL_GAP` apart and kept at or below
    recall 1; a moved name gets a thin line to its point."""
    columns: dict = {}
    for x, y, name in zip(xs, ys, names):
        columns.setdefault(float(x), []).append((float(y), name))
    if not columns:
        return
    middle = np.sqrt(min(columns) * max(columns))
    for x, column in columns.items():
        column.sort()
        placed: list = []
        for y, _ in column:
            placed.append(max(y, placed[-1] + _LABEL_GAP) if placed else y)
        excess = max(0.0, placed[-1] - 1.0)
        left = x > middle
        for (y, name), text_y in zip(column, placed):
            text_y -= excess
            moved = abs(text_y - y) > _LABEL_GAP / 2
            ax.annotate(name, (x, y), xytext=(-7 if left else 7, text_y), textcoords=("offset points", "data"),
                        fontsize=7, va="center", ha="right" if left else "left", color="0.25",
                        arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.5} if moved else None)


def draw_long_tail(
    ax: Any,
    train_class_counts: Any,
    per_class_recall: Any,
    *,
    label: str = "method",
    baseline_recall: Optional[Any] = None,
    baseline_label: str = "baseline",
    many_shot_threshold: Optional[float] = None,
    few_shot_threshold: Optional[float] = None,
    title: Optional[str] = None,
    class_names: Optional[Sequence[str]] = None,
) -> list:
    """Draws per-class test recall against the class's training images (log x), one point per class.

    An optional second series (`baseline_recall`, same class order) puts a baseline or another
    method on the same axes, for "per-class recall against training-class frequency for the method
    and its baseline" figures. Classes with no training image (no place on a log axis) or with
    an undefined recall (None: no test example) are left out, and a note in the corner says how many.
    Dashed vertical lines mark the many/few-shot thresholds when given. With `class_names` and at
    most `_ANNOTATE_MAX_CLASSES` classes, each class's name is written beside its first-series point
    (names in one column of points are moved apart vertically so that they do not overlap). When the
    classes have at most `_MAX_COUNT_TICKS` distinct training counts, the x ticks are those counts.
    Returns the Line2D of each series (method first), whose data are the plotted (count, recall)
    points sorted by count.

    Args:
      ax: a matplotlib Axes.
      train_class_counts: [C] training images per class (non-negative).
      per_class_recall: [C] recalls in [0, 1] or None (e.g. `classification_metrics`'s
        "per_class_recall").
      label, baseline_label: legend names of the two series.
      baseline_recall: optional [C] recalls of the baseline.
      many_shot_threshold, few_shot_threshold: optional group thresholds (classes with more / fewer
        training images are many- / few-shot).
      title: heading (default "Per-class recall vs training images").
      class_names: optional [C] names written beside the first series' points.
    """
    counts = np.asarray(train_class_counts)
    if counts.ndim != 1 or counts.size < 1 or counts.dtype.kind not in "iuf":
        raise ValueError(f"train_class_counts must be a non-empty 1-D array of counts, got shape {counts.shape}.")
    counts = counts.astype(np.float64)
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError(f"train_class_counts must be finite and non-negative, got {counts.tolist()}.")
    num_classes = counts.size
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"class_names must hold one name per class ({num_classes}), got {len(class_names)}.")
    series = [(label, _optional_floats(per_class_recall, "per_class_recall", num_classes), "o", "tab:blue")]
    if baseline_recall is not None:
        series.append((baseline_label, _optional_floats(baseline_recall, "baseline_recall", num_classes), "s",
                       "tab:orange"))
    order = np.argsort(counts, kind="stable")
    lines, shown_by_series = [], []
    left_out = set()
    for name, recall, marker, colour in series:
        shown = [c for c in order if counts[c] > 0 and recall[c] is not None]
        shown_by_series.append(shown)
        left_out |= set(range(num_classes)) - set(shown)
        (line,) = ax.plot(counts[shown], [recall[c] for c in shown], marker=marker, linestyle="none",
                          color=colour, markersize=6, alpha=0.8,
                          markerfacecolor=colour if marker == "o" else "none", label=f"{name} ({len(shown)} classes)")
        lines.append(line)
    for value, text in ((many_shot_threshold, "many-shot: >"), (few_shot_threshold, "few-shot: <")):
        if value is not None and float(value) > 0:
            ax.axvline(float(value), color="gray", linestyle=":", linewidth=1.0)
            ax.text(float(value), 0.5, f" {text} {float(value):g} ", rotation=90, ha="right", va="center",
                    fontsize=7, color="gray", transform=ax.get_xaxis_transform())
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())   # minor labels collide when the counts span < 1 decade
    shown_counts = sorted({float(x) for line in lines for x in line.get_xdata()})
    if 0 < len(shown_counts) <= _MAX_COUNT_TICKS:
        ax.set_xticks(shown_counts, [f"{c:g}" for c in shown_counts])
    if class_names is not None and num_classes <= _ANNOTATE_MAX_CLASSES:
        _label_points(ax, lines[0].get_xdata(), lines[0].get_ydata(), [class_names[c] for c in shown_by_series[0]])
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("training images of the class (log scale)")
    ax.set_ylabel("test recall")
    ax.set_title(title if title is not None else "Per-class recall vs training images")
    if left_out:
        noun = "class" if len(left_out) == 1 else "classes"
        ax.text(0.01, 0.99, f"{len(left_out)} {noun} without training images or test examples not shown",
                ha="left", va="top", fontsize=7, color="gray", transform=ax.transAxes)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return lines
