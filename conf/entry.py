"""Console-script entry points that stay one line on Ctrl-C even while the heavy imports (torch, transformers) run.

`pip` generates `sa-train` as `from conf.entry import train; train()`; the command's module is imported here, inside
the same interrupt handling as `hydra_command`, then its Hydra `main()` runs.
"""

from __future__ import annotations

import functools
import importlib
import sys

EXIT_INTERRUPTED = 130  # as conf.cli (not imported here: Hydra's import is part of what may be interrupted)


def run(prog: str, module: str) -> None:
    """Import `module` and run its `main()`; Ctrl-C during the import exits 130 in one line naming `prog`."""
    try:
        main = importlib.import_module(module).main
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; re-run the same command to resume", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    main()


# The console-script functions (pyproject's [project.scripts] names these).
simulate = functools.partial(run, "sa-simulate", "environment.simulate")
build_data = functools.partial(run, "sa-build-data", "training.build_data")
train = functools.partial(run, "sa-train", "training.train")
evaluate = functools.partial(run, "sa-eval", "training.evaluate")
experiment = functools.partial(run, "sa-experiment", "experiment.run")
# sa-browse is plain argparse, not Hydra: `sa-browse RUN_DIR [RUN_DIR ...]`
browse = functools.partial(run, "sa-browse", "environment.browser")
