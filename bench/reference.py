"""The honest baseline: the Keras lab workload as a plain PyTorch loop, no Lightning, no Hydra.

Same data (54,000 train / 6,000 val / 10,000 test, uint8 in memory, scaled per batch), same network,
Adam 1e-3, batch 128, 3 epochs, validation every epoch, test at the end, fp32, NCHW, eager, the
layers in the textbook order (ReLU, then pool), glibc's default allocator settings.
Prints one JSON line with its phase timings and test accuracy. A last argument `cuda` runs it on the
GPU, the whole dataset resident there (bench/gpu.py); timings then wait for the GPU to finish.
"""

from __future__ import annotations

import json
import sys
import time

T0 = time.perf_counter()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mnist_cnn.data.idx import read_split  # noqa: E402
from mnist_cnn.models.simple_cnn import SimpleCNN  # noqa: E402


class TextbookOrderCNN(SimpleCNN):
    """The Keras lab's network with its layers in the order Keras writes them: ReLU, then pool."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        x = F.relu(self.dense1(self.flatten(x)))
        return self.output(x)


def evaluate(net, x, y, batch=256):
    net.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            logits = net(x[i : i + batch].float().div_(255))
            loss += F.cross_entropy(logits, y[i : i + batch], reduction="sum").item()
            correct += (logits.argmax(1) == y[i : i + batch]).sum().item()
    net.train()
    return correct / len(y), loss / len(y)


def main(raw: str, epochs: int = 3, batch: int = 128, seed: int = 42, device: str = "cpu") -> None:
    t_import = time.perf_counter() - T0
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    t = time.perf_counter()
    x, y = read_split(f"{raw}/train-images-idx3-ubyte", f"{raw}/train-labels-idx1-ubyte")
    xt, yt = read_split(f"{raw}/t10k-images-idx3-ubyte", f"{raw}/t10k-labels-idx1-ubyte")
    x, y = torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y).long()
    xt, yt = torch.from_numpy(xt).unsqueeze(1), torch.from_numpy(yt).long()
    x, y, xt, yt = (t.to(device) for t in (x, y, xt, yt))
    cut = len(y) - len(y) // 10  # the last 10% validate: 54,000 / 6,000 for MNIST
    xtr, ytr, xv, yv = x[:cut], y[:cut], x[cut:], y[cut:]
    sync()
    t_data = time.perf_counter() - t
    torch.manual_seed(seed)
    net = TextbookOrderCNN().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    t = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(ytr), device=device)
        for i in range(0, len(ytr), batch):
            idx = order[i : i + batch]
            loss = F.cross_entropy(net(xtr[idx].float().div_(255)), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        val_acc, _ = evaluate(net, xv, yv)
    sync()
    t_fit = time.perf_counter() - t
    t = time.perf_counter()
    test_acc, test_loss = evaluate(net, xt, yt)
    t_test = time.perf_counter() - t
    print(
        json.dumps(
            {
                "imports": t_import,
                "data": t_data,
                "fit": t_fit,
                "test": t_test,
                "test_acc": test_acc,
                "val_acc": val_acc,
            }
        )
    )


if __name__ == "__main__":
    args = sys.argv[2:]
    device = args.pop() if args and not args[-1].isdigit() else "cpu"
    main(sys.argv[1], *(int(a) for a in args), device=device)
