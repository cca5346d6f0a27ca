"""The pipeline as DVC sees it: stage names in run order, read from dvc.yaml (through DVC's own parser, so
foreach stages expand exactly as `dvc repro` expands them), and each stage's dvc.lock entry."""

from __future__ import annotations

from pathlib import Path


def stage_order(root: Path) -> list[str]:
    """Every stage of ``root``'s dvc.yaml (``train@espcn_x3`` for foreach items), upstream first; among
    stages free to go, the order of dvc.yaml."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edge stage -> a stage it depends on
        position = {stage: i for i, stage in enumerate(repo.index.stages)}
        ordered = nx.lexicographical_topological_sort(graph.reverse(copy=True), key=lambda s: position.get(s, 0))
        return [stage.name for stage in ordered if getattr(stage, "name", None)]


def downstream(root: Path, stages: list[str]) -> set[str]:
    """``stages`` and every stage that depends on them, directly or not."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph
        by_name = {s.name: s for s in graph.nodes if getattr(s, "name", None)}
        found = set()
        for name in stages:
            if name in by_name:
                found.add(name)
                found |= {s.name for s in nx.ancestors(graph, by_name[name])}
        return found


def lock_entry(root: Path, stage: str) -> dict | None:
    """The stage's entry in dvc.lock (deps/params/outs with their hashes), None when it never ran."""
    import yaml

    path = root / "dvc.lock"
    if not path.is_file():
        return None
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return (data or {}).get("stages", {}).get(stage)
