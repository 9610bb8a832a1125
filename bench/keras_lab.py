"""The Keras lab's Keras workload, side by side: `python bench/keras_lab.py RAW_DIR [EPOCHS]`.

Runs under an interpreter that has TensorFlow (not a project dependency; `make bench-keras` makes
a separate environment). Same work as train.py's defaults: conv32-pool-conv64-pool-dense128-10,
Glorot init, Adam 1e-3, batch 128, validation_split=0.1 (last 6,000 of the 60,000), 3 epochs,
evaluate on the 10,000 test digits. Prints one JSON line with phase seconds and test accuracy.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

T0 = time.perf_counter()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from mnist_cnn.data.idx import read_split  # noqa: E402  (NumPy only)


def main(raw: str, epochs: int = 3, seed: int = 42) -> None:
    t_import = time.perf_counter() - T0
    t = time.perf_counter()
    x, y = read_split(f"{raw}/train-images-idx3-ubyte", f"{raw}/train-labels-idx1-ubyte")
    xt, yt = read_split(f"{raw}/t10k-images-idx3-ubyte", f"{raw}/t10k-labels-idx1-ubyte")
    # The lab's preprocessing: float32 in [0, 1], a trailing channel axis.
    x = (x.astype("float32") / 255)[..., None]
    xt = (xt.astype("float32") / 255)[..., None]
    t_data = time.perf_counter() - t
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    t = time.perf_counter()
    hist = model.fit(x, y, batch_size=128, epochs=epochs, validation_split=0.1, verbose=0)
    t_fit = time.perf_counter() - t
    t = time.perf_counter()
    test_loss, test_acc = model.evaluate(xt, yt, batch_size=128, verbose=0)
    t_test = time.perf_counter() - t
    print(
        json.dumps(
            {
                "imports": t_import,
                "data": t_data,
                "fit": t_fit,
                "test": t_test,
                "test_acc": float(test_acc),
                "val_acc": float(hist.history["val_accuracy"][-1]),
                "params": int(model.count_params()),
                "versions": {"keras": keras.__version__, "numpy": np.__version__},
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:]))
