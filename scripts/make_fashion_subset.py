#!/usr/bin/env python3
"""Writes the Fashion-MNIST subset shipped in data/fashion-mnist-subset: the
first 6,000 training and 1,000 test images of the official files, as gzip IDX
files with the official names, so the examples and tests run on a fresh machine.

Usage: python3 scripts/make_fashion_subset.py [SOURCE_DIR]
(default source: /usr/share/datasets/fashion-mnist, from `apt-get install
dataset-fashion-mnist`).
"""
import gzip
import os
import struct
import sys

SOURCE = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
TARGET = os.path.join(os.path.dirname(__file__), "..", "data", "fashion-mnist-subset")
COUNTS = {"train": 6000, "t10k": 1000}


def read(name):
    with gzip.open(os.path.join(SOURCE, name + ".gz"), "rb") as f:
        return f.read()


def write(name, data):
    # mtime=0 keeps the output byte-identical from run to run.
    with open(os.path.join(TARGET, name + ".gz"), "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as f:
            f.write(data)


for split, n in COUNTS.items():
    images = read(f"{split}-images-idx3-ubyte")
    magic, count, rows, cols = struct.unpack(">IIII", images[:16])
    assert magic == 0x803 and count >= n
    write(f"{split}-images-idx3-ubyte", struct.pack(">IIII", magic, n, rows, cols) + images[16:16 + n * rows * cols])
    labels = read(f"{split}-labels-idx1-ubyte")
    magic, count = struct.unpack(">II", labels[:8])
    assert magic == 0x801 and count >= n
    write(f"{split}-labels-idx1-ubyte", struct.pack(">II", magic, n) + labels[8:8 + n])
    print(split, n, "per class:", [labels[8:8 + n].count(c) for c in range(10)])
