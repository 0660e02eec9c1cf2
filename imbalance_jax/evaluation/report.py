"""Text and Markdown summaries of a run: a metrics table for logs and the workdir's report.md."""
from __future__ import annotations

import math
import os
import re
from typing import Any, Iterable, Mapping, Optional, Sequence

from imbalance_jax.evaluation.metrics import imbalance_statistics

__all__ = ["format_metrics_table", "write_report"]

_MISSING = "n/a"
_EMPTY_GROUP = "no class in this group"
# Shot-group metric -> its class list in classification_metrics' "shot_groups".
_SHOT_GROUP_CLASSES = {"many_shot_accuracy": "many_shot_classes", "medium_shot_accuracy": "medium_shot_classes",
                       "few_shot_accuracy": "few_shot_classes"}
_TOP_K = re.compile(r"top_\d+_accuracy")


def _is_scalar(value: Any) -> bool:
    """Scalar metrics are numbers and None; lists, dicts and strings are not tabulated."""
    if value is None or isinstance(value, bool):
        return value is None
    if isinstance(value, (int, float)):
        return True
    return hasattr(value, "ndim") and getattr(value, "ndim") == 0  # numpy / jax 0-d values


def _format_value(value: Any) -> str:
    if value is None:
        return _MISSING
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return str(value)
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.4f}"


def _thresholds_text(groups: Mapping) -> str:
    many, few = groups.get("many_shot_threshold"), groups.get("few_shot_threshold")
    return f"thresholds: many > {_format_threshold(many)}, few < {_format_threshold(few)} training images"


def _format_threshold(value: Any) -> str:
    return _MISSING if value is None else f"{float(value):g}"


def _empty_group(split_metrics: Mapping, name: str) -> Optional[Mapping]:
    """The "shot_groups" entry when metric `name` is a shot-group accuracy whose group has no class."""
    groups = split_metrics.get("shot_groups")
    if name not in _SHOT_GROUP_CLASSES or split_metrics.get(name) is not None or not isinstance(groups, Mapping):
        return None
    classes = groups.get(_SHOT_GROUP_CLASSES[name])
    return groups if isinstance(classes, (list, tuple)) and len(classes) == 0 else None


def _cell(split_metrics: Mapping, name: str, long_empty_text: bool) -> str:
    groups = _empty_group(split_metrics, name)
    if groups is not None:
        return f"{_EMPTY_GROUP} ({_thresholds_text(groups)})" if long_empty_text else _EMPTY_GROUP
    value = split_metrics.get(name, None)
    return _format_value(value) if name in split_metrics and _is_scalar(value) else _MISSING


def _scalar_rows(metrics: Mapping[str, Mapping], long_empty_text: bool = True
                 ) -> tuple[list[str], list[str], list[list[str]]]:
    """(splits, metric names in first-seen order, formatted cells [metric][split]).

    A shot-group accuracy whose group has no class (per the split's "shot_groups") reads "no class
    in this group", with the thresholds when `long_empty_text`, instead of "n/a"."""
    splits = list(metrics)
    names: list[str] = []
    for split in splits:
        for name, value in metrics[split].items():
            if name not in names and _is_scalar(value):
                names.append(name)
    cells = [[_cell(metrics[s], n, long_empty_text) for s in splits] for n in names]
    return splits, names, cells


def _empty_group_notes(metrics: Mapping[str, Mapping]) -> list[str]:
    """One line per distinct threshold setting of the splits that have an empty shot group."""
    notes: list[str] = []
    for values in metrics.values():
        for name in _SHOT_GROUP_CLASSES:
            groups = _empty_group(values, name)
            if groups is not None:
                note = f"{_EMPTY_GROUP}: the shot groups' {_thresholds_text(groups)} (medium: the rest)"
                if note not in notes:
                    notes.append(note)
    return notes


