"""Hydra configs shipped with the package, the command-line layer shared by every `sa-*` command (cli, entry), and
the small infrastructure every layer may import, none of it loading Hydra, torch or transformers: errors (UserError),
paths (the cache folder, the embedded model) and devices (device and precision choice)."""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
