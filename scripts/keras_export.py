#!/usr/bin/env python3
"""Trains the book's Keras model briefly on Fashion-MNIST, prints Keras's own
test accuracy, and exports the weights in tinycnn's safetensors layout (the
README's snippet), so that `cargo run --release --example evaluate -- --weights
OUT` can be compared with it.

Usage: pip install tensorflow-cpu safetensors
       python3 scripts/keras_export.py [--epochs 2] [--data DIR] [--out keras.safetensors]
"""
import argparse
import gzip
import os

import numpy as np
import tensorflow as tf
from safetensors.numpy import load_file, save_file

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
parser.add_argument("--out", default="keras.safetensors")
args = parser.parse_args()


def idx(name):
    with gzip.open(os.path.join(args.data, name + ".gz"), "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw[4 + 4 * dims :], dtype=np.uint8).reshape(shape)


x_train = idx("train-images-idx3-ubyte")[..., None].astype(np.float32) / 255.0
y_train = idx("train-labels-idx1-ubyte")
x_test = idx("t10k-images-idx3-ubyte")[..., None].astype(np.float32) / 255.0
y_test = idx("t10k-labels-idx1-ubyte")

tf.keras.utils.set_random_seed(1)
model = tf.keras.Sequential(
    [
        tf.keras.Input((28, 28, 1)),
        tf.keras.layers.Conv2D(10, 3, padding="same", activation="relu"),
        tf.keras.layers.MaxPooling2D(2),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dropout(0.5),
        tf.keras.layers.Dense(100, activation="relu"),
        tf.keras.layers.Dense(10),
    ]
)
model.compile(
    optimizer="adam",
    loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
model.fit(x_train, y_train, batch_size=32, epochs=args.epochs, verbose=2)
_, accuracy = model.evaluate(x_test, y_test, verbose=0)
print(f"keras accuracy={accuracy:.4f}")

# Keras -> tinycnn, for any Sequential model of Conv2D, MaxPooling2D,
# Flatten, Dropout and Dense layers: the convolutions are conv1, conv2, ...
# (conv when there is one), the dense layers dense1, dense2, ...


def tinycnn_names(model):
    convs = [l for l in model.layers if isinstance(l, tf.keras.layers.Conv2D)]
    denses = [l for l in model.layers if isinstance(l, tf.keras.layers.Dense)]
    names = {}
    for i, layer in enumerate(convs):
        names["conv" if len(convs) == 1 else f"conv{i + 1}"] = layer
    for i, layer in enumerate(denses):
        names[f"dense{i + 1}"] = layer
    return names


def export(model, path):
    tensors = {}
    for name, layer in tinycnn_names(model).items():
        tensors[f"{name}.kernel"] = layer.kernel.numpy()
        tensors[f"{name}.bias"] = layer.bias.numpy()
    save_file(tensors, path)


def load(model, path):
    t = load_file(path)
    for name, layer in tinycnn_names(model).items():
        layer.set_weights([t[f"{name}.kernel"], t[f"{name}.bias"]])


export(model, args.out)
# And back: tinycnn -> Keras gives the same accuracy.
load(model, args.out)
_, again = model.evaluate(x_test, y_test, verbose=0)
print(f"keras accuracy after reloading={again:.4f}")
