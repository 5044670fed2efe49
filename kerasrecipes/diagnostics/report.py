"""The Markdown report of `doctor`: the verdicts, what to do next, each check's numbers."""

import os

from kerasrecipes.tasks import is_multitask, output_activation, task_heads


NEXT_STEPS = {
    "inputs": "Feed uint8 0–255 pixels; the model normalises them itself.",
    "labels": "Build the model with num_classes=len(data.class_names).",
    "output_loss": "Pair softmax/sigmoid outputs with from_logits=False cross-entropy.",
    "weights": "Re-initialise with he_normal / glorot_uniform (not zeros, not huge).",
    "initial_loss": "Fix the initialisation / activation until the loss starts at chance.",
    "overfit_small_batch": "Do not train on the full data until the model can memorise a few "
                           "batches.",
    "lr_range_test": "Pick the learning rate from the range test plot.",
    "training_curves": "Lower the learning rate (see the curves below) before training longer.",
}


def markdown_report(checks, model, suggestion, out_dir):
    icon = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"}
    failed = [c for c in checks if c.status == "fail"]
    if is_multitask(model):
        outputs = "outputs " + ", ".join(f"{h.task} ({h.units}, {h.activation})"
                                         for h in task_heads(model))
    else:
        outputs = f"output {tuple(model.output_shape[1:])} ({output_activation(model)})"
    lines = [
        f"# kerasrecipes doctor: `{model.name}`",
        "",
        f"Model: {model.count_params():,} parameters, input {tuple(model.input_shape[1:])}, "
        f"{outputs}.",
        "",
        "**Verdict: " + ("all checks passed.**" if not failed else
                         f"{len(failed)} check(s) failed: "
                         + ", ".join(c.name for c in failed) + ".**"),
        "",
        "| check | verdict | result |",
        "| --- | --- | --- |",
    ]
    for check in checks:
        lines.append(f"| {check.name} | {icon[check.status]} | "
                     f"{check.summary.replace('|', '/')} |")
    lines += ["", "## What to do next", ""]
    if failed:
        for check in failed:
            base = check.name.split(" ")[0]
            lines.append(f"- **{check.name}**: {NEXT_STEPS.get(base, 'see below')}")
    else:
        lines.append("- Train: start from the learning rate suggested below"
                     + (f" (**{suggestion:.2g}**)" if suggestion else "")
                     + ", watch train vs. validation curves: `history.report(dir)` (and "
                     "`kerasrecipes finetune`, in its output folder) writes them with the "
                     "patterns they show; `doctor(..., history=history)` checks them here.")
    for check in checks:
        lines += ["", f"## {check.name}: {icon[check.status]}", "", check.summary, ""]
        lines += [f"- {a}" for a in check.advice]
        shown = {k: v for k, v in check.details.items()
                 if k not in ("losses", "accuracies") and not isinstance(v, (list, dict))
                 or (isinstance(v, list) and len(v) <= 8)}
        if shown:
            lines += ["", "| measure | value |", "| --- | --- |"]
            for key, value in shown.items():
                lines.append(f"| {key} | {_cell(value)} |")
        if isinstance(check.details.get("heads"), dict):  # multi-task: one row per head
            lines += ["", "| head | verdict | measures |", "| --- | --- | --- |"]
            for task, measures in check.details["heads"].items():
                text = ", ".join(f"{k} {_cell(v)}" for k, v in measures.items()
                                 if k != "status" and v is not None)
                lines.append(f"| {task} | {icon[measures.get('status', 'skip')]} | {text} |")
        for figure in check.figures:
            lines += ["", f"![{check.name}]({os.path.relpath(figure, out_dir)})"]
    return "\n".join(lines) + "\n"


def _cell(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value).replace("|", "/")
