#!/usr/bin/env python3
"""The pictures of the char_lm demo (docs/tutorial-char-lm.md).

Usage: /usr/bin/python3 examples/char_lm/plot.py OUT_DIR [IMAGE_DIR]

Reads OUT_DIR/{train_loss.csv,loss_by_position.csv,summary.json}, written by
build/examples/char_lm, and writes char_lm_loss_by_position.png and
char_lm_train_loss.png into IMAGE_DIR (default OUT_DIR).
"""

import csv
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows] for k in rows[0]}


def smooth(values, width):
    """Centred moving average over `width` values (shorter at the ends)."""
    out = []
    for i in range(len(values)):
        lo, hi = max(0, i - width // 2), min(len(values), i + width // 2 + 1)
        out.append(sum(values[lo:hi]) / (hi - lo))
    return out


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    out = pathlib.Path(sys.argv[1])
    images = pathlib.Path(sys.argv[2]) if len(sys.argv) == 3 else out
    images.mkdir(parents=True, exist_ok=True)
    summary = json.loads((out / "summary.json").read_text())
    bits = summary["bits_per_char"]
    cfg = summary["config"]

    pos = read_csv(out / "loss_by_position.csv")
    fig, (ax, diff) = plt.subplots(2, 1, figsize=(6.4, 5.0), dpi=80, sharex=True,
                                   gridspec_kw={"height_ratios": [2.2, 1]})
    width = max(1, len(pos["position"]) // 32)
    for key, label, colour in (("memory", "memory (learns in context)", "C0"),
                               ("no_inner_updates", "no inner updates", "C1"),
                               ("bigram", "bigram counts", "C2")):
        ax.plot(pos["position"], pos[key], color=colour, alpha=0.25, linewidth=0.8)
        ax.plot(pos["position"], smooth(pos[key], width), color=colour,
                label=f"{label}: {bits[key]:.3f} bits/char")
    ax.set_ylabel("held-out loss (bits/char)")
    ax.set_title(f"Held-out loss by position ({summary['heldout_characters']} characters)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    # The text at a position is the same for every model: the difference removes it.
    gain = [a - b for a, b in zip(pos["no_inner_updates"], pos["memory"])]
    diff.plot(pos["position"], gain, color="C0", alpha=0.25, linewidth=0.8)
    diff.plot(pos["position"], smooth(gain, width), color="C0")
    diff.axhline(0, color="grey", linewidth=0.8)
    diff.set_xlabel("position in the sequence (characters)")
    diff.set_ylabel("gain (bits/char)", fontsize=8)
    diff.set_title("no inner updates minus memory", fontsize=9)
    diff.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(images / "char_lm_loss_by_position.png")
    plt.close(fig)

    train = read_csv(out / "train_loss.csv")
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=90)
    width = max(1, len(train["step"]) // 40)
    nats_to_bits = 1 / 0.6931471805599453
    for key, label, colour in (("memory", "memory", "C0"), ("no_inner_updates", "no inner updates", "C1")):
        values = [v * nats_to_bits for v in train[key]]
        ax.plot(train["step"], values, color=colour, alpha=0.2, linewidth=0.6)
        ax.plot(train["step"], smooth(values, width), color=colour, label=label)
    ax.axhline(bits["bigram"], color="C2", linestyle="--", linewidth=1, label="bigram (held out)")
    ax.set_xlabel(f"step ({cfg['batch']} sequences of {cfg['seq']} characters)")
    ax.set_ylabel("training loss (bits/char)")
    ax.set_title("Training loss", fontsize=10)
    ax.set_ylim(top=min(6.5, max(max(train["memory"]), max(train["no_inner_updates"])) * nats_to_bits))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(images / "char_lm_train_loss.png")
    plt.close(fig)
    print(f"wrote {images}/char_lm_loss_by_position.png, {images}/char_lm_train_loss.png")


if __name__ == "__main__":
    main()
