"""Reading a config file: the `_base_` chain, merge rules, `--opts` overrides and `data_root`.

Pure dictionary work (PyYAML only), so the deploy runner and tools can read configs without torch.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from medseg.cvlibs.errors import ConfigError
from medseg.cvlibs.sources import record_keys

BASE_KEY = "_base_"
INHERIT_KEY = "_inherited_"
DATASET_KEYS = ("train_dataset", "val_dataset", "test_dataset")
DATASET_PATH_KEYS = ("dataset_root", "result_dir")


def read_yaml(path: str | os.PathLike, referenced_from: str | None = None) -> dict[str, Any]:
    """Parse one YAML file into a dict, with errors that name the file and the line."""
    path = Path(path)
    if not path.is_file():
        origin = f" (listed in _base_ of {referenced_from})" if referenced_from else ""
        raise ConfigError(f"config file not found: {path}{origin}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"YAML syntax error{line}: {problem}", path=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a mapping of keys at the top level, got {type(data).__name__}",
            path=str(path),
        )
    return data


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge `override` onto `base` and return a new dict.

    Dicts merge recursively; every other value (lists included) replaces. A dict holding
    `_inherited_: False` replaces the base's dict instead of merging into it.
    """
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict):
            value = dict(value)
            inherit = value.pop(INHERIT_KEY, True)
            if inherit and isinstance(merged.get(key), dict):
                merged[key] = merge(merged[key], value)
                continue
            merged[key] = merge({}, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_config_dict(
    path: str | os.PathLike, files: dict[str, str] | None = None
) -> dict[str, Any]:
    """Load `path` with its whole `_base_` chain merged (later bases and the file itself win).

    Args:
        path: The config file.
        files: When given, filled with dotted key → the file that set it last.
    """
    return _load(Path(path).resolve(), (), None, {} if files is None else files)


def _load(
    path: Path, stack: tuple[Path, ...], referenced_from: str | None, files: dict[str, str]
) -> dict[str, Any]:
    if path in stack:
        cycle = " -> ".join(str(p) for p in (*stack[stack.index(path) :], path))
        raise ConfigError(f"_base_ files form a cycle: {cycle}", path=str(path))
    data = read_yaml(path, referenced_from)
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError("_base_ must be a path or a list of paths", path=str(path), key=BASE_KEY)
    merged: dict[str, Any] = {}
    for base in bases:
        base_path = (path.parent / base).resolve()
        merged = merge(merged, _load(base_path, (*stack, path), str(path), files))
    record_keys(data, str(path), files)
    return merge(merged, data)


def parse_opts(opts: list[str] | None) -> list[tuple[list[str], Any, str]]:
    """Split `key.sub=value` strings into (key path, YAML-parsed value, origin) triples.

    The origin, `--opts 'key.sub=value'`, is what error messages name.
    """
    parsed = []
    for opt in opts or []:
        key, sep, raw = opt.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--opts entries look like key.sub=value, got '{opt}'")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"--opts value of '{key}' is not valid YAML: {raw!r}") from None
        parsed.append((key.strip().split("."), value, f"--opts '{opt}'"))
    return parsed


def apply_opts(config: dict[str, Any], opts: list[str] | None) -> dict[str, str]:
    """Set each `--opts` override in place; list items are addressed by their index.

    Returns:
        Dotted key → origin of each override, for error messages.
    """
    origins = {}
    for parts, value, origin in parse_opts(opts):
        dotted = ".".join(parts)
        path = origin
        node: Any = config
        for depth, part in enumerate(parts[:-1]):
            node = _child(node, part, ".".join(parts[: depth + 1]), path, create=True)
        _assign(node, parts[-1], value, dotted, path)
        origins[dotted] = origin
    return origins


def _child(node: Any, part: str, dotted: str, path: str | None, create: bool) -> Any:
    if isinstance(node, dict):
        if part not in node:
            if not create:
                raise ConfigError("no such key", path=path, key=dotted)
            node[part] = {}
        return node[part]
    if isinstance(node, list):
        return node[_index(node, part, dotted, path)]
    raise ConfigError(
        f"cannot descend into a {type(node).__name__} value with '{part}'", path=path, key=dotted
    )


def _assign(node: Any, part: str, value: Any, dotted: str, path: str | None) -> None:
    if isinstance(node, dict):
        node[part] = value
    elif isinstance(node, list):
        node[_index(node, part, dotted, path)] = value
    else:
        raise ConfigError(f"cannot set '{part}' on a {type(node).__name__} value", path, key=dotted)


def _index(node: list, part: str, dotted: str, path: str | None) -> int:
    try:
        index = int(part)
    except ValueError:
        raise ConfigError(f"'{part}' must be a list index here", path=path, key=dotted) from None
    if not -len(node) <= index < len(node):
        raise ConfigError(
            f"list index {index} out of range (the list has {len(node)} items)", path, key=dotted
        )
    return index


def resolve_data_root(config: dict[str, Any]) -> None:
    """Prefix `data_root` to the relative `dataset_root` / `result_dir` of every dataset.

    `data_root` is removed afterwards, so a dumped (resolved) config loads to the same paths.
    """
    data_root = config.pop("data_root", None)
    if not data_root:
        return
    for dataset_key in DATASET_KEYS:
        dataset = config.get(dataset_key)
        if not isinstance(dataset, dict):
            continue
        for path_key in DATASET_PATH_KEYS:
            value = dataset.get(path_key)
            if isinstance(value, str) and not os.path.isabs(value):
                dataset[path_key] = os.path.join(data_root, value)
