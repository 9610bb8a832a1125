"""One training-step lever at a time: `python bench/levers.py RAW_DIR [--channels-last] ...`.

Trains the Keras lab network on real MNIST batches (batch 128, Adam), plain loop; prints one JSON
line: the median milliseconds per step after a warm-up, the first step's seconds (compile time
shows there) and a checksum of the weights, so levers that claim "same math" can be compared.
Each lever runs in its own process: keep_freed_memory is process-wide.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from reference import TextbookOrderCNN  # noqa: E402  (bench/ is on sys.path: the script's dir)

from mnist_cnn.data.idx import read_split  # noqa: E402
from mnist_cnn.models.simple_cnn import SimpleCNN  # noqa: E402
from mnist_cnn.process import keep_freed_memory  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--pool-first", action="store_true", help="SimpleCNN's order")
    parser.add_argument(
        "--read-square", action="store_true", help="with --pool-first: SimpleCNN's 26x26 crop"
    )
    parser.add_argument("--keep-freed", action="store_true", help="keep_freed_memory()")
    parser.add_argument("--compile", action="store_true", help="torch.compile(net)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    if args.keep_freed:
        keep_freed_memory()
    images, labels = read_split(
        args.raw / "train-images-idx3-ubyte", args.raw / "train-labels-idx1-ubyte"
    )
    x_all, y_all = torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long()
    torch.manual_seed(0)
    net = SimpleCNN() if args.pool_first else TextbookOrderCNN()
    if not args.read_square:
        net.read_side = images.shape[-1]  # slicing to the whole image: SimpleCNN's crop undone
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    net = net.to(memory_format=layout)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    model = torch.compile(net) if args.compile else net
    order = torch.randperm(len(y_all), generator=torch.Generator().manual_seed(0))
    seconds = []
    for step in range(args.steps):
        idx = order[step * args.batch : (step + 1) * args.batch]
        start = time.perf_counter()
        x = x_all[idx].float().div_(255).contiguous(memory_format=layout)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = F.cross_entropy(model(x), y_all[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    checksum = sum(p.double().sum().item() for p in net.parameters())
    print(
        json.dumps(
            {
                "ms_per_step": 1000 * statistics.median(seconds[20:]),
                "first_step_s": seconds[0],
                "checksum": checksum,
            }
        )
    )


if __name__ == "__main__":
    main()
