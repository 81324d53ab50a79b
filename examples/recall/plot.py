#!/usr/bin/env python3
"""Draws the recall demo's pictures from its summary.json and curves.json.

Usage: /usr/bin/python3 examples/recall/plot.py <folder>   (default: build/demo/recall)

Writes <folder>/training_loss.png (the outer loss per step, each variant, smoothed) and
<folder>/recall.png (accuracy and normalised error against the number of pairs N).
"""

import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LABELS = {
    "full": "exact meta-gradient",
    "first_order": "first-order",
    "frozen_kv": "W_K, W_V frozen",
    "no_memory": "no memory (theta = 0)",
}


def smooth(values, window=50):
    values = np.asarray(values, dtype=float)
    if len(values) < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def main():
    folder = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "build/demo/recall")
    summary = json.loads((folder / "summary.json").read_text())
    curves = json.loads((folder / "curves.json").read_text())

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for name, label in LABELS.items():
        y = smooth(curves[name])
        ax.plot(np.arange(len(y)) + (len(curves[name]) - len(y)), y, label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel("outer loss (mse at the queries, mean of 50 steps)")
    ax.set_yscale("log")
    ax.set_title(f"Meta-training, key size {summary['key_size']}, batches of {summary['batch']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "training_loss.png")

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.0), dpi=100)
    for name, label in LABELS.items():
        v = summary["variants"][name]
        n = sorted(int(k) for k in v["accuracy"])
        left.plot(n, [100 * v["accuracy"][str(k)] for k in n], marker="o", label=label)
        right.plot(n, [v["error"][str(k)] for k in n], marker="o", label=label)
    n = sorted(int(k) for k in summary["variants"]["full"]["accuracy"])
    left.plot(n, [100 / k for k in n], color="grey", linestyle=":", label="chance (1/N)")
    quarter = summary["key_size"] / 4
    for ax in (left, right):
        ax.axvline(quarter, color="grey", linewidth=0.8, alpha=0.5)
        ax.set_xlabel("pairs written, N")
        ax.grid(True, alpha=0.3)
    left.set_ylabel("recall accuracy (%)")
    left.set_ylim(0, 105)
    right.set_ylabel("normalised error ||y - v||^2 / ||v||^2")
    left.legend(fontsize=8)
    fig.suptitle(f"Recall of held-out sequences ({summary['eval_sequences']} per N; the line: N = key size / 4)")
    fig.tight_layout()
    fig.savefig(folder / "recall.png")
    print(f"wrote {folder / 'training_loss.png'} and {folder / 'recall.png'}")


if __name__ == "__main__":
    main()
