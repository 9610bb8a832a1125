"""Compare runs across seeds and configs: `python compare.py PATH [PATH ...] [--out DIR]`."""

from mnist_cnn.cli.compare import main

if __name__ == "__main__":
    main()
