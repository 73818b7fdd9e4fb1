"""A run's own files read back for the pages: training logs and the seed's measures.

Example
-------
>>> logs = train_logs(paths, "resnet18", 0, "smoke")
>>> logs["adv"][-1]["share_consistent"]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from consis_lib.errors import ConsisError
from consis_lib.results import MODELS

TRAIN_LOG = "log.jsonl"


def train_logs(paths: Any, arch: str, seed: int, profile: str, models: Sequence[str] = MODELS) -> dict[str, list[dict[str, Any]]]:
    """The per-epoch training log (``log.jsonl``, one JSON object a line) of each model of a seed.

    ``paths`` is the run's :class:`~consis_lib.context.RunPaths`; a missing log names
    the command that writes it.
    """
    logs = {}
    for name in models:
        f = paths.checkpoint_dir(arch, name, seed) / TRAIN_LOG
        if not f.is_file():
            raise ConsisError(f"{f} is missing; train with `consis reproduce --profile {profile}`")
        logs[name] = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return logs


def seed_results(paths: Any, profile: Any, arch: str, seed: int) -> Any:
    """The :class:`~consis_lib.results.SeedResults` of one (arch, seed) (``measures.json``,
    written by ``consis reproduce``; its identity is checked by :func:`~consis_lib.results.load_results`)."""
    from consis_lib.results import load_results

    found = [r for r in load_results(paths.runs, profile, [arch]) if r.seed == seed]
    if not found:
        raise ConsisError(f"seed {seed} is not a seed of {arch} in profile {profile.name}")
    return found[0]


def dissection_summary(results: Any) -> dict[str, Any]:
    """Per model the dissection unit tables of a seed's measures, with ``iou_threshold``."""
    m = results.measures
    out: dict[str, Any] = {"iou_threshold": m["iou_threshold"]}
    out.update({name: d["dissection"] for name, d in m["models"].items() if "dissection" in d})
    return out
