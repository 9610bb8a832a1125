"""Train the MNIST CNN: `python train.py [key=value ...]` (Hydra overrides; `--help` lists them)."""

try:
    from mnist_cnn.cli.train import main
except KeyboardInterrupt:  # Ctrl-C while Python is still importing
    from mnist_cnn.errors import exit_while_starting

    exit_while_starting()

if __name__ == "__main__":
    main()
