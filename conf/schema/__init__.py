"""Typed configs: one dataclass per config group, registered in Hydra's ConfigStore.

The YAML files under conf/ stay the documented defaults users read; each one names its schema in its defaults list,
so Hydra itself rejects an unknown key or a value of the wrong type (one line, naming the key). Checks that a type
cannot express (ranges, one-of) sit beside the fields, in each dataclass's `__post_init__`, and run when a command
calls `checked(cfg)`.

- `conf.schema.world`: sa-simulate's groups (backend, embedder, memory, rater, stopping, world) and its top level.
- `conf.schema.training`: losses, sa-build-data, sa-train, sa-eval, sa-experiment.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from conf.errors import UserError


@functools.cache
def register_schemas() -> None:
    """Store every schema in Hydra's ConfigStore (once per process); the command layer calls this before composing."""
    from hydra.core.config_store import ConfigStore

    from conf.schema import training, world

    for path, node in {**world.SCHEMAS, **training.SCHEMAS}.items():
        group, _, name = f"schema/{path}".rpartition("/")
        ConfigStore.instance().store(group=group, name=name, node=node)


def checked(cfg: DictConfig) -> Any:
    """The typed object of a composed config: builds every dataclass, so each `__post_init__` check runs; a failed
    check, or a key its schema lacks (added with `+key=...`, which Hydra lets through), is one `UserError` naming
    the key."""
    refuse_unknown_keys(cfg)
    try:
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as error:
        raise UserError(str(error).splitlines()[0]) from None


def refuse_unknown_keys(node: Any, path: str = "") -> None:
    """One `UserError` for the first key of a typed node that its dataclass does not declare."""
    if not isinstance(node, DictConfig):
        if isinstance(node, ListConfig):
            for i in range(len(node)):
                refuse_unknown_keys(node._get_node(i), f"{path}[{i}]")
        return
    schema = OmegaConf.get_type(node)
    names = {f.name for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else None
    for key in node:
        where = f"{path}.{key}" if path else str(key)
        if names is not None and key not in names:
            raise UserError(f"{where} is not a key of {path or 'the config'}; use one of {', '.join(sorted(names))}")
        refuse_unknown_keys(node._get_node(key), where)