def format_metrics_table(metrics: Mapping[str, Mapping]) -> str:
    """Aligned plain-text table: one row per scalar metric, one column per split.

    `metrics` maps split name -> metrics dict (e.g. `{"val": {...}, "test": {...}}`). Lists and
    other non-scalar values are skipped; a metric missing from a split, or None, shows as "n/a",
    except a many/medium/few-shot accuracy whose group has no class (per the split's "shot_groups"
    from `classification_metrics`): it reads "no class in this group" and a line under the table
    gives the thresholds. Floats are printed with 4 decimals.
    """
    if not isinstance(metrics, Mapping):
        raise ValueError(f"metrics must map split name -> metrics dict, got {type(metrics).__name__}.")
    for split, values in metrics.items():
        if not isinstance(values, Mapping):
            raise ValueError(f"metrics[{split!r}] must be a mapping, got {type(values).__name__}.")
    splits, names, cells = _scalar_rows(metrics, long_empty_text=False)
    header = ["metric", *map(str, splits)]
    rows = [header] + [[name, *row] for name, row in zip(names, cells)]
    widths = [max(len(row[k]) for row in rows) for k in range(len(header))]
    lines = []
    for index, row in enumerate(rows):
        first = row[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        lines.append("  ".join([first, *rest]).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    lines += _empty_group_notes(metrics)
    return "\n".join(lines)


def _md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _markdown_table(header: Sequence[Any], rows: Iterable[Sequence[Any]], align_right_from: int = 1) -> str:
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" if k < align_right_from else "---:" for k in range(len(header))) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_md_escape(cell) for cell in row) + " |")
    return "\n".join(lines)


def _format_duration(seconds: float) -> str:
    seconds = float(seconds)
    if not math.isfinite(seconds) or seconds < 0:
        return _MISSING
    hours, rest = divmod(seconds, 3600.0)
    minutes, secs = divmod(rest, 60.0)
    return f"{seconds:.1f} s ({int(hours)}:{int(minutes):02d}:{secs:04.1f})"


def _split_statistics(
    imbalance: Mapping, class_counts: Mapping[str, Sequence[int]]
) -> dict[str, Mapping]:
    """Per-split imbalance statistics: given ones first, the rest computed from the counts."""
    if "balance_deviation" in imbalance or "imbalance_ratio" in imbalance:
        given: dict[str, Mapping] = {"train": imbalance}
    else:
        given = {str(split): stats for split, stats in imbalance.items()}
        for split, stats in given.items():
            if not isinstance(stats, Mapping):
                raise ValueError(
                    f"imbalance must be one imbalance_statistics() dict or split -> such dict; "
                    f"imbalance[{split!r}] is a {type(stats).__name__}."
                )
    result = dict(given)
    for split, counts in class_counts.items():
        if str(split) not in result and sum(counts) > 0:
            result[str(split)] = imbalance_statistics(counts)
    return result


def _class_count_section(
    class_counts: Mapping[str, Sequence[int]], stats: Mapping[str, Mapping], class_names: list[str]
) -> list[str]:
    splits = list(stats)
    summary_rows = []
    for split in splits:
        entry = stats[split]
        counts = class_counts.get(split)
        minority = entry.get("minority_classes")
        summary_rows.append([
            split,
            _format_value(int(sum(counts))) if counts is not None else _MISSING,
            _format_value(entry.get("num_classes")),
            _format_value(entry["imbalance_ratio"] if entry["imbalance_ratio"] is not None else math.inf)
            if "imbalance_ratio" in entry else _MISSING,
            _format_value(entry.get("balance_deviation")),
            _format_value(len(minority)) if minority is not None else _MISSING,
        ])
    lines = [
        "## Class distribution", "",
        "IR = max ζ / min ζ (inf when a class is empty); BD = balance deviation in [0, 1] "
        "(0 = balanced); m = number of minority classes (ζ_c < 1/K).", "",
        _markdown_table(["split", "images", "K", "IR", "BD", "m"], summary_rows), "",
    ]
    count_splits = list(class_counts)
    if count_splits:
        rows = []
        for index, name in enumerate(class_names):
            row = [name]
            for split in count_splits:
                counts = list(class_counts[split])
                row.append(str(counts[index]) if index < len(counts) else _MISSING)
            rows.append(row)
        lines += [_markdown_table(["class", *count_splits], rows), ""]
    return lines


def _per_class_section(metrics: Mapping[str, Mapping], split: str, class_names: list[str],
                       class_counts: Mapping[str, Sequence[int]]) -> list[str]:
    values = metrics[split]
    precision = values.get("per_class_precision")
    recall = values.get("per_class_recall")
    f1 = values.get("per_class_f1")
    if not all(isinstance(v, (list, tuple)) for v in (precision, recall, f1)):
        return []
    train = class_counts.get("train")
    support = class_counts.get(split)
    header = ["class"] + (["train images"] if train is not None else []) + \
        ([f"{split} images"] if support is not None else []) + ["precision", "recall", "F1"]
    rows = []
    for index in range(len(precision)):
        name = class_names[index] if index < len(class_names) else str(index)
        row = [name]
        if train is not None:
            row.append(str(list(train)[index]) if index < len(train) else _MISSING)
        if support is not None:
            row.append(str(list(support)[index]) if index < len(support) else _MISSING)
        row += [_format_value(precision[index]), _format_value(recall[index] if index < len(recall) else None),
                _format_value(f1[index] if index < len(f1) else None)]
        rows.append(row)
    return [f"## Per-class results ({split})", "",
            "Recall and F1 are n/a for a class without examples in this split.", "",
            _markdown_table(header, rows), ""]


def _metric_notes(metrics: Mapping[str, Mapping], names: Sequence[str]) -> list[str]:
    """Definitions of the metrics from `logit_metrics` that appear in the table."""
    notes = []
    top_k = [n for n in names if _TOP_K.fullmatch(n)]
    if top_k:
        notes.append(f"{', '.join(top_k)}: share of examples whose true class is among the k highest logits.")
    if "expected_calibration_error" in names:
        bins = {v["calibration"].get("num_bins") for v in metrics.values()
                if isinstance(v.get("calibration"), Mapping)}
        bins_text = f"{bins.pop()} " if len(bins) == 1 else ""
        notes.append(f"expected_calibration_error: ECE of the softmax confidences, {bins_text}equal-width bins "
                     "(Guo et al. 2017, Eq. 3); 0 = calibrated.")
    if "g_mean" in names:
        notes.append("g_mean: geometric mean of the per-class recalls over the classes in the split "
                     "(0 when some class is never recognised).")
    return ["\n".join(f"- {note}" for note in notes), ""] if notes else []


def _data_section(data: Mapping) -> list[str]:
    """What loading left out (``DataSplits.load_summary``): skipped unreadable images and dropped classes."""
    skipped, dropped = int(data["skipped_images"]), list(data["dropped_classes"])
    if not skipped and not dropped:
        return []
    lines = ["## Data left out", ""]
    if skipped:
        listed = list(data["skipped_images_first"])
        lines += [f"{skipped} unreadable image(s) skipped (config.data.unreadable_images='skip'):", ""]
        lines += [f"- `{item}`" for item in listed]
        if skipped > len(listed):
            lines.append(f"- ... and {skipped - len(listed)} more")
        lines.append("")
    if dropped:
        lines += [f"{len(dropped)} empty class(es) dropped (config.data.empty_class_folders='drop'):", ""]
        lines += [f"- {_md_escape(item)}" for item in dropped]
        lines.append("")
    return lines


def _relative_figure_path(figure: "str | os.PathLike[str]", report_dir: str) -> str:
    figure = os.fspath(figure)
    if os.path.isabs(figure) or os.path.exists(figure):
        return os.path.relpath(os.path.abspath(figure), os.path.abspath(report_dir or ".")).replace(os.sep, "/")
    return figure.replace(os.sep, "/")


def write_report(
    path: "str | os.PathLike[str]",
    *,
    title: str,
    config_text: str,
    metrics: Mapping[str, Mapping],
    imbalance: Mapping,
    class_counts: Mapping[str, Sequence[int]],
    figures: Sequence["str | os.PathLike[str]"],
    wall_time_s: float,
    command: Optional[str] = None,
    class_names: Optional[Sequence[str]] = None,
    sections: Sequence[str] = (),
    data: Optional[Mapping] = None,
    notes: Sequence[str] = (),
) -> None:
    """Writes the run's Markdown report (report.md).

    Sections: summary (headline metrics of the "test" split, else the last split, including top-k
    accuracy, G-mean and ECE when present; command; wall time), class distribution per split
    (images, K, IR, BD, m and the per-class counts), the metrics table (scalar metrics × splits,
    with a definition of each `logit_metrics` metric present; a many/medium/few-shot accuracy whose
    group has no class reads "no class in this group (thresholds: ...)"), per-class
    precision/recall/F1 of the "test" split (else the last split) with train and split image
    counts, the skipped images and dropped classes of loading (when any), the figures, and the
    configuration text.

    Args:
      path: the report file; its folder is created if needed.
      title: report heading.
      config_text: the configuration as text (e.g. `str(config)`), shown verbatim.
      metrics: split name -> metrics dict (`classification_metrics` output, optionally merged with
        `logit_metrics` output, plus any scalars).
      imbalance: split name -> `imbalance_statistics` dict, or a single such dict, which is taken
        to describe the "train" split. Splits of `class_counts` without an entry are computed here.
      class_counts: split name -> images per class.
      figures: image paths. Absolute paths, and relative paths that exist from the current
        directory, are rewritten relative to the report's folder; other relative paths are taken
        to be relative to the report already.
      wall_time_s: run wall-clock time in seconds.
      command: the command line that produced the run, if known.
      class_names: optional names of the classes (default: class indices).
      sections: further Markdown sections (each with its own "## " heading), placed before the figures.
      data: what loading left out (``DataSplits.load_summary()``: ``skipped_images`` count,
        ``skipped_images_first``, ``dropped_classes``); counted in the summary and listed in a section.
      notes: lines of a "Run notes" section after the summary (e.g. a divergence, a checkpoint fall-back, a
        config change accepted on a rerun); no section when empty.
    """
    if not isinstance(metrics, Mapping) or not isinstance(class_counts, Mapping) or not isinstance(imbalance, Mapping):
        raise ValueError("metrics, imbalance and class_counts must be mappings (see the docstring).")
    path = os.fspath(path)
    report_dir = os.path.dirname(path)
    stats = _split_statistics(imbalance, class_counts)
    num_classes = max([len(list(c)) for c in class_counts.values()] +
                      [len(v.get("per_class_precision", []) or []) for v in metrics.values()] + [0])
    names = [str(n) for n in class_names] if class_names is not None else []
    names += [str(k) for k in range(len(names), num_classes)]
    main_split = "test" if "test" in metrics else (list(metrics)[-1] if metrics else None)

    lines = [f"# {title}", "", "## Summary", ""]
    if main_split is not None:
        headline = metrics[main_split]
        keys = ["accuracy", *sorted(k for k in headline if _TOP_K.fullmatch(k)), "balanced_accuracy", "macro_f1",
                "minority_f1", "g_mean", "expected_calibration_error"]
        parts = [f"{key.replace('_', ' ')} {_format_value(headline[key])}" for key in keys
                 if key in headline and _is_scalar(headline[key])]
        if parts:
            lines.append(f"- {main_split}: " + ", ".join(parts))
    lines.append(f"- wall time: {_format_duration(wall_time_s)}")
    if command is not None:
        lines += [f"- command: `{command}`"]
    if data is not None:
        lines.append(f"- unreadable images skipped: {int(data['skipped_images'])}, empty classes dropped: "
                     f"{len(data['dropped_classes'])}")
    lines.append("")
    if data is not None:
        lines += _data_section(data)
    if notes:
        lines += ["## Run notes", "", *(f"- {_md_escape(note)}" for note in notes), ""]
    lines += _class_count_section(class_counts, stats, names)
    if metrics:
        splits, metric_names, cells = _scalar_rows(metrics)
        lines += ["## Metrics", "",
                  _markdown_table(["metric", *splits], [[n, *row] for n, row in zip(metric_names, cells)]), ""]
        lines += _metric_notes(metrics, metric_names)
        lines += _per_class_section(metrics, main_split, names, class_counts)
    for section in sections:
        lines += [section.rstrip("\n"), ""]
    if figures:
        lines += ["## Figures", ""]
        for figure in figures:
            relative = _relative_figure_path(figure, report_dir)
            caption = os.path.splitext(os.path.basename(relative))[0]
            lines += [f"![{caption}]({relative})", ""]
    lines += ["## Configuration", "", "```", config_text.rstrip("\n"), "```", ""]

    if report_dir:
        os.makedirs(report_dir, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
