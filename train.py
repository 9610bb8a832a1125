"""Train the MNIST CNN: `python train.py [key=value ...]` (Hydra overrides; `--help` lists them)."""

import sys

try:
    from mnist_cnn.cli.train import main
except KeyboardInterrupt:  # Ctrl-C while Python is still importing: one line, not a traceback
    print("interrupted: SIGINT received while starting, before anything was saved", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    main()
