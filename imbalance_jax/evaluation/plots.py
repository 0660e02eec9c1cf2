"""PNG figures of a run: confusion matrix and 2-D embedding scatter.

Figures are drawn on matplotlib's Agg canvas directly (`matplotlib.figure.Figure` +
`FigureCanvasAgg`), without pyplot: no global backend switch, no open-figure registry, safe to call
from training code and from headless machines.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

__all__ = ["draw_confusion_matrix", "draw_embedding", "plot_confusion_matrix", "plot_embedding"]

_ANNOTATE_MAX_CLASSES = 20
_TICK_LABELS_MAX_CLASSES = 40
_LEGEND_MAX_CLASSES = 30


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
